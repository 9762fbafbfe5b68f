//! Member weights: the `ringleader.io/weights` annotation on the Service.
//!
//! A member's ownership target is proportional to its weight. EndpointSlices
//! carry no per-endpoint annotations and are owned by their controller (a
//! user's edit is overwritten), so weights live on the Service, the user's
//! own object:
//!
//! ```text
//! kubectl annotate service db ringleader.io/weights=db-3=2,db-4=2 --overwrite
//! ```
//!
//! # Format
//!
//! A comma-separated list of `member=weight`: the member is its identity
//! (the pod name for pods, see [`crate::membership`]), the weight a whole
//! number from 1 to [`MAX_WEIGHT`]. Spaces around entries, names and
//! numbers are allowed; an empty value names nobody. Members not named have
//! weight 1; names of members that do not exist (yet) are ignored, since a
//! pod may simply not be there yet.
//!
//! A malformed value — an entry without `=`, an empty name, a weight that is
//! not a whole number, 0 or above [`MAX_WEIGHT`], a member named twice — is
//! refused as a whole, with the exact problem and what a valid value looks
//! like: applying the good half of a value would move data by a half-typed
//! intention. The source then keeps the weights it had.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

use crate::member::{MemberId, MemberSet};

/// The annotation on the Service that gives member weights.
pub const WEIGHTS_ANNOTATION: &str = "ringleader.io/weights";

/// The largest weight a member may have. A member of weight `w` gets `w`
/// times the tokens of a member of weight 1, so the bound keeps a ring's
/// size (and the coordinator's state) within reach of one typo.
pub const MAX_WEIGHT: u32 = 64;

/// What a valid value looks like, for error messages.
const EXAMPLE: &str = "a valid value looks like \"db-3=2,db-4=2\" (member=weight, weights \
                       1 to 64, members not named have weight 1)";

/// A weights annotation that cannot be used, with what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {WEIGHTS_ANNOTATION} on Service {service}: {problem}; {EXAMPLE}")]
pub struct WeightsError {
    /// `namespace/name` of the Service (or `(unnamed)`).
    pub service: String,
    /// The exact problem (`entry 2 ("db-4=0"): weight 0 is below 1`).
    pub problem: String,
}

/// Member weights as an annotation gives them: the members named, with
/// their weight; every other member has weight 1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Weights {
    named: BTreeMap<MemberId, u32>,
}

impl Weights {
    /// Parses an annotation value (see the [module docs](self)); `service`
    /// names the Service in the error.
    pub fn parse(value: &str, service: &str) -> Result<Self, WeightsError> {
        let refuse = |problem: String| WeightsError {
            service: service.to_owned(),
            problem,
        };
        let mut named = BTreeMap::new();
        if value.trim().is_empty() {
            return Ok(Self { named });
        }
        for (index, entry) in value.split(',').enumerate() {
            let number = index + 1;
            let Some((name, weight)) = entry.split_once('=') else {
                return Err(refuse(if entry.trim().is_empty() {
                    format!("entry {number} is empty (a stray comma?)")
                } else {
                    format!("entry {number} ({entry:?}) has no `=`")
                }));
            };
            let (name, weight) = (name.trim(), weight.trim());
            if name.is_empty() {
                return Err(refuse(format!(
                    "entry {number} ({entry:?}) names no member"
                )));
            }
            let weight: u32 = match weight.parse::<u64>() {
                Ok(w) if weight.bytes().all(|b| b.is_ascii_digit()) => {
                    u32::try_from(w).unwrap_or(u32::MAX)
                }
                _ => {
                    return Err(refuse(format!(
                        "entry {number} ({entry:?}): weight {weight:?} is not a whole number"
                    )));
                }
            };
            if weight == 0 {
                return Err(refuse(format!(
                    "entry {number} ({entry:?}): weight 0 is below 1 (to take a member out, \
                     scale it down instead)"
                )));
            }
            if weight > MAX_WEIGHT {
                return Err(refuse(format!(
                    "entry {number} ({entry:?}): weight {weight} is above the largest, {MAX_WEIGHT}"
                )));
            }
            if named.insert(MemberId::from(name), weight).is_some() {
                return Err(refuse(format!(
                    "entry {number} ({entry:?}): member {name:?} is named twice"
                )));
            }
        }
        Ok(Self { named })
    }

    /// The weights a Service's annotation gives; no annotation gives
    /// weight 1 to every member.
    pub fn of_service(service: &Service) -> Result<Self, WeightsError> {
        let value = service
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(WEIGHTS_ANNOTATION));
        match value {
            None => Ok(Self::default()),
            Some(value) => Self::parse(value, &service_label(service)),
        }
    }

    /// The weight of a member: as named, else 1.
    pub fn weight(&self, id: &str) -> u32 {
        self.named.get(id).copied().unwrap_or(1)
    }

    /// The members named, with their weights.
    pub fn named(&self) -> impl Iterator<Item = (&MemberId, u32)> {
        self.named.iter().map(|(id, w)| (id, *w))
    }

    /// Gives every member of `members` its weight. Names of members that
    /// are not in the set are ignored (logged at DEBUG): a pod may simply
    /// not be there yet.
    pub fn apply(&self, members: MemberSet) -> MemberSet {
        for id in self
            .named
            .keys()
            .filter(|id| !members.contains(id.as_str()))
        {
            tracing::debug!(member = %id, "{WEIGHTS_ANNOTATION} names a member the Service does not have (yet); ignored");
        }
        members
            .into_iter()
            .map(|mut member| {
                member.weight = Some(self.weight(member.id.as_str()));
                member
            })
            .collect()
    }
}

/// `namespace/name` of a Service, for messages.
pub(crate) fn service_label(service: &Service) -> String {
    match (&service.metadata.namespace, &service.metadata.name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.clone(),
        _ => "(unnamed)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Weights, WeightsError> {
        Weights::parse(value, "default/db")
    }

    #[test]
    fn named_members_get_their_weight_and_the_others_weight_one() {
        let weights = parse("db-3=2,db-4=64").unwrap();
        assert_eq!(weights.weight("db-3"), 2);
        assert_eq!(weights.weight("db-4"), 64);
        assert_eq!(weights.weight("db-0"), 1);
        assert_eq!(weights.named().count(), 2);
    }

    #[test]
    fn spaces_around_entries_are_allowed_and_an_empty_value_names_nobody() {
        assert_eq!(
            parse(" db-3 = 2 , db-4=3 ").unwrap(),
            parse("db-3=2,db-4=3").unwrap()
        );
        assert_eq!(parse("").unwrap(), Weights::default());
        assert_eq!(parse("  ").unwrap(), Weights::default());
        assert_eq!(parse("db-1=1").unwrap().weight("db-1"), 1);
    }

    #[test]
    fn weights_outside_one_to_the_bound_are_refused() {
        let zero = parse("db-3=2,db-4=0").unwrap_err();
        assert!(
            zero.problem
                .contains("entry 2 (\"db-4=0\"): weight 0 is below 1"),
            "{zero}"
        );
        let over = parse("db-3=65").unwrap_err();
        assert!(
            over.problem.contains("weight 65 is above the largest, 64"),
            "{over}"
        );
        let huge = parse("db-3=99999999999999999999").unwrap_err();
        assert!(huge.problem.contains("not a whole number"), "{huge}");
        assert!(
            parse("db-3=4294967296")
                .unwrap_err()
                .problem
                .contains("above the largest")
        );
        assert!(parse("db-3=64").is_ok());
    }

    #[test]
    fn malformed_values_name_the_exact_problem_and_a_valid_example() {
        for (value, problem) in [
            ("db-3", "entry 1 (\"db-3\") has no `=`"),
            ("db-3=2,", "entry 2 is empty (a stray comma?)"),
            ("=2", "entry 1 (\"=2\") names no member"),
            ("db-3=two", "weight \"two\" is not a whole number"),
            ("db-3=2.5", "weight \"2.5\" is not a whole number"),
            ("db-3=+2", "weight \"+2\" is not a whole number"),
            ("db-3=-1", "weight \"-1\" is not a whole number"),
            ("db-3=", "weight \"\" is not a whole number"),
            ("db-3=2;db-4=2", "weight \"2;db-4=2\" is not a whole number"),
        ] {
            let error = parse(value).unwrap_err();
            assert!(error.problem.contains(problem), "{value:?}: {error}");
            let text = error.to_string();
            assert!(
                text.starts_with("annotation ringleader.io/weights on Service default/db: "),
                "{text}"
            );
            assert!(
                text.contains("a valid value looks like \"db-3=2,db-4=2\""),
                "{text}"
            );
        }
    }

    #[test]
    fn a_member_named_twice_is_refused_even_with_the_same_weight() {
        let error = parse("db-3=2,db-4=2,db-3=2").unwrap_err();
        assert!(
            error
                .problem
                .contains("entry 3 (\"db-3=2\"): member \"db-3\" is named twice"),
            "{error}"
        );
    }

    #[test]
    fn apply_sets_every_weight_and_ignores_unknown_names() {
        let member = |id: &str| crate::Member {
            id: MemberId::from(id),
            addresses: vec!["10.0.0.1".to_owned()],
            zone: None,
            node_name: None,
            ports: Vec::new(),
            ready: true,
            serving: true,
            terminating: false,
            weight: None,
        };
        let set: MemberSet = [member("db-0"), member("db-3")].into_iter().collect();
        let weighted = parse("db-3=2,db-9=5").unwrap().apply(set);
        assert_eq!(weighted.len(), 2);
        assert_eq!(weighted.get("db-0").unwrap().weight, Some(1));
        assert_eq!(weighted.get("db-3").unwrap().weight, Some(2));
    }
}

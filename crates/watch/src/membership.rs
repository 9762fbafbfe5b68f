//! From EndpointSlices to a member set: identity, conditions and the merge
//! of an endpoint that appears in several slices.
//!
//! # Rules
//!
//! * **Identity**: `targetRef.name` when `targetRef.kind` is `Pod`, else
//!   `hostname`, else the first address.
//! * **Conditions**: a missing `ready` or `serving` is true, a missing
//!   `terminating` false (the EndpointSlice API's own defaults).
//! * **Copies**: the same identity can appear in several slices at once —
//!   the IPv4 and the IPv6 slice of a dual-stack Service, or two slices
//!   while the controller moves an endpoint between them. The copies merge
//!   into one member:
//!   - if the copies belong to different pod incarnations (different
//!     `targetRef.uid`) and some incarnation is not terminating, the
//!     terminating incarnations are dropped: a StatefulSet only creates the
//!     replacement once the old pod is going, so a terminating copy next to
//!     a live one is the old pod that a slice has not caught up with;
//!   - `ready` and `serving` hold only if they hold in every remaining
//!     copy, `terminating` if it holds in any: a stale copy must not keep a
//!     member that is going away looking healthy, and a member that is
//!     truly ready is ready in every copy once the controller settles (a
//!     join waits for that — a short delay — while a departure is seen at
//!     once);
//!   - addresses are the union (IPv4, then IPv6, then FQDN, each sorted);
//!     ports the sorted union; `zone` and `nodeName` come from the first
//!     copy that has them, copies ordered by slice name then position.
//!
//!   The result depends only on the set of slices, never on their order.
//! * **Validation**: slices are checked as the API server would (known
//!   `addressType`, at least one address per endpoint, addresses of the
//!   slice's type, ports in range, a non-empty identity, one Service). Any
//!   problem rejects the whole input, listing every problem: dropping one
//!   bad endpoint would silently remove a member and move its data, while a
//!   rejected input keeps the last good member set in place and says why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use crate::member::{Member, MemberId, MemberPort, MemberSet};

/// The label that ties a slice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One thing wrong with one slice or endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceProblem {
    /// `namespace/name` of the slice (or its position when it has no name).
    pub slice: String,
    /// Index into `endpoints[]`, when the problem is one endpoint's.
    pub endpoint: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SliceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.endpoint {
            Some(i) => write!(
                f,
                "EndpointSlice {}, endpoints[{i}]: {}",
                self.slice, self.message
            ),
            None => write!(f, "EndpointSlice {}: {}", self.slice, self.message),
        }
    }
}

/// EndpointSlices that cannot be turned into members; lists every problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid EndpointSlices: {}", list(.problems))]
pub struct MembershipError {
    /// Every problem found.
    pub problems: Vec<SliceProblem>,
}

fn list(problems: &[SliceProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum AddressType {
    IPv4,
    IPv6,
    Fqdn,
}

/// An address with its sort key: family, then value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Address {
    V4(Ipv4Addr, String),
    V6(Ipv6Addr, String),
    Fqdn(String),
}

impl Address {
    fn text(&self) -> &str {
        match self {
            Address::V4(_, text) | Address::V6(_, text) | Address::Fqdn(text) => text,
        }
    }
}

/// One appearance of an endpoint in one slice.
struct Copy<'a> {
    endpoint: &'a Endpoint,
    addresses: Vec<Address>,
    ports: &'a [MemberPort],
}

impl Copy<'_> {
    fn ready(&self) -> bool {
        self.condition(|c| c.ready).unwrap_or(true)
    }
    fn serving(&self) -> bool {
        self.condition(|c| c.serving).unwrap_or(true)
    }
    fn terminating(&self) -> bool {
        self.condition(|c| c.terminating).unwrap_or(false)
    }
    fn condition(
        &self,
        f: impl Fn(&k8s_openapi::api::discovery::v1::EndpointConditions) -> Option<bool>,
    ) -> Option<bool> {
        self.endpoint.conditions.as_ref().and_then(f)
    }
    fn uid(&self) -> Option<&str> {
        self.endpoint
            .target_ref
            .as_ref()
            .and_then(|r| r.uid.as_deref())
            .filter(|uid| !uid.is_empty())
    }
}

/// The identity of an endpoint (see the module docs).
pub fn member_id(endpoint: &Endpoint) -> Option<MemberId> {
    let pod = endpoint
        .target_ref
        .as_ref()
        .filter(|r| r.kind.as_deref() == Some("Pod"))
        .and_then(|r| r.name.as_deref());
    pod.or(endpoint.hostname.as_deref())
        .filter(|id| !id.is_empty())
        .or_else(|| endpoint.addresses.first().map(String::as_str))
        .filter(|id| !id.is_empty())
        .map(MemberId::from)
}

fn slice_label(slice: &EndpointSlice, position: usize) -> String {
    match (&slice.metadata.namespace, &slice.metadata.name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.clone(),
        _ => format!("#{position} (unnamed)"),
    }
}

fn parse_address(address_type: AddressType, text: &str) -> Result<Address, String> {
    match address_type {
        AddressType::IPv4 => text
            .parse::<Ipv4Addr>()
            .map(|ip| Address::V4(ip, text.to_owned()))
            .map_err(|_| {
                format!("{text:?} is not an IPv4 address (the slice's addressType is IPv4)")
            }),
        AddressType::IPv6 => text
            .parse::<Ipv6Addr>()
            .map(|ip| Address::V6(ip, text.to_owned()))
            .map_err(|_| {
                format!("{text:?} is not an IPv6 address (the slice's addressType is IPv6)")
            }),
        AddressType::Fqdn => {
            let valid = !text.is_empty()
                && text.len() <= 253
                && text.parse::<IpAddr>().is_err()
                && text.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if valid {
                Ok(Address::Fqdn(text.to_owned()))
            } else {
                Err(format!(
                    "{text:?} is not a valid FQDN (the slice's addressType is FQDN)"
                ))
            }
        }
    }
}

fn ports_of(slice: &EndpointSlice, problem: &mut impl FnMut(String)) -> Vec<MemberPort> {
    let mut ports = BTreeSet::new();
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        let number = match port.port {
            None => None,
            Some(n) => match u16::try_from(n) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    problem(format!("ports[{i}]: port {n} is not between 1 and 65535"));
                    continue;
                }
            },
        };
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
        if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            problem(format!(
                "ports[{i}]: protocol {protocol:?} is not TCP, UDP or SCTP"
            ));
            continue;
        }
        ports.insert(MemberPort {
            name: port.name.clone().filter(|n| !n.is_empty()),
            port: number,
            protocol,
            app_protocol: port.app_protocol.clone(),
        });
    }
    ports.into_iter().collect()
}

/// Derives the merged member set of a Service from all its EndpointSlices.
///
/// Follows the rules in the [module docs](self); the order of `slices` does
/// not matter. Any invalid slice or endpoint rejects the whole input with a
/// [`MembershipError`] listing every problem.
pub fn members_from_slices(slices: &[EndpointSlice]) -> Result<MemberSet, MembershipError> {
    let mut problems = Vec::new();

    let services: BTreeSet<&str> = slices
        .iter()
        .filter_map(|s| s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL))
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if services.len() > 1 {
        problems.push(SliceProblem {
            slice: "*".to_owned(),
            endpoint: None,
            message: format!(
                "the slices belong to several Services ({}); give the slices of one Service only",
                services.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }

    // Slices in name order make the merge independent of input order; slices
    // without a name (or sharing one, as only hand-written files have) are
    // ordered by their content, so that does not depend on input order either.
    let mut keyed: Vec<((String, String), String, &EndpointSlice)> = slices
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = s.metadata.name.clone().unwrap_or_default();
            let content = serde_json::to_string(s).unwrap_or_default();
            ((name, content), slice_label(s, i), s)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let ordered: Vec<(String, &EndpointSlice)> =
        keyed.into_iter().map(|(_, label, s)| (label, s)).collect();

    let mut slice_ports = Vec::with_capacity(ordered.len());
    for (label, slice) in &ordered {
        let mut problem = |message| {
            problems.push(SliceProblem {
                slice: label.clone(),
                endpoint: None,
                message,
            });
        };
        slice_ports.push(ports_of(slice, &mut problem));
    }

    let mut copies: BTreeMap<MemberId, Vec<Copy<'_>>> = BTreeMap::new();
    for ((label, slice), ports) in ordered.iter().zip(&slice_ports) {
        let address_type = match slice.address_type.as_str() {
            "IPv4" => AddressType::IPv4,
            "IPv6" => AddressType::IPv6,
            "FQDN" => AddressType::Fqdn,
            other => {
                problems.push(SliceProblem {
                    slice: label.clone(),
                    endpoint: None,
                    message: format!("addressType {other:?} is not IPv4, IPv6 or FQDN"),
                });
                continue;
            }
        };
        for (index, endpoint) in slice.endpoints.iter().flatten().enumerate() {
            let mut problem = |message: String| {
                problems.push(SliceProblem {
                    slice: label.clone(),
                    endpoint: Some(index),
                    message,
                });
            };
            if endpoint.addresses.is_empty() {
                problem("no addresses (an endpoint needs at least one)".to_owned());
                continue;
            }
            let mut addresses = Vec::new();
            for text in &endpoint.addresses {
                match parse_address(address_type, text) {
                    Ok(address) => addresses.push(address),
                    Err(message) => problem(message),
                }
            }
            let Some(id) = member_id(endpoint) else {
                problem(
                    "no identity: targetRef.name, hostname and the first address are all empty"
                        .to_owned(),
                );
                continue;
            };
            copies.entry(id).or_default().push(Copy {
                endpoint,
                addresses,
                ports,
            });
        }
    }

    if !problems.is_empty() {
        return Err(MembershipError { problems });
    }
    Ok(copies
        .into_iter()
        .map(|(id, copies)| merge(id, copies))
        .collect())
}

/// Merges the copies of one member (see the module docs).
///
/// `copies` come in the canonical slice order (name, then content) and
/// endpoint order, so the result does not depend on the order of the input.
fn merge(id: MemberId, mut copies: Vec<Copy<'_>>) -> Member {
    let uids: BTreeSet<&str> = copies.iter().filter_map(Copy::uid).collect();
    if uids.len() > 1 {
        let live: BTreeSet<String> = copies
            .iter()
            .filter(|c| !c.terminating())
            .filter_map(Copy::uid)
            .map(str::to_owned)
            .collect();
        if !live.is_empty() {
            copies.retain(|c| c.uid().is_none_or(|uid| live.contains(uid)));
        }
    }

    let addresses: BTreeSet<&Address> = copies.iter().flat_map(|c| &c.addresses).collect();
    let ports: BTreeSet<&MemberPort> = copies.iter().flat_map(|c| c.ports).collect();
    Member {
        id,
        addresses: addresses.into_iter().map(|a| a.text().to_owned()).collect(),
        zone: copies.iter().find_map(|c| c.endpoint.zone.clone()),
        node_name: copies.iter().find_map(|c| c.endpoint.node_name.clone()),
        ports: ports.into_iter().cloned().collect(),
        ready: copies.iter().all(Copy::ready),
        serving: copies.iter().all(Copy::serving),
        terminating: copies.iter().any(Copy::terminating),
        // Slices carry no weight; the source applies the Service's.
        weight: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn slice(name: &str, address_type: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("default".to_owned()),
                labels: Some([(SERVICE_NAME_LABEL.to_owned(), "db".to_owned())].into()),
                ..ObjectMeta::default()
            },
            address_type: address_type.to_owned(),
            endpoints: Some(endpoints),
            ports: Some(vec![EndpointPort {
                name: Some("grpc".to_owned()),
                port: Some(7000),
                protocol: Some("TCP".to_owned()),
                app_protocol: None,
            }]),
        }
    }

    fn pod(
        name: &str,
        uid: &str,
        address: &str,
        ready: Option<bool>,
        terminating: Option<bool>,
    ) -> Endpoint {
        Endpoint {
            addresses: vec![address.to_owned()],
            conditions: Some(EndpointConditions {
                ready,
                serving: ready,
                terminating,
            }),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".to_owned()),
                name: Some(name.to_owned()),
                uid: Some(uid.to_owned()),
                ..ObjectReference::default()
            }),
            zone: Some("zone-a".to_owned()),
            ..Endpoint::default()
        }
    }

    #[test]
    fn identity_prefers_pod_name_then_hostname_then_address() {
        let mut endpoint = pod("db-0", "u0", "10.0.0.1", None, None);
        assert_eq!(member_id(&endpoint).unwrap().as_str(), "db-0");
        endpoint.target_ref.as_mut().unwrap().kind = Some("Node".to_owned());
        endpoint.hostname = Some("db-zero".to_owned());
        assert_eq!(member_id(&endpoint).unwrap().as_str(), "db-zero");
        endpoint.hostname = None;
        assert_eq!(member_id(&endpoint).unwrap().as_str(), "10.0.0.1");
    }

    #[test]
    fn missing_conditions_mean_ready_serving_not_terminating() {
        let mut endpoint = pod("db-0", "u0", "10.0.0.1", None, None);
        endpoint.conditions = None;
        let set = members_from_slices(&[slice("a", "IPv4", vec![endpoint])]).unwrap();
        let member = set.get("db-0").unwrap();
        assert!(member.ready && member.serving && !member.terminating);
    }

    #[test]
    fn dual_stack_copies_merge_into_one_member_with_both_addresses() {
        let v4 = slice(
            "db-v4",
            "IPv4",
            vec![pod("db-0", "u0", "10.0.0.1", Some(true), None)],
        );
        let v6 = slice(
            "db-v6",
            "IPv6",
            vec![pod("db-0", "u0", "fd00::1", Some(true), None)],
        );
        let set = members_from_slices(&[v6.clone(), v4.clone()]).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.get("db-0").unwrap().addresses, ["10.0.0.1", "fd00::1"]);
        assert_eq!(set, members_from_slices(&[v4, v6]).unwrap());
    }

    #[test]
    fn a_stale_ready_copy_does_not_hide_termination() {
        let old = slice(
            "db-a",
            "IPv4",
            vec![pod("db-0", "u0", "10.0.0.1", Some(true), Some(false))],
        );
        let new = slice(
            "db-b",
            "IPv4",
            vec![pod("db-0", "u0", "10.0.0.1", Some(false), Some(true))],
        );
        let member = members_from_slices(&[old, new])
            .unwrap()
            .get("db-0")
            .cloned()
            .unwrap();
        assert!(!member.ready && member.terminating);
    }

    #[test]
    fn a_replacement_pod_wins_over_its_terminating_predecessor() {
        let old = slice(
            "db-a",
            "IPv4",
            vec![pod("db-0", "old", "10.0.0.1", Some(false), Some(true))],
        );
        let new = slice(
            "db-b",
            "IPv4",
            vec![pod("db-0", "new", "10.0.0.9", Some(true), Some(false))],
        );
        let member = members_from_slices(&[old, new])
            .unwrap()
            .get("db-0")
            .cloned()
            .unwrap();
        assert_eq!(member.addresses, ["10.0.0.9"]);
        assert!(member.ready && !member.terminating);
    }

    #[test]
    fn every_problem_is_reported_and_nothing_is_dropped_silently() {
        let mut empty = pod("db-1", "u1", "10.0.0.2", None, None);
        empty.addresses.clear();
        let bad = slice(
            "db-a",
            "IPv4",
            vec![pod("db-0", "u0", "fd00::1", None, None), empty],
        );
        let mut odd = slice("db-b", "IPX", vec![]);
        odd.ports = None;
        let error = members_from_slices(&[bad, odd]).unwrap_err();
        assert_eq!(error.problems.len(), 3, "{error}");
        let text = error.to_string();
        assert!(
            text.contains("default/db-a, endpoints[0]: \"fd00::1\" is not an IPv4 address"),
            "{text}"
        );
        assert!(
            text.contains("default/db-a, endpoints[1]: no addresses"),
            "{text}"
        );
        assert!(text.contains("default/db-b: addressType \"IPX\""), "{text}");
    }

    #[test]
    fn slices_of_two_services_are_rejected() {
        let mut other = slice("web-a", "IPv4", vec![]);
        other.metadata.labels = Some([(SERVICE_NAME_LABEL.to_owned(), "web".to_owned())].into());
        let error = members_from_slices(&[slice("db-a", "IPv4", vec![]), other]).unwrap_err();
        assert!(error.to_string().contains("several Services (db, web)"));
    }
}

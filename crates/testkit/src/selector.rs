//! Label and field selectors, as far as tests need them.
//!
//! Label selectors: `k=v`, `k==v`, `k!=v`, `k` (exists), `!k` (absent),
//! `k in (a,b)`, `k notin (a,b)`, joined by commas (AND). Field selectors:
//! `metadata.name` and `metadata.namespace` with `=`, `==`, `!=`.

use serde_json::Value;

use crate::status::ApiStatus;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub(crate) fn parse(text: &str) -> Result<Self, ApiStatus> {
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_term(term).ok_or_else(|| {
                ApiStatus::bad_request(format!(
                    "unable to parse requirement: found '{term}', expected: k=v, k!=v, k, !k, k in (..), k notin (..)"
                ))
            })?);
        }
        Ok(Self { requirements })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
                Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
                Requirement::Exists(k) => label(k).is_some(),
                Requirement::NotExists(k) => label(k).is_none(),
                Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
                Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn parse_term(term: &str) -> Option<Requirement> {
    let valid_key = |k: &str| !k.is_empty() && !k.contains(char::is_whitespace);
    if let Some((k, v)) = term.split_once("!=") {
        let (k, v) = (k.trim(), v.trim());
        return valid_key(k).then(|| Requirement::NotEquals(k.to_owned(), v.to_owned()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        let (k, v) = (k.trim(), v.trim());
        return valid_key(k).then(|| Requirement::Equals(k.to_owned(), v.to_owned()));
    }
    if let Some(k) = term.strip_prefix('!') {
        let k = k.trim();
        return valid_key(k).then(|| Requirement::NotExists(k.to_owned()));
    }
    for (op, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = term.split_once(op) {
            let k = k.trim();
            let values = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            let values = values.split(',').map(|v| v.trim().to_owned()).collect();
            if !valid_key(k) {
                return None;
            }
            return Some(if negated {
                Requirement::NotIn(k.to_owned(), values)
            } else {
                Requirement::In(k.to_owned(), values)
            });
        }
    }
    valid_key(term).then(|| Requirement::Exists(term.to_owned()))
}

/// A parsed field selector over `metadata.name` and `metadata.namespace`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub(crate) fn parse(text: &str) -> Result<Self, ApiStatus> {
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiStatus::bad_request(format!(
                    "invalid field selector: '{term}'"
                )));
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" {
                return Err(ApiStatus::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            requirements.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self { requirements })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(field, equal, value)| {
            let pointer = if field == "metadata.name" {
                "/metadata/name"
            } else {
                "/metadata/namespace"
            };
            let actual = object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn equality_inequality_and_existence_are_anded() {
        let selector =
            LabelSelector::parse("kubernetes.io/service-name=db,tier!=cache,app").unwrap();
        assert!(selector.matches(&object(
            json!({"kubernetes.io/service-name": "db", "app": "x"})
        )));
        assert!(!selector.matches(&object(json!({"kubernetes.io/service-name": "db"}))));
        assert!(!selector.matches(&object(
            json!({"kubernetes.io/service-name": "db", "app": "x", "tier": "cache"})
        )));
        assert!(!selector.matches(&object(
            json!({"kubernetes.io/service-name": "web", "app": "x"})
        )));
    }

    #[test]
    fn set_based_requirements_and_absence() {
        let selector = LabelSelector::parse("env in (a, b),!legacy,zone notin (z)").unwrap();
        assert!(selector.matches(&object(json!({"env": "b"}))));
        assert!(!selector.matches(&object(json!({"env": "c"}))));
        assert!(!selector.matches(&object(json!({"env": "a", "legacy": "1"}))));
        assert!(!selector.matches(&object(json!({"env": "a", "zone": "z"}))));
    }

    #[test]
    fn empty_selector_matches_everything_and_garbage_is_rejected() {
        assert!(
            LabelSelector::parse("")
                .unwrap()
                .matches(&object(json!({})))
        );
        assert_eq!(LabelSelector::parse("a b").unwrap_err().code, 400);
        assert_eq!(FieldSelector::parse("spec.x=1").unwrap_err().code, 400);
    }

    #[test]
    fn field_selector_on_name() {
        let selector = FieldSelector::parse("metadata.name=a").unwrap();
        assert!(selector.matches(&object(json!({}))));
        assert!(
            !FieldSelector::parse("metadata.name!=a")
                .unwrap()
                .matches(&object(json!({})))
        );
    }
}

//! Members of a ring: their identity, zone and weight.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;

/// The stable identity of a member (for a StatefulSet, the pod name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(String);

impl MemberId {
    /// Wraps a string as a member id. Emptiness is checked where a ring is
    /// built, so that the error can say which input was bad.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MemberId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for MemberId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl Borrow<str> for MemberId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// What the ring needs to know about a member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberSpec {
    /// Stable identity.
    pub id: MemberId,
    /// Failure domain (availability zone); `None` is a zone of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Relative capacity, at least 1. A member of weight 2 owns twice the
    /// share of a member of weight 1 and carries twice the tokens.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl MemberSpec {
    /// A member of weight 1 with no zone.
    pub fn new(id: impl Into<MemberId>) -> Self {
        Self {
            id: id.into(),
            zone: None,
            weight: 1,
        }
    }

    /// Sets the zone.
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

//! Members and member sets: what a membership source emits.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable identity of a member: the pod name for pods (a StatefulSet
/// pod that restarts with a new IP keeps it), else the endpoint's hostname,
/// else its first address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(String);

impl MemberId {
    /// Wraps an identity.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for MemberId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for MemberId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl From<String> for MemberId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// A port the Service exposes on a member (an EndpointSlice's `ports[]`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberPort {
    /// Port name; `None` for the single unnamed port of a Service.
    pub name: Option<String>,
    /// Port number; `None` means "all ports" in the EndpointSlice API.
    pub port: Option<u16>,
    /// `TCP` (the default), `UDP` or `SCTP`.
    pub protocol: String,
    /// Application protocol (`http`, `kubernetes.io/h2c`, …), if given.
    pub app_protocol: Option<String>,
}

/// One endpoint of the Service, merged over every slice that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Stable identity.
    pub id: MemberId,
    /// Every address of the member, de-duplicated: IPv4 first, then IPv6,
    /// then FQDNs, each group in ascending order.
    pub addresses: Vec<String>,
    /// Topology zone, if known.
    pub zone: Option<String>,
    /// The node the member runs on, if known.
    pub node_name: Option<String>,
    /// The Service's ports on this member, sorted.
    pub ports: Vec<MemberPort>,
    /// The endpoint is ready for traffic (a missing condition means true).
    pub ready: bool,
    /// The endpoint is serving, even if terminating (missing means true).
    pub serving: bool,
    /// The endpoint is shutting down (missing means false).
    pub terminating: bool,
    /// The member's weight (its ownership target is proportional to it),
    /// from the Service's `ringleader.io/weights` annotation ([`crate::weights`]):
    /// `Some(1)` for a member the annotation does not name. `None` when
    /// the source cannot tell — the EndpointSlices alone carry no weight, and
    /// a source whose annotation has been unreadable or malformed since it
    /// started knows no previous weights to keep — so a consumer keeps the
    /// weight it already has (1 for a newcomer).
    #[serde(default)]
    pub weight: Option<u32>,
}

/// A set of members, ordered by id. Two sets are equal when their members
/// are equal field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Member>", into = "Vec<Member>")]
pub struct MemberSet {
    members: BTreeMap<MemberId, Member>,
}

impl MemberSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member with this id.
    pub fn get(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    /// Whether a member with this id is in the set.
    pub fn contains(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    /// Members in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Ids in order.
    pub fn ids(&self) -> impl Iterator<Item = &MemberId> {
        self.members.keys()
    }

    /// Adds a member, replacing any with the same id; returns the replaced one.
    pub fn insert(&mut self, member: Member) -> Option<Member> {
        self.members.insert(member.id.clone(), member)
    }
}

impl FromIterator<Member> for MemberSet {
    fn from_iter<I: IntoIterator<Item = Member>>(members: I) -> Self {
        Self {
            members: members.into_iter().map(|m| (m.id.clone(), m)).collect(),
        }
    }
}

impl From<Vec<Member>> for MemberSet {
    fn from(members: Vec<Member>) -> Self {
        members.into_iter().collect()
    }
}

impl From<MemberSet> for Vec<Member> {
    fn from(set: MemberSet) -> Self {
        set.members.into_values().collect()
    }
}

impl IntoIterator for MemberSet {
    type Item = Member;
    type IntoIter = std::collections::btree_map::IntoValues<MemberId, Member>;

    fn into_iter(self) -> Self::IntoIter {
        self.members.into_values()
    }
}

impl<'a> IntoIterator for &'a MemberSet {
    type Item = &'a Member;
    type IntoIter = std::collections::btree_map::Values<'a, MemberId, Member>;

    fn into_iter(self) -> Self::IntoIter {
        self.members.values()
    }
}

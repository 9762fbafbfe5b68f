//! The ring's compact serialized form.
//!
//! A `balanced` ring depends on its history, so the coordinator persists it.
//! The snapshot lists members with their tokens, each member's tokens packed
//! as base64 of little-endian `u64`s (12 characters per token instead of up to
//! 22 for JSON numbers). Reading a snapshot checks every invariant a ring
//! relies on, so a corrupt or hand-edited file is an error, never a broken
//! ring.

use crate::{MemberId, MemberSpec, Ring, RingConfig, RingError, Strategy, Token};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The snapshot format this code writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// A ring as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingSnapshot {
    /// Format version, [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// Token allocation strategy.
    pub strategy: Strategy,
    /// Tokens per unit of weight.
    pub tokens_per_member: u32,
    /// Members sorted by id, with their tokens.
    pub members: Vec<SnapshotMember>,
}

/// One member of a [`RingSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotMember {
    /// Member id.
    pub id: MemberId,
    /// Zone, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Weight.
    pub weight: u32,
    /// Sorted tokens, base64 of little-endian u64s.
    pub tokens: String,
}

impl From<&Ring> for RingSnapshot {
    fn from(ring: &Ring) -> Self {
        let mut per_member: Vec<Vec<u8>> = vec![Vec::new(); ring.0.members.len()];
        for (&t, &o) in ring.0.tokens.iter().zip(&ring.0.owners) {
            per_member[o as usize].extend_from_slice(&t.to_le_bytes());
        }
        RingSnapshot {
            format: SNAPSHOT_FORMAT,
            strategy: ring.0.config.strategy,
            tokens_per_member: ring.0.config.tokens_per_member,
            members: ring
                .0
                .members
                .iter()
                .zip(per_member)
                .map(|(m, bytes)| SnapshotMember {
                    id: m.id.clone(),
                    zone: m.zone.clone(),
                    weight: m.weight,
                    tokens: STANDARD.encode(bytes),
                })
                .collect(),
        }
    }
}

impl From<Ring> for RingSnapshot {
    fn from(ring: Ring) -> Self {
        RingSnapshot::from(&ring)
    }
}

impl TryFrom<RingSnapshot> for Ring {
    type Error = RingError;

    fn try_from(snapshot: RingSnapshot) -> Result<Ring, RingError> {
        let bad = |msg: String| RingError::InvalidSnapshot(msg);
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(bad(format!(
                "format {} is not supported (this version reads format {SNAPSHOT_FORMAT})",
                snapshot.format
            )));
        }
        let config = RingConfig::new(snapshot.strategy, snapshot.tokens_per_member);
        config.validate()?;
        let mut members: Vec<MemberSpec> = Vec::with_capacity(snapshot.members.len());
        let mut owner_of: BTreeMap<Token, u32> = BTreeMap::new();
        for (index, m) in snapshot.members.into_iter().enumerate() {
            if m.id.as_str().is_empty() {
                return Err(RingError::EmptyMemberId);
            }
            if let Some(previous) = members.last()
                && previous.id >= m.id
            {
                return Err(bad(format!(
                    "members must be sorted by id and unique; {:?} comes after {:?}",
                    m.id.as_str(),
                    previous.id.as_str()
                )));
            }
            let spec = MemberSpec {
                id: m.id,
                zone: m.zone,
                weight: m.weight,
            };
            config.tokens_for(&spec)?;
            let bytes = STANDARD.decode(m.tokens.as_bytes()).map_err(|e| {
                bad(format!(
                    "tokens of member {:?} are not valid base64: {e}",
                    spec.id.as_str()
                ))
            })?;
            if bytes.is_empty() || bytes.len() % 8 != 0 {
                return Err(bad(format!(
                    "member {:?} has {} token bytes; expected a non-zero multiple of 8",
                    spec.id.as_str(),
                    bytes.len()
                )));
            }
            for chunk in bytes.chunks_exact(8) {
                let token = Token::from_le_bytes(chunk.try_into().expect("chunk of 8"));
                if let Some(other) = owner_of.insert(token, index as u32) {
                    let other = &members
                        .get(other as usize)
                        .map_or(spec.id.as_str(), |o| o.id.as_str());
                    return Err(bad(format!(
                        "token {token} appears twice (members {other:?} and {:?})",
                        spec.id.as_str()
                    )));
                }
            }
            members.push(spec);
        }
        let (tokens, owners) = owner_of.into_iter().unzip();
        Ok(Ring::from_sorted_parts(config, members, tokens, owners))
    }
}

impl Serialize for Ring {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RingSnapshot::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let snapshot = RingSnapshot::deserialize(deserializer)?;
        Ring::try_from(snapshot).map_err(serde::de::Error::custom)
    }
}

//! The ring's error type.

use crate::MemberId;

/// Everything that can go wrong building or querying a ring. Bad input is
/// reported here, never by a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// A lookup on a ring with no members.
    #[error("the ring has no members: nothing owns any key yet")]
    Empty,
    /// A replication factor of zero was asked for.
    #[error("replication factor must be at least 1, got 0")]
    ZeroReplicationFactor,
    /// More replicas were asked for than there are members.
    #[error(
        "asked for {requested} replicas but the ring has only {members} members; use a replication factor between 1 and {members}"
    )]
    ReplicationFactorTooLarge {
        /// The replication factor that was asked for.
        requested: usize,
        /// How many members the ring has.
        members: usize,
    },
    /// Two members with the same id.
    #[error("member id {0:?} appears more than once; member ids must be unique")]
    DuplicateMember(MemberId),
    /// A member id that is the empty string.
    #[error("a member id is empty; every member needs a non-empty id")]
    EmptyMemberId,
    /// A weight of zero.
    #[error("member {0:?} has weight 0; weights must be at least 1 (remove the member instead)")]
    ZeroWeight(MemberId),
    /// A weight so large the member would carry an unreasonable number of tokens.
    #[error(
        "member {id:?} has weight {weight}, which would give it {tokens} tokens; at most {max} tokens per member are allowed"
    )]
    WeightTooLarge {
        /// The member.
        id: MemberId,
        /// Its weight.
        weight: u32,
        /// The tokens that weight implies.
        tokens: u64,
        /// The limit.
        max: u64,
    },
    /// Tokens per member of zero or above the limit.
    #[error("tokens per member must be between 1 and {max}, got {got}")]
    BadTokensPerMember {
        /// What was given.
        got: u32,
        /// The upper limit.
        max: u32,
    },
    /// A member that is not in the ring.
    #[error("no member {0:?} in the ring")]
    UnknownMember(MemberId),
    /// A member asked to join twice, or a join of a member already present.
    #[error("member {0:?} is already in the ring")]
    AlreadyMember(MemberId),
    /// A serialized ring that is not well formed.
    #[error("invalid ring snapshot: {0}")]
    InvalidSnapshot(String),
}

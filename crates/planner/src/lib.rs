//! Rebalance plans for a consistent-hash ring.
//!
//! `ringleader-planner` answers one question: given where data is and where
//! it must go, what exactly moves? A [`Placement`] is a ring plus its
//! replication (factor and zone awareness). [`plan`] splits the token space at
//! every token of both rings and, for each elementary range, compares the
//! replica sets: every member new to a range receives it from a member that
//! holds it (preferring one that is leaving, then one in the same zone, and
//! spreading the streaming load). Adjacent ranges with the same source and
//! target merge into one [`Move`]; what members may drop afterwards is listed
//! as [`Cleanup`]s.
//!
//! Minimality is the point: a range moves only if its replica set changes,
//! and only to the members new to it. [`Summary`] reports the moved fraction
//! next to the [`ideal_fraction`] for the change.
//!
//! Plans are tracked while they run: moves are pending, ready, done,
//! cancelled or source-lost, with ids derived from the plan's [`Lineage`], the range,
//! source and target, so they are stable across restarts and never reused by
//! a later plan. [`replan`] plans again mid-flight from what is true
//! now, keeping the ids and states of moves still needed. [`apply`] carries a
//! plan out on paper; for a correct plan the result equals the target in every
//! replica set ([`Holdings`]). [`pace()`] decides when moves run (which are
//! `ready`) so that no member streams more than a few at once.
//!
//! ```
//! use ringleader_planner::{apply, plan, Holdings, Placement, PlanOptions};
//! use ringleader_ring::{MemberSpec, Replication, Ring, RingConfig};
//!
//! let ring = Ring::with_members(RingConfig::default(), ["a", "b", "c"].map(MemberSpec::new))?;
//! let from = Placement::new(ring.clone(), Replication::new(2, false))?;
//! let to = Placement::new(ring.join(MemberSpec::new("d"))?, Replication::new(2, false))?;
//! let plan = plan(&from, &to, &PlanOptions::default())?;
//! assert!(plan.moves.iter().all(|m| m.to.as_str() == "d"));
//! assert_eq!(apply(&from, &plan).canonical(), Holdings::of(&to).canonical());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bound;
mod holdings;
mod ideal;
mod local;
mod pace;
mod plan;

pub use bound::{zone_ideal_fraction, zone_ideal_from};

pub use holdings::Holdings;
pub use pace::{DEFAULT_MAX_MOVES_PER_MEMBER, Pace, in_progress, pace, turn_order, waves};
pub use plan::{
    Cleanup, Flow, Lineage, Move, MoveId, MoveState, Plan, PlanOptions, Summary, apply,
    holdings_with, ideal_fraction, ideal_from, plan, plan_comparing_every_range, replan,
};

use ringleader_ring::{Replication, Ring, RingError};

/// Everything that can go wrong planning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The target has no members.
    #[error(
        "the target placement has no members: every range would lose all its replicas; keep at least one member"
    )]
    EmptyTarget,
    /// Replication factor 0.
    #[error("replication factor must be at least 1, got 0")]
    ZeroReplicationFactor,
    /// No move with that id in the plan.
    #[error("no move {0:?} in the current plan")]
    UnknownMove(String),
    /// The move was cancelled by a replan.
    #[error(
        "move {0:?} was cancelled by a later plan; fetch the current plan and report its moves instead"
    )]
    MoveCancelled(String),
    /// An error from the ring.
    #[error(transparent)]
    Ring(#[from] RingError),
}

/// A ring and how its keys are replicated: where data must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    ring: Ring,
    replication: Replication,
}

impl Placement {
    /// A placement; the factor must be at least 1. A factor larger than the
    /// member count is allowed (a cluster shrinking below it): every member
    /// then holds everything, see [`Placement::effective_replication`].
    pub fn new(ring: Ring, replication: Replication) -> Result<Self, PlanError> {
        if replication.factor == 0 {
            return Err(PlanError::ZeroReplicationFactor);
        }
        Ok(Self { ring, replication })
    }

    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The replication asked for.
    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// The replication in force: the factor capped at the member count.
    pub fn effective_replication(&self) -> Replication {
        Replication {
            factor: self.replication.factor.min(self.ring.len()).max(1),
            zone_aware: self.replication.zone_aware,
        }
    }
}

//! Wall-clock times of plans: when a plan was made and when it last
//! changed, for operators (`GET /v1/plan`, `ringleader status`, the page).
//!
//! The coordinator's core reads no clock, and its epochs and revisions are
//! what orders changes; a [`PlanClock`] sits beside it in the runtime and,
//! before each save, stamps the plan if the `(epoch, revision)` moved since
//! it last looked. Stamps are saved with the change they date, so a restart
//! keeps them. A plan replaced mid-flight (same `from_epoch`, new target)
//! keeps its creation time: for an operator it is the same rebalance, only
//! revised.

use crate::state::State;
use std::time::{SystemTime, UNIX_EPOCH};

/// Remembers what was last stamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanClock {
    /// `(epoch, revision)` last seen.
    seen: (u64, u64),
    /// `(from_epoch, created_ms)` of the plan last seen.
    plan: Option<(u64, Option<u64>)>,
}

impl PlanClock {
    /// A clock for a state as loaded: what it holds is not a change, so
    /// its times (or their absence, for older states) stay as stored.
    pub fn new(state: &State) -> Self {
        Self {
            seen: (state.epoch, state.revision),
            plan: state
                .plan
                .as_ref()
                .map(|p| (p.from_epoch, p.times.created_ms)),
        }
    }

    /// Stamps the plan of `state` with `now_ms` if it changed since the
    /// last call. Returns whether anything was stamped.
    pub fn stamp(&mut self, state: &mut State, now_ms: u64) -> bool {
        let key = (state.epoch, state.revision);
        if key == self.seen {
            return false;
        }
        self.seen = key;
        let Some(plan) = state.plan.as_mut() else {
            self.plan = None;
            return false;
        };
        if plan.times.created_ms.is_none() {
            plan.times.created_ms = match self.plan {
                Some((from, created)) if from == plan.from_epoch => created.or(Some(now_ms)),
                _ => Some(now_ms),
            };
        }
        plan.times.changed_ms = Some(now_ms);
        self.plan = Some((plan.from_epoch, plan.times.created_ms));
        true
    }
}

/// Milliseconds since the Unix epoch of `time` (0 before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ms` since the Unix epoch as RFC 3339 in UTC, at second precision
/// (`2026-11-28T07:38:41Z`).
pub fn rfc3339(ms: u64) -> String {
    let seconds = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map_or_else(|_| format!("@{seconds}"), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::RingSettings;
    use crate::state::{PlanRecord, PlanState, PlanTimes};
    use ringleader_planner::{Placement, PlanOptions};
    use ringleader_ring::{MemberSpec, Ring};

    fn ring(n: usize) -> Ring {
        let settings = RingSettings::default();
        Ring::with_members(
            settings.ring_config(),
            (0..n).map(|i| MemberSpec {
                id: format!("db-{i}").into(),
                zone: None,
                weight: 1,
            }),
        )
        .unwrap()
    }

    fn state_with_plan(epoch: u64, revision: u64, id: &str) -> State {
        let settings = RingSettings::default();
        let mut state = State::fresh(settings).unwrap();
        state.committed = ring(3);
        state.epoch = epoch;
        state.revision = revision;
        let target = ring(4);
        let from = Placement::new(state.committed.clone(), settings.replication()).unwrap();
        let to = Placement::new(target.clone(), settings.replication()).unwrap();
        state.plan = Some(PlanRecord {
            id: id.into(),
            from_epoch: epoch,
            to_epoch: epoch + 1,
            state: PlanState::InProgress,
            target,
            settings,
            plan: ringleader_planner::plan(&from, &to, &PlanOptions::default()).unwrap(),
            times: PlanTimes::default(),
        });
        state
    }

    fn times(state: &State) -> PlanTimes {
        state.plan.as_ref().unwrap().times
    }

    #[test]
    fn a_loaded_plan_keeps_its_stored_times_even_when_it_has_none() {
        let mut state = state_with_plan(1, 1, "p");
        let mut clock = PlanClock::new(&state);
        assert!(!clock.stamp(&mut state, 5_000));
        assert_eq!(times(&state), PlanTimes::default());
    }

    #[test]
    fn a_new_plan_is_created_and_changed_now_and_a_revision_moves_only_changed() {
        let mut clock = PlanClock::new(&State::fresh(RingSettings::default()).unwrap());
        let mut next = state_with_plan(1, 1, "p");
        assert!(clock.stamp(&mut next, 1_000));
        assert_eq!(
            times(&next),
            PlanTimes {
                created_ms: Some(1_000),
                changed_ms: Some(1_000)
            }
        );
        // Nothing changed: no new stamp.
        assert!(!clock.stamp(&mut next, 2_000));
        // A move done bumps the revision.
        next.revision = 2;
        assert!(clock.stamp(&mut next, 3_000));
        assert_eq!(
            times(&next),
            PlanTimes {
                created_ms: Some(1_000),
                changed_ms: Some(3_000)
            }
        );
    }

    #[test]
    fn a_replan_from_the_same_epoch_keeps_the_creation_time() {
        let mut state = state_with_plan(1, 1, "p");
        let mut clock = PlanClock::new(&State::fresh(RingSettings::default()).unwrap());
        clock.stamp(&mut state, 1_000);
        // The coordinator replaces the record (new target, fresh times).
        let mut replanned = state_with_plan(1, 2, "q");
        assert!(clock.stamp(&mut replanned, 4_000));
        assert_eq!(
            times(&replanned),
            PlanTimes {
                created_ms: Some(1_000),
                changed_ms: Some(4_000)
            }
        );
        // The next epoch's plan is a new one.
        let mut later = state_with_plan(2, 1, "r");
        clock.stamp(&mut later, 9_000);
        assert_eq!(times(&later).created_ms, Some(9_000));
    }

    #[test]
    fn plan_times_survive_a_save_and_older_states_read_without_them() {
        let mut state = state_with_plan(1, 1, "p");
        state.plan.as_mut().unwrap().times = PlanTimes {
            created_ms: Some(1_000),
            changed_ms: Some(2_000),
        };
        let bytes = state.encode().unwrap();
        assert_eq!(State::decode(&bytes, "test").unwrap(), state);
        // A state saved before plans had times (in format 1, the JSON of
        // those builds).
        let json = state.encode_format1();
        assert_eq!(State::decode(&json, "test").unwrap(), state);
        let mut json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let plan = json["plan"].as_object_mut().unwrap();
        plan.remove("created_ms");
        plan.remove("changed_ms");
        let older = State::decode(&serde_json::to_vec(&json).unwrap(), "test").unwrap();
        assert_eq!(times(&older), PlanTimes::default());
    }

    #[test]
    fn times_print_as_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_851_521_999), "2026-11-28T07:38:41Z");
    }
}

//! Prometheus metrics, in the text format at `GET /metrics`.
//!
//! Per-member series (`ringleader_member_ownership{member=…}` and friends)
//! cover the committed ring only, and go away with the member, so a
//! scale-down leaves no stale series behind.

use crate::view::View;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// A gauge holding a fraction or a ratio.
type FloatGauge = Gauge<f64, AtomicU64>;

/// A `member` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabel {
    /// The member's id.
    pub member: String,
}

/// The labels of `ringleader_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version.
    pub version: String,
}

/// A `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state.
    pub state: String,
}

/// Every metric the coordinator exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Committed epoch.
    pub epoch: Gauge,
    /// Members by state.
    pub members: Family<StateLabel, Gauge>,
    /// Moves of the current plan by state.
    pub plan_moves: Family<StateLabel, Gauge>,
    /// Times the membership source re-synced or failed.
    pub source_restarts: Counter,
    /// 1 when the source is synced.
    pub source_synced: Gauge,
    /// 1 while the source reports a warning (a malformed weights annotation).
    pub source_warning: Gauge,
    /// Keys looked up over the API.
    pub lookups: Counter,
    /// Seconds spent computing plans.
    pub plan_seconds: Histogram,
    /// Plans made.
    pub plans: Counter,
    /// Failed writes of the state store.
    pub state_write_errors: Counter,
    /// Requests refused because a limit was reached.
    pub overload_rejections: Counter,
    /// Previews whose work stopped because their request was dropped or
    /// timed out.
    pub previews_cancelled: Counter,
    /// Largest load / target of the committed ring, in replica units
    /// (DESIGN §4).
    pub balance: FloatGauge,
    /// 1 while this instance leads (or runs alone), 0 while it follows.
    pub is_leader: Gauge,
    /// Always 1, labelled with the build's version.
    pub build_info: Family<BuildLabels, Gauge>,
    /// Primary ownership per member of the committed ring.
    pub member_ownership: Family<MemberLabel, FloatGauge>,
    /// Replica ownership per member of the committed ring.
    pub member_replica_ownership: Family<MemberLabel, FloatGauge>,
    /// Tokens per member of the committed ring.
    pub member_tokens: Family<MemberLabel, Gauge>,
    /// Moves in progress (`ready`) per member, sending or receiving.
    pub member_moves_in_progress: Family<MemberLabel, Gauge>,
    /// Members that have per-member series now (to drop those that left).
    member_series: Mutex<BTreeSet<String>>,
    /// Members that have a moves-in-progress series now.
    moves_series: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ringleader");
        let metrics = Metrics {
            registry: Mutex::new(Registry::default()),
            epoch: Gauge::default(),
            members: Family::default(),
            plan_moves: Family::default(),
            source_restarts: Counter::default(),
            source_synced: Gauge::default(),
            source_warning: Gauge::default(),
            lookups: Counter::default(),
            plan_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            plans: Counter::default(),
            state_write_errors: Counter::default(),
            overload_rejections: Counter::default(),
            previews_cancelled: Counter::default(),
            balance: FloatGauge::default(),
            is_leader: Gauge::default(),
            build_info: Family::default(),
            member_ownership: Family::default(),
            member_replica_ownership: Family::default(),
            member_tokens: Family::default(),
            member_moves_in_progress: Family::default(),
            member_series: Mutex::new(BTreeSet::new()),
            moves_series: Mutex::new(BTreeSet::new()),
        };
        metrics
            .build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels say which build runs",
            metrics.build_info.clone(),
        );
        registry.register(
            "balance",
            "Largest member load / target of the committed ring, in replica units (1 is perfect)",
            metrics.balance.clone(),
        );
        registry.register(
            "is_leader",
            "1 while this instance leads (or runs without leader election), 0 while it follows",
            metrics.is_leader.clone(),
        );
        registry.register(
            "member_ownership",
            "Fraction of the token space a member owns as primary in the committed ring",
            metrics.member_ownership.clone(),
        );
        registry.register(
            "member_replica_ownership",
            "Fraction of all replicas a member holds in the committed ring",
            metrics.member_replica_ownership.clone(),
        );
        registry.register(
            "member_tokens",
            "Tokens a member has in the committed ring",
            metrics.member_tokens.clone(),
        );
        registry.register(
            "member_moves_in_progress",
            "Moves in progress (ready) per member of the ring or the plan, sending or receiving; at most --max-moves-per-member",
            metrics.member_moves_in_progress.clone(),
        );
        registry.register("epoch", "Committed placement epoch", metrics.epoch.clone());
        registry.register("members", "Members by state", metrics.members.clone());
        registry.register(
            "plan_moves",
            "Moves of the current plan by state",
            metrics.plan_moves.clone(),
        );
        registry.register(
            "source_restarts",
            "Times the membership source had to re-sync or failed",
            metrics.source_restarts.clone(),
        );
        registry.register(
            "source_synced",
            "1 when the membership source is synced",
            metrics.source_synced.clone(),
        );
        registry.register(
            "source_warning",
            "1 while the membership source reports a warning (such as a malformed ringleader.io/weights annotation; /status says which)",
            metrics.source_warning.clone(),
        );
        registry.register(
            "lookups",
            "Keys looked up over the API",
            metrics.lookups.clone(),
        );
        registry.register(
            "plan_computation_seconds",
            "Time to compute a plan",
            metrics.plan_seconds.clone(),
        );
        registry.register("plans", "Plans made", metrics.plans.clone());
        registry.register(
            "state_write_errors",
            "Failed writes of the state store",
            metrics.state_write_errors.clone(),
        );
        registry.register(
            "overload_rejections",
            "Requests refused with 503 because a concurrency or subscriber limit was reached",
            metrics.overload_rejections.clone(),
        );
        registry.register(
            "previews_cancelled",
            "Previews stopped because their request was dropped or timed out",
            metrics.previews_cancelled.clone(),
        );
        *metrics.registry.lock().expect("fresh lock") = registry;
        metrics
    }

    /// Sets the gauges from a view.
    pub fn observe_view(&self, view: &View) {
        self.epoch.set(view.epoch as i64);
        for state in ["up", "down", "joining", "leaving"] {
            let n = view
                .members
                .iter()
                .filter(|m| m.state.as_str() == state)
                .count();
            self.members
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n as i64);
        }
        let counts = view
            .plan
            .as_deref()
            .map(|p| p.plan.counts())
            .unwrap_or_default();
        for state in ["pending", "ready", "done", "cancelled", "source_lost"] {
            let n = counts
                .iter()
                .find(|(s, _)| s.to_string() == state)
                .map_or(0, |(_, n)| *n);
            self.plan_moves
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n as i64);
        }
        self.source_synced.set(i64::from(
            view.source.state == ringleader_client::api::SourceState::Synced,
        ));
        self.source_warning
            .set(i64::from(view.source.warning.is_some()));
        self.balance.set(view.figures.balance);
        self.is_leader.set(i64::from(!view.follower));
        self.observe_members(view);
        self.observe_moves(view);
    }

    /// Moves in progress per member of the committed ring and of the
    /// plan's target (0 when none); members in neither lose their series.
    fn observe_moves(&self, view: &View) {
        let mut series = self.moves_series.lock().unwrap_or_else(|e| e.into_inner());
        let plan = view.plan_in_progress();
        let running = plan
            .map(|p| ringleader_planner::in_progress(&p.plan))
            .unwrap_or_default();
        let mut now: BTreeSet<String> = view
            .ring
            .members()
            .iter()
            .chain(plan.iter().flat_map(|p| p.target.members()))
            .map(|m| m.id.to_string())
            .collect();
        now.extend(running.keys().map(ToString::to_string));
        for member in &now {
            let n = running
                .get(&ringleader_ring::MemberId::new(member.as_str()))
                .copied()
                .unwrap_or(0);
            self.member_moves_in_progress
                .get_or_create(&MemberLabel {
                    member: member.clone(),
                })
                .set(n as i64);
        }
        for gone in series.difference(&now) {
            self.member_moves_in_progress.remove(&MemberLabel {
                member: gone.clone(),
            });
        }
        *series = now;
    }

    /// Per-member series of the committed ring; members that left lose
    /// theirs.
    fn observe_members(&self, view: &View) {
        let mut series = self.member_series.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = BTreeSet::new();
        for (i, spec) in view.ring.members().iter().enumerate() {
            let label = MemberLabel {
                member: spec.id.to_string(),
            };
            let fraction =
                |list: &[ringleader_ring::Ownership]| list.get(i).map_or(0.0, |o| o.fraction);
            self.member_ownership
                .get_or_create(&label)
                .set(fraction(&view.figures.ownership));
            self.member_replica_ownership
                .get_or_create(&label)
                .set(fraction(&view.figures.replica_ownership));
            self.member_tokens
                .get_or_create(&label)
                .set(view.figures.token_counts.get(i).copied().unwrap_or(0) as i64);
            now.insert(label.member);
        }
        for gone in series.difference(&now) {
            let label = MemberLabel {
                member: gone.clone(),
            };
            self.member_ownership.remove(&label);
            self.member_replica_ownership.remove(&label);
            self.member_tokens.remove(&label);
        }
        *series = now;
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::Coordinator;
    use crate::settings::{Mode, RingSettings, Timing};
    use crate::state::State;
    use crate::testing::pods;
    use crate::view::SourceStatus;
    use std::time::{Duration, Instant};

    /// The view once the store took what changed (views show stored
    /// states only).
    fn view_of(c: &mut Coordinator) -> View {
        if let Some(save) = c.to_save() {
            c.saved(save);
        }
        View::build(c, None, SourceStatus::default(), true, None)
    }

    #[test]
    fn moves_in_progress_per_member_stay_within_the_pace() {
        let settings = RingSettings {
            mode: Mode::Ack,
            pace: crate::settings::Pace::new(Some(1), None),
            ..RingSettings::default()
        };
        let timing = Timing::default();
        let mut c = Coordinator::new(State::fresh(settings).unwrap(), settings, timing);
        let t0 = Instant::now();
        c.source_synced(true, t0);
        c.observe(pods(3), t0);
        c.tick(t0 + timing.settle);
        c.observe(pods(4), t0 + timing.settle);
        c.tick(t0 + timing.settle * 2);
        let metrics = Metrics::new();
        metrics.observe_view(&view_of(&mut c));
        let text = metrics.encode();
        assert!(
            text.contains("ringleader_member_moves_in_progress{member=\"db-3\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ringleader_plan_moves{state=\"ready\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn per_member_series_follow_the_committed_ring_and_leave_with_the_member() {
        let settings = RingSettings {
            mode: Mode::Auto,
            ..RingSettings::default()
        };
        let timing = Timing::default();
        let mut c = Coordinator::new(State::fresh(settings).unwrap(), settings, timing);
        let t0 = Instant::now();
        c.source_synced(true, t0);
        c.observe(pods(3), t0);
        c.tick(t0 + timing.settle);
        let metrics = Metrics::new();
        metrics.observe_view(&view_of(&mut c));
        let text = metrics.encode();
        for line in [
            "ringleader_member_tokens{member=\"db-2\"} 16",
            "ringleader_is_leader 1",
            "ringleader_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.contains("ringleader_balance 1.0"), "{text}");
        assert!(
            text.contains("ringleader_member_ownership{member=\"db-0\"} 0.33"),
            "{text}"
        );

        // db-2 leaves (past its grace and the settle window): its series go.
        let t1 = t0 + Duration::from_secs(10);
        c.observe(pods(2), t1);
        c.tick(t1 + timing.down_grace);
        c.tick(t1 + timing.down_grace + timing.settle);
        assert_eq!(c.state().committed.len(), 2);
        metrics.observe_view(&view_of(&mut c));
        let text = metrics.encode();
        assert!(!text.contains("member=\"db-2\""), "{text}");
        assert!(
            text.contains("ringleader_member_ownership{member=\"db-1\"} 0.5"),
            "{text}"
        );
    }
}

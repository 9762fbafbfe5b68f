//! Prometheus metrics, in the text format at `GET /metrics`.

use crate::view::View;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

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
            lookups: Counter::default(),
            plan_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            plans: Counter::default(),
            state_write_errors: Counter::default(),
            overload_rejections: Counter::default(),
        };
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
        for state in ["pending", "done", "cancelled", "source_lost"] {
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
        self.source_synced
            .set(i64::from(view.source.state == "synced"));
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

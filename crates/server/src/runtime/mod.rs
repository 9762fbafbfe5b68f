//! The coordinator at work: the tasks around the pure [`Coordinator`].
//!
//! - [`Driver`] (`driver.rs`): one task owns the coordinator, feeds it the
//!   source's member sets and health, ticks at its deadlines, carries out
//!   commands from the API, stores the state and — only once stored —
//!   publishes it;
//! - [`Replica`] (`replica.rs`): with leader election, alternates between
//!   following (serving the stored state, refusing writes) and leading (a
//!   [`Driver`] that stops the moment the lead ends);
//! - [`Outlets`] (`outlets.rs`): the channels the API reads views and watch
//!   events from and sends [`Command`]s over; they outlive any one driver,
//!   and never show an epoch older than one they showed.
//!
//! One task owns the coordinator, so there are no locks around it.

mod driver;
mod outlets;
mod replica;

pub use driver::{Driver, Ended};
pub use outlets::Outlets;
pub use replica::{Lead, Replica};

use crate::coordinator::CoordinatorError;
use crate::metrics::Metrics;
use crate::settings::RingSettings;
use crate::state::{State, Store};
use crate::view::View;
use anyhow::{Context as _, bail};
use ringleader_client::api::{MoveDoneResponse, WatchEvent};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{info, warn};

#[cfg(test)]
mod tests;

/// Where members come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// A file of EndpointSlices, re-read when it changes.
    File(PathBuf),
    /// A Service's EndpointSlices in a cluster.
    Kubernetes {
        /// Namespace.
        namespace: String,
        /// Service name.
        service: String,
    },
}

/// Where state is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// A local file.
    File(PathBuf),
    /// A ConfigMap in the namespace (`--state configmap:NAME`).
    ConfigMap {
        /// Namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
    },
}

/// A request from the API to the coordinator.
#[derive(Debug)]
pub enum Command {
    /// A shard reports a move done.
    MoveDone {
        /// Move id.
        id: String,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<MoveDoneResponse, CommandError>>,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The coordinator refused it.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// It was applied but could not be persisted.
    #[error("the change could not be saved ({0}); report it again once the state store works")]
    Store(String),
    /// The coordinator is shutting down.
    #[error("the coordinator is shutting down; retry against the new instance")]
    ShuttingDown,
    /// This instance does not lead; only the leader applies writes.
    #[error("{}", not_leader_message(leader.as_deref()))]
    NotLeader {
        /// Who leads, if known.
        leader: Option<String>,
    },
}

/// The message of a write sent to a follower.
pub fn not_leader_message(leader: Option<&str>) -> String {
    match leader {
        Some(leader) => format!(
            "this coordinator is a follower; only the leader, {leader}, applies writes: send the request to {leader} (GET /v1/ring names the leader)"
        ),
        None => {
            "no coordinator leads right now (the lease is being taken over); retry in a few seconds"
                .to_owned()
        }
    }
}

/// How long the coordinator loop may go without a turn before `/healthz`
/// says it is stuck (every store and lease call has a shorter time limit).
pub const STALL_LIMIT: Duration = Duration::from_secs(30);

/// The coordinator loop's sign of life, for `/healthz`: the loop beats at
/// every turn, and turns at least every second.
#[derive(Debug)]
pub struct Heartbeat {
    origin: tokio::time::Instant,
    /// Milliseconds from `origin` to the last beat.
    last: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    /// The loop took a turn.
    pub fn beat(&self) {
        let ms = self.origin.elapsed().as_millis();
        self.last
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// Why the loop looks stuck, if it does.
    pub fn stalled(&self) -> Option<String> {
        let silent = self.silent_for();
        (silent > STALL_LIMIT).then(|| {
            format!(
                "the coordinator loop has not turned for {}s (a call to the state store or the API server hangs?)",
                silent.as_secs()
            )
        })
    }
}

/// What the API needs from the running coordinator.
#[derive(Clone, Debug)]
pub struct Handle {
    /// The latest view.
    pub view: watch::Receiver<Arc<View>>,
    /// Commands to the coordinator.
    pub commands: mpsc::Sender<Command>,
    /// Watch events, `(id, event)`.
    pub events: broadcast::Sender<(String, WatchEvent)>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The coordinator loop's sign of life.
    pub heartbeat: Arc<Heartbeat>,
}

/// Reads the state (or starts fresh), checking it was made with the same
/// settings unless `reconfigure`.
pub async fn load_state(
    store: &Store,
    settings: RingSettings,
    reconfigure: bool,
) -> anyhow::Result<State> {
    let loaded = store
        .load()
        .await
        .with_context(|| format!("loading state from {}", store.location()))?;
    adopt_state(loaded, store, settings, reconfigure)
}

/// Checks a state read from `store` (or starts fresh) against the settings.
fn adopt_state(
    loaded: Option<State>,
    store: &Store,
    settings: RingSettings,
    reconfigure: bool,
) -> anyhow::Result<State> {
    let location = store.location();
    let Some(state) = loaded else {
        info!(store = %location, "no state stored yet; starting with an empty ring");
        return State::fresh(settings).context("creating a fresh state");
    };
    let differences = state.settings.placement_differences(&settings);
    if !differences.is_empty() && !reconfigure {
        bail!(
            "the state in {location} was made with other settings ({}). Start with the settings it was made \
             with, or add --reconfigure to plan the change (data will move)",
            differences.join(", ")
        );
    }
    if !differences.is_empty() {
        warn!(changes = %differences.join(", "), "reconfiguring: the change will be planned once members are known");
    }
    info!(
        store = %location,
        epoch = state.epoch,
        members = state.committed.len(),
        plan = state.plan.as_ref().map(|p| p.id.as_str()).unwrap_or("none"),
        "state loaded"
    );
    Ok(state)
}

/// Sleeps until `deadline`, or forever.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

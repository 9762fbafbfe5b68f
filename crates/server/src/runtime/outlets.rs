//! The channels between the coordinator task and the API: views, watch
//! events, commands, metrics, heartbeat.

use super::{Command, Handle, Heartbeat};
use crate::coordinator::Coordinator;
use crate::metrics::Metrics;
use crate::view::{FiguresAhead, SourceStatus, View};
use ringleader_client::api::WatchEvent;
use ringleader_planner::MoveState;
use ringleader_ring::Ring;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::error;

/// What a published view was made of.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Published {
    version: u64,
    epoch: u64,
    revision: u64,
    source: SourceStatus,
    state_loaded: bool,
    leader: Option<String>,
    follower: bool,
}

/// The channels the API reads from and writes to. They outlive any one
/// [`Driver`](super::Driver): a replica that loses and regains the lead
/// keeps them.
#[derive(Debug)]
pub struct Outlets {
    view_tx: watch::Sender<Arc<View>>,
    pub(super) commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<(String, WatchEvent)>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) heartbeat: Arc<Heartbeat>,
    /// What the last published view was made of.
    published: Option<Published>,
    /// The figures of a ring being stored, computed beside the save
    /// (crate::runtime::Driver): the next view takes them if it shows that
    /// ring. Taken by the next view built, whether it does or not.
    pub(super) figures_ahead: Option<FiguresAhead>,
}

impl Outlets {
    /// The outlets and the API's handle, with a first view of `coordinator`.
    pub fn new(coordinator: &Coordinator) -> (Self, Handle) {
        let view = Arc::new(View::build(
            coordinator,
            None,
            SourceStatus::default(),
            true,
            None,
        ));
        let (view_tx, view_rx) = watch::channel(view.clone());
        let (command_tx, commands) = mpsc::channel(256);
        let (events, _) = broadcast::channel(256);
        let metrics = Arc::new(Metrics::new());
        metrics.observe_view(&view);
        let heartbeat = Arc::new(Heartbeat::default());
        let outlets = Outlets {
            view_tx,
            commands,
            events: events.clone(),
            metrics: metrics.clone(),
            heartbeat: heartbeat.clone(),
            published: None,
            figures_ahead: None,
        };
        let handle = Handle {
            view: view_rx,
            commands: command_tx,
            events,
            metrics,
            heartbeat,
        };
        (outlets, handle)
    }

    /// The epoch and revision last shown.
    pub fn shown(&self) -> (u64, u64) {
        let view = self.view_tx.borrow();
        (view.epoch, view.revision)
    }

    /// Publishes a view of what `coordinator` shows (its stored state) if
    /// anything shown changed, and a watch event if the epoch or the plan
    /// changed. A view older than the one shown (an epoch going backwards)
    /// is never published.
    pub fn publish(
        &mut self,
        coordinator: &Coordinator,
        source: &SourceStatus,
        state_loaded: bool,
        leader: Option<String>,
        follower: bool,
    ) {
        let shown = coordinator.shown();
        let key = Published {
            version: coordinator.version(),
            epoch: shown.epoch,
            revision: shown.revision,
            source: source.clone(),
            state_loaded,
            leader: leader.clone(),
            follower,
        };
        if self.published.as_ref() == Some(&key) {
            return;
        }
        let previous = self.view_tx.borrow().clone();
        if (shown.epoch, shown.revision) < (previous.epoch, previous.revision) {
            error!(
                shown_epoch = previous.epoch,
                shown_revision = previous.revision,
                offered_epoch = shown.epoch,
                offered_revision = shown.revision,
                "refusing to show an older state than one already shown"
            );
            return;
        }
        let ahead = self.figures_ahead.take();
        let mut view = View::build_with(
            coordinator,
            Some(&previous),
            source.clone(),
            state_loaded,
            leader,
            ahead.as_ref(),
        );
        view.follower = follower;
        let view = Arc::new(view);
        // Shown first; metrics and the watch stream's event follow (a
        // client that hears of the epoch finds it readable, and neither is
        // on the way from a change to its epoch: 2 ms at 1,000 × 256).
        self.published = Some(key);
        let replaced = self.view_tx.send_replace(view.clone());
        prepare_lookups(&view, &previous);
        self.metrics.observe_view(&view);
        let plan_changed = (view.epoch, view.revision) != (previous.epoch, previous.revision);
        if plan_changed {
            let kind = if view.epoch != previous.epoch {
                "epoch"
            } else {
                "plan"
            };
            let event = WatchEvent {
                kind: kind.to_owned(),
                epoch: view.epoch,
                revision: view.revision,
                plan: view.plan_view().cloned(),
                ready: newly_ready(&previous, &view),
            };
            let _ = self.events.send((view.event_id(), event));
        } else if view.members != previous.members || view.outside != previous.outside {
            // Member states moved (down, back up, settling) with no new
            // epoch or plan: say so, without an id, so resuming with
            // Last-Event-ID keeps its meaning.
            let event = WatchEvent {
                kind: "members".to_owned(),
                epoch: view.epoch,
                revision: view.revision,
                plan: view.plan_view().cloned(),
                ready: Vec::new(),
            };
            let _ = self.events.send((String::new(), event));
        }
        drop(replaced);
    }
}

/// Builds the lookup index of the rings `view` serves (the committed ring,
/// the plan's target) on the blocking pool when either is new since
/// `previous`: the
/// ring was made without one (crate::coordinator plans without lookups),
/// and the first lookup would otherwise pay for it. Inline where no runtime
/// runs.
fn prepare_lookups(view: &View, previous: &View) {
    let same_plan = match (&view.plan, &previous.plan) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (a, b) => a.is_none() && b.is_none(),
    };
    if Arc::ptr_eq(&view.ring, &previous.ring) && same_plan {
        return;
    }
    // Preparing a ring twice costs nothing: its index is built once.
    let ring = view.ring.clone();
    let target = view.plan.as_ref().map(|p| p.target.clone());
    let work = move || {
        ring.prepare_lookups();
        target.iter().for_each(Ring::prepare_lookups);
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(work)),
        Err(_) => work(),
    }
}

/// The ids of the moves `ready` in `now`'s plan that were not in
/// `before`'s: the watch stream announces them.
fn newly_ready(before: &View, now: &View) -> Vec<String> {
    let Some(plan) = now.plan_in_progress() else {
        return Vec::new();
    };
    let was_ready: HashSet<&str> = before
        .plan_in_progress()
        .into_iter()
        .flat_map(|p| &p.plan.moves)
        .filter(|m| m.state == MoveState::Ready)
        .map(|m| m.id.as_str())
        .collect();
    plan.plan
        .moves
        .iter()
        .filter(|m| m.state == MoveState::Ready && !was_ready.contains(m.id.as_str()))
        .map(|m| m.id.to_string())
        .collect()
}

//! The coordinator at work: a task that feeds the [`Coordinator`] with
//! membership from the source, ticks at its deadlines, carries out commands
//! from the API, persists the state and publishes views.
//!
//! One task owns the coordinator, so there are no locks around it: the API
//! reads [`View`]s from a `watch` channel and sends [`Command`]s over an
//! `mpsc` channel, each with a reply channel.

use crate::coordinator::{Coordinator, CoordinatorError};
use crate::metrics::Metrics;
use crate::settings::{RingSettings, Timing};
use crate::state::{FileStore, State, StoreError};
use crate::view::{SourceStatus, View, move_view};
use anyhow::{Context as _, bail};
use futures::StreamExt;
use ringleader_client::api::{MoveDoneResponse, WatchEvent};
use ringleader_watch::{MembershipStream, SourceEvent, SourceHealth};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{error, info, warn};

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
}

/// Reads the state (or starts fresh), checking it was made with the same
/// settings unless `reconfigure`.
pub fn load_state(
    store: &FileStore,
    settings: RingSettings,
    reconfigure: bool,
) -> anyhow::Result<State> {
    let loaded = store
        .load()
        .with_context(|| format!("loading state from {}", store.path().display()))?;
    let Some(mut state) = loaded else {
        info!(path = %store.path().display(), "no state file yet; starting with an empty ring");
        return State::fresh(settings).context("creating a fresh state");
    };
    let differences = state.settings.placement_differences(&settings);
    if !differences.is_empty() && !reconfigure {
        bail!(
            "the state in {} was made with other settings ({}). Start with the settings it was made \
             with, or add --reconfigure to plan the change (data will move)",
            store.path().display(),
            differences.join(", ")
        );
    }
    if !differences.is_empty() {
        warn!(changes = %differences.join(", "), "reconfiguring: the change will be planned once members are known");
    }
    // The mode only governs how plans progress, not where data is.
    state.settings.mode = settings.mode;
    if let Some(plan) = &mut state.plan {
        plan.settings.mode = settings.mode;
    }
    info!(
        path = %store.path().display(),
        epoch = state.epoch,
        members = state.committed.len(),
        plan = state.plan.as_ref().map(|p| p.id.as_str()).unwrap_or("none"),
        "state loaded"
    );
    Ok(state)
}

fn source_status(health: &SourceHealth, ever_synced: bool) -> SourceStatus {
    let (state, detail) = match health {
        SourceHealth::Starting => ("starting", None),
        SourceHealth::Synced => ("synced", None),
        SourceHealth::Resyncing { reason } => ("resyncing", Some(reason.clone())),
        SourceHealth::Failing { error, .. } => ("failing", Some(error.clone())),
    };
    SourceStatus {
        state,
        detail,
        ever_synced,
    }
}

/// The coordinator task.
pub struct Driver {
    coordinator: Coordinator,
    store: FileStore,
    source: MembershipStream,
    source_status: SourceStatus,
    commands: mpsc::Receiver<Command>,
    view_tx: watch::Sender<Arc<View>>,
    events: broadcast::Sender<(String, WatchEvent)>,
    metrics: Arc<Metrics>,
    saved_version: u64,
    published: (u64, u64, u64, SourceStatus),
    plans_seen: u64,
}

impl Driver {
    /// Sets up the coordinator; returns the driver (to run) and the API's
    /// handle.
    pub fn new(
        state: State,
        settings: RingSettings,
        timing: Timing,
        store: FileStore,
        source: MembershipStream,
    ) -> (Self, Handle) {
        let coordinator = Coordinator::new(state, settings, timing);
        let source_status = SourceStatus::default();
        let view = Arc::new(View::build(
            &coordinator,
            None,
            source_status.clone(),
            true,
            None,
        ));
        let (view_tx, view_rx) = watch::channel(view.clone());
        let (command_tx, commands) = mpsc::channel(256);
        let (events, _) = broadcast::channel(256);
        let metrics = Arc::new(Metrics::new());
        metrics.observe_view(&view);
        let saved_version = coordinator.persisted_version();
        let driver = Driver {
            published: (
                coordinator.version(),
                view.epoch,
                view.revision,
                source_status.clone(),
            ),
            coordinator,
            store,
            source,
            source_status,
            commands,
            view_tx,
            events: events.clone(),
            metrics: metrics.clone(),
            saved_version,
            plans_seen: 0,
        };
        let handle = Handle {
            view: view_rx,
            commands: command_tx,
            events,
            metrics,
        };
        (driver, handle)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let deadline = self
                .coordinator
                .next_deadline()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                Some(command) = self.commands.recv() => self.handle(command).await,
                event = self.source.next() => match event {
                    Some(SourceEvent::Members(members)) => {
                        info!(members = members.len(), "member set changed");
                        self.source_status.ever_synced = true;
                        self.coordinator.observe(members, Instant::now());
                    }
                    Some(SourceEvent::Health(health)) => {
                        if matches!(health, SourceHealth::Resyncing { .. } | SourceHealth::Failing { .. }) {
                            self.metrics.source_restarts.inc();
                        }
                        let ever = self.source_status.ever_synced || health.is_synced();
                        self.source_status = source_status(&health, ever);
                    }
                    None => {
                        error!("the membership source stopped; no more membership changes will be seen");
                        self.source = futures::stream::pending().boxed();
                    }
                },
                _ = sleep_until(deadline) => self.coordinator.tick(Instant::now()),
            }
            self.save().await.ok();
            self.publish();
        }
        // Last chance to persist before exiting.
        self.save().await.ok();
        info!("coordinator stopped");
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::MoveDone { id, reply } => {
                let outcome = self.coordinator.move_done(&id);
                let result = match outcome {
                    Err(e) => Err(CommandError::from(e)),
                    Ok(report) => match self.save().await {
                        Err(e) => Err(CommandError::Store(e.to_string())),
                        Ok(()) => Ok(MoveDoneResponse {
                            move_: move_view(&report.done),
                            remaining: report.remaining,
                            epoch: self.coordinator.state().epoch,
                            committed: report.committed,
                        }),
                    },
                };
                let _ = reply.send(result);
            }
        }
    }

    async fn save(&mut self) -> Result<(), StoreError> {
        let version = self.coordinator.persisted_version();
        if version == self.saved_version {
            return Ok(());
        }
        let store = self.store.clone();
        let state = self.coordinator.state().clone();
        let result = tokio::task::spawn_blocking(move || store.save(&state))
            .await
            .unwrap_or_else(|e| Err(StoreError::Encode(format!("the writer task failed: {e}"))));
        match result {
            Ok(()) => {
                self.saved_version = version;
                Ok(())
            }
            Err(e) => {
                self.metrics.state_write_errors.inc();
                error!(error = %e, "could not save the state; will retry on the next change");
                Err(e)
            }
        }
    }

    fn publish(&mut self) {
        let version = self.coordinator.version();
        let state = self.coordinator.state();
        let key = (
            version,
            state.epoch,
            state.revision,
            self.source_status.clone(),
        );
        if key == self.published {
            return;
        }
        let previous = self.view_tx.borrow().clone();
        let view = Arc::new(View::build(
            &self.coordinator,
            Some(&previous),
            self.source_status.clone(),
            true,
            None,
        ));
        self.metrics.observe_view(&view);
        let plan_changed = (view.epoch, view.revision) != (previous.epoch, previous.revision);
        while self.plans_seen < self.coordinator.plans_made() {
            self.plans_seen += 1;
            self.metrics.plans.inc();
            self.metrics
                .plan_seconds
                .observe(self.coordinator.last_plan_seconds());
        }
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
            };
            let _ = self.events.send((view.event_id(), event));
        }
        self.published = key;
        self.view_tx.send_replace(view);
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

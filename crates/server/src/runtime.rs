//! The coordinator at work: a task that feeds the [`Coordinator`] with
//! membership from the source, ticks at its deadlines, carries out commands
//! from the API, persists the state and publishes views.
//!
//! One task owns the coordinator, so there are no locks around it: the API
//! reads [`View`]s from a `watch` channel and sends [`Command`]s over an
//! `mpsc` channel, each with a reply channel.
//!
//! With leader election a [`Replica`] alternates between two roles over the
//! same channels: a follower serves the state it reads from the store (every
//! `poll`) and refuses writes, naming the leader; the leader loads the latest
//! stored state, opens the membership source and runs a [`Driver`], which
//! stops planning and writing the moment the lead ends (its deadline passes,
//! or the elector says so). A stored state newer than the driver's (written
//! behind its back) is taken over, never overwritten.

use crate::coordinator::{Coordinator, CoordinatorError};
use crate::lease::Leadership;
use crate::metrics::Metrics;
use crate::plan_times::{PlanClock, unix_ms};
use crate::settings::{RingSettings, Timing};
use crate::state::{Refreshed, State, Store, StoreError};
use crate::view::{SourceStatus, View, move_view};
use anyhow::{Context as _, bail};
use futures::StreamExt;
use ringleader_client::api::{MoveDoneResponse, WatchEvent};
use ringleader_watch::{MemberSet, MembershipStream, SourceEvent, SourceHealth};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

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
    let Some(mut state) = loaded else {
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
    // The mode only governs how plans progress, not where data is.
    state.settings.mode = settings.mode;
    if let Some(plan) = &mut state.plan {
        plan.settings.mode = settings.mode;
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

/// What a published view was made of: coordinator version, epoch,
/// revision, source, state loaded, leader, follower.
type PublishedKey = (u64, u64, u64, SourceStatus, bool, Option<String>, bool);

/// The channels the API reads from and writes to. They outlive any one
/// [`Driver`]: a replica that loses and regains the lead keeps them.
#[derive(Debug)]
pub struct Outlets {
    view_tx: watch::Sender<Arc<View>>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<(String, WatchEvent)>,
    metrics: Arc<Metrics>,
    /// What the last published view was made of.
    published: Option<PublishedKey>,
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
        let outlets = Outlets {
            view_tx,
            commands,
            events: events.clone(),
            metrics: metrics.clone(),
            published: None,
        };
        let handle = Handle {
            view: view_rx,
            commands: command_tx,
            events,
            metrics,
        };
        (outlets, handle)
    }

    /// Publishes a view of `coordinator` if anything shown changed, and a
    /// watch event if the epoch or the plan changed.
    fn publish(
        &mut self,
        coordinator: &Coordinator,
        source: &SourceStatus,
        state_loaded: bool,
        leader: Option<String>,
        follower: bool,
    ) {
        let state = coordinator.state();
        let key = (
            coordinator.version(),
            state.epoch,
            state.revision,
            source.clone(),
            state_loaded,
            leader.clone(),
            follower,
        );
        if self.published.as_ref() == Some(&key) {
            return;
        }
        let previous = self.view_tx.borrow().clone();
        let mut view = View::build(
            coordinator,
            Some(&previous),
            source.clone(),
            state_loaded,
            leader,
        );
        view.follower = follower;
        let view = Arc::new(view);
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
            };
            let _ = self.events.send((String::new(), event));
        }
        self.published = Some(key);
        self.view_tx.send_replace(view);
    }
}

/// Leader election as the driver sees it.
#[derive(Clone, Debug)]
pub struct Lead {
    /// Who leads.
    pub leadership: watch::Receiver<Leadership>,
    /// This instance's identity.
    pub identity: String,
}

impl Lead {
    fn leading(&self) -> bool {
        self.leadership.borrow().is_leading()
    }

    fn leader(&self) -> Option<String> {
        self.leadership.borrow().leader(&self.identity)
    }
}

/// Why a [`Driver`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for.
    Shutdown,
    /// The lease was lost: this instance must not write any more.
    LostLeadership,
}

/// The coordinator task.
pub struct Driver {
    coordinator: Coordinator,
    settings: RingSettings,
    timing: Timing,
    store: Store,
    source: MembershipStream,
    source_status: SourceStatus,
    last_members: Option<MemberSet>,
    outlets: Outlets,
    lead: Option<Lead>,
    saved_version: u64,
    /// A version that failed to save for good (too large, unreadable store):
    /// not retried until the state changes again.
    failed_version: Option<u64>,
    /// When to retry a save that failed for a passing reason.
    retry_save_at: Option<tokio::time::Instant>,
    plans_seen: u64,
    /// Stamps plans with wall-clock times before they are saved.
    plan_clock: PlanClock,
}

impl Driver {
    /// Sets up the coordinator; returns the driver (to run) and the API's
    /// handle.
    pub fn new(
        state: State,
        settings: RingSettings,
        timing: Timing,
        store: impl Into<Store>,
        source: MembershipStream,
    ) -> (Self, Handle) {
        let coordinator = Coordinator::new(state, settings, timing);
        let (outlets, handle) = Outlets::new(&coordinator);
        let driver = Self::resume(
            coordinator,
            settings,
            timing,
            store.into(),
            source,
            outlets,
            None,
        );
        (driver, handle)
    }

    /// A driver over existing outlets (a replica that just took the lead).
    fn resume(
        coordinator: Coordinator,
        settings: RingSettings,
        timing: Timing,
        store: Store,
        source: MembershipStream,
        outlets: Outlets,
        lead: Option<Lead>,
    ) -> Self {
        let mut driver = Driver {
            plan_clock: PlanClock::new(coordinator.state()),
            saved_version: coordinator.persisted_version(),
            coordinator,
            settings,
            timing,
            store,
            source,
            source_status: SourceStatus::default(),
            last_members: None,
            outlets,
            lead,
            failed_version: None,
            retry_save_at: None,
            plans_seen: 0,
        };
        driver.publish();
        driver
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        self.run_until(shutdown).await;
    }

    /// Runs until `shutdown` turns true or the lead is lost; gives the
    /// outlets back.
    pub async fn run_until(mut self, mut shutdown: watch::Receiver<bool>) -> (Ended, Outlets) {
        let mut leadership = self.lead.as_ref().map(|l| l.leadership.clone());
        let ended = loop {
            if !self.may_write() {
                break Ended::LostLeadership;
            }
            let deadline = self
                .coordinator
                .next_deadline()
                .map(tokio::time::Instant::from_std);
            let lead_until = leadership.as_ref().and_then(|l| match *l.borrow() {
                Leadership::Leading { until } => Some(until),
                Leadership::Following { .. } => None,
            });
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break Ended::Shutdown;
                    }
                }
                // The lead ends at its deadline even if the elector is late
                // to say so: stop writing at once.
                () = sleep_until(lead_until) => continue,
                changed = async {
                    match leadership.as_mut() {
                        Some(l) => l.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if changed.is_err() {
                        break Ended::LostLeadership;
                    }
                    continue;
                }
                Some(command) = self.outlets.commands.recv() => self.handle(command).await,
                event = self.source.next() => match event {
                    Some(SourceEvent::Members(members)) => {
                        info!(members = members.len(), "member set changed");
                        self.source_status.ever_synced = true;
                        self.last_members = Some(members.clone());
                        self.coordinator.observe(members, Instant::now());
                    }
                    Some(SourceEvent::Health(health)) => {
                        if matches!(health, SourceHealth::Resyncing { .. } | SourceHealth::Failing { .. }) {
                            self.outlets.metrics.source_restarts.inc();
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
                _ = sleep_until(self.retry_save_at) => self.retry_save_at = None,
            }
            self.save().await.ok();
            self.publish();
        };
        if ended == Ended::Shutdown {
            // Last chance to persist before exiting (only while leading).
            self.save().await.ok();
            info!("coordinator stopped");
        } else {
            warn!("lost the lead: stopped planning and writing");
        }
        (ended, self.outlets)
    }

    fn may_write(&self) -> bool {
        self.lead.as_ref().is_none_or(Lead::leading)
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::MoveDone { id, reply } => {
                if !self.may_write() {
                    let leader = self.lead.as_ref().and_then(Lead::leader);
                    let _ = reply.send(Err(CommandError::NotLeader { leader }));
                    return;
                }
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
        self.coordinator
            .stamp_plan(&mut self.plan_clock, unix_ms(SystemTime::now()));
        let version = self.coordinator.persisted_version();
        if version == self.saved_version || self.failed_version == Some(version) {
            return Ok(());
        }
        if !self.may_write() {
            // Never write without the lead, even the last save.
            return Err(StoreError::NotLeading);
        }
        let result = self.store.save(self.coordinator.state()).await;
        match result {
            Ok(()) => {
                self.saved_version = version;
                self.failed_version = None;
                self.retry_save_at = None;
                Ok(())
            }
            Err(StoreError::Newer {
                location,
                stored,
                ours,
            }) => {
                self.outlets.metrics.state_write_errors.inc();
                warn!(
                    store = %location,
                    epoch = stored.epoch,
                    revision = stored.revision,
                    our_epoch = ours.0,
                    our_revision = ours.1,
                    "a newer state was written by someone else; taking it over (our unsaved change is dropped, its sender is told to retry)"
                );
                let err = StoreError::Newer {
                    location,
                    stored: stored.clone(),
                    ours,
                };
                self.take_over(*stored);
                Err(err)
            }
            Err(e) => {
                self.outlets.metrics.state_write_errors.inc();
                if e.is_retryable() {
                    error!(error = %e, "could not save the state; retrying in a second");
                    self.retry_save_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                } else {
                    error!(error = %e, "could not save the state; not retrying until the state changes");
                    self.failed_version = Some(version);
                }
                Err(e)
            }
        }
    }

    /// Continues from a state someone else stored.
    fn take_over(&mut self, mut state: State) {
        state.settings.mode = self.settings.mode;
        if let Some(plan) = &mut state.plan {
            plan.settings.mode = self.settings.mode;
        }
        self.coordinator = Coordinator::new(state, self.settings, self.timing);
        self.plan_clock = PlanClock::new(self.coordinator.state());
        self.saved_version = self.coordinator.persisted_version();
        self.failed_version = None;
        self.plans_seen = 0;
        if let Some(members) = self.last_members.clone() {
            self.coordinator.observe(members, Instant::now());
        }
    }

    fn publish(&mut self) {
        while self.plans_seen < self.coordinator.plans_made() {
            self.plans_seen += 1;
            self.outlets.metrics.plans.inc();
            self.outlets
                .metrics
                .plan_seconds
                .observe(self.coordinator.last_plan_seconds());
        }
        let leader = self.lead.as_ref().and_then(Lead::leader);
        self.outlets
            .publish(&self.coordinator, &self.source_status, true, leader, false);
    }
}

/// How a replica with leader election runs: what it needs to lead.
pub struct Replica<F> {
    /// The shared state store.
    pub store: Store,
    /// Settings asked for.
    pub settings: RingSettings,
    /// Flap damping.
    pub timing: Timing,
    /// `--reconfigure`.
    pub reconfigure: bool,
    /// Who leads.
    pub lead: Lead,
    /// Opens the membership source (each time this replica takes the lead).
    pub open_source: F,
    /// How often a follower reads the state store.
    pub poll: Duration,
}

impl<F, Fut> Replica<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<MembershipStream>>,
{
    /// Follows (serving the stored state) until it leads; leads (source,
    /// plans, writes) until it loses the lead; and again, until `shutdown`.
    /// Errors only for what a restart will not fix (a state it cannot use).
    pub async fn run(
        mut self,
        mut outlets: Outlets,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let standby = SourceStatus {
            state: "standby",
            detail: Some("the membership source runs on the leader only".into()),
            ever_synced: false,
        };
        // What followers serve: the last state read.
        let mut shown = Coordinator::new(
            State::fresh(self.settings).context("creating a fresh state")?,
            self.settings,
            self.timing,
        );
        let mut loaded = false;
        loop {
            // Follow.
            match self
                .follow(
                    &mut outlets,
                    &mut shown,
                    &mut loaded,
                    &standby,
                    shutdown.clone(),
                )
                .await
            {
                Ended::Shutdown => return Ok(()),
                Ended::LostLeadership => {}
            }
            // Lead: the latest state, then the source.
            let state = match self.store.load().await {
                Ok(loaded) => adopt_state(loaded, &self.store, self.settings, self.reconfigure)?,
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, "took the lead but could not read the state; will try again");
                    tokio::time::sleep(self.poll).await;
                    continue;
                }
                Err(e) => return Err(anyhow::Error::new(e).context("loading the state to lead")),
            };
            let plan = state.plan.as_ref().map(|p| p.id.clone());
            info!(
                epoch = state.epoch,
                revision = state.revision,
                plan = plan.as_deref().unwrap_or("none"),
                "leading: continuing from the stored state"
            );
            let source = (self.open_source)().await?;
            let coordinator = Coordinator::new(state, self.settings, self.timing);
            let driver = Driver::resume(
                coordinator,
                self.settings,
                self.timing,
                self.store.clone(),
                source,
                outlets,
                Some(self.lead.clone()),
            );
            let (ended, back) = driver.run_until(shutdown.clone()).await;
            outlets = back;
            if ended == Ended::Shutdown {
                return Ok(());
            }
            // Serve what was last written until the next read.
            loaded = false;
        }
    }

    /// Serves the stored state, read every `poll`, until this replica leads
    /// (returns `LostLeadership`, meaning "not following any more") or shuts
    /// down.
    async fn follow(
        &mut self,
        outlets: &mut Outlets,
        shown: &mut Coordinator,
        loaded: &mut bool,
        standby: &SourceStatus,
        mut shutdown: watch::Receiver<bool>,
    ) -> Ended {
        let mut leadership = self.lead.leadership.clone();
        let mut next_read = tokio::time::Instant::now();
        // The first read is a full one: after leading, the store's
        // resourceVersion is our own last write, which `shown` predates.
        let mut full_read = true;
        loop {
            if self.lead.leading() {
                return Ended::LostLeadership;
            }
            outlets.publish(shown, standby, *loaded, self.lead.leader(), true);
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Ended::Shutdown;
                    }
                }
                changed = leadership.changed() => {
                    if changed.is_err() {
                        // The elector is gone: nobody will make us lead.
                        let _ = shutdown.changed().await;
                        return Ended::Shutdown;
                    }
                }
                Some(command) = outlets.commands.recv() => match command {
                    Command::MoveDone { reply, .. } => {
                        let _ = reply.send(Err(CommandError::NotLeader { leader: self.lead.leader() }));
                    }
                },
                () = tokio::time::sleep_until(next_read) => {
                    next_read = tokio::time::Instant::now() + self.poll;
                    let read = if full_read {
                        self.store
                            .load()
                            .await
                            .map(|s| Refreshed::Changed(s.map(Box::new)))
                    } else {
                        self.store.refresh().await
                    };
                    match read {
                        Ok(Refreshed::Unchanged) => *loaded = true,
                        Ok(Refreshed::Changed(state)) => {
                            let state = match state {
                                Some(s) => *s,
                                None => match State::fresh(self.settings) {
                                    Ok(s) => s,
                                    Err(e) => {
                                        error!(error = %e, "cannot make an empty state");
                                        continue;
                                    }
                                },
                            };
                            debug!(epoch = state.epoch, revision = state.revision, "read the stored state");
                            *shown = Coordinator::new(state, self.settings, self.timing);
                            *loaded = true;
                            full_read = false;
                        }
                        Err(e) => warn!(error = %e, "following: could not read the state; serving the last one read"),
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

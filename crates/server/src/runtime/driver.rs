//! The coordinator task: the [`Coordinator`] driven by the source, the
//! clock, the API's commands and the store.
//!
//! Every turn of the loop: one input goes in, then the state is stored if it
//! changed, and only then published (durability before visibility). A save
//! that fails keeps the previous state shown, turns `/readyz` to 503 with the
//! reason, and is retried with backoff. A save that conflicts (someone else
//! wrote the store) is never forced: leadership is checked again, and the
//! stored state taken over.

use super::{Command, CommandError, Lead, Outlets, sleep_until};
use crate::coordinator::Coordinator;
use crate::lease::Leadership;
use crate::plan_times::{PlanClock, unix_ms};
use crate::settings::{RingSettings, Timing};
use crate::state::{State, Store, StoreError};
use crate::view::{FiguresAhead, SourceStatus, move_view};
use futures::StreamExt;
use ringleader_client::api::{MoveDoneResponse, SourceState};
use ringleader_watch::{MembershipStream, SourceEvent, SourceHealth};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Span, error, info, instrument, warn};

/// The longest wait between two attempts of a failing save.
const SAVE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a [`Driver`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for.
    Shutdown,
    /// The lease was lost: this instance must not write any more.
    LostLeadership,
}

/// What became of an attempt to store the working state.
#[derive(Debug)]
enum Persisted {
    /// The store holds the working state (or nothing had changed).
    Stored,
    /// Not stored; the reason (the change stays pending, or was dropped for
    /// another writer's state).
    NotStored(String),
}

fn source_status(
    health: &SourceHealth,
    ever_synced: bool,
    warning: Option<String>,
) -> SourceStatus {
    let (state, detail) = match health {
        SourceHealth::Starting => (SourceState::Starting, None),
        SourceHealth::Synced => (SourceState::Synced, None),
        SourceHealth::Resyncing { reason } => (SourceState::Resyncing, Some(reason.clone())),
        SourceHealth::Failing { error, .. } => (SourceState::Failing, Some(error.clone())),
    };
    SourceStatus {
        state,
        detail,
        ever_synced,
        warning,
    }
}

/// The coordinator's clock: tokio's, so paused time drives it in tests.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The coordinator task.
pub struct Driver {
    coordinator: Coordinator,
    store: Store,
    source: MembershipStream,
    source_status: SourceStatus,
    outlets: Outlets,
    lead: Option<Lead>,
    /// When a failed save may be tried again.
    retry_save_at: Option<Instant>,
    save_failures: u32,
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
    ) -> (Self, super::Handle) {
        let coordinator = Coordinator::new(state, settings, timing);
        let (outlets, handle) = Outlets::new(&coordinator);
        let driver = Self::resume(coordinator, store.into(), source, outlets, None);
        (driver, handle)
    }

    /// A driver over existing outlets (a replica that just took the lead).
    pub(super) fn resume(
        coordinator: Coordinator,
        store: Store,
        source: MembershipStream,
        outlets: Outlets,
        lead: Option<Lead>,
    ) -> Self {
        let mut driver = Driver {
            plan_clock: PlanClock::new(coordinator.state()),
            coordinator,
            store,
            source,
            source_status: SourceStatus::default(),
            outlets,
            lead,
            retry_save_at: None,
            save_failures: 0,
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
    /// outlets back, with the last state shown.
    pub async fn run_until(
        mut self,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Ended, Outlets, Arc<State>) {
        let mut leadership = self.lead.as_ref().map(|l| l.leadership.clone());
        let ended = loop {
            if !self.may_write() {
                break Ended::LostLeadership;
            }
            self.outlets.heartbeat.beat();
            let deadline = self.coordinator.next_deadline(now()).map(Instant::from_std);
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
                        info!(
                            members = members.len(),
                            eligible = members.iter().filter(|m| crate::coordinator::eligible(m)).count(),
                            "member set changed"
                        );
                        // A source that sends members without a word on its
                        // health (tests, simple sources) is taken as synced.
                        let synced = matches!(self.source_status.state, SourceState::Starting | SourceState::Synced);
                        self.source_status.ever_synced = true;
                        self.step(|c| {
                            c.observe(members, now());
                            c.source_synced(synced, now());
                        });
                    }
                    Some(SourceEvent::Health(health)) => {
                        if matches!(health, SourceHealth::Resyncing { .. } | SourceHealth::Failing { .. }) {
                            self.outlets.metrics.source_restarts.inc();
                        }
                        let ever = self.source_status.ever_synced || health.is_synced();
                        let warning = self.source_status.warning.take();
                        self.source_status = source_status(&health, ever, warning);
                        let synced = health.is_synced();
                        self.step(|c| c.source_synced(synced, now()));
                    }
                    Some(SourceEvent::Warning(warning)) => {
                        // Shown by /status and metrics; nothing to plan.
                        self.source_status.warning = warning;
                    }
                    None => {
                        error!("the membership source stopped; no more membership changes will be seen");
                        self.source = futures::stream::pending().boxed();
                    }
                },
                () = sleep_until(deadline) => self.step(|c| c.tick(now())),
                () = sleep_until(self.retry_save_at) => self.retry_save_at = None,
                // A turn at least every second, so /healthz sees the loop.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            self.persist(false).await;
            self.publish();
        };
        if ended == Ended::Shutdown {
            // Last chance to store before exiting (only while leading).
            self.persist(true).await;
            info!("coordinator stopped");
        } else {
            warn!("lost the lead: stopped planning and writing");
        }
        let shown = self.coordinator.shown().clone();
        (ended, self.outlets, shown)
    }

    /// Runs one input through the coordinator, timing any plan it makes.
    /// The span names the position the input found (a plan made or
    /// committed logs inside it).
    #[instrument(level = "info", name = "coordinator", skip_all, fields(
        epoch = self.coordinator.state().epoch,
        revision = self.coordinator.state().revision,
        plan = self.coordinator.state().plan.as_ref().map(|p| p.id.as_str()),
    ))]
    fn step(&mut self, input: impl FnOnce(&mut Coordinator)) {
        let started = std::time::Instant::now();
        input(&mut self.coordinator);
        while self.plans_seen < self.coordinator.plans_made() {
            self.plans_seen += 1;
            self.outlets.metrics.plans.inc();
            self.outlets
                .metrics
                .plan_seconds
                .observe(started.elapsed().as_secs_f64());
        }
    }

    fn may_write(&self) -> bool {
        self.lead.as_ref().is_none_or(Lead::leading)
    }

    #[instrument(level = "info", name = "command", skip_all, fields(
        r#move = match &command { Command::MoveDone { id, .. } => id.as_str() },
        epoch = self.coordinator.state().epoch,
        revision = self.coordinator.state().revision,
        plan = self.coordinator.state().plan.as_ref().map(|p| p.id.as_str()),
    ))]
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
                    // Answered only once stored (also a repeated report of a
                    // move whose first report could not be stored).
                    Ok(report) => match self.persist(true).await {
                        Persisted::NotStored(reason) => Err(CommandError::Store(reason)),
                        Persisted::Stored => Ok(MoveDoneResponse {
                            move_: move_view(&report.done),
                            remaining: report.remaining,
                            epoch: self.coordinator.shown().epoch,
                            committed: report.committed,
                        }),
                    },
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Stores the working state if it changed. `immediately`: even while a failed
    /// save waits for its retry (a shard waits for the answer). The span
    /// names the position being saved.
    #[instrument(level = "info", name = "save", skip_all, fields(epoch, revision, plan))]
    async fn persist(&mut self, immediately: bool) -> Persisted {
        self.coordinator
            .stamp_plan(&mut self.plan_clock, unix_ms(SystemTime::now()));
        let Some(save) = self.coordinator.to_save() else {
            return Persisted::Stored;
        };
        let span = Span::current();
        span.record("epoch", save.state.epoch);
        span.record("revision", save.state.revision);
        if let Some(plan) = &save.state.plan {
            span.record("plan", plan.id.as_str());
        }
        if !immediately && self.retry_save_at.is_some_and(|at| Instant::now() < at) {
            return Persisted::NotStored("waiting to retry a failed save".into());
        }
        if !self.may_write() {
            // Never write without the lead, not even the last save.
            return Persisted::NotStored(StoreError::NotLeading.to_string());
        }
        // A new committed ring is shown once stored: its figures are
        // computed here while the store writes it (on the blocking pool),
        // not after, on the way to showing it (3-5 ms at 1,000 × 256).
        let shown = self.coordinator.shown();
        let new_ring = save.state.epoch != shown.epoch || save.state.settings != shown.settings;
        let figures = async {
            new_ring
                .then(|| FiguresAhead::of(&save.state.committed, save.state.settings.replication()))
        };
        let (saved, ahead) = tokio::join!(self.store.save(&save.state), figures);
        if let Some(ahead) = ahead {
            self.outlets.figures_ahead = Some(ahead);
        }
        match saved {
            Ok(()) => {
                if self.save_failures > 0 {
                    info!("the state is stored again");
                }
                self.save_failures = 0;
                self.retry_save_at = None;
                self.coordinator.saved(save);
                Persisted::Stored
            }
            Err(StoreError::Conflict {
                location,
                stored,
                ours,
            }) => {
                self.outlets.metrics.state_write_errors.inc();
                let error = StoreError::Conflict {
                    location,
                    stored: stored.clone(),
                    ours,
                };
                if self.may_write() {
                    self.step(|c| c.adopt(*stored, now()));
                    self.plan_clock = PlanClock::new(self.coordinator.state());
                }
                Persisted::NotStored(error.to_string())
            }
            Err(e) => {
                self.outlets.metrics.state_write_errors.inc();
                self.save_failures = self.save_failures.saturating_add(1);
                let delay = Duration::from_secs(1)
                    .saturating_mul(1 << (self.save_failures - 1).min(5))
                    .min(SAVE_BACKOFF_MAX);
                error!(error = %e, retry_in = ?delay, "could not save the state; the last stored state stays shown");
                self.coordinator.save_failed(e.to_string());
                self.retry_save_at = Some(Instant::now() + delay);
                Persisted::NotStored(e.to_string())
            }
        }
    }

    fn publish(&mut self) {
        let leader = self.lead.as_ref().and_then(Lead::leader);
        self.outlets
            .publish(&self.coordinator, &self.source_status, true, leader, false);
    }
}

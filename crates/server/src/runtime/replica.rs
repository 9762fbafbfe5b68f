//! Leadership: a replica follows (serving the stored state, refusing
//! writes) until it leads, leads (a [`Driver`]) until it loses the lead, and
//! so on until shutdown.
//!
//! A follower serves the stored state: it watches the store (a ConfigMap:
//! one list, then a watch on that one object, so a new epoch shows within
//! moments and costs no reads), and reads it whole every `resync` as a
//! safety net against a watch that is wedged or missed an event. The leader
//! loads the latest stored state, opens the membership source and
//! runs a [`Driver`], which stops planning and writing the moment the lead
//! ends (its deadline passes, or the elector says so). A replica that stops
//! leading goes on showing the last state it stored — never the older one it
//! read before it led — until its next read.

use super::{Command, CommandError, Driver, Ended, Outlets, adopt_state};
use crate::coordinator::Coordinator;
use crate::lease::Leadership;
use crate::settings::{RingSettings, Timing};
use crate::state::{Refreshed, State, Store};
use crate::view::SourceStatus;
use anyhow::Context as _;
use futures::StreamExt as _;
use ringleader_watch::MembershipStream;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// How soon a replica that took the lead but could not read the state
/// tries again.
const RETRY: Duration = Duration::from_secs(1);

/// Leader election as the driver sees it.
#[derive(Clone, Debug)]
pub struct Lead {
    /// Who leads.
    pub leadership: watch::Receiver<Leadership>,
    /// This instance's identity.
    pub identity: String,
}

impl Lead {
    pub(super) fn leading(&self) -> bool {
        self.leadership.borrow().is_leading()
    }

    pub(super) fn leader(&self) -> Option<String> {
        self.leadership.borrow().leader(&self.identity)
    }
}

/// Why [`Replica::follow`] returned.
enum Followed {
    /// This replica leads now.
    Leading,
    /// Shutdown was asked for.
    Shutdown,
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
    /// How often a follower reads the whole state store besides watching
    /// it (a safety net: the watch brings changes).
    pub resync: Duration,
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
            state: ringleader_client::api::SourceState::Standby,
            detail: Some("the membership source runs on the leader only".into()),
            ever_synced: false,
            warning: None,
        };
        // What a follower serves: the last state read (or stored).
        let mut last_read = State::fresh(self.settings).context("creating a fresh state")?;
        let mut loaded = false;
        loop {
            match self
                .follow(
                    &mut outlets,
                    &mut last_read,
                    &mut loaded,
                    &standby,
                    shutdown.clone(),
                )
                .await
            {
                Followed::Shutdown => return Ok(()),
                Followed::Leading => {}
            }
            // Lead: the latest state, then the source.
            let state = match self.store.load().await {
                Ok(loaded) => adopt_state(loaded, &self.store, self.settings, self.reconfigure)?,
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, "took the lead but could not read the state; will try again");
                    tokio::time::sleep(RETRY).await;
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
                self.store.clone(),
                source,
                outlets,
                Some(self.lead.clone()),
            );
            let (ended, back, shown) = driver.run_until(shutdown.clone()).await;
            outlets = back;
            if ended == Ended::Shutdown {
                return Ok(());
            }
            // Serve what this replica stored last until the next read.
            last_read = (*shown).clone();
            loaded = true;
        }
    }

    /// Serves the stored state — watched, and read whole every `resync` —
    /// until this replica leads or shuts down.
    async fn follow(
        &mut self,
        outlets: &mut Outlets,
        last_read: &mut State,
        loaded: &mut bool,
        standby: &SourceStatus,
        mut shutdown: watch::Receiver<bool>,
    ) -> Followed {
        let mut leadership = self.lead.leadership.clone();
        // The first read is a full one: after leading, the store's
        // resourceVersion is our own last write, which may be newer than
        // what was shown.
        let mut next_read = tokio::time::Instant::now();
        let mut changes = self.store.watch();
        let mut watch_failing = false;
        let mut shown = Coordinator::new(last_read.clone(), self.settings, self.timing);
        loop {
            if self.lead.leading() {
                return Followed::Leading;
            }
            outlets.heartbeat.beat();
            outlets.publish(&shown, standby, *loaded, self.lead.leader(), true);
            let change = async {
                match changes.as_mut() {
                    Some(changes) => changes.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Followed::Shutdown;
                    }
                }
                changed = leadership.changed() => {
                    if changed.is_err() {
                        // The elector is gone: nobody will make us lead.
                        let _ = shutdown.changed().await;
                        return Followed::Shutdown;
                    }
                }
                Some(command) = outlets.commands.recv() => match command {
                    Command::MoveDone { reply, .. } => {
                        let _ = reply.send(Err(CommandError::NotLeader { leader: self.lead.leader() }));
                    }
                },
                Some(change) = change => match change {
                    Ok(change) => {
                        if watch_failing {
                            info!("following: the state watch works again");
                            watch_failing = false;
                        }
                        // A full read may have shown a newer state than an
                        // event the watch delivers late: never step back.
                        let newer = |s: &State| s.position() > shown.state().position();
                        match change {
                            Refreshed::Changed(Some(state)) if newer(&state) => {
                                debug!(epoch = state.epoch, revision = state.revision, "watched a new stored state");
                                self.show(*state, last_read, &mut shown, loaded);
                            }
                            _ => *loaded = true,
                        }
                    }
                    // Once per streak: the watcher retries with backoff, and
                    // would otherwise log every attempt.
                    Err(e) if watch_failing => debug!(error = %e, "following: the state watch still fails"),
                    Err(e) => {
                        warn!(error = %e, resync = ?self.resync, "following: the state watch failed; serving the last state read, which is read whole every resync until the watch works again");
                        watch_failing = true;
                    }
                },
                () = tokio::time::sleep_until(next_read) => {
                    next_read = tokio::time::Instant::now() + self.resync;
                    match self.store.load().await {
                        Ok(stored) => {
                            let state = match stored {
                                Some(s) => s,
                                None => match State::fresh(self.settings) {
                                    Ok(s) => s,
                                    Err(e) => {
                                        error!(error = %e, "cannot make an empty state");
                                        continue;
                                    }
                                },
                            };
                            debug!(epoch = state.epoch, revision = state.revision, "read the stored state");
                            self.show(state, last_read, &mut shown, loaded);
                        }
                        Err(e) => warn!(error = %e, "following: could not read the state; serving the last one read"),
                    }
                }
                // A turn at least every second, so /healthz sees the loop.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Makes `state` what the follower serves.
    fn show(
        &self,
        state: State,
        last_read: &mut State,
        shown: &mut Coordinator,
        loaded: &mut bool,
    ) {
        *last_read = state.clone();
        *shown = Coordinator::new(state, self.settings, self.timing);
        *loaded = true;
    }
}

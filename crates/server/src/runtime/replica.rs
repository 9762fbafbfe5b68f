//! Leadership: a replica follows (serving the stored state, refusing
//! writes) until it leads, leads (a [`Driver`]) until it loses the lead, and
//! so on until shutdown.
//!
//! A follower serves the state it reads from the store every `poll`. The
//! leader loads the latest stored state, opens the membership source and
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
use ringleader_watch::MembershipStream;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

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
            state: ringleader_client::api::SourceState::Standby,
            detail: Some("the membership source runs on the leader only".into()),
            ever_synced: false,
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

    /// Serves the stored state, read every `poll`, until this replica leads
    /// or shuts down.
    async fn follow(
        &mut self,
        outlets: &mut Outlets,
        last_read: &mut State,
        loaded: &mut bool,
        standby: &SourceStatus,
        mut shutdown: watch::Receiver<bool>,
    ) -> Followed {
        let mut leadership = self.lead.leadership.clone();
        let mut next_read = tokio::time::Instant::now();
        // The first read is a full one: after leading, the store's
        // resourceVersion is our own last write, which may be newer than
        // what was shown.
        let mut full_read = true;
        let mut shown = Coordinator::new(last_read.clone(), self.settings, self.timing);
        loop {
            if self.lead.leading() {
                return Followed::Leading;
            }
            outlets.heartbeat.beat();
            outlets.publish(&shown, standby, *loaded, self.lead.leader(), true);
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
                            *last_read = state.clone();
                            shown = Coordinator::new(state, self.settings, self.timing);
                            *loaded = true;
                            full_read = false;
                        }
                        Err(e) => warn!(error = %e, "following: could not read the state; serving the last one read"),
                    }
                }
                // A turn at least every second, so /healthz sees the loop.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

//! A local copy of the coordinator's ring, for lookups without a round trip,
//! and the loop that keeps it in sync.
//!
//! [`LocalRing`] is one epoch of the ring, rebuilt from
//! `GET /v1/ring?tokens=true` with [`ringleader_ring::Ring::from_assignments`],
//! so a local lookup answers exactly what the coordinator's `GET /v1/lookup`
//! would for that epoch. [`LocalRing::sync`] fetches it, then follows
//! `GET /v1/watch` and fetches again whenever an event names another epoch;
//! readers take the current ring from a [`SyncedRing`] at any time.

use crate::api::{MemberState, RingResponse, SettingsView};
use crate::client::Client;
use crate::error::{Error, Result};
use futures::StreamExt;
use ringleader_ring::{MemberId, MemberSpec, Replication, Ring, RingConfig, Token, TokenRange};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One epoch of the coordinator's ring, ready for lookups.
#[derive(Clone, Debug)]
pub struct LocalRing {
    epoch: u64,
    ring: Ring,
    replication: Replication,
    settings: SettingsView,
    states: Vec<(MemberId, MemberState)>,
}

impl LocalRing {
    /// Builds the ring a `GET /v1/ring?tokens=true` answer describes.
    ///
    /// Members listed without tokens (joining ones) are not part of it.
    pub fn from_response(response: &RingResponse) -> Result<Self> {
        let epoch = response.epoch;
        let bad = |reason: String| Error::BadRing { epoch, reason };
        let settings = &response.settings;
        let strategy = settings.strategy.parse().map_err(bad)?;
        let config = RingConfig::new(strategy, settings.tokens_per_member);
        let assignments: Vec<(Token, MemberId)> = match (&response.tokens, &response.compact_tokens)
        {
            (Some(tokens), _) => tokens
                .iter()
                .map(|t| {
                    let token: Token = t.token.parse().map_err(|_| {
                        bad(format!(
                            "token {:?} of member {:?} is not a decimal u64",
                            t.token, t.member
                        ))
                    })?;
                    Ok((token, MemberId::new(t.member.as_str())))
                })
                .collect::<Result<Vec<_>>>()?,
            (None, Some(compact)) => {
                let mut all = Vec::new();
                for set in compact {
                    let tokens = set.decode().ok_or_else(|| {
                        bad(format!(
                            "the tokens of member {:?} are not base64 of little-endian u64s",
                            set.member
                        ))
                    })?;
                    let id = MemberId::new(set.member.as_str());
                    all.extend(tokens.into_iter().map(|t| (t, id.clone())));
                }
                all
            }
            (None, None) => {
                return Err(bad(
                        "the answer lists no tokens (was it asked with ?tokens=compact or ?tokens=true?)"
                            .into(),
                    ));
            }
        };
        let holders: BTreeSet<String> = assignments
            .iter()
            .map(|(_, m)| m.as_str().to_owned())
            .collect();
        let members = response
            .members
            .iter()
            .filter(|m| holders.contains(m.id.as_str()))
            .map(|m| MemberSpec {
                id: MemberId::new(m.id.as_str()),
                zone: m.zone.clone(),
                weight: m.weight,
            });
        let ring = Ring::from_assignments(config, members, assignments)
            .map_err(|source| Error::Ring { epoch, source })?;
        Ok(Self {
            epoch,
            ring,
            replication: Replication::new(settings.rf, settings.zone_aware),
            settings: settings.clone(),
            states: response
                .members
                .iter()
                .map(|m| (MemberId::new(m.id.as_str()), m.state))
                .collect(),
        })
    }

    /// Fetches the ring once.
    pub async fn fetch(client: &Client) -> Result<Self> {
        Self::from_response(&client.ring_with(crate::client::TokenForm::Compact).await?)
    }

    /// The committed epoch this ring is.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The ring itself, for everything else it can answer.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The settings the coordinator runs with.
    pub fn settings(&self) -> &SettingsView {
        &self.settings
    }

    /// The replication the settings ask for (rf, zone awareness).
    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// A member's state as the coordinator saw it at this epoch, including
    /// members that are joining and not in the ring yet.
    pub fn state_of(&self, member: &str) -> Option<MemberState> {
        self.states
            .iter()
            .find(|(id, _)| id.as_str() == member)
            .map(|(_, state)| *state)
    }

    /// The member owning `key` (hashed with xxh3-64, as the coordinator does).
    pub fn owner(&self, key: impl AsRef<[u8]>) -> Result<&MemberId> {
        Ok(self.ring.owner(key.as_ref())?)
    }

    /// The replicas of `key`, owner first, with the configured replication.
    /// Fails when the ring has fewer members than the replication factor.
    pub fn replicas(&self, key: impl AsRef<[u8]>) -> Result<Vec<&MemberId>> {
        Ok(self.ring.replicas(key.as_ref(), &self.replication)?)
    }

    /// The ranges `member` owns as primary, adjacent ranges merged.
    pub fn ranges_of(&self, member: &str) -> Result<Vec<TokenRange>> {
        Ok(self.ring.ranges_of(member)?)
    }

    /// Follows the coordinator: fetches the ring, then keeps it current in a
    /// background tokio task.
    ///
    /// The task follows `GET /v1/watch` and fetches the ring again whenever
    /// an event names an epoch other than the current one. When the stream
    /// breaks, closes or stays silent past `options.idle_timeout`, it waits
    /// (exponential backoff with jitter, bounded by `options`), fetches the
    /// ring (a cheap 304 when nothing changed) and reconnects with
    /// `Last-Event-ID` set to the last event seen. After `max_retries`
    /// failures in a row it stops ([`SyncState::Stopped`]) and the last ring
    /// stays readable. Dropping the [`SyncedRing`] stops the task.
    ///
    /// Returns once the first ring is in hand; fails if it cannot be fetched
    /// within the retries `options` allow.
    pub async fn sync(client: Client, options: SyncOptions) -> Result<SyncedRing> {
        let mut backoff = Backoff::new(&options);
        let first = loop {
            match LocalRing::fetch(&client).await {
                Ok(ring) => break ring,
                Err(error) => match backoff.next_delay() {
                    Some(delay) => {
                        tracing::info!(%error, ?delay, "fetching the ring failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(error),
                },
            }
        };
        let (ring_tx, ring_rx) = watch::channel(Arc::new(first));
        let (state_tx, state_rx) = watch::channel(SyncState::Connecting);
        let follower = Follower {
            client,
            options,
            ring: ring_tx,
            state: state_tx,
            last_event_id: None,
        };
        let task = tokio::spawn(follower.run());
        Ok(SyncedRing {
            handle: RingHandle { ring: ring_rx },
            state: state_rx,
            task,
        })
    }
}

/// How [`LocalRing::sync`] retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOptions {
    /// First delay after a failure; doubled after each failure in a row.
    pub backoff_min: Duration,
    /// The most the delay grows to.
    pub backoff_max: Duration,
    /// Failures in a row after which syncing gives up; `None`: never.
    pub max_retries: Option<u32>,
    /// Reconnect when the watch stream is silent this long (a connection
    /// that died without a reset); `None`: wait forever.
    pub idle_timeout: Option<Duration>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            max_retries: None,
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }
}

/// What the sync loop is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Opening the watch stream (at start and after each reconnect).
    Connecting,
    /// Following the watch stream: the ring is current.
    Following,
    /// The stream broke or closed; waiting before reconnecting.
    Reconnecting {
        /// Failures in a row so far.
        attempt: u32,
        /// What went wrong last.
        last_error: String,
    },
    /// Gave up after `max_retries` failures in a row, or the handle was
    /// dropped; the ring stays as it was last seen.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// A cheap, clonable reader of the ring kept by [`LocalRing::sync`].
#[derive(Clone, Debug)]
pub struct RingHandle {
    ring: watch::Receiver<Arc<LocalRing>>,
}

impl RingHandle {
    /// The current ring. Holding the `Arc` pins that epoch; ask again to see
    /// a newer one.
    pub fn current(&self) -> Arc<LocalRing> {
        self.ring.borrow().clone()
    }

    /// Waits until the ring changes (returns at once if it changed since
    /// this handle last looked); `None` once the sync loop has ended.
    pub async fn changed(&mut self) -> Option<Arc<LocalRing>> {
        self.ring.changed().await.ok()?;
        Some(self.ring.borrow_and_update().clone())
    }
}

/// The ring kept in sync by [`LocalRing::sync`]; dropping it stops the loop.
#[derive(Debug)]
pub struct SyncedRing {
    handle: RingHandle,
    state: watch::Receiver<SyncState>,
    task: JoinHandle<()>,
}

impl SyncedRing {
    /// The current ring.
    pub fn current(&self) -> Arc<LocalRing> {
        self.handle.current()
    }

    /// A reader to hand to other tasks.
    pub fn handle(&self) -> RingHandle {
        self.handle.clone()
    }

    /// What the sync loop is doing now.
    pub fn state(&self) -> SyncState {
        self.state.borrow().clone()
    }

    /// A receiver of the sync loop's states, to wait on changes.
    pub fn states(&self) -> watch::Receiver<SyncState> {
        self.state.clone()
    }
}

impl Drop for SyncedRing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The background loop of [`LocalRing::sync`].
struct Follower {
    client: Client,
    options: SyncOptions,
    ring: watch::Sender<Arc<LocalRing>>,
    state: watch::Sender<SyncState>,
    /// Where to resume the watch stream.
    last_event_id: Option<String>,
}

/// Why one pass over the watch stream ended.
enum StreamEnd {
    /// The server closed the stream.
    Closed,
    /// Nothing came for the idle timeout.
    Idle(Duration),
    /// Connecting, reading or fetching failed.
    Failed(Error),
}

impl StreamEnd {
    fn describe(&self) -> String {
        match self {
            StreamEnd::Closed => "the coordinator closed the watch stream".into(),
            StreamEnd::Idle(after) => format!("the watch stream was silent for {after:?}"),
            StreamEnd::Failed(error) => error.to_string(),
        }
    }
}

impl Follower {
    async fn run(mut self) {
        let mut backoff = Backoff::new(&self.options);
        let mut reconnect = false;
        loop {
            self.state.send_replace(SyncState::Connecting);
            let end = self.follow(reconnect, &mut backoff).await;
            reconnect = true;
            let last_error = end.describe();
            let Some(delay) = backoff.next_delay() else {
                tracing::warn!(error = %last_error, "giving up following the coordinator");
                self.state
                    .send_replace(SyncState::Stopped { reason: last_error });
                return;
            };
            tracing::info!(error = %last_error, ?delay, "watch stream ended; reconnecting");
            self.state.send_replace(SyncState::Reconnecting {
                attempt: backoff.failures,
                last_error,
            });
            tokio::time::sleep(delay).await;
            if self.ring.is_closed() {
                self.state.send_replace(SyncState::Stopped {
                    reason: "every ring handle was dropped".into(),
                });
                return;
            }
        }
    }

    /// One connection to the watch stream, until it ends.
    async fn follow(&mut self, reconnect: bool, backoff: &mut Backoff) -> StreamEnd {
        if reconnect {
            // Changes may have been missed while disconnected; with the ETag
            // this costs a 304 when nothing changed.
            if let Err(error) = self.refresh(None).await {
                return StreamEnd::Failed(error);
            }
        }
        let events = self.client.watch_activity(self.last_event_id.as_deref());
        futures::pin_mut!(events);
        loop {
            let next = match self.options.idle_timeout {
                Some(limit) => match tokio::time::timeout(limit, events.next()).await {
                    Ok(next) => next,
                    Err(_) => return StreamEnd::Idle(limit),
                },
                None => events.next().await,
            };
            let (id, event) = match next {
                None => return StreamEnd::Closed,
                Some(Err(error)) => return StreamEnd::Failed(error),
                Some(Ok(None)) => continue, // A keep-alive: the idle clock restarts.
                Some(Ok(Some(item))) => item,
            };
            self.state.send_if_modified(|state| {
                let changed = *state != SyncState::Following;
                *state = SyncState::Following;
                changed
            });
            backoff.reset();
            tracing::debug!(id = %id, kind = %event.kind, epoch = event.epoch, "watch event");
            if !id.is_empty() {
                self.last_event_id = Some(id);
            }
            if let Err(error) = self.refresh(Some(event.epoch)).await {
                return StreamEnd::Failed(error);
            }
        }
    }

    /// Fetches the ring if `epoch` differs from the current one (always when
    /// `None`), and publishes it if its epoch is newer. A ring older than
    /// the one held (a coordinator that lost what it showed, a follower
    /// behind its leader) is refused: shards may already have cleaned up
    /// what it would send them back to.
    async fn refresh(&mut self, epoch: Option<u64>) -> Result<()> {
        let current = self.ring.borrow().epoch;
        if epoch == Some(current) {
            return Ok(());
        }
        let ring = LocalRing::fetch(&self.client).await?;
        if !accepts(current, ring.epoch) {
            if ring.epoch < current {
                tracing::warn!(
                    held = current,
                    offered = ring.epoch,
                    "the coordinator offered an older epoch than the one held; keeping the newer ring"
                );
            }
            return Ok(());
        }
        tracing::info!(from = current, to = ring.epoch, "ring epoch changed");
        self.ring.send_replace(Arc::new(ring));
        Ok(())
    }
}

/// Whether a ring of epoch `offered` replaces one of epoch `held`: only a
/// newer one; epochs never go backwards in what a shard sees.
fn accepts(held: u64, offered: u64) -> bool {
    offered > held
}

/// Exponential backoff with jitter, bounded by [`SyncOptions`].
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    max_retries: Option<u32>,
    failures: u32,
}

impl Backoff {
    fn new(options: &SyncOptions) -> Self {
        Self::between(
            options.backoff_min,
            options.backoff_max,
            options.max_retries,
        )
    }

    /// Delays from `min` doubling up to `max`; `None` after `max_retries`
    /// failures in a row, if given.
    pub(crate) fn between(min: Duration, max: Duration, max_retries: Option<u32>) -> Self {
        Self {
            min,
            max: max.max(min),
            max_retries,
            failures: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts a failure; the delay before the next attempt, or `None` when
    /// the retries are used up.
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self.max_retries.is_some_and(|max| self.failures > max) {
            return None;
        }
        let exponent = (self.failures - 1).min(20);
        let full = self.min.saturating_mul(1 << exponent).min(self.max);
        // Jitter in [full/2, full], so that many shards do not reconnect in
        // step when the coordinator restarts.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let half = full / 2;
        let jitter = half.mul_f64((random % 1024) as f64 / 1023.0);
        Some(half + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the sync loop replaced its ring with any other epoch, so
    /// a coordinator that came back from a crash with an older epoch (or a
    /// follower behind its leader) sent shards back in time.
    #[test]
    fn an_epoch_going_backwards_is_refused() {
        assert!(accepts(4, 5));
        assert!(!accepts(5, 5));
        assert!(
            !accepts(5, 4),
            "an older epoch must not replace a newer one"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_bound_and_gives_up_after_max_retries() {
        let options = SyncOptions {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            max_retries: Some(4),
            idle_timeout: None,
        };
        let mut backoff = Backoff::new(&options);
        let bounds = [(50, 100), (100, 200), (175, 350), (175, 350)];
        for (low, high) in bounds {
            let delay = backoff.next_delay().expect("within max_retries");
            assert!(
                delay >= Duration::from_millis(low) && delay <= Duration::from_millis(high),
                "{delay:?} not in [{low}, {high}] ms"
            );
        }
        assert_eq!(backoff.next_delay(), None);
        backoff.reset();
        assert!(backoff.next_delay().unwrap() <= Duration::from_millis(100));
    }
}

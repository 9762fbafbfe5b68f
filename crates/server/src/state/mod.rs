//! The coordinator's durable state and where it is kept.
//!
//! What must survive a restart: the committed placement and its epoch, the
//! in-flight plan with every move's state, and the settings it was all made
//! with. A restart must not change any ownership, so the ring itself (whose
//! `balanced` tokens depend on history) is stored, not recomputed.
//!
//! Two stores, behind one [`Store`]:
//!
//! - [`FileStore`] (`--state file:PATH`): one file, written atomically;
//! - [`ConfigMapStore`] (`--state configmap:NAME`): the same bytes,
//!   gzip-compressed, in a ConfigMap's `binaryData` (or, when larger than a
//!   ConfigMap holds, in parts named by it), written with optimistic
//!   concurrency on `resourceVersion`, so several replicas (one leader,
//!   followers reading) can share it and a stale writer never overwrites a
//!   newer state.
//!
//! Both keep the compact format of [`codec`] (format 2; format 1, the JSON
//! of earlier builds, is still read).
//!
//! A state that cannot be read is refused with a message saying what to do,
//! and never overwritten.

mod codec;
mod configmap;
mod file;

pub use configmap::{
    CALL_TIMEOUT, CONFIGMAP_LIMIT, ConfigMapStore, MAX_PARTS, PART_BYTES, PARTS_KEY, POOL,
    Resolution, STATE_KEY, part_names, resolve_conflict,
};
pub use file::FileStore;

use crate::settings::RingSettings;
use ringleader_planner::{Cleanup, Lineage, Move, Plan, Summary};
use ringleader_ring::{Ring, RingSnapshot};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The state format this build writes ([`codec`]).
pub const STATE_FORMAT: u32 = codec::BINARY_FORMAT;

/// The JSON format of earlier builds, still read (never written).
pub const JSON_FORMAT: u32 = 1;

/// Whether a plan is running or done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Moves are being carried out (ack mode).
    InProgress,
    /// The target is the committed placement; kept for reading (auto mode).
    Committed,
    /// The members went back to the committed set mid-plan: nothing more
    /// moves and no epoch is made. Kept, with its moves listed (cancelled or
    /// done) and the cleanups of what the done ones copied, until the next
    /// plan replaces it.
    Cancelled,
}

impl PlanState {
    /// Name as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanState::InProgress => "in_progress",
            PlanState::Committed => "committed",
            PlanState::Cancelled => "cancelled",
        }
    }
}

/// A plan with what it leads to.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRecord {
    /// Stable id (derived from the epoch and the target ring).
    pub id: String,
    /// Epoch it starts from.
    pub from_epoch: u64,
    /// Epoch it commits as.
    pub to_epoch: u64,
    /// Running or done.
    pub state: PlanState,
    /// The target ring.
    pub target: Ring,
    /// The settings the target is made with (they differ from the
    /// committed ones only during a `--reconfigure`).
    pub settings: RingSettings,
    /// Moves, cleanups, summary.
    pub plan: Plan,
    /// When it was made and last changed (wall clock, for operators).
    pub times: PlanTimes,
}

/// Wall-clock times of a plan, in milliseconds since the Unix epoch. The
/// coordinator's core reads no clock: the runtime stamps them
/// ([`crate::plan_times::PlanClock`]) before the change they date is saved.
/// `None` for plans stored by builds that did not stamp them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanTimes {
    /// When the plan from its `from_epoch` was first made (kept across
    /// replans).
    pub created_ms: Option<u64>,
    /// When it last changed (made, revised, a move done, committed).
    pub changed_ms: Option<u64>,
}

/// Everything persisted.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// Settings the state was made with.
    pub settings: RingSettings,
    /// Committed epoch (0: nothing committed yet).
    pub epoch: u64,
    /// Counts plan changes within the epoch (for watch event ids).
    pub revision: u64,
    /// The committed ring.
    pub committed: Ring,
    /// The current plan.
    pub plan: Option<PlanRecord>,
    /// The done moves of the last plan committed in ack mode, kept until
    /// the next commit so that a shard repeating its report (its answer was
    /// lost, the coordinator restarted, the lead moved) is answered as the
    /// first time, not 409 (DESIGN §5: acks are idempotent, also after the
    /// commit). No larger than the plan the state held just before.
    pub last_committed: Vec<Move>,
    /// The lineage of the newest plan made on this state (the plan in
    /// flight, or the cancelled or committed one kept for reading): a
    /// revision keeps it, a plan made after a cancel or a commit takes the
    /// next ([`Lineage`]), so its move ids are new ones. `Lineage(0)` in
    /// states of builds before lineages (and before the first plan).
    pub lineage: Lineage,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredPlan {
    id: String,
    from_epoch: u64,
    to_epoch: u64,
    state: PlanState,
    target: RingSnapshot,
    settings: RingSettings,
    moves: Vec<Move>,
    cleanups: Vec<Cleanup>,
    summary: Summary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    changed_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredState {
    #[serde(rename = "format")]
    _format: u32,
    settings: RingSettings,
    epoch: u64,
    revision: u64,
    committed: RingSnapshot,
    plan: Option<StoredPlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    last_committed: Vec<Move>,
}

/// Why a state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O on the state file.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the state file's lock.
    #[error(
        "another ringleader holds {path}; only one process may use a state file at a time. Stop \
         the other one (or give this one another --state file:PATH)"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The state is not readable by this build.
    #[error(
        "the state in {location} cannot be used: {reason}. ringleader will not overwrite it. \
         Restore a good copy, or move it aside to start from an empty ring (ownership is then \
         computed afresh and data may have to move)"
    )]
    Corrupt {
        /// Where the state is.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// Serializing failed (should not happen).
    #[error("encoding the state: {0}")]
    Encode(String),
    /// The state does not fit in the store (a ConfigMap holds at most 1 MiB;
    /// the ConfigMap store spreads a state over at most 8).
    #[error(
        "the state does not fit in {location}: {size} bytes compressed ({uncompressed} bytes \
         encoded, {members} members and {tokens} tokens over the committed ring and the plan's \
         target) against a limit of {limit} bytes. Use fewer --tokens-per-member, or keep the \
         state in a file on a volume (--state file:PATH)"
    )]
    TooLarge {
        /// Where the state was to go.
        location: String,
        /// Bytes it would take (compressed, with the ConfigMap's keys).
        size: usize,
        /// Bytes before compression.
        uncompressed: usize,
        /// The store's limit.
        limit: usize,
        /// Members of the committed ring plus those of the plan's target.
        members: usize,
        /// Tokens of the committed ring plus those of the plan's target.
        tokens: usize,
    },
    /// Someone else wrote the store since this coordinator last read or
    /// wrote it (a conflict on resourceVersion). Their state is never
    /// overwritten — positions of two diverged histories cannot be compared —
    /// the caller re-checks its leadership and takes the stored state over.
    #[error(
        "{location} was written by another coordinator (it holds epoch {} revision {}; this one had \
         epoch {} revision {}): the stored state is not overwritten; this coordinator takes it over",
        stored.epoch, stored.revision, ours.0, ours.1
    )]
    Conflict {
        /// Where the state is.
        location: String,
        /// The stored state.
        stored: Box<State>,
        /// Our `(epoch, revision)`.
        ours: (u64, u64),
    },
    /// A Kubernetes API call failed.
    #[error("{what} {location}: {source}{hint}")]
    Kube {
        /// What was being done.
        what: &'static str,
        /// The ConfigMap.
        location: String,
        /// Advice, if there is any (starts with "; ").
        hint: &'static str,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The watch on the store failed; the watcher retries it with backoff
    /// (and re-lists after a 410).
    #[error("watching {location}: {source}{hint}")]
    Watch {
        /// Where the state is.
        location: String,
        /// Advice, if there is any (starts with "; ").
        hint: &'static str,
        /// The cause.
        #[source]
        source: kube::runtime::watcher::Error,
    },
    /// A call to the store did not answer in time.
    #[error("{what} {location}: no answer within {after:?}; will retry")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// Where the state is.
        location: String,
        /// The time limit.
        after: std::time::Duration,
    },
    /// Leader election is on and this instance does not lead (any more):
    /// it writes nothing.
    #[error("this coordinator does not lead (any more); nothing was written")]
    NotLeading,
    /// Other writers kept changing the state between our read and our
    /// write.
    #[error(
        "{location} kept changing under this coordinator ({attempts} conflicts in a row); will retry"
    )]
    Contended {
        /// Where the state is.
        location: String,
        /// Conflicts seen.
        attempts: usize,
    },
}

impl StoreError {
    /// Whether retrying the same call can succeed by itself. A state too
    /// large for the store, or one that cannot be read, stays so until the
    /// state or the store changes (saves are retried anyway, more slowly).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Io { .. }
                | StoreError::Kube { .. }
                | StoreError::Watch { .. }
                | StoreError::Contended { .. }
                | StoreError::Timeout { .. }
        )
    }
}

/// Where the state is kept: a file or a ConfigMap.
#[derive(Clone, Debug)]
pub enum Store {
    /// `--state file:PATH`.
    File(FileStore),
    /// `--state configmap:NAME`.
    ConfigMap(Box<ConfigMapStore>),
}

impl From<FileStore> for Store {
    fn from(store: FileStore) -> Self {
        Store::File(store)
    }
}

impl From<ConfigMapStore> for Store {
    fn from(store: ConfigMapStore) -> Self {
        Store::ConfigMap(Box::new(store))
    }
}

/// What a [`Store::watch`] saw.
#[derive(Debug)]
pub enum Refreshed {
    /// The ConfigMap again, unchanged (a re-list).
    Unchanged,
    /// The stored state now (`None`: there is none yet).
    Changed(Option<Box<State>>),
}

impl Store {
    /// Names the store in logs and errors (`file /var/lib/x.json`,
    /// `configmap prod/ringleader-state`).
    pub fn location(&self) -> String {
        match self {
            Store::File(f) => format!("file {}", f.path().display()),
            Store::ConfigMap(c) => c.location(),
        }
    }

    /// Reads the state; `None` when there is none yet.
    pub async fn load(&self) -> Result<Option<State>, StoreError> {
        match self {
            Store::File(f) => {
                let f = f.clone();
                let path = f.path().to_path_buf();
                bounded_blocking("reading", path, move || f.load()).await
            }
            Store::ConfigMap(c) => c.load().await,
        }
    }

    /// The stored state as it changes, when the store can be watched (a
    /// ConfigMap; see [`ConfigMapStore::watch`]); `None` for a file.
    pub fn watch(
        &self,
    ) -> Option<futures::stream::BoxStream<'static, Result<Refreshed, StoreError>>> {
        match self {
            Store::File(_) => None,
            Store::ConfigMap(c) => Some(c.watch()),
        }
    }

    /// Writes the state (a file atomically; a ConfigMap with optimistic
    /// concurrency, never over a newer state).
    pub async fn save(&self, state: &State) -> Result<(), StoreError> {
        match self {
            Store::File(f) => {
                let (f, state) = (f.clone(), state.clone());
                let path = f.path().to_path_buf();
                bounded_blocking("writing", path, move || f.save(&state)).await
            }
            Store::ConfigMap(c) => c.save(state).await,
        }
    }
}

/// Runs a file operation on the blocking pool within [`CALL_TIMEOUT`]: a
/// hung disk fails the call (and the coordinator retries) instead of
/// stalling the coordinator.
async fn bounded_blocking<T: Send + 'static>(
    what: &'static str,
    path: PathBuf,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(StoreError::Encode(format!("the file task failed: {e}"))),
        Err(_) => Err(StoreError::Timeout {
            what,
            location: format!("file {}", path.display()),
            after: CALL_TIMEOUT,
        }),
    }
}

impl State {
    /// `(epoch, revision)`: grows with every change that is persisted, so
    /// of two states the one with the larger pair is the newer.
    pub fn position(&self) -> (u64, u64) {
        (self.epoch, self.revision)
    }

    /// The plan in flight, if one is (not a committed or cancelled one kept
    /// for reading).
    pub fn in_flight(&self) -> Option<&PlanRecord> {
        self.plan
            .as_ref()
            .filter(|p| p.state == PlanState::InProgress)
    }

    /// Members and tokens over the committed ring and the plan's target (the
    /// figures that make a state large).
    pub fn size_figures(&self) -> (usize, usize) {
        let target = self.plan.as_ref().map(|p| &p.target);
        let members = self.committed.len() + target.map_or(0, Ring::len);
        let tokens = self.committed.tokens().len() + target.map_or(0, |t| t.tokens().len());
        (members, tokens)
    }

    /// The state of a coordinator that has never committed anything.
    pub fn fresh(settings: RingSettings) -> Result<Self, ringleader_ring::RingError> {
        Ok(Self {
            settings,
            epoch: 0,
            revision: 0,
            committed: Ring::new(settings.ring_config())?,
            plan: None,
            last_committed: Vec::new(),
            lineage: Lineage::UNNUMBERED,
        })
    }

    /// The stored bytes of the state (format 2, [`codec`]).
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        codec::encode(self).map_err(StoreError::Encode)
    }

    /// Reads a state from its stored bytes (format 2, or format 1's JSON
    /// as earlier builds wrote it); `location` names it in errors.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            location: location.to_owned(),
            reason,
        };
        let state = match bytes.strip_prefix(codec::MAGIC) {
            Some(rest) => codec::decode(rest).map_err(corrupt)?,
            None => Self::decode_json(bytes).map_err(corrupt)?,
        };
        state.check().map_err(corrupt)?;
        Ok(state)
    }

    /// What a decoded state must satisfy beyond its rings' invariants.
    fn check(&self) -> Result<(), String> {
        self.settings
            .validate()
            .map_err(|e| format!("its settings are invalid: {e}"))?;
        if let Some(p) = &self.plan {
            p.settings
                .validate()
                .map_err(|e| format!("its plan's settings are invalid: {e}"))?;
        }
        // A next epoch must exist.
        let last_epoch = self
            .plan
            .as_ref()
            .map_or(self.epoch, |p| p.to_epoch.max(self.epoch));
        if last_epoch == u64::MAX {
            return Err("its epoch is at the largest possible value".into());
        }
        if let Some(p) = &self.plan
            && (p.from_epoch != self.epoch && p.state == PlanState::InProgress)
        {
            return Err(format!(
                "its in-flight plan starts from epoch {} but the committed epoch is {}",
                p.from_epoch, self.epoch
            ));
        }
        Ok(())
    }

    /// Format 1's JSON, as earlier builds wrote it (for tests of reading
    /// it). Those builds knew no lineages: the state's is not written.
    #[cfg(test)]
    pub(crate) fn encode_format1(&self) -> Vec<u8> {
        let stored = StoredState {
            _format: JSON_FORMAT,
            settings: self.settings,
            epoch: self.epoch,
            revision: self.revision,
            committed: RingSnapshot::from(&self.committed),
            plan: self.plan.as_ref().map(|p| StoredPlan {
                id: p.id.clone(),
                from_epoch: p.from_epoch,
                to_epoch: p.to_epoch,
                state: p.state,
                target: RingSnapshot::from(&p.target),
                settings: p.settings,
                moves: p.plan.moves.clone(),
                cleanups: p.plan.cleanups.clone(),
                summary: p.plan.summary.clone(),
                created_ms: p.times.created_ms,
                changed_ms: p.times.changed_ms,
            }),
            last_committed: self.last_committed.clone(),
        };
        serde_json::to_vec(&stored).expect("a state serialises")
    }

    /// Format 1: the JSON earlier builds wrote.
    fn decode_json(bytes: &[u8]) -> Result<Self, String> {
        // Check the format first, so a newer file says so rather than
        // failing on a field this build does not know.
        #[derive(Deserialize)]
        struct FormatOnly {
            format: Option<u32>,
        }
        let probe: FormatOnly = serde_json::from_slice(bytes)
            .map_err(|e| format!("it is not a ringleader state ({e})"))?;
        match probe.format {
            Some(JSON_FORMAT) => {}
            Some(other) => {
                return Err(format!(
                    "it was written in format {other}, and this build reads formats \
                     {JSON_FORMAT} and {STATE_FORMAT} (run the ringleader version that wrote it)"
                ));
            }
            None => return Err("it has no \"format\" field".into()),
        }
        let stored: StoredState = serde_json::from_slice(bytes).map_err(|e| format!("{e}"))?;
        let committed = Ring::try_from(stored.committed)
            .map_err(|e| format!("its committed ring is invalid: {e}"))?;
        let plan = match stored.plan {
            None => None,
            Some(p) => Some(PlanRecord {
                id: p.id,
                from_epoch: p.from_epoch,
                to_epoch: p.to_epoch,
                state: p.state,
                target: Ring::try_from(p.target)
                    .map_err(|e| format!("its plan's target ring is invalid: {e}"))?,
                settings: p.settings,
                plan: Plan {
                    moves: p.moves,
                    cleanups: p.cleanups,
                    summary: p.summary,
                },
                times: PlanTimes {
                    created_ms: p.created_ms,
                    changed_ms: p.changed_ms,
                },
            }),
        };
        Ok(State {
            settings: stored.settings,
            epoch: stored.epoch,
            revision: stored.revision,
            committed,
            plan,
            last_committed: stored.last_committed,
            // Written before lineages: its move ids carry none.
            lineage: Lineage::UNNUMBERED,
        })
    }
}

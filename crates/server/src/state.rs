//! The coordinator's durable state and where it is kept.
//!
//! What must survive a restart: the committed placement and its epoch, the
//! in-flight plan with every move's state, and the settings it was all made
//! with. A restart must not change any ownership, so the ring itself (whose
//! `balanced` tokens depend on history) is stored, not recomputed.
//!
//! The file store writes atomically: a temporary file in the same directory,
//! fsync, rename over the old file, fsync the directory. A reader sees the
//! old state or the new one, never half of one. A state that cannot be read
//! is refused with a message saying what to do, and never overwritten.

use crate::settings::RingSettings;
use ringleader_planner::{Cleanup, Move, Plan, Summary};
use ringleader_ring::{Ring, RingSnapshot};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The state format this build writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// Whether a plan is running or done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Moves are being carried out (ack mode).
    InProgress,
    /// The target is the committed placement; kept for reading (auto mode).
    Committed,
}

impl PlanState {
    /// Name as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanState::InProgress => "in_progress",
            PlanState::Committed => "committed",
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
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredState {
    format: u32,
    settings: RingSettings,
    epoch: u64,
    revision: u64,
    committed: RingSnapshot,
    plan: Option<StoredPlan>,
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
}

impl State {
    /// The state of a coordinator that has never committed anything.
    pub fn fresh(settings: RingSettings) -> Result<Self, ringleader_ring::RingError> {
        Ok(Self {
            settings,
            epoch: 0,
            revision: 0,
            committed: Ring::new(settings.ring_config())?,
            plan: None,
        })
    }

    /// JSON bytes of the state.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let stored = StoredState {
            format: STATE_FORMAT,
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
            }),
        };
        let mut bytes =
            serde_json::to_vec(&stored).map_err(|e| StoreError::Encode(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Reads a state from JSON bytes; `location` names it in errors.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            location: location.to_owned(),
            reason,
        };
        // Check the format first, so a newer file says so rather than
        // failing on a field this build does not know.
        #[derive(Deserialize)]
        struct FormatOnly {
            format: Option<u32>,
        }
        let probe: FormatOnly = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("it is not a ringleader state ({e})")))?;
        match probe.format {
            Some(STATE_FORMAT) => {}
            Some(other) => {
                return Err(corrupt(format!(
                    "it was written in format {other}, and this build reads format {STATE_FORMAT} \
                     (run the ringleader version that wrote it)"
                )));
            }
            None => return Err(corrupt("it has no \"format\" field".into())),
        }
        let stored: StoredState =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("{e}")))?;
        stored
            .settings
            .validate()
            .map_err(|e| corrupt(format!("its settings are invalid: {e}")))?;
        let committed = Ring::try_from(stored.committed)
            .map_err(|e| corrupt(format!("its committed ring is invalid: {e}")))?;
        let plan = match stored.plan {
            None => None,
            Some(p) => Some(PlanRecord {
                id: p.id,
                from_epoch: p.from_epoch,
                to_epoch: p.to_epoch,
                state: p.state,
                target: Ring::try_from(p.target)
                    .map_err(|e| corrupt(format!("its plan's target ring is invalid: {e}")))?,
                settings: p.settings,
                plan: Plan {
                    moves: p.moves,
                    cleanups: p.cleanups,
                    summary: p.summary,
                },
            }),
        };
        if let Some(p) = &plan
            && (p.from_epoch != stored.epoch && p.state == PlanState::InProgress)
        {
            return Err(corrupt(format!(
                "its in-flight plan starts from epoch {} but the committed epoch is {}",
                p.from_epoch, stored.epoch
            )));
        }
        Ok(State {
            settings: stored.settings,
            epoch: stored.epoch,
            revision: stored.revision,
            committed,
            plan,
        })
    }
}

/// A state kept in a local file.
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path` (the file need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; `None` when the file does not exist.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    what: "reading state file",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        State::decode(&bytes, &self.path.display().to_string()).map(Some)
    }

    /// Writes the state atomically (temp file, fsync, rename, fsync dir).
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let bytes = state.encode()?;
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { what, path, source }
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        {
            let mut file = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
            file.write_all(&bytes).map_err(io("writing", &tmp))?;
            file.sync_all().map_err(io("syncing", &tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io("renaming into place", &self.path))?;
        // The rename is durable only once the directory is synced.
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory", &dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringleader_ring::MemberSpec;

    fn state() -> State {
        let settings = RingSettings::default();
        let mut s = State::fresh(settings).unwrap();
        s.committed =
            Ring::with_members(settings.ring_config(), ["a", "b"].map(MemberSpec::new)).unwrap();
        s.epoch = 3;
        s
    }

    #[test]
    fn a_saved_state_reads_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("state.json"));
        assert_eq!(store.load().unwrap(), None);
        let s = state();
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), Some(s));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_corrupt_state_is_refused_with_advice() {
        for (bytes, expect) in [
            (&b"{not json"[..], "not a ringleader state"),
            (&br#"{"format": 99}"#[..], "format 99"),
            (&br#"{"hello": 1}"#[..], "no \"format\""),
            (&br#"{"format": 1, "settings": {}}"#[..], "missing field"),
        ] {
            let err = State::decode(bytes, "state.json").unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
            assert!(err.contains("will not overwrite"), "{err}");
        }
    }
}

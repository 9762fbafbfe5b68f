//! The file store: one JSON file, written atomically (a temporary file in
//! the same directory, fsync, rename over the old file, fsync the
//! directory). A reader sees the old state or the new one, never half of one.
//!
//! Two processes writing one file would overwrite each other's states: a
//! store opened with [`FileStore::open_locked`] holds an exclusive advisory
//! lock on `<file>.lock` for as long as it lives, and refuses to open when
//! another process holds it. The temporary file has a unique name (every
//! container is pid 1, so the pid is no name).

use super::{State, StoreError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A state kept in a local file.
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
    /// The open lock file, while the lock is held (released when the last
    /// clone is dropped).
    lock: Option<Arc<std::fs::File>>,
}

impl FileStore {
    /// A store at `path` (the file need not exist yet), without a lock.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: None,
        }
    }

    /// A store at `path` holding the exclusive lock on `<path>.lock` while
    /// it (or a clone) lives; [`StoreError::Locked`] if another process
    /// holds it.
    pub fn open_locked(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let lock_path = Self::lock_path(&path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                what: "opening the lock file",
                path: lock_path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: lock_path });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    what: "locking",
                    path: lock_path,
                    source,
                });
            }
        }
        Ok(Self {
            path,
            lock: Some(Arc::new(file)),
        })
    }

    /// The lock file of the state file at `path`.
    pub fn lock_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Whether this store holds the file's lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
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
        // A unique name, so that no other writer's temporary file is ever
        // truncated under it.
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}.tmp-"))
            .tempfile_in(&dir)
            .map_err(io("creating a temporary file in", &dir))?;
        let tmp_path = tmp.path().to_path_buf();
        tmp.write_all(&bytes).map_err(io("writing", &tmp_path))?;
        tmp.as_file().sync_all().map_err(io("syncing", &tmp_path))?;
        tmp.persist(&self.path)
            .map_err(|e| e.error)
            .map_err(io("renaming into place", &self.path))?;
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
    use crate::settings::RingSettings;
    use ringleader_ring::{MemberSpec, Ring};

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

    /// Regression (issue 12): the store took no lock, so two processes
    /// could write one state file over each other.
    #[test]
    fn a_second_locked_store_on_one_file_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let first = FileStore::open_locked(&path).unwrap();
        assert!(first.is_locked());
        let err = FileStore::open_locked(&path).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "another ringleader holds {}",
                dir.path().join("state.json.lock").display()
            )),
            "{message}"
        );
        // Clones share the lock; it goes with the last one.
        let clone = first.clone();
        drop(first);
        assert!(FileStore::open_locked(&path).is_err());
        drop(clone);
        let again = FileStore::open_locked(&path).unwrap();
        again.save(&state()).unwrap();
        assert_eq!(again.load().unwrap(), Some(state()));
    }

    /// Regression (issue 12): the temporary file was named after the pid,
    /// which is 1 in every container.
    #[test]
    fn the_temporary_file_is_not_named_after_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("state.json"));
        // A stale temporary file of the old naming scheme, as a second
        // container (also pid 1) would have left it, is not touched.
        let stale = dir
            .path()
            .join(format!(".state.json.tmp-{}", std::process::id()));
        std::fs::write(&stale, "another writer's half").unwrap();
        store.save(&state()).unwrap();
        assert_eq!(std::fs::read(&stale).unwrap(), b"another writer's half");
        assert_eq!(store.load().unwrap(), Some(state()));
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

//! The file store: one JSON file, written atomically (a temporary file in
//! the same directory, fsync, rename over the old file, fsync the
//! directory). A reader sees the old state or the new one, never half of one.

use super::{State, StoreError};
use std::io::Write as _;
use std::path::{Path, PathBuf};

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

//! The file source: EndpointSlices read from a file, re-read when it
//! changes. The file may also hold the Service (as `kubectl get
//! service,endpointslices -o yaml` prints both); its `ringleader.io/weights`
//! annotation gives the members' weights ([`crate::weights`]), and a
//! malformed one refuses the file as an invalid slice does.
//!
//! Changes are noticed two ways: a `notify` watch on the file's *parent
//! directory* (so a rename over the file — what editors and Kubernetes
//! ConfigMap volume mounts do, the latter by swapping a `..data` symlink —
//! and a delete followed by a re-create are seen; any event in the
//! directory triggers a check), and a poll every second (configurable) as a
//! fallback for file systems without events. A check reads the file and
//! parses it only if its content hash changed, and then only the items of a
//! kubectl-shaped `List` that changed ([`crate::ItemCache`]). A write waits 30 ms before
//! the check (an editor may still be writing); a rename is checked at once,
//! also cutting such a wait short: a file renamed into place is whole, and
//! the change is on the path of DESIGN §8's event→plan figure.
//!
//! A file that cannot be read or parsed, or whose slices are invalid, makes
//! health `Failing` with the reason (line and column for parse errors) and
//! keeps the last good member set. A deleted file does the same until it
//! comes back.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use notify::Watcher;
use tokio::sync::Notify;

use crate::{
    Error, ItemCache, MemberSet, MembershipStream, SourceEvent, SourceHealth,
    members_from_text_cached,
};

/// Settings of the file source; [`stream`](Self::stream) starts it.
#[derive(Clone, Debug)]
pub struct FileSource {
    path: PathBuf,
    poll_interval: Duration,
    service: Option<String>,
}

impl FileSource {
    /// Follows the EndpointSlices in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            poll_interval: Duration::from_secs(1),
            service: None,
        }
    }

    /// How often the file is checked even without change events (default 1 s).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Only slices labelled `kubernetes.io/service-name=<service>` count
    /// (for files holding the slices of several Services).
    #[must_use]
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Starts following the file. The stream begins with `Health(Starting)`,
    /// never ends, and stops watching the file when dropped.
    pub fn stream(self) -> MembershipStream {
        let runner = FileRunner {
            config: self,
            changed: Arc::new(Notify::new()),
            renamed: Arc::new(Notify::new()),
            watcher: None,
            last_read: LastRead::Never,
            last_members: None,
            items: ItemCache::default(),
            health: SourceHealth::Starting,
            first: true,
            out: VecDeque::from([SourceEvent::Health(SourceHealth::Starting)]),
        };
        futures::stream::unfold(runner, |mut runner| async move {
            loop {
                if let Some(event) = runner.out.pop_front() {
                    return Some((event, runner));
                }
                runner.step().await;
            }
        })
        .boxed()
    }
}

/// What the last check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LastRead {
    Never,
    Missing,
    Unreadable,
    Content(u64),
}

struct FileRunner {
    config: FileSource,
    changed: Arc<Notify>,
    /// The followed file was swapped in whole ([`swaps_in_whole`]): check
    /// at once.
    renamed: Arc<Notify>,
    watcher: Option<notify::RecommendedWatcher>,
    last_read: LastRead,
    last_members: Option<MemberSet>,
    /// The items of the last file read, for the next read to skip those
    /// unchanged.
    items: ItemCache,
    health: SourceHealth,
    first: bool,
    out: VecDeque<SourceEvent>,
}

/// How long a write in the directory waits before the file is read.
const WRITE_SETTLE: Duration = Duration::from_millis(30);

/// Whether `event` swapped a whole file in as `file_name` (the followed
/// file's name): a rename onto it (`mv`, editors' atomic saves), or onto
/// `..data`, the symlink a ConfigMap volume swaps to update its files. The
/// file read after one is never half-written. Renames of other files wait
/// like writes: the followed file may be being written in place meanwhile.
fn swaps_in_whole(event: &notify::Event, file_name: &OsStr) -> bool {
    matches!(
        event.kind,
        notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
    ) && event.paths.iter().any(|path| {
        path.file_name()
            .is_some_and(|name| name == file_name || name == CONFIGMAP_DATA_LINK)
    })
}

/// The symlink a ConfigMap volume renames over to switch all its files at
/// once (kubelet's atomic writer).
const CONFIGMAP_DATA_LINK: &str = "..data";

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

impl FileRunner {
    fn ensure_watcher(&mut self) {
        if self.watcher.is_some() {
            return;
        }
        let changed = self.changed.clone();
        let renamed = self.renamed.clone();
        let file_name = self.config.path.file_name().unwrap_or_default().to_owned();
        let dir = parent_dir(&self.config.path).to_owned();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            match &event {
                Err(error) => {
                    tracing::debug!(%error, "file watch error; the poll still runs");
                }
                Ok(event) if swaps_in_whole(event, &file_name) => renamed.notify_one(),
                Ok(_) => {}
            }
            changed.notify_one();
        })
        .and_then(|mut watcher| {
            watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        match watcher {
            Ok(watcher) => self.watcher = Some(watcher),
            Err(error) => {
                tracing::debug!(dir = %dir.display(), %error, "cannot watch the directory; polling only");
            }
        }
    }

    async fn step(&mut self) {
        if self.first {
            self.first = false;
        } else {
            tokio::select! {
                biased;
                () = self.renamed.notified() => {}
                () = self.changed.notified() => {
                    // Let a burst of writes (an editor saving) finish,
                    // unless a rename swaps a whole file in meanwhile.
                    tokio::select! {
                        () = self.renamed.notified() => {}
                        () = tokio::time::sleep(WRITE_SETTLE) => {}
                    }
                }
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        self.ensure_watcher();
        self.check().await;
    }

    fn set_health(&mut self, health: SourceHealth) {
        if health != self.health {
            self.health = health.clone();
            self.out.push_back(SourceEvent::Health(health));
        }
    }

    fn fail(&mut self, error: String) {
        tracing::warn!(path = %self.config.path.display(), %error, "membership file problem; keeping the last member set");
        let since = match &self.health {
            SourceHealth::Failing { since, .. } => *since,
            _ => SystemTime::now(),
        };
        self.set_health(SourceHealth::Failing { error, since });
    }

    async fn check(&mut self) {
        let path = &self.config.path;
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if self.last_read != LastRead::Missing {
                    self.last_read = LastRead::Missing;
                    let error = format!(
                        "{} does not exist (deleted?); keeping the last member set",
                        path.display()
                    );
                    self.fail(error);
                }
                return;
            }
            Err(error) => {
                if self.last_read != LastRead::Unreadable {
                    self.last_read = LastRead::Unreadable;
                    let error = Error::Read {
                        path: path.clone(),
                        source: error,
                    };
                    self.fail(error.to_string());
                }
                return;
            }
        };
        let mut hasher = DefaultHasher::new();
        bytes.hash(&mut hasher);
        let hash = hasher.finish();
        if self.last_read == LastRead::Content(hash) {
            return;
        }
        self.last_read = LastRead::Content(hash);
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(error) => {
                let offset = error.valid_up_to();
                let before = &bytes[..offset];
                let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                let column = offset
                    - before
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |i| i + 1)
                    + 1;
                self.fail(format!(
                    "{}:{line}:{column}: the file is not UTF-8 text",
                    path.display()
                ));
                return;
            }
        };
        match members_from_text_cached(text, self.config.service.as_deref(), &mut self.items) {
            Ok(members) => {
                if self.last_members.as_ref() != Some(&members) {
                    tracing::info!(path = %path.display(), members = members.len(), "membership file read");
                    self.last_members = Some(members.clone());
                    self.out.push_back(SourceEvent::Members(members));
                }
                self.set_health(SourceHealth::Synced);
            }
            Err(Error::Parse(error)) => {
                let message = format!(
                    "{}:{}:{}: {}",
                    path.display(),
                    error.line,
                    error.column,
                    error.message
                );
                self.fail(message);
            }
            Err(error) => {
                let message = format!("{}: {error}", path.display());
                self.fail(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RenameMode};
    use notify::{Event, EventKind};

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    #[test]
    fn only_a_rename_onto_the_file_or_the_configmap_link_swaps_it_in_whole() {
        let name = OsStr::new("slices.yaml");
        let rename = |mode| EventKind::Modify(ModifyKind::Name(mode));
        assert!(swaps_in_whole(
            &event(rename(RenameMode::To), &["/d/slices.yaml"]),
            name
        ));
        assert!(swaps_in_whole(
            &event(
                rename(RenameMode::Both),
                &["/d/next.yaml", "/d/slices.yaml"]
            ),
            name
        ));
        assert!(swaps_in_whole(
            &event(rename(RenameMode::To), &["/d/..data"]),
            name
        ));
        // Another file renamed, or the followed file written in place: wait.
        assert!(!swaps_in_whole(
            &event(rename(RenameMode::To), &["/d/other.yaml"]),
            name
        ));
        assert!(!swaps_in_whole(
            &event(
                EventKind::Modify(ModifyKind::Data(DataChange::Content)),
                &["/d/slices.yaml"]
            ),
            name
        ));
        assert!(!swaps_in_whole(
            &event(EventKind::Create(CreateKind::File), &["/d/slices.yaml"]),
            name
        ));
    }
}

//! State shared by the HTTP handlers, the watch streams and the test's
//! handle: the store, the fault plan, request counters and the control
//! channel that wakes watches.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::status::ApiStatus;
use crate::store::{KindId, Store};
use crate::{RequestRecord, ResourceKind, Verb};

/// Timings of the server; short ones make tests fast.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) bookmark_interval: Duration,
    pub(crate) too_large_wait: Duration,
    pub(crate) default_watch_timeout: Duration,
}

/// What every open watch keeps an eye on. Any change wakes them all.
#[derive(Clone, Debug, Default)]
pub(crate) struct Control {
    /// The current resourceVersion: a change means a write happened.
    pub(crate) rv: u64,
    /// Bumped to close every watch open at that moment.
    pub(crate) close_generation: u64,
    /// Watches send nothing until then.
    pub(crate) stall_until: Option<Instant>,
    /// The server is going away.
    pub(crate) shutting_down: bool,
}

/// Which requests a fault applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Target {
    /// Only requests of this verb (any verb when `None`).
    pub(crate) verb: Option<Verb>,
    /// Only requests for this resource, by plural (any when `None`).
    pub(crate) plural: Option<String>,
}

impl Target {
    fn matches(&self, verb: Verb, kind: Option<&ResourceKind>) -> bool {
        self.verb.is_none_or(|v| v == verb)
            && self
                .plural
                .as_deref()
                .is_none_or(|p| kind.is_some_and(|k| k.plural == p))
    }
}

/// Faults waiting to be injected.
#[derive(Debug, Default)]
struct Faults {
    /// Each entry fails one request (of the given target).
    failures: VecDeque<(Target, u16)>,
    /// Resources (by plural) every request for is refused with 403, as
    /// when the caller's Role lacks them.
    forbidden: BTreeSet<String>,
    truncate_next_watch: bool,
}

#[derive(Debug, Default)]
struct Stats {
    counts: BTreeMap<Verb, u64>,
    /// Counts per resource plural and verb.
    counts_of: BTreeMap<(String, Verb), u64>,
    log: Vec<RequestRecord>,
}

/// Who a bearer token belongs to, for TokenReviews.
#[derive(Clone, Debug)]
pub(crate) struct TokenUser {
    pub(crate) username: String,
    pub(crate) groups: Vec<String>,
}

/// What TokenReviews answer.
#[derive(Debug, Default)]
pub(crate) struct Reviews {
    pub(crate) tokens: BTreeMap<String, TokenUser>,
    /// Every review fails with this HTTP code while set.
    pub(crate) failure: Option<u16>,
}

pub(crate) struct Shared {
    store: Mutex<Store>,
    pub(crate) reviews: Mutex<Reviews>,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
    pub(crate) control: watch::Sender<Control>,
    pub(crate) settings: Settings,
    open_watches: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge the server for the others.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(store: Store, settings: Settings) -> Self {
        let control = watch::Sender::new(Control {
            rv: store.resource_version(),
            ..Control::default()
        });
        Self {
            store: Mutex::new(store),
            reviews: Mutex::default(),
            faults: Mutex::default(),
            stats: Mutex::default(),
            control,
            settings,
            open_watches: AtomicUsize::new(0),
        }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn reviews(&self) -> MutexGuard<'_, Reviews> {
        lock(&self.reviews)
    }

    /// Runs a write against the store and wakes the watches.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (result, rv) = {
            let mut store = self.store();
            let result = f(&mut store);
            (result, store.resource_version())
        };
        self.control.send_if_modified(|c| {
            let changed = c.rv != rv;
            c.rv = rv;
            changed
        });
        result
    }

    pub(crate) fn kind(&self, id: KindId) -> ResourceKind {
        self.store().kind(id).clone()
    }

    /// Counts a request and answers it with an injected failure if one is due.
    pub(crate) fn admit(
        &self,
        verb: Verb,
        path: &str,
        kind: Option<&ResourceKind>,
        namespace: Option<&str>,
    ) -> Result<(), ApiStatus> {
        {
            let mut stats = lock(&self.stats);
            *stats.counts.entry(verb).or_default() += 1;
            if let Some(kind) = kind {
                *stats
                    .counts_of
                    .entry((kind.plural.clone(), verb))
                    .or_default() += 1;
            }
            stats.log.push(RequestRecord {
                verb,
                path: path.to_owned(),
            });
        }
        let code = {
            let mut faults = lock(&self.faults);
            let forbidden = kind.is_some_and(|k| faults.forbidden.contains(&k.plural));
            let due = faults
                .failures
                .iter()
                .position(|(target, _)| target.matches(verb, kind));
            let injected = due
                .and_then(|i| faults.failures.remove(i))
                .map(|(_, code)| code);
            if forbidden { Some(403) } else { injected }
        };
        match code {
            None => Ok(()),
            Some(code) => Err(injected_failure(code, verb, kind, namespace)),
        }
    }

    pub(crate) fn fail_next(&self, target: Target, n: usize, code: u16) {
        lock(&self.faults)
            .failures
            .extend(std::iter::repeat_n((target, code), n));
    }

    pub(crate) fn set_forbidden(&self, plural: &str, forbidden: bool) {
        let mut faults = lock(&self.faults);
        if forbidden {
            faults.forbidden.insert(plural.to_owned());
        } else {
            faults.forbidden.remove(plural);
        }
    }

    pub(crate) fn request_count_of(&self, plural: &str, verb: Verb) -> u64 {
        lock(&self.stats)
            .counts_of
            .get(&(plural.to_owned(), verb))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn clear_faults(&self) {
        *lock(&self.faults) = Faults::default();
        self.control.send_modify(|c| c.stall_until = None);
    }

    pub(crate) fn truncate_next_watch(&self) {
        lock(&self.faults).truncate_next_watch = true;
    }

    pub(crate) fn take_truncate(&self) -> bool {
        std::mem::take(&mut lock(&self.faults).truncate_next_watch)
    }

    pub(crate) fn request_count(&self, verb: Verb) -> u64 {
        lock(&self.stats).counts.get(&verb).copied().unwrap_or(0)
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.stats).log.clone()
    }

    pub(crate) fn watch_opened(&self) -> OpenWatch<'_> {
        self.open_watches.fetch_add(1, Ordering::SeqCst);
        OpenWatch { shared: self }
    }

    pub(crate) fn open_watches(&self) -> usize {
        self.open_watches.load(Ordering::SeqCst)
    }
}

/// Counts a watch as open while it lives.
pub(crate) struct OpenWatch<'a> {
    shared: &'a Shared,
}

impl Drop for OpenWatch<'_> {
    fn drop(&mut self) {
        self.shared.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The Status a real server would send for `code` on this request.
fn injected_failure(
    code: u16,
    verb: Verb,
    kind: Option<&ResourceKind>,
    namespace: Option<&str>,
) -> ApiStatus {
    let resource = kind.map_or_else(|| "resources".to_owned(), |k| k.qualified_name());
    let message = match code {
        403 => {
            let plural = kind.map_or("", |k| k.plural.as_str());
            let group = kind.map_or("", |k| k.group.as_str());
            let scope = namespace.map_or_else(
                || "at the cluster scope".to_owned(),
                |ns| format!("in the namespace \"{ns}\""),
            );
            format!(
                "{resource} is forbidden: User \"system:serviceaccount:default:test\" cannot {} resource \"{plural}\" in API group \"{group}\" {scope}",
                verb.as_str()
            )
        }
        410 => "too old resource version: injected by the test server".to_owned(),
        429 => "Too many requests, please try again later.".to_owned(),
        500 => "Internal error occurred: injected by the test server".to_owned(),
        503 => "the server is currently unable to handle the request".to_owned(),
        504 => "Timeout: request did not complete within requested timeout".to_owned(),
        _ => format!("injected failure {code}"),
    };
    ApiStatus::from_code(code, message)
}

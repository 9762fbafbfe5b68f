//! The Kubernetes source: a Service's EndpointSlices through kube-rs'
//! `watcher`, folded into a store of slices, emitted as member sets.
//!
//! The store works as kube's reflector: a fresh buffer on `Init`, filled by
//! `InitApply`, swapped in whole on `InitDone`, so a re-list replaces the
//! old view atomically and the last member set stands while it runs. After
//! every event the merged member set is computed and emitted if it changed.
//!
//! Errors never end the stream. kube's watcher recovers from most of them
//! itself (re-watch from the last resourceVersion, re-list on a 410 `ERROR`
//! event); this source adds what it does not do:
//!
//! * a watch *refused* with 410 (rather than an `ERROR` event) or a "Too
//!   large resource version" error (the API server came back on an etcd
//!   with a lower revision) make kube retry the same resourceVersion
//!   forever; the source restarts the watcher instead, which re-lists;
//! * health: `Resyncing` while re-listing after a 410, `Failing` while
//!   errors persist, `Synced` again after a successful event or after a
//!   quiet period with no error;
//! * a 403 is logged once, naming the missing RBAC rule.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;

use crate::membership::{SERVICE_NAME_LABEL, members_from_slices};
use crate::{MemberSet, MembershipStream, SourceEvent, SourceHealth};

/// Settings of the Kubernetes source; [`stream`](Self::stream) starts it.
#[derive(Clone, Debug)]
pub struct KubernetesSource {
    namespace: String,
    service: String,
    watch_timeout: Option<u32>,
    backoff: Option<(Duration, Duration)>,
    recovery_quiet: Duration,
    streaming_lists: bool,
}

impl KubernetesSource {
    /// Follows the EndpointSlices of Service `service` in `namespace`.
    pub fn new(namespace: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            service: service.into(),
            watch_timeout: None,
            backoff: None,
            recovery_quiet: Duration::from_secs(10),
            streaming_lists: false,
        }
    }

    /// Server-side timeout of each watch request in seconds (kube's default
    /// is 290). kube also treats a watch silent for this long plus 5 s as
    /// dead and reconnects.
    #[must_use]
    pub fn watch_timeout(mut self, seconds: u32) -> Self {
        self.watch_timeout = Some(seconds);
        self
    }

    /// Exponential backoff between failed attempts, doubling from `min` to
    /// `max`, without jitter. The default is kube's `default_backoff()`
    /// (jittered, 0.8 s to 30 s).
    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = Some((min, max));
        self
    }

    /// After an error, health returns to `Synced` once this long passes with
    /// no further error (default 10 s), even if no slice changes meanwhile.
    #[must_use]
    pub fn recovery_quiet(mut self, quiet: Duration) -> Self {
        self.recovery_quiet = quiet;
        self
    }

    /// Uses streaming lists (`sendInitialEvents`) instead of list + watch.
    #[must_use]
    pub fn streaming_lists(mut self) -> Self {
        self.streaming_lists = true;
        self
    }

    /// The label selector used: `kubernetes.io/service-name=<service>`.
    pub fn label_selector(&self) -> String {
        format!("{SERVICE_NAME_LABEL}={}", self.service)
    }

    /// Starts following the Service. The stream begins with
    /// `Health(Starting)`, never ends, and stops the source when dropped.
    pub fn stream(self, client: kube::Client) -> MembershipStream {
        let runner = Runner {
            events: new_watcher(&self, &client),
            client,
            config: self,
            store: SliceStore::default(),
            last_members: None,
            health: SourceHealth::Starting,
            ever_synced: false,
            trouble: None,
            restarts: 0,
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

type WatchEvents = BoxStream<'static, Result<watcher::Event<EndpointSlice>, watcher::Error>>;

fn new_watcher(config: &KubernetesSource, client: &kube::Client) -> WatchEvents {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &config.namespace);
    let mut watch_config = watcher::Config::default().labels(&config.label_selector());
    if let Some(timeout) = config.watch_timeout {
        watch_config = watch_config.timeout(timeout);
    }
    if config.streaming_lists {
        watch_config = watch_config.streaming_lists();
    }
    let events = watcher(api, watch_config);
    match config.backoff {
        None => events.default_backoff().boxed(),
        Some((min, max)) => events.backoff(Doubling::new(min, max)).boxed(),
    }
}

/// Exponential backoff without jitter, doubling from `min` to `max`.
#[derive(Clone, Debug)]
struct Doubling {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Doubling {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(delay)
    }
}

impl Backoff for Doubling {
    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// All slices of the Service, kept as kube's reflector keeps objects.
#[derive(Default)]
struct SliceStore {
    live: BTreeMap<String, EndpointSlice>,
    /// Filled between `Init` and `InitDone`.
    buffer: Option<BTreeMap<String, EndpointSlice>>,
}

fn key(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

/// A run of errors.
struct Trouble {
    since: SystemTime,
    last_error_at: Instant,
    forbidden_logged: bool,
}

/// What an error means for us.
enum ErrorKind {
    /// RBAC: nothing works until someone grants access.
    Forbidden(String),
    /// Our resourceVersion is gone; kube re-lists by itself.
    Expired,
    /// kube would retry the same resourceVersion forever: restart it.
    NeedsRestart(&'static str),
    /// Anything else: kube retries with backoff.
    Other,
}

fn classify(error: &watcher::Error) -> ErrorKind {
    use watcher::Error as W;
    let status = match error {
        W::InitialListFailed(kube::Error::Api(status))
        | W::WatchStartFailed(kube::Error::Api(status))
        | W::WatchFailed(kube::Error::Api(status)) => Some(status.as_ref()),
        W::WatchError(status) => Some(status.as_ref()),
        _ => None,
    };
    let Some(status) = status else {
        return ErrorKind::Other;
    };
    let too_large = status.message.starts_with("Too large resource version")
        || status.details.as_ref().is_some_and(|d| {
            d.causes
                .iter()
                .any(|c| c.reason == "ResourceVersionTooLarge")
        });
    match (error, status.code) {
        (_, 403) => ErrorKind::Forbidden(status.message.clone()),
        (_, _) if too_large => ErrorKind::NeedsRestart(
            "the API server does not know our resourceVersion (its history was reset)",
        ),
        (W::WatchError(_), 410) => ErrorKind::Expired,
        (W::WatchStartFailed(_), 410) => {
            ErrorKind::NeedsRestart("the API server refused our resourceVersion (410 Gone)")
        }
        _ => ErrorKind::Other,
    }
}

struct Runner {
    config: KubernetesSource,
    client: kube::Client,
    events: WatchEvents,
    store: SliceStore,
    last_members: Option<MemberSet>,
    health: SourceHealth,
    ever_synced: bool,
    trouble: Option<Trouble>,
    /// Watcher restarts since the last success, for our own backoff.
    restarts: u32,
    out: VecDeque<SourceEvent>,
}

impl Runner {
    fn set_health(&mut self, health: SourceHealth) {
        if health != self.health {
            match &health {
                SourceHealth::Synced => tracing::info!(
                    namespace = %self.config.namespace,
                    service = %self.config.service,
                    "EndpointSlice source synced"
                ),
                SourceHealth::Resyncing { reason } => tracing::info!(
                    namespace = %self.config.namespace,
                    service = %self.config.service,
                    %reason,
                    "EndpointSlice source re-syncing"
                ),
                _ => {}
            }
            self.health = health.clone();
            self.out.push_back(SourceEvent::Health(health));
        }
    }

    /// Whether the live store reflects a complete list.
    fn complete(&self) -> bool {
        self.ever_synced && self.store.buffer.is_none()
    }

    async fn step(&mut self) {
        let waiting_to_recover = self.complete() && !self.health.is_synced();
        let next = if waiting_to_recover {
            let quiet_until = self
                .trouble
                .as_ref()
                .map_or_else(Instant::now, |t| t.last_error_at)
                + self.config.recovery_quiet;
            match tokio::time::timeout_at(quiet_until, self.events.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::debug!("no error for the quiet period: the watch has recovered");
                    self.recovered();
                    return;
                }
            }
        } else {
            self.events.next().await
        };
        match next {
            Some(Ok(event)) => self.apply(event),
            Some(Err(error)) => self.on_error(error).await,
            None => {
                // kube's watcher never ends; if it ever does, start over.
                tracing::warn!("the EndpointSlice watcher ended; restarting it");
                self.events = new_watcher(&self.config, &self.client);
            }
        }
    }

    fn recovered(&mut self) {
        self.trouble = None;
        self.restarts = 0;
        self.emit_members();
    }

    fn apply(&mut self, event: watcher::Event<EndpointSlice>) {
        match event {
            watcher::Event::Init => {
                self.store.buffer = Some(BTreeMap::new());
                if self.health.is_synced() {
                    self.set_health(SourceHealth::Resyncing {
                        reason: "re-listing EndpointSlices".to_owned(),
                    });
                }
            }
            watcher::Event::InitApply(slice) => {
                self.store
                    .buffer
                    .get_or_insert_default()
                    .insert(key(&slice), slice);
            }
            watcher::Event::InitDone => {
                self.store.live = self.store.buffer.take().unwrap_or_default();
                self.ever_synced = true;
                tracing::debug!(slices = self.store.live.len(), "EndpointSlices listed");
                self.recovered();
            }
            watcher::Event::Apply(slice) => {
                self.store.live.insert(key(&slice), slice);
                self.recovered();
            }
            watcher::Event::Delete(slice) => {
                self.store.live.remove(&key(&slice));
                self.recovered();
            }
        }
    }

    /// Emits the member set if it changed, and the health that goes with it.
    fn emit_members(&mut self) {
        if !self.complete() {
            return;
        }
        let slices: Vec<EndpointSlice> = self.store.live.values().cloned().collect();
        match members_from_slices(&slices) {
            Ok(members) => {
                if self.last_members.as_ref() != Some(&members) {
                    tracing::debug!(members = members.len(), "member set changed");
                    self.last_members = Some(members.clone());
                    self.out.push_back(SourceEvent::Members(members));
                }
                self.set_health(SourceHealth::Synced);
            }
            Err(error) => {
                tracing::warn!(%error, "keeping the last member set");
                let since = match &self.health {
                    SourceHealth::Failing { since, .. } => *since,
                    _ => SystemTime::now(),
                };
                self.set_health(SourceHealth::Failing {
                    error: format!("{error}; keeping the last member set"),
                    since,
                });
            }
        }
    }

    async fn on_error(&mut self, error: watcher::Error) {
        let first = self.trouble.is_none();
        let trouble = self.trouble.get_or_insert_with(|| Trouble {
            since: SystemTime::now(),
            last_error_at: Instant::now(),
            forbidden_logged: false,
        });
        trouble.last_error_at = Instant::now();
        let since = trouble.since;
        let (namespace, service) = (&self.config.namespace, &self.config.service);
        match classify(&error) {
            ErrorKind::Forbidden(message) => {
                let advice = format!(
                    "the API server refused access to EndpointSlices ({message}); grant this \
                     ServiceAccount a Role in namespace {namespace} with apiGroups \
                     [\"discovery.k8s.io\"], resources [\"endpointslices\"], verbs [\"list\", \"watch\"]"
                );
                if !std::mem::replace(&mut trouble.forbidden_logged, true) {
                    tracing::error!(%namespace, %service, "{advice}");
                }
                self.set_health(SourceHealth::Failing {
                    error: advice,
                    since,
                });
            }
            ErrorKind::Expired => {
                tracing::info!(%namespace, %service, "watch expired (410 Gone): re-listing");
                self.set_health(SourceHealth::Resyncing {
                    reason: "the watch expired (410 Gone): re-listing".to_owned(),
                });
            }
            ErrorKind::NeedsRestart(reason) => {
                tracing::warn!(%namespace, %service, %error, "{reason}: restarting the watch with a fresh list");
                self.set_health(SourceHealth::Resyncing {
                    reason: format!("{reason}: re-listing"),
                });
                // Our own backoff: kube's is lost with the old watcher.
                let (min, max) = self
                    .config
                    .backoff
                    .unwrap_or((Duration::from_millis(800), Duration::from_secs(30)));
                let delay = min
                    .saturating_mul(2u32.saturating_pow(self.restarts.min(16)))
                    .min(max);
                self.restarts += 1;
                tokio::time::sleep(delay).await;
                self.events = new_watcher(&self.config, &self.client);
            }
            ErrorKind::Other => {
                if first {
                    tracing::warn!(%namespace, %service, %error, "EndpointSlice watch failed; retrying");
                } else {
                    tracing::debug!(%error, "EndpointSlice watch failed again");
                }
                self.set_health(SourceHealth::Failing {
                    error: error.to_string(),
                    since,
                });
            }
        }
    }
}

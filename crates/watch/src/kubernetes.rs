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
//! * after any other error (a failed list or watch, a 403, a broken
//!   connection) it starts the watcher afresh after a backoff, which
//!   re-lists: kube alone would resume watching without any event, so
//!   nothing would ever prove that the member set is current again;
//! * health that says what is known, never more: `Synced` only once a list
//!   has completed (`InitDone`) with no error since, or a watch event has
//!   arrived on a complete store (the watch demonstrably works);
//!   `Resyncing` from a 410 or a restart until the list completes; `Failing`
//!   from an error until then. Time passing proves nothing: no quiet period
//!   turns an error into `Synced` (kube backs off 1 s, 2 s, 4.6 s, 11 s…
//!   with no request in between);
//! * a 403 is logged once, naming the missing RBAC rule; other errors are
//!   logged at WARN at most once a minute (with how many occurred), naming
//!   the API server.
//!
//! # Weights
//!
//! Beside the slices, the source follows the one Service itself (a second
//! watcher, `fieldSelector=metadata.name=<service>`) for its
//! `ringleader.io/weights` annotation ([`crate::weights`]), and emits member
//! sets with the weights applied. The Service never decides health: `Synced`
//! still means the slice list completed. Only the first member set waits
//! for the Service's first answer (a short list, made at the same time), so
//! a restarted coordinator does not see weight 1 for a moment. Then:
//!
//! * no Service, or no annotation: every member has weight 1;
//! * a malformed annotation is refused as a whole: the weights already in
//!   use stay (none known yet: members carry no weight, and the coordinator
//!   keeps the ones it has), one WARN names the problem and a valid value,
//!   and a [`SourceEvent::Warning`] carries it until the value is fixed;
//! * a 403 on the Service (the Role lacks get/list/watch on `services`): one
//!   WARN naming the missing rule, weight 1 for every member unless weights
//!   were read before (those stay), and a warning; the watcher keeps
//!   retrying with backoff, so a granted Role is picked up;
//! * any other error: the weights in use stay; the watcher retries.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;

use crate::membership::{SERVICE_NAME_LABEL, members_from_slices};
use crate::weights::{WEIGHTS_ANNOTATION, Weights};
use crate::{MemberSet, MembershipStream, SourceEvent, SourceHealth};

/// Settings of the Kubernetes source; [`stream`](Self::stream) starts it.
#[derive(Clone, Debug)]
pub struct KubernetesSource {
    namespace: String,
    service: String,
    watch_timeout: Option<u32>,
    backoff: Option<(Duration, Duration)>,
    streaming_lists: bool,
    server: Option<String>,
}

impl KubernetesSource {
    /// Follows the EndpointSlices of Service `service` in `namespace`.
    pub fn new(namespace: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            service: service.into(),
            watch_timeout: None,
            backoff: None,
            streaming_lists: false,
            server: None,
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

    /// The API server's URL, for log lines and errors (the kube client does
    /// not say which server it talks to).
    #[must_use]
    pub fn server_url(mut self, url: impl Into<String>) -> Self {
        self.server = Some(url.into());
        self
    }

    fn server_name(&self) -> &str {
        self.server
            .as_deref()
            .unwrap_or("(the kube client's default)")
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

    /// The field selector of the Service watch: `metadata.name=<service>`.
    pub fn service_field_selector(&self) -> String {
        format!("metadata.name={}", self.service)
    }

    /// Starts following the Service. The stream begins with
    /// `Health(Starting)`, never ends, and stops the source when dropped.
    pub fn stream(self, client: kube::Client) -> MembershipStream {
        let runner = Runner {
            events: new_watcher(&self, &client),
            service_events: new_service_watcher(&self, &client),
            service: ServiceStore::default(),
            weights: WeightsState::Pending,
            warning: None,
            service_trouble: ServiceTrouble::default(),
            client,
            config: self,
            store: SliceStore::default(),
            last_members: None,
            health: SourceHealth::Starting,
            ever_synced: false,
            trouble: None,
            restarts: 0,
            restart_at: None,
            listing: true,
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

type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;
type WatchEvents = Events<EndpointSlice>;

fn new_watcher(config: &KubernetesSource, client: &kube::Client) -> WatchEvents {
    let watch_config = watcher::Config::default().labels(&config.label_selector());
    start_watcher(config, client, watch_config)
}

fn new_service_watcher(config: &KubernetesSource, client: &kube::Client) -> Events<Service> {
    let watch_config = watcher::Config::default().fields(&config.service_field_selector());
    start_watcher(config, client, watch_config)
}

/// A watcher with the source's timeout, list strategy and backoff.
fn start_watcher<K>(
    config: &KubernetesSource,
    client: &kube::Client,
    mut watch_config: watcher::Config,
) -> Events<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), &config.namespace);
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

/// What a 403 means in RBAC terms: the rule the ServiceAccount's Role
/// lacks, as one line an operator can act on.
fn rbac_advice(
    what: &str,
    message: &str,
    namespace: &str,
    group: &str,
    resource: &str,
    verbs: &[&str],
    resource_names: Option<&str>,
) -> String {
    let verbs = verbs
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let names = resource_names
        .map(|name| format!(", resourceNames [\"{name}\"]"))
        .unwrap_or_default();
    format!(
        "the API server refused access to {what} ({message}); grant this ServiceAccount a Role \
         in namespace {namespace} with apiGroups [\"{group}\"], resources [\"{resource}\"]{names}, \
         verbs [{verbs}] (deploy/kubernetes/rbac.yaml)"
    )
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

/// The Service itself (for its weights), kept as kube's reflector keeps
/// objects: at most one, since the watch selects it by name.
#[derive(Default)]
struct ServiceStore {
    live: Option<Service>,
    /// Filled between `Init` and `InitDone`.
    buffer: Option<Option<Service>>,
}

/// What the source knows of the members' weights.
#[derive(Clone, Debug, PartialEq)]
enum WeightsState {
    /// The Service has not answered yet: the first member set waits for it.
    Pending,
    /// The Service could not be read, or its annotation has been malformed,
    /// since the start: members carry no weight (the consumer keeps its own).
    Unknown,
    /// The weights in use.
    Known(Weights),
}

/// Errors of the Service watch, for logging once per run.
#[derive(Default)]
struct ServiceTrouble {
    /// An error other than a 403 was logged at WARN in this run of errors.
    warned: bool,
    forbidden_logged: bool,
    /// The last malformed annotation warned about.
    refused: Option<String>,
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
    /// When an error was last logged at WARN.
    last_warned: Option<Instant>,
    /// Errors logged at DEBUG only since then.
    suppressed: u64,
    forbidden_logged: bool,
}

/// At most one WARN per this interval for a run of the same kind of error.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

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
    /// The watch of the Service itself, for its weights annotation.
    service_events: Events<Service>,
    service: ServiceStore,
    weights: WeightsState,
    /// The standing warning last emitted.
    warning: Option<String>,
    service_trouble: ServiceTrouble,
    last_members: Option<MemberSet>,
    health: SourceHealth,
    ever_synced: bool,
    trouble: Option<Trouble>,
    /// Watcher restarts since the last success, for our own backoff.
    restarts: u32,
    /// A fresh watcher is due at this instant.
    restart_at: Option<Instant>,
    /// A list is under way (started, or due after a 410 or a restart): the
    /// store is not known to be current until it completes.
    listing: bool,
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
        self.ever_synced && self.store.buffer.is_none() && !self.listing
    }

    async fn step(&mut self) {
        let restart_at = self.restart_at;
        tokio::select! {
            () = async {
                match restart_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                self.restart_at = None;
                tracing::debug!("starting the EndpointSlice watch afresh (list, then watch)");
                self.events = new_watcher(&self.config, &self.client);
                self.store.buffer = None;
                self.listing = true;
            }
            event = self.events.next(), if restart_at.is_none() => match event {
                Some(Ok(event)) => self.apply(event),
                Some(Err(error)) => self.on_error(error),
                None => {
                    // kube's watcher never ends; if it ever does, start over.
                    tracing::warn!("the EndpointSlice watcher ended; restarting it");
                    self.events = new_watcher(&self.config, &self.client);
                    self.listing = true;
                }
            },
            event = self.service_events.next() => match event {
                Some(Ok(event)) => self.apply_service(event),
                Some(Err(error)) => self.on_service_error(error),
                None => {
                    tracing::warn!("the Service watcher ended; restarting it");
                    self.service_events = new_service_watcher(&self.config, &self.client);
                }
            },
        }
    }

    fn apply_service(&mut self, event: watcher::Event<Service>) {
        match event {
            watcher::Event::Init => self.service.buffer = Some(None),
            watcher::Event::InitApply(service) => self.service.buffer = Some(Some(service)),
            watcher::Event::InitDone => {
                self.service.live = self.service.buffer.take().flatten();
                self.service_read();
            }
            watcher::Event::Apply(service) => {
                self.service.live = Some(service);
                self.service_read();
            }
            watcher::Event::Delete(_) => {
                self.service.live = None;
                self.service_read();
            }
        }
    }

    /// The Service (or its absence) is known: takes its weights, or keeps
    /// the ones in use if its annotation is malformed.
    fn service_read(&mut self) {
        let trouble = &mut self.service_trouble;
        if std::mem::take(&mut trouble.warned) {
            tracing::info!(service = %self.config.service, "the Service can be read again");
        }
        trouble.forbidden_logged = false;
        let parsed = match &self.service.live {
            None => Ok(Weights::default()),
            Some(service) => Weights::of_service(service),
        };
        match parsed {
            Ok(weights) => {
                trouble.refused = None;
                if self.weights != WeightsState::Known(weights.clone()) {
                    let named: Vec<String> =
                        weights.named().map(|(id, w)| format!("{id}={w}")).collect();
                    tracing::info!(
                        service = %self.config.service,
                        weights = %named.join(","),
                        "member weights (members not named have weight 1)"
                    );
                }
                self.weights = WeightsState::Known(weights);
                self.set_warning(None);
            }
            Err(error) => {
                let keeping = match self.weights {
                    WeightsState::Known(_) => "keeping the weights in use",
                    _ => "no weights known yet: members keep the weights the ring has",
                };
                let message = format!("{error}; {keeping}");
                if trouble.refused.as_ref() != Some(&message) {
                    tracing::warn!(service = %self.config.service, "{message}");
                    trouble.refused = Some(message.clone());
                }
                if self.weights == WeightsState::Pending {
                    self.weights = WeightsState::Unknown;
                }
                self.set_warning(Some(message));
            }
        }
        self.emit_members();
    }

    fn on_service_error(&mut self, error: watcher::Error) {
        let (namespace, service) = (&self.config.namespace, &self.config.service);
        match classify(&error) {
            ErrorKind::Forbidden(message) => {
                let advice = rbac_advice(
                    &format!("Service {service}, which gives the members' weights"),
                    &message,
                    namespace,
                    "",
                    "services",
                    &["get", "list", "watch"],
                    Some(service),
                );
                let keeping = match self.weights {
                    WeightsState::Known(_) => "keeping the weights in use",
                    _ => "every member has weight 1",
                };
                let warning = format!("{advice}; {keeping}");
                if !std::mem::replace(&mut self.service_trouble.forbidden_logged, true) {
                    tracing::warn!(%namespace, %service, server = %self.config.server_name(), "{warning}");
                }
                if !matches!(self.weights, WeightsState::Known(_)) {
                    self.weights = WeightsState::Known(Weights::default());
                }
                self.set_warning(Some(warning));
                self.emit_members();
            }
            ErrorKind::Expired => {
                tracing::debug!(%namespace, %service, "the Service watch expired (410 Gone): re-listing");
            }
            ErrorKind::NeedsRestart(reason) => {
                tracing::debug!(%namespace, %service, %error, "{reason}: restarting the Service watch");
                self.service_events = new_service_watcher(&self.config, &self.client);
                self.service.buffer = None;
            }
            ErrorKind::Other => {
                if !std::mem::replace(&mut self.service_trouble.warned, true) {
                    tracing::warn!(
                        %namespace,
                        %service,
                        server = %self.config.server_name(),
                        %error,
                        "reading the Service for its {WEIGHTS_ANNOTATION} annotation failed; \
                         keeping the weights in use and retrying after a backoff"
                    );
                } else {
                    tracing::debug!(%error, "reading the Service failed again");
                }
                if self.weights == WeightsState::Pending {
                    // Members need not wait for weights the Service may
                    // never give: they go out without (the ring keeps its own).
                    self.weights = WeightsState::Unknown;
                    self.emit_members();
                }
            }
        }
    }

    fn set_warning(&mut self, warning: Option<String>) {
        if self.warning != warning {
            self.warning = warning.clone();
            self.out.push_back(SourceEvent::Warning(warning));
        }
    }

    /// The store is current: a list completed, or the watch delivered an
    /// event after one. Emits the member set and `Synced`.
    fn recovered(&mut self) {
        if self.trouble.take().is_some_and(|t| t.suppressed > 0) {
            tracing::info!(
                server = %self.config.server_name(),
                "the EndpointSlice watch works again"
            );
        }
        self.restarts = 0;
        self.emit_members();
    }

    /// Drops the watcher and starts a fresh one (a new list) after our own
    /// backoff: a list is the only thing that proves the store current.
    fn restart_later(&mut self) {
        let (min, max) = self
            .config
            .backoff
            .unwrap_or((Duration::from_millis(800), Duration::from_secs(30)));
        let delay = min
            .saturating_mul(2u32.saturating_pow(self.restarts.min(16)))
            .min(max);
        self.restarts += 1;
        self.restart_at = Some(Instant::now() + delay);
    }

    fn apply(&mut self, event: watcher::Event<EndpointSlice>) {
        match event {
            watcher::Event::Init => {
                self.store.buffer = Some(BTreeMap::new());
                self.listing = true;
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
                self.listing = false;
                tracing::debug!(slices = self.store.live.len(), "EndpointSlices listed");
                self.recovered();
            }
            watcher::Event::Apply(slice) => {
                self.store.live.insert(key(&slice), slice);
                self.on_watch_event();
            }
            watcher::Event::Delete(slice) => {
                self.store.live.remove(&key(&slice));
                self.on_watch_event();
            }
        }
    }

    /// A watch event: the watch works. It proves the store current only if
    /// the store was complete and no re-list is pending.
    fn on_watch_event(&mut self) {
        if self.listing || self.restart_at.is_some() {
            return;
        }
        self.recovered();
    }

    /// Emits the member set if it changed, and the health that goes with it.
    fn emit_members(&mut self) {
        if !self.complete() || self.weights == WeightsState::Pending {
            return;
        }
        let slices: Vec<EndpointSlice> = self.store.live.values().cloned().collect();
        match members_from_slices(&slices) {
            Ok(members) => {
                let members = match &self.weights {
                    WeightsState::Known(weights) => weights.apply(members),
                    WeightsState::Pending | WeightsState::Unknown => members,
                };
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

    fn on_error(&mut self, error: watcher::Error) {
        let now = Instant::now();
        let trouble = self.trouble.get_or_insert_with(|| Trouble {
            since: SystemTime::now(),
            last_warned: None,
            suppressed: 0,
            forbidden_logged: false,
        });
        let since = trouble.since;
        let server = self.config.server_name();
        let (namespace, service) = (&self.config.namespace, &self.config.service);
        match classify(&error) {
            ErrorKind::Forbidden(message) => {
                let advice = rbac_advice(
                    "EndpointSlices",
                    &message,
                    namespace,
                    "discovery.k8s.io",
                    "endpointslices",
                    &["list", "watch"],
                    None,
                );
                if !std::mem::replace(&mut trouble.forbidden_logged, true) {
                    tracing::error!(%namespace, %service, %server, "{advice}");
                }
                self.set_health(SourceHealth::Failing {
                    error: advice,
                    since,
                });
                self.restart_later();
            }
            ErrorKind::Expired => {
                // kube re-lists by itself; until InitDone the store is stale.
                tracing::info!(%namespace, %service, "watch expired (410 Gone): re-listing");
                self.listing = true;
                self.set_health(SourceHealth::Resyncing {
                    reason: "the watch expired (410 Gone): re-listing".to_owned(),
                });
            }
            ErrorKind::NeedsRestart(reason) => {
                tracing::warn!(%namespace, %service, %server, %error, "{reason}: restarting the watch with a fresh list");
                self.set_health(SourceHealth::Resyncing {
                    reason: format!("{reason}: re-listing"),
                });
                self.restart_later();
            }
            ErrorKind::Other => {
                let warn_now = trouble
                    .last_warned
                    .is_none_or(|at| now.duration_since(at) >= ERROR_LOG_INTERVAL);
                if warn_now {
                    let suppressed = std::mem::take(&mut trouble.suppressed);
                    trouble.last_warned = Some(now);
                    tracing::warn!(
                        %namespace,
                        %service,
                        %server,
                        %error,
                        similar_errors_not_logged = suppressed,
                        "the EndpointSlice watch failed; listing again after a backoff"
                    );
                } else {
                    trouble.suppressed += 1;
                    tracing::debug!(%error, "the EndpointSlice watch failed again");
                }
                self.set_health(SourceHealth::Failing {
                    error: format!("{error} (API server {server})"),
                    since,
                });
                self.restart_later();
            }
        }
    }
}

//! An in-memory Kubernetes API server for tests, with fault injection.
//!
//! [`TestApiServer::start`] binds `127.0.0.1:0` and serves the parts of the
//! Kubernetes API that ringleader uses — GET, LIST (label/field selectors,
//! `limit`/`continue` paging, resourceVersion semantics), WATCH (history
//! replay, bookmarks, streaming lists, 410 on compacted history), POST, PUT
//! (with resourceVersion preconditions) and DELETE — for any registered
//! [`ResourceKind`] (EndpointSlices, Services, Leases and ConfigMaps out of the box),
//! and TokenReviews against tokens the test registers
//! ([`add_token`](TestApiServer::add_token)).
//! It speaks the same wire protocol as a real API server, so a real
//! [`kube::Client`] (and `kube::runtime::watcher`) runs against it unchanged.
//!
//! Tests change objects through typed helpers ([`TestApiServer::create`],
//! [`apply`](TestApiServer::apply), [`delete`](TestApiServer::delete)) and
//! break things on purpose: [`close_all_watches`](TestApiServer::close_all_watches),
//! [`fail_next`](TestApiServer::fail_next), [`forbid`](TestApiServer::forbid), [`stall_watches`](TestApiServer::stall_watches),
//! [`compact`](TestApiServer::compact), [`restart_with_new_history`](TestApiServer::restart_with_new_history),
//! [`truncate_next_watch`](TestApiServer::truncate_next_watch). Request
//! counters per [`Verb`] let a test assert what the client did ("it
//! re-listed").
//!
//! ```no_run
//! # async fn demo() -> Result<(), ringleader_testkit::Error> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use ringleader_testkit::{TestApiServer, Verb};
//!
//! let server = TestApiServer::start().await?;
//! let client = server.client();
//! let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
//! // … drive `api`, inject faults, then:
//! assert!(server.request_count(Verb::List) >= 1);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod resource;
mod routes;
mod selector;
mod shared;
mod status;
mod store;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use resource::ResourceKind;
pub use status::ApiStatus;

use shared::{Settings, Shared, Target};
use store::{Filter, KindId, ObjectKey, Store, str_at};

/// Errors of the test server's Rust API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the operation, as it would over HTTP.
    #[error("the test API server answered {0}")]
    Api(ApiStatus),
    /// The object's kind was never registered with the server.
    #[error("{api_version} {kind} is not registered with the test API server")]
    UnknownKind {
        /// `apiVersion` of the object.
        api_version: String,
        /// `kind` of the object.
        kind: String,
    },
    /// An object did not convert to or from JSON.
    #[error("converting an object to or from JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Binding the listening socket failed.
    #[error("binding 127.0.0.1:0 for the test API server: {0}")]
    Bind(#[source] std::io::Error),
}

impl From<ApiStatus> for Error {
    fn from(status: ApiStatus) -> Self {
        Error::Api(status)
    }
}

/// The kind of a request, as the API server's authorizer names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// DELETE of one object.
    Delete,
}

impl Verb {
    /// The lowercase verb (`list`, `watch`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
        }
    }
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// What kind of request it was.
    pub verb: Verb,
    /// Path and query as sent.
    pub path: String,
}

/// Settings for a [`TestApiServer`]; [`TestApiServer::builder`] makes one.
#[derive(Clone, Debug)]
pub struct TestApiServerBuilder {
    kinds: Vec<ResourceKind>,
    bookmark_interval: Duration,
    too_large_wait: Duration,
    default_watch_timeout: Duration,
    history_limit: usize,
}

impl Default for TestApiServerBuilder {
    fn default() -> Self {
        Self {
            kinds: ResourceKind::defaults(),
            bookmark_interval: Duration::from_millis(500),
            too_large_wait: Duration::from_millis(500),
            default_watch_timeout: Duration::from_secs(1800),
            history_limit: 100_000,
        }
    }
}

impl TestApiServerBuilder {
    /// Serves one more kind of object.
    #[must_use]
    pub fn resource(mut self, kind: ResourceKind) -> Self {
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
        }
        self
    }

    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK
    /// (the real server: about a minute; default here 500 ms).
    #[must_use]
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// How long a request for a resourceVersion newer than the server's
    /// waits for it before failing with "Too large resource version" (the
    /// real server: 3 s; default here 500 ms).
    #[must_use]
    pub fn too_large_resource_version_wait(mut self, wait: Duration) -> Self {
        self.too_large_wait = wait;
        self
    }

    /// Watch duration when the client sends no `timeoutSeconds`.
    #[must_use]
    pub fn default_watch_timeout(mut self, timeout: Duration) -> Self {
        self.default_watch_timeout = timeout;
        self
    }

    /// Events retained for watches before older ones are compacted away
    /// (default 100,000).
    #[must_use]
    pub fn history_limit(mut self, events: usize) -> Self {
        self.history_limit = events;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(self) -> Result<TestApiServer, Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::Bind)?;
        let addr = listener.local_addr().map_err(Error::Bind)?;
        let shared = Arc::new(Shared::new(
            Store::new(self.kinds, self.history_limit),
            Settings {
                bookmark_interval: self.bookmark_interval,
                too_large_wait: self.too_large_wait,
                default_watch_timeout: self.default_watch_timeout,
            },
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = routes::app(shared.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "test API server stopped with an error");
            }
        });
        tracing::debug!(%addr, "test API server listening");
        Ok(TestApiServer {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running in-memory API server. Stops when dropped or on [`shutdown`](Self::shutdown).
pub struct TestApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestApiServer {
    /// Starts a server with the default settings.
    pub async fn start() -> Result<Self, Error> {
        Self::builder().start().await
    }

    /// Settings for a server.
    pub fn builder() -> TestApiServerBuilder {
        TestApiServerBuilder::default()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube config pointing at this server, with kube's own retries of
    /// 429/503/504 turned off so injected failures reach the caller.
    pub fn client_config(&self) -> kube::Config {
        let url = self
            .url()
            .parse()
            .expect("http://127.0.0.1:PORT is always a valid URI");
        let mut config = kube::Config::new(url);
        config.default_retry = false;
        config
    }

    /// A kube client for this server (see [`client_config`](Self::client_config)).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.client_config())
            .expect("a kube client for a plain-HTTP loopback URL always builds")
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    fn kind_of(&self, object: &Value) -> Result<(KindId, bool), Error> {
        let api_version = str_at(object, "/apiVersion");
        let kind = str_at(object, "/kind");
        let store = self.shared.store();
        let id = store
            .find_kind_by_type(api_version, kind)
            .ok_or_else(|| Error::UnknownKind {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })?;
        Ok((id, store.kind(id).namespaced))
    }

    fn kind_of_type<K: k8s_openapi::Resource>(&self) -> Result<KindId, Error> {
        self.shared
            .store()
            .find_kind_by_type(K::API_VERSION, K::KIND)
            .ok_or_else(|| Error::UnknownKind {
                api_version: K::API_VERSION.to_owned(),
                kind: K::KIND.to_owned(),
            })
    }

    /// Creates an object given as JSON (with `apiVersion` and `kind`); a
    /// namespaced object without a namespace goes to `default`.
    pub fn create_value(&self, object: Value) -> Result<Value, Error> {
        let (kind, namespaced) = self.kind_of(&object)?;
        let namespace = namespace_of(&object, namespaced);
        Ok(self
            .shared
            .write(|store| store.create(kind, &namespace, object))?)
    }

    /// Creates the object, or replaces it unconditionally if it exists
    /// (its resourceVersion, if any, is ignored).
    pub fn apply_value(&self, mut object: Value) -> Result<Value, Error> {
        let (kind, namespaced) = self.kind_of(&object)?;
        let namespace = namespace_of(&object, namespaced);
        let name = str_at(&object, "/metadata/name").to_owned();
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
        }
        Ok(self.shared.write(|store| {
            let key = ObjectKey {
                kind,
                namespace: if namespaced {
                    namespace.clone()
                } else {
                    String::new()
                },
                name: name.clone(),
            };
            if store.get(&key).is_ok() {
                store.update(kind, &namespace, &name, object)
            } else {
                store.create(kind, &namespace, object)
            }
        })?)
    }

    /// Replaces an existing object; a resourceVersion in it is a
    /// precondition (409 Conflict if stale).
    pub fn replace_value(&self, object: Value) -> Result<Value, Error> {
        let (kind, namespaced) = self.kind_of(&object)?;
        let namespace = namespace_of(&object, namespaced);
        let name = str_at(&object, "/metadata/name").to_owned();
        Ok(self
            .shared
            .write(|store| store.update(kind, &namespace, &name, object))?)
    }

    /// Creates a typed object (see [`create_value`](Self::create_value)).
    pub fn create<K>(&self, object: &K) -> Result<K, Error>
    where
        K: Serialize + DeserializeOwned,
    {
        Ok(serde_json::from_value(
            self.create_value(serde_json::to_value(object)?)?,
        )?)
    }

    /// Creates or replaces a typed object (see [`apply_value`](Self::apply_value)).
    pub fn apply<K>(&self, object: &K) -> Result<K, Error>
    where
        K: Serialize + DeserializeOwned,
    {
        Ok(serde_json::from_value(
            self.apply_value(serde_json::to_value(object)?)?,
        )?)
    }

    /// Replaces a typed object (see [`replace_value`](Self::replace_value)).
    pub fn replace<K>(&self, object: &K) -> Result<K, Error>
    where
        K: Serialize + DeserializeOwned,
    {
        Ok(serde_json::from_value(
            self.replace_value(serde_json::to_value(object)?)?,
        )?)
    }

    /// Deletes an object; `namespace` is ignored for cluster-scoped kinds.
    pub fn delete<K: k8s_openapi::Resource>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(), Error> {
        let kind = self.kind_of_type::<K>()?;
        self.shared.write(|store| {
            let key = ObjectKey {
                kind,
                namespace: if store.kind(kind).namespaced {
                    namespace.to_owned()
                } else {
                    String::new()
                },
                name: name.to_owned(),
            };
            store.delete(&key, None, None).map(|_| ())
        })?;
        Ok(())
    }

    /// One object, or `None`.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, Error>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        let kind = self.kind_of_type::<K>()?;
        let store = self.shared.store();
        let key = ObjectKey {
            kind,
            namespace: if store.kind(kind).namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            name: name.to_owned(),
        };
        match store.get(&key) {
            Ok(object) => Ok(Some(serde_json::from_value(object)?)),
            Err(status) if status.code == 404 => Ok(None),
            Err(status) => Err(status.into()),
        }
    }

    /// Every object of a kind in a namespace (all namespaces with `None`).
    pub fn list<K>(&self, namespace: Option<&str>) -> Result<Vec<K>, Error>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        let kind = self.kind_of_type::<K>()?;
        let filter = Filter {
            namespace: namespace.map(str::to_owned),
            ..Filter::default()
        };
        let objects = self.shared.store().snapshot(kind, &filter, None)?;
        objects
            .into_iter()
            .map(|(_, object)| serde_json::from_value(object).map_err(Error::from))
            .collect()
    }

    /// Drops all retained history: watches and paged lists from any older
    /// resourceVersion get 410 Expired (kube's watcher then re-lists).
    pub fn compact(&self) {
        self.shared.write(Store::compact);
    }

    /// Ends every open watch cleanly, as an API server does when it sheds
    /// connections.
    pub fn close_all_watches(&self) {
        self.shared.control.send_modify(|c| c.close_generation += 1);
    }

    /// Answers the next `n` requests (any verb) with an error Status of HTTP
    /// code `code` (e.g. 500, 410, 403, 429, 503), with the reason and
    /// message the real server uses for it.
    pub fn fail_next(&self, n: usize, code: u16) {
        self.shared.fail_next(Target::default(), n, code);
    }

    /// Like [`fail_next`](Self::fail_next), for requests of one verb only.
    pub fn fail_next_verb(&self, verb: Verb, n: usize, code: u16) {
        let target = Target {
            verb: Some(verb),
            plural: None,
        };
        self.shared.fail_next(target, n, code);
    }

    /// Like [`fail_next`](Self::fail_next), for requests for one resource
    /// (by plural, such as `endpointslices`) and, if given, one verb only:
    /// a client that watches several kinds sees the fault on one of them.
    pub fn fail_next_of(&self, plural: &str, verb: Option<Verb>, n: usize, code: u16) {
        let target = Target {
            verb,
            plural: Some(plural.to_owned()),
        };
        self.shared.fail_next(target, n, code);
    }

    /// While `forbidden`, every request for the resource (by plural, such
    /// as `services`) is refused with 403 and the message the real server
    /// gives when the caller's Role lacks the verb (RBAC); `false` grants
    /// it again. [`clear_faults`](Self::clear_faults) grants everything.
    pub fn forbid(&self, plural: &str, forbidden: bool) {
        self.shared.set_forbidden(plural, forbidden);
    }

    /// Forgets all pending faults (failures, truncation, stall).
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Every open watch, and every watch opened meanwhile, stops sending
    /// for `duration` without closing its connection (a wedged stream; not
    /// even `timeoutSeconds` ends it), then resumes with what it missed.
    pub fn stall_watches(&self, duration: Duration) {
        let until = tokio::time::Instant::now() + duration;
        self.shared
            .control
            .send_modify(|c| c.stall_until = Some(until));
    }

    /// Simulates an API server brought back on an etcd restored from a
    /// backup: the objects are kept, restamped with resourceVersions from a
    /// fresh low counter; history is gone and every watch is closed. A
    /// client resuming from an older resourceVersion gets 410 Expired; one
    /// resuming from a newer one waits and gets the 504 "Too large resource
    /// version" error the real server sends (client-go re-lists on it; a
    /// kube-rs watcher alone retries forever).
    pub fn restart_with_new_history(&self) {
        self.shared.write(Store::restart_with_new_history);
        self.close_all_watches();
    }

    /// The next watch to open is cut in the middle of its first JSON line
    /// and its connection aborted.
    pub fn truncate_next_watch(&self) {
        self.shared.truncate_next_watch();
    }

    /// Registers a bearer token for TokenReviews
    /// (`POST /apis/authentication.k8s.io/v1/tokenreviews`): it authenticates
    /// as `username` (e.g. `system:serviceaccount:default:db`), in the groups
    /// a service account has. Any other token is not authenticated.
    pub fn add_token(&self, token: &str, username: &str) {
        let mut groups = vec!["system:authenticated".to_owned()];
        if let Some(rest) = username.strip_prefix("system:serviceaccount:") {
            groups.push("system:serviceaccounts".to_owned());
            if let Some((namespace, _)) = rest.split_once(':') {
                groups.push(format!("system:serviceaccounts:{namespace}"));
            }
        }
        self.shared.reviews().tokens.insert(
            token.to_owned(),
            shared::TokenUser {
                username: username.to_owned(),
                groups,
            },
        );
    }

    /// Forgets a token: it no longer authenticates.
    pub fn remove_token(&self, token: &str) {
        self.shared.reviews().tokens.remove(token);
    }

    /// While `Some(code)`, every TokenReview fails with that HTTP code (as
    /// when the authenticator behind the API server is down); `None` heals.
    pub fn fail_token_reviews(&self, code: Option<u16>) {
        self.shared.reviews().failure = code;
    }

    /// How many requests of `verb` the server received (including failed ones).
    pub fn request_count(&self, verb: Verb) -> u64 {
        self.shared.request_count(verb)
    }

    /// How many requests of `verb` for one resource (by plural, such as
    /// `endpointslices`) the server received (including failed ones).
    pub fn request_count_of(&self, plural: &str, verb: Verb) -> u64 {
        self.shared.request_count_of(plural, verb)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// How many watch streams are open now.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches()
    }

    /// Waits until at least `n` watches are open, up to `timeout`; true if so.
    pub async fn wait_for_watches(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.open_watches() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops serving: ends every watch, then waits for the server to close.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    fn signal_stop(&mut self) {
        self.shared.control.send_modify(|c| c.shutting_down = true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

fn namespace_of(object: &Value, namespaced: bool) -> String {
    if !namespaced {
        return String::new();
    }
    match str_at(object, "/metadata/namespace") {
        "" => "default".to_owned(),
        namespace => namespace.to_owned(),
    }
}

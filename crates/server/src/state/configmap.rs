//! The ConfigMap store (`--state configmap:NAME`).
//!
//! The state is the file store's bytes ([`State::encode`], format 2),
//! gzip-compressed. When that fits one ConfigMap (1 MiB; 1,000 members × 16
//! tokens with a plan in flight is about 100 KiB) it is kept in the
//! ConfigMap `NAME` itself, `binaryData["state.gz"]`. A larger state
//! (1,000 × 256 is 0.4–2.1 MB compressed: tokens are close to random
//! numbers) is cut into parts of at most [`PART_BYTES`] kept in ConfigMaps
//! of a fixed pool, `NAME-0` … `NAME-15` ([`POOL`]), and `NAME` — the
//! manifest — names the parts with their resourceVersions and hashes
//! (`data["parts"]`). Either way `NAME` carries a few plain `data` keys for
//! people reading it with kubectl (`epoch`, `revision`, `members`, `plan`).
//!
//! Writes are fenced: every write carries the `resourceVersion` last read or
//! written, so the API server refuses it (409) if anyone wrote in between.
//! A save writes the parts first, into pool ConfigMaps the current manifest
//! does not name, each fenced on the resourceVersion the manifest records
//! for it; then the manifest, fenced on its own resourceVersion. The
//! manifest is the commit point: until it is written, the parts it names
//! are untouched, so a reader always finds a whole state. A part a manifest
//! names can only be rewritten once a later manifest has stopped naming it,
//! and a writer that is not the last to have written the manifest fails on
//! its fences (a deposed leader's delayed write never lands over a part in
//! use). A reader reads the manifest, then its parts, and checks each
//! part's resourceVersion and hash; if a part changed meanwhile (two saves
//! passed between the reads) it reads again.
//!
//! On a conflict the store reads the state again ([`resolve_conflict`]):
//!
//! - it holds the very state being written (our own write landed, its
//!   answer was lost): nothing to do;
//! - anything else: it is **never** overwritten, whatever its position —
//!   (epoch, revision) of two diverged histories (a deposed leader's delayed
//!   write, its successor's acknowledged move) cannot be compared, so "mine
//!   is newer" would erase acknowledged work. [`StoreError::Conflict`] hands
//!   the stored state to the caller, which re-checks its leadership and
//!   takes it over.
//!
//! A part ConfigMap whose resourceVersion is not the one the manifest
//! records (someone wrote it, or it was deleted) is not written over blind:
//! the store re-reads the manifest and, if it is still the one this
//! coordinator wrote, records the part's current resourceVersion in it (a
//! fenced manifest write, so of two writers only one can) before trying
//! again.
//!
//! Followers watch the ConfigMap ([`ConfigMapStore::watch`]: kube's watcher
//! on the one object, by `fieldSelector=metadata.name=NAME`, which a Role
//! with `resourceNames` allows) rather than reading it again and again; a
//! manifest that names parts is followed by reads of its parts.
//!
//! Every call to the API server has a time limit ([`ConfigMapStore::timeout`]),
//! so a hung request cannot stall the coordinator. A state larger than the
//! pool can hold is refused before any request, with the figures
//! ([`StoreError::TooLarge`]); the coordinator keeps showing the last stored
//! state, reports why on `/readyz`, and tries again.

use super::{Refreshed, State, StoreError};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::warn;

/// The `binaryData` key of the manifest holding the compressed state when
/// it fits there.
pub const STATE_KEY: &str = "state.gz";

/// Where builds before format 2 kept the compressed JSON state (still read).
const LEGACY_STATE_KEY: &str = "state.json.gz";

/// The manifest's `data` key listing the parts (JSON, [`PartsIndex`]).
pub const PARTS_KEY: &str = "parts";

/// The `binaryData` key of a part ConfigMap.
const PART_KEY: &str = "part";

/// The most a ConfigMap's `data` and `binaryData` may hold together
/// (keys and values, binary values counted raw): 1 MiB.
pub const CONFIGMAP_LIMIT: usize = 1 << 20;

/// Compressed bytes one part holds (under [`CONFIGMAP_LIMIT`] with room).
pub const PART_BYTES: usize = 1_000_000;

/// Part ConfigMaps in the pool: `NAME-0` … `NAME-15`. A state uses at most
/// half of them, so a save always finds enough the manifest does not name.
pub const POOL: usize = 16;

/// The most parts one state may take.
pub const MAX_PARTS: usize = POOL / 2;

/// The most a stored state may decompress to (a guard against a
/// ConfigMap that decompresses without end).
const DECOMPRESSED_LIMIT: u64 = 256 << 20;

/// Attempts of one save (a deleted ConfigMap is created again).
const MAX_CONFLICTS: usize = 5;

/// Attempts of one read whose parts change under it.
const MAX_READS: usize = 3;

/// The default time limit of one call to the API server.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The names of the part ConfigMaps of the state ConfigMap `name`, for RBAC
/// (deploy/kubernetes/rbac.yaml lists them for `ringleader-state`).
pub fn part_names(name: &str) -> Vec<String> {
    (0..POOL).map(|i| format!("{name}-{i}")).collect()
}

/// What a conflict on a save comes to, once the stored state is read.
#[derive(Debug)]
pub enum Resolution {
    /// The store holds the very state being written.
    AlreadyStored,
    /// The store holds another writer's state: take it over, never
    /// overwrite it.
    TakeOver(Box<State>),
}

/// Decides a conflict from the state being written and the stored bytes
/// ([`State::encode`]'s). Pure, so the coordinator simulation runs the very
/// rule the store uses: only "it is already there" or "take theirs over".
pub fn resolve_conflict(
    ours: &State,
    stored: &[u8],
    location: &str,
) -> Result<Resolution, StoreError> {
    if ours.encode().is_ok_and(|mine| mine == stored) {
        return Ok(Resolution::AlreadyStored);
    }
    let stored = State::decode(stored, location)?;
    warn!(
        %location,
        stored_epoch = stored.epoch,
        stored_revision = stored.revision,
        epoch = ours.epoch,
        revision = ours.revision,
        "another writer changed the stored state: not overwriting it; taking it over"
    );
    Ok(Resolution::TakeOver(Box::new(stored)))
}

/// The manifest's list of parts, and the fences of the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartsIndex {
    /// The parts holding the compressed state, in order (empty: the state
    /// is in the manifest).
    #[serde(default)]
    parts: Vec<PartRef>,
    /// The last resourceVersion of every pool ConfigMap known to exist:
    /// what a write to it is fenced on.
    #[serde(default)]
    known: BTreeMap<String, String>,
}

/// One part of a state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartRef {
    name: String,
    resource_version: String,
    bytes: usize,
    /// xxh3-64 of the part's bytes, hex.
    xxh3: String,
}

fn xxh3_hex(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// What this store last read or wrote.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// The manifest's resourceVersion; `None` when it was not there (or not
    /// read yet).
    resource_version: Option<String>,
    /// Its parts and fences.
    index: PartsIndex,
}

/// A state kept in a ConfigMap (and, when large, its parts).
#[derive(Clone)]
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    seen: Arc<Mutex<Seen>>,
    /// Time limit of one call to the API server.
    timeout: Duration,
}

impl std::fmt::Debug for ConfigMapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapStore")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A state as it goes into the store.
#[derive(Debug)]
pub(crate) struct Encoded {
    compressed: Vec<u8>,
    /// The plain `data` keys of the manifest (without [`PARTS_KEY`]).
    data: BTreeMap<String, String>,
}

impl Encoded {
    /// Whether the state fits the manifest itself (with an index of
    /// `index_bytes`).
    fn fits_inline(&self, index_bytes: usize) -> bool {
        let size = STATE_KEY.len()
            + self.compressed.len()
            + PARTS_KEY.len()
            + index_bytes
            + self
                .data
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        size <= CONFIGMAP_LIMIT
    }
}

fn kube_hint(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => {
            "; the Role needs get, list, watch, create and update on the state ConfigMap and \
             get and update on its parts NAME-0 … NAME-15 (deploy/kubernetes/rbac.yaml)"
        }
        _ => "",
    }
}

fn watch_hint(e: &watcher::Error) -> &'static str {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => kube_hint(e),
        watcher::Error::WatchError(s) if s.code == 403 => kube_hint(&kube::Error::Api(s.clone())),
        _ => "",
    }
}

/// Compresses a state and checks it fits the store.
pub(crate) fn encode(state: &State, location: &str) -> Result<Encoded, StoreError> {
    let bytes = state.encode()?;
    // Fast compression: most of the bytes are token deltas that barely
    // compress, and a save is on the way from a member change to its plan.
    let mut gz = GzEncoder::new(Vec::with_capacity(bytes.len() / 2), Compression::fast());
    let compressed = gz
        .write_all(&bytes)
        .and_then(|()| gz.finish())
        .map_err(|e| StoreError::Encode(format!("compressing: {e}")))?;
    let limit = MAX_PARTS * PART_BYTES;
    if compressed.len() > limit {
        let (members, tokens) = state.size_figures();
        return Err(StoreError::TooLarge {
            location: location.to_owned(),
            size: compressed.len(),
            uncompressed: bytes.len(),
            limit,
            members,
            tokens,
        });
    }
    let data = BTreeMap::from([
        ("epoch".to_owned(), state.epoch.to_string()),
        ("revision".to_owned(), state.revision.to_string()),
        ("members".to_owned(), state.committed.len().to_string()),
        (
            "plan".to_owned(),
            state.plan.as_ref().map_or_else(
                || "none".to_owned(),
                |p| format!("{} {}", p.id, p.state.as_str()),
            ),
        ),
    ]);
    Ok(Encoded { compressed, data })
}

/// Decompresses a stored state.
fn decompress(compressed: &[u8], location: &str) -> Result<Vec<u8>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        location: location.to_owned(),
        reason,
    };
    let mut bytes = Vec::new();
    GzDecoder::new(compressed)
        .take(DECOMPRESSED_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| corrupt(format!("its state does not decompress ({e})")))?;
    if bytes.len() as u64 > DECOMPRESSED_LIMIT {
        return Err(corrupt(format!(
            "its state decompresses to more than {DECOMPRESSED_LIMIT} bytes"
        )));
    }
    Ok(bytes)
}

/// The manifest's index of parts (an empty one if it has none).
fn index_of(map: &ConfigMap, location: &str) -> Result<PartsIndex, StoreError> {
    match map.data.as_ref().and_then(|d| d.get(PARTS_KEY)) {
        None => Ok(PartsIndex::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
            location: location.to_owned(),
            reason: format!("its data[\"{PARTS_KEY}\"] is unreadable ({e})"),
        }),
    }
}

/// The compressed state kept in the manifest itself.
fn inline_state<'a>(map: &'a ConfigMap, location: &str) -> Result<&'a [u8], StoreError> {
    map.binary_data
        .as_ref()
        .and_then(|b| b.get(STATE_KEY).or_else(|| b.get(LEGACY_STATE_KEY)))
        .map(|b| b.0.as_slice())
        .ok_or_else(|| StoreError::Corrupt {
            location: location.to_owned(),
            reason: format!(
                "it has neither binaryData[\"{STATE_KEY}\"] nor data[\"{PARTS_KEY}\"] (is it a \
                 ConfigMap ringleader wrote?)"
            ),
        })
}

/// A manifest read with the state it names.
struct Read {
    manifest: ConfigMap,
    index: PartsIndex,
    /// The state's bytes, decompressed.
    bytes: Vec<u8>,
}

impl ConfigMapStore {
    /// The ConfigMap `name` in `namespace` (it need not exist yet).
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            seen: Arc::default(),
            timeout: CALL_TIMEOUT,
        }
    }

    /// The same store with another time limit per API call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time limit of one call to the API server.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one API call within the time limit.
    async fn call<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, StoreError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| StoreError::Timeout {
                what,
                location: self.location(),
                after: self.timeout,
            })
    }

    /// `configmap NS/NAME`.
    pub fn location(&self) -> String {
        format!("configmap {}/{}", self.namespace, self.name)
    }

    fn seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_seen(&self, seen: Seen) {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = seen;
    }

    fn saw(&self, read: &Read) {
        self.set_seen(Seen {
            resource_version: read.manifest.metadata.resource_version.clone(),
            index: read.index.clone(),
        });
    }

    fn kube_error(&self, what: &'static str, source: kube::Error) -> StoreError {
        StoreError::Kube {
            what,
            location: self.location(),
            hint: kube_hint(&source),
            source,
        }
    }

    async fn get_named(&self, name: &str) -> Result<Option<ConfigMap>, StoreError> {
        self.call("reading", self.api.get_opt(name))
            .await?
            .map_err(|e| self.kube_error("reading", e))
    }

    /// Reads the manifest and the state it names, consistently: `None` when
    /// there is no manifest.
    async fn read(&self) -> Result<Option<Read>, StoreError> {
        let location = self.location();
        let mut previous: Option<(Option<String>, String)> = None;
        for _ in 0..MAX_READS {
            let Some(manifest) = self.get_named(&self.name).await? else {
                return Ok(None);
            };
            let rv = manifest.metadata.resource_version.clone();
            match self.read_parts(manifest, &location).await? {
                Ok(read) => return Ok(Some(read)),
                Err(part) => {
                    if let Some((before, part)) = &previous
                        && *before == rv
                    {
                        // The manifest did not move, its part did: not a
                        // save in progress but someone else's write.
                        return Err(StoreError::Corrupt {
                            location,
                            reason: format!(
                                "its part {part} was changed or deleted by someone else after \
                                 the state named it"
                            ),
                        });
                    }
                    previous = Some((rv, part));
                }
            }
        }
        Err(StoreError::Contended {
            location,
            attempts: MAX_READS,
        })
    }

    /// The state a manifest names; `Err(part)` if that part changed since
    /// the manifest was read (read the manifest again).
    async fn read_parts(
        &self,
        manifest: ConfigMap,
        location: &str,
    ) -> Result<Result<Read, String>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            location: location.to_owned(),
            reason,
        };
        let index = index_of(&manifest, location)?;
        let compressed = if index.parts.is_empty() {
            inline_state(&manifest, location)?.to_vec()
        } else {
            if index.parts.len() > MAX_PARTS {
                return Err(corrupt(format!(
                    "it names {} parts, more than {MAX_PARTS}",
                    index.parts.len()
                )));
            }
            let mut compressed = Vec::new();
            for part in &index.parts {
                let map = self.get_named(&part.name).await?;
                let Some(map) = map.filter(|m| {
                    m.metadata.resource_version.as_deref() == Some(&part.resource_version)
                }) else {
                    return Ok(Err(part.name.clone()));
                };
                let bytes = map
                    .binary_data
                    .as_ref()
                    .and_then(|b| b.get(PART_KEY))
                    .map(|b| b.0.as_slice())
                    .unwrap_or_default();
                if bytes.len() != part.bytes || xxh3_hex(bytes) != part.xxh3 {
                    return Err(corrupt(format!(
                        "its part {} does not hold what the manifest says ({} bytes, xxh3 {}; \
                         the manifest names {} bytes, xxh3 {})",
                        part.name,
                        bytes.len(),
                        xxh3_hex(bytes),
                        part.bytes,
                        part.xxh3
                    )));
                }
                compressed.extend_from_slice(bytes);
            }
            compressed
        };
        let bytes = {
            let location = location.to_owned();
            tokio::task::spawn_blocking(move || decompress(&compressed, &location))
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::Encode(format!("the decoder task failed: {e}")))
                })?
        };
        Ok(Ok(Read {
            manifest,
            index,
            bytes,
        }))
    }

    /// Reads the state; `None` when the ConfigMap does not exist.
    pub async fn load(&self) -> Result<Option<State>, StoreError> {
        let Some(read) = self.read().await? else {
            self.set_seen(Seen::default());
            return Ok(None);
        };
        let state = State::decode(&read.bytes, &self.location())?;
        self.saw(&read);
        Ok(Some(state))
    }

    /// Watches the ConfigMap: kube's watcher (list, then watch, both with
    /// `fieldSelector=metadata.name=NAME`; a 410 re-lists; errors are
    /// retried with jittered backoff) turned into the states it holds, one
    /// item per change of `resourceVersion` (`Changed(None)`: it is gone),
    /// and the watcher's errors. Never ends. Keeps its own place: it does
    /// not move the resourceVersion [`save`](Self::save) writes on.
    pub fn watch(&self) -> BoxStream<'static, Result<Refreshed, StoreError>> {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let events = watcher(self.api.clone(), config).default_backoff().boxed();
        let location = self.location();
        let store = self.clone();
        /// Where the stream is: the resourceVersion last yielded, and
        /// whether the list in progress found the ConfigMap.
        struct Place {
            last: Option<String>,
            listed: bool,
        }
        let place = Place {
            last: None,
            listed: false,
        };
        futures::stream::unfold((events, place), move |(mut events, mut place)| {
            let location = location.clone();
            let store = store.clone();
            async move {
                loop {
                    let item = match events.next().await? {
                        Ok(watcher::Event::Init) => {
                            place.listed = false;
                            continue;
                        }
                        Ok(watcher::Event::InitApply(map) | watcher::Event::Apply(map)) => {
                            place.listed = true;
                            let rv = map.metadata.resource_version.clone();
                            if rv.is_some() && rv == place.last {
                                Ok(Refreshed::Unchanged)
                            } else {
                                // The manifest, then the parts it names (read
                                // afresh if one moved on meanwhile).
                                match store.read_parts(map, &location).await {
                                    Ok(Ok(read)) => Ok(Some(read)),
                                    Ok(Err(_)) => store.read().await,
                                    Err(e) => Err(e),
                                }
                                .and_then(|read| match read {
                                    None => {
                                        place.last = None;
                                        Ok(Refreshed::Changed(None))
                                    }
                                    Some(read) => {
                                        State::decode(&read.bytes, &location).map(|state| {
                                            place.last = read.manifest.metadata.resource_version;
                                            Refreshed::Changed(Some(Box::new(state)))
                                        })
                                    }
                                })
                            }
                        }
                        // A re-list that found it: already yielded.
                        Ok(watcher::Event::InitDone) if place.listed => continue,
                        // Deleted, or the list did not find it.
                        Ok(watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                            place.last = None;
                            Ok(Refreshed::Changed(None))
                        }
                        Err(source) => Err(StoreError::Watch {
                            location: location.clone(),
                            hint: watch_hint(&source),
                            source,
                        }),
                    };
                    return Some((item, (events, place)));
                }
            }
        })
        .boxed()
    }

    fn labels(component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "ringleader".to_owned()),
            (
                "app.kubernetes.io/component".to_owned(),
                component.to_owned(),
            ),
        ])
    }

    fn manifest(
        &self,
        encoded: &Encoded,
        index: &PartsIndex,
        resource_version: Option<String>,
    ) -> Result<ConfigMap, StoreError> {
        let mut data = encoded.data.clone();
        if *index != PartsIndex::default() {
            data.insert(
                PARTS_KEY.to_owned(),
                serde_json::to_string(index).map_err(|e| StoreError::Encode(e.to_string()))?,
            );
        }
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version,
                labels: Some(Self::labels("state")),
                ..ObjectMeta::default()
            },
            binary_data: index.parts.is_empty().then(|| {
                BTreeMap::from([(STATE_KEY.to_owned(), ByteString(encoded.compressed.clone()))])
            }),
            data: Some(data),
            ..ConfigMap::default()
        })
    }

    fn params() -> PostParams {
        PostParams {
            field_manager: Some("ringleader".to_owned()),
            ..PostParams::default()
        }
    }

    /// Creates (`resource_version` `None`) or replaces, fenced, one
    /// ConfigMap. `Ok(None)`: the fence failed (a conflict, it exists
    /// already, or it is gone).
    async fn put(
        &self,
        map: ConfigMap,
        resource_version: Option<String>,
    ) -> Result<Option<ConfigMap>, StoreError> {
        let name = map.metadata.name.clone().unwrap_or_default();
        let written = match resource_version {
            None => {
                self.call("creating", self.api.create(&Self::params(), &map))
                    .await?
            }
            Some(rv) => {
                let mut map = map;
                map.metadata.resource_version = Some(rv);
                self.call("writing", self.api.replace(&name, &Self::params(), &map))
                    .await?
            }
        };
        match written {
            Ok(map) => Ok(Some(map)),
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => Ok(None),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(None),
            Err(e) => Err(self.kube_error("writing", e)),
        }
    }

    /// Writes the compressed state into pool ConfigMaps the manifest `seen`
    /// does not name. `Ok(None)`: a part's fence failed.
    async fn write_parts(
        &self,
        encoded: &Encoded,
        seen: &Seen,
    ) -> Result<Option<PartsIndex>, StoreError> {
        let in_use: BTreeSet<&str> = seen.index.parts.iter().map(|p| p.name.as_str()).collect();
        let free = part_names(&self.name)
            .into_iter()
            .filter(|n| !in_use.contains(n.as_str()));
        let mut index = PartsIndex {
            parts: Vec::new(),
            known: seen.index.known.clone(),
        };
        for (chunk, name) in encoded.compressed.chunks(PART_BYTES).zip(free) {
            let map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.namespace.clone()),
                    labels: Some(Self::labels("state-part")),
                    ..ObjectMeta::default()
                },
                binary_data: Some(BTreeMap::from([(
                    PART_KEY.to_owned(),
                    ByteString(chunk.to_vec()),
                )])),
                data: Some(BTreeMap::from([("of".to_owned(), self.name.clone())])),
                ..ConfigMap::default()
            };
            let Some(written) = self.put(map, index.known.get(&name).cloned()).await? else {
                return Ok(None);
            };
            let rv = written.metadata.resource_version.unwrap_or_default();
            index.known.insert(name.clone(), rv.clone());
            index.parts.push(PartRef {
                name,
                resource_version: rv,
                bytes: chunk.len(),
                xxh3: xxh3_hex(chunk),
            });
        }
        Ok(Some(index))
    }

    /// A part's fence failed. If the manifest is still the one this store
    /// last saw, records the pool's current resourceVersions in it (a fenced
    /// write, so of two writers only one can) and returns `Ok(None)` to try
    /// again; otherwise the manifest moved: what is stored now.
    async fn refence(&self, seen: &Seen) -> Result<Option<Read>, StoreError> {
        let manifest = self.get_named(&self.name).await?;
        let rv = manifest
            .as_ref()
            .and_then(|m| m.metadata.resource_version.clone());
        if rv != seen.resource_version {
            return Ok(match manifest {
                None => None,
                Some(m) => match self.read_parts(m, &self.location()).await? {
                    Ok(read) => Some(read),
                    Err(_) => self.read().await?,
                },
            });
        }
        let mut known = BTreeMap::new();
        for name in part_names(&self.name) {
            if let Some(part) = self.get_named(&name).await?
                && let Some(rv) = part.metadata.resource_version
            {
                known.insert(name, rv);
            }
        }
        let index = PartsIndex {
            parts: seen.index.parts.clone(),
            known,
        };
        let Some(mut manifest) = manifest else {
            // No manifest: no state names any part, nothing to fence.
            self.set_seen(Seen {
                resource_version: None,
                index: PartsIndex {
                    parts: Vec::new(),
                    known: index.known,
                },
            });
            return Ok(None);
        };
        manifest.data.get_or_insert_default().insert(
            PARTS_KEY.to_owned(),
            serde_json::to_string(&index).map_err(|e| StoreError::Encode(e.to_string()))?,
        );
        if let Some(written) = self.put(manifest, rv).await? {
            self.set_seen(Seen {
                resource_version: written.metadata.resource_version,
                index,
            });
        }
        Ok(None)
    }

    /// Writes the state with fenced writes; never over another writer's.
    pub async fn save(&self, state: &State) -> Result<(), StoreError> {
        let location = self.location();
        let encoded = {
            let (state, location) = (state.clone(), location.clone());
            tokio::task::spawn_blocking(move || encode(&state, &location))
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::Encode(format!("the encoder task failed: {e}")))
                })?
        };
        for _ in 0..MAX_CONFLICTS {
            let seen = self.seen();
            let known_bytes = serde_json::to_string(&seen.index.known).map_or(0, |s| s.len());
            let index = if encoded.fits_inline(known_bytes + 32) {
                PartsIndex {
                    parts: Vec::new(),
                    known: seen.index.known.clone(),
                }
            } else {
                match self.write_parts(&encoded, &seen).await? {
                    Some(index) => index,
                    None => match self.refence(&seen).await? {
                        None => continue,
                        Some(read) => return self.conflict(state, read, location),
                    },
                }
            };
            let manifest = self.manifest(&encoded, &index, None)?;
            if let Some(written) = self.put(manifest, seen.resource_version.clone()).await? {
                self.set_seen(Seen {
                    resource_version: written.metadata.resource_version,
                    index,
                });
                return Ok(());
            }
            // The manifest's fence failed: someone wrote it, or deleted it.
            match self.read().await? {
                None => {
                    warn!(%location, "the state ConfigMap was deleted; writing it again");
                    self.set_seen(Seen {
                        resource_version: None,
                        index: PartsIndex {
                            parts: Vec::new(),
                            known: index.known,
                        },
                    });
                }
                Some(read) => return self.conflict(state, read, location),
            }
        }
        Err(StoreError::Contended {
            location,
            attempts: MAX_CONFLICTS,
        })
    }

    /// Another writer's state is stored (or ours, whose answer was lost).
    fn conflict(&self, state: &State, read: Read, location: String) -> Result<(), StoreError> {
        let resolution = resolve_conflict(state, &read.bytes, &location)?;
        // From now on writes are fenced on what was read.
        self.saw(&read);
        match resolution {
            Resolution::AlreadyStored => Ok(()),
            Resolution::TakeOver(stored) => Err(StoreError::Conflict {
                location,
                stored,
                ours: state.position(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::RingSettings;
    use ringleader_planner::{Placement, PlanOptions};
    use ringleader_ring::{MemberSpec, Ring};

    fn ring(settings: RingSettings, n: usize) -> Ring {
        Ring::with_members(
            settings.ring_config(),
            (0..n).map(|i| MemberSpec::new(format!("db-{i}"))),
        )
        .unwrap()
    }

    fn state_with_plan(members: usize, tokens: u32) -> State {
        let settings = RingSettings {
            tokens_per_member: tokens,
            ..RingSettings::default()
        };
        let mut state = State::fresh(settings).unwrap();
        state.committed = ring(settings, members);
        state.epoch = 1;
        let target = state
            .committed
            .rebalance_to(
                &(0..members + members / 10)
                    .map(|i| MemberSpec::new(format!("db-{i}")))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let from = Placement::new(state.committed.clone(), settings.replication()).unwrap();
        let to = Placement::new(target.clone(), settings.replication()).unwrap();
        let plan = ringleader_planner::plan(&from, &to, &PlanOptions::default()).unwrap();
        state.plan = Some(crate::state::PlanRecord {
            id: "e1-test".into(),
            from_epoch: 1,
            to_epoch: 2,
            state: crate::state::PlanState::InProgress,
            target,
            settings,
            plan,
            times: crate::state::PlanTimes::default(),
        });
        state
    }

    /// The state a manifest holds inline.
    fn inline(map: &ConfigMap) -> Result<State, StoreError> {
        State::decode(&decompress(inline_state(map, "t")?, "t")?, "t")
    }

    #[test]
    fn a_thousand_members_with_a_plan_fit_one_configmap_with_room() {
        let state = state_with_plan(1000, 16);
        let encoded = encode(&state, "configmap t/s").unwrap();
        let size = encoded.compressed.len();
        let bytes = state.encode().unwrap().len();
        eprintln!(
            "1,000 members x 16 tokens, plan to 1,100: {bytes} bytes encoded, {size} compressed"
        );
        assert!(
            size < CONFIGMAP_LIMIT / 2,
            "{size} bytes for 1,000 members x 16 tokens with a plan to 1,100"
        );
        assert!(encoded.fits_inline(0));
        let map = ConfigMap {
            binary_data: Some(BTreeMap::from([(
                STATE_KEY.to_owned(),
                ByteString(encoded.compressed),
            )])),
            ..ConfigMap::default()
        };
        assert_eq!(inline(&map).unwrap(), state);
    }

    #[test]
    fn a_state_too_large_for_the_store_is_an_error_with_the_figures() {
        // Hashed tokens (quick to make, and as random as tokens get), no
        // plan: 4,000 x 256 = 1,024,000 tokens, about 8 MB compressed.
        let settings = RingSettings {
            tokens_per_member: 256,
            strategy: ringleader_ring::Strategy::Hashed,
            ..RingSettings::default()
        };
        let mut state = State::fresh(settings).unwrap();
        state.committed = ring(settings, 4000);
        let err = encode(&state, "configmap prod/ringleader-state").unwrap_err();
        let StoreError::TooLarge {
            size,
            limit,
            members,
            tokens,
            ..
        } = &err
        else {
            panic!("expected TooLarge, got {err}");
        };
        assert!(*size > *limit);
        assert_eq!(*limit, MAX_PARTS * PART_BYTES);
        assert_eq!((*members, *tokens), (4000, 1_024_000));
        assert!(!err.is_retryable());
        let message = err.to_string();
        for needle in [
            "configmap prod/ringleader-state",
            &size.to_string(),
            "8000000",
            "4000 members",
            &format!("{tokens} tokens"),
            "--tokens-per-member",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
    }

    #[test]
    fn a_configmap_without_the_state_is_refused() {
        let err = inline(&ConfigMap::default()).unwrap_err();
        assert!(err.to_string().contains("will not overwrite"), "{err}");
        let garbage = ConfigMap {
            binary_data: Some(BTreeMap::from([(
                STATE_KEY.to_owned(),
                ByteString(b"not gzip".to_vec()),
            )])),
            ..ConfigMap::default()
        };
        let err = inline(&garbage).unwrap_err();
        assert!(err.to_string().contains("does not decompress"), "{err}");
    }
}

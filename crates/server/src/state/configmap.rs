//! The ConfigMap store (`--state configmap:NAME`).
//!
//! The state is the same JSON the file store writes, gzip-compressed into
//! `binaryData["state.json.gz"]` (1,000 members × 16 tokens with a plan in
//! flight is a few hundred KiB), next to a few plain `data` keys for people
//! reading it with kubectl (`epoch`, `revision`, `members`, `plan`).
//!
//! Every write carries the `resourceVersion` last read or written, so the API
//! server refuses it (409) if anyone wrote in between. On a conflict the
//! store reads the ConfigMap again ([`resolve_conflict`]):
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
//! Followers watch the ConfigMap ([`ConfigMapStore::watch`]: kube's watcher
//! on the one object, by `fieldSelector=metadata.name=NAME`, which a Role
//! with `resourceNames` allows) rather than reading it again and again.
//!
//! Every call to the API server has a time limit ([`ConfigMapStore::timeout`]),
//! so a hung request cannot stall the coordinator. A state larger than a
//! ConfigMap can hold (1 MiB of data) is refused before any request, with
//! the figures ([`StoreError::TooLarge`]); the coordinator keeps showing the
//! last stored state, reports why on `/readyz`, and tries again.

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
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::warn;

/// The `binaryData` key holding the gzip-compressed state.
pub const STATE_KEY: &str = "state.json.gz";

/// The most a ConfigMap's `data` and `binaryData` may hold together
/// (keys and values, binary values counted raw): 1 MiB.
pub const CONFIGMAP_LIMIT: usize = 1 << 20;

/// The most a stored state may decompress to (a guard against a
/// ConfigMap that decompresses without end).
const DECOMPRESSED_LIMIT: u64 = 256 << 20;

/// Attempts of one save (a deleted ConfigMap is created again).
const MAX_CONFLICTS: usize = 5;

/// The default time limit of one call to the API server.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

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
/// (the state's JSON). Pure, so the coordinator simulation runs the very
/// rule the store uses: only "it is already there" or "take theirs over".
pub fn resolve_conflict(
    ours: &State,
    stored_json: &[u8],
    location: &str,
) -> Result<Resolution, StoreError> {
    if ours.encode().is_ok_and(|mine| mine == stored_json) {
        return Ok(Resolution::AlreadyStored);
    }
    let stored = State::decode(stored_json, location)?;
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

/// A state kept in a ConfigMap.
#[derive(Clone)]
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    /// The resourceVersion last read or written; `None` when the ConfigMap
    /// was not there (or not read yet).
    seen: Arc<Mutex<Option<String>>>,
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

/// A state as it goes into a ConfigMap.
#[derive(Debug)]
pub(crate) struct Encoded {
    compressed: Vec<u8>,
    data: BTreeMap<String, String>,
}

fn kube_hint(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => {
            "; the Role needs get, list, watch, create and update on configmaps (deploy/kubernetes/rbac.yaml)"
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

/// Compresses a state and checks it fits a ConfigMap.
pub(crate) fn encode(state: &State, location: &str) -> Result<Encoded, StoreError> {
    let json = state.encode()?;
    let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 3), Compression::default());
    gz.write_all(&json)
        .and_then(|()| gz.finish())
        .map_err(|e| StoreError::Encode(format!("compressing: {e}")))
        .and_then(|compressed| {
            let (members, tokens) = state.size_figures();
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
            let size = STATE_KEY.len()
                + compressed.len()
                + data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
            if size > CONFIGMAP_LIMIT {
                return Err(StoreError::TooLarge {
                    location: location.to_owned(),
                    size,
                    uncompressed: json.len(),
                    limit: CONFIGMAP_LIMIT,
                    members,
                    tokens,
                });
            }
            Ok(Encoded { compressed, data })
        })
}

/// The state's JSON out of a ConfigMap.
fn decompress(map: &ConfigMap, location: &str) -> Result<Vec<u8>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        location: location.to_owned(),
        reason,
    };
    let compressed = map
        .binary_data
        .as_ref()
        .and_then(|b| b.get(STATE_KEY))
        .ok_or_else(|| {
            corrupt(format!(
                "it has no binaryData[\"{STATE_KEY}\"] (is it a ConfigMap ringleader wrote?)"
            ))
        })?;
    let mut json = Vec::new();
    GzDecoder::new(compressed.0.as_slice())
        .take(DECOMPRESSED_LIMIT + 1)
        .read_to_end(&mut json)
        .map_err(|e| corrupt(format!("its {STATE_KEY} does not decompress ({e})")))?;
    if json.len() as u64 > DECOMPRESSED_LIMIT {
        return Err(corrupt(format!(
            "its {STATE_KEY} decompresses to more than {DECOMPRESSED_LIMIT} bytes"
        )));
    }
    Ok(json)
}

/// Reads the state out of a ConfigMap.
pub(crate) fn decode(map: &ConfigMap, location: &str) -> Result<State, StoreError> {
    State::decode(&decompress(map, location)?, location)
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

    fn seen(&self) -> Option<String> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_seen(&self, rv: Option<String>) {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = rv;
    }

    fn kube_error(&self, what: &'static str, source: kube::Error) -> StoreError {
        StoreError::Kube {
            what,
            location: self.location(),
            hint: kube_hint(&source),
            source,
        }
    }

    async fn get(&self) -> Result<Option<ConfigMap>, StoreError> {
        self.call("reading", self.api.get_opt(&self.name))
            .await?
            .map_err(|e| self.kube_error("reading", e))
    }

    /// Reads the state; `None` when the ConfigMap does not exist.
    pub async fn load(&self) -> Result<Option<State>, StoreError> {
        let Some(map) = self.get().await? else {
            self.set_seen(None);
            return Ok(None);
        };
        let state = decode(&map, &self.location())?;
        self.set_seen(map.metadata.resource_version.clone());
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
                                decode(&map, &location).map(|state| {
                                    place.last = rv;
                                    Refreshed::Changed(Some(Box::new(state)))
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

    fn object(&self, encoded: &Encoded, resource_version: Option<String>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version,
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/name".to_owned(), "ringleader".to_owned()),
                    ("app.kubernetes.io/component".to_owned(), "state".to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(
                STATE_KEY.to_owned(),
                ByteString(encoded.compressed.clone()),
            )])),
            data: Some(encoded.data.clone()),
            ..ConfigMap::default()
        }
    }

    /// Writes the state with optimistic concurrency; never over a newer one.
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
        let params = PostParams {
            field_manager: Some("ringleader".to_owned()),
            ..PostParams::default()
        };
        for _ in 0..MAX_CONFLICTS {
            let written = match self.seen() {
                None => {
                    self.call(
                        "creating",
                        self.api.create(&params, &self.object(&encoded, None)),
                    )
                    .await?
                }
                Some(rv) => {
                    self.call(
                        "writing",
                        self.api
                            .replace(&self.name, &params, &self.object(&encoded, Some(rv))),
                    )
                    .await?
                }
            };
            match written {
                Ok(map) => {
                    self.set_seen(map.metadata.resource_version);
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                    let Some(map) = self.get().await? else {
                        // Deleted since: write it again.
                        self.set_seen(None);
                        continue;
                    };
                    let json = decompress(&map, &location)?;
                    match resolve_conflict(state, &json, &location)? {
                        Resolution::AlreadyStored => {
                            self.set_seen(map.metadata.resource_version.clone());
                            return Ok(());
                        }
                        Resolution::TakeOver(stored) => {
                            // From now on writes are fenced on what was read:
                            // the caller continues from the stored state.
                            self.set_seen(map.metadata.resource_version.clone());
                            return Err(StoreError::Conflict {
                                location,
                                stored,
                                ours: state.position(),
                            });
                        }
                    }
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => {
                    warn!(%location, "the state ConfigMap was deleted; writing it again");
                    self.set_seen(None);
                }
                Err(e) => return Err(self.kube_error("writing", e)),
            }
        }
        Err(StoreError::Contended {
            location,
            attempts: MAX_CONFLICTS,
        })
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

    #[test]
    fn a_thousand_members_with_a_plan_fit_with_room() {
        let state = state_with_plan(1000, 16);
        let encoded = encode(&state, "configmap t/s").unwrap();
        let size = encoded.compressed.len();
        let json = state.encode().unwrap().len();
        eprintln!(
            "1,000 members x 16 tokens, plan to 1,100: {json} bytes of JSON, {size} compressed"
        );
        assert!(
            size < CONFIGMAP_LIMIT / 2,
            "{size} bytes for 1,000 members x 16 tokens with a plan to 1,100"
        );
        // And it reads back (the summary's floats may differ in the last
        // bit through JSON; rings and moves exactly).
        let map = ConfigMap {
            binary_data: Some(BTreeMap::from([(
                STATE_KEY.to_owned(),
                ByteString(encoded.compressed),
            )])),
            ..ConfigMap::default()
        };
        assert_eq!(decompress(&map, "t").unwrap(), state.encode().unwrap());
        let back = decode(&map, "configmap t/s").unwrap();
        assert_eq!(back.position(), state.position());
        assert_eq!(back.committed, state.committed);
        let (a, b) = (back.plan.unwrap(), state.plan.unwrap());
        assert_eq!(
            (a.id, a.target, a.plan.moves),
            (b.id, b.target, b.plan.moves)
        );
    }

    #[test]
    fn a_state_too_large_for_a_configmap_is_an_error_with_the_figures() {
        // Hashed tokens (quick to make), no plan: 3,000 x 64 = 192,000 tokens.
        let settings = RingSettings {
            tokens_per_member: 64,
            strategy: ringleader_ring::Strategy::Hashed,
            ..RingSettings::default()
        };
        let mut state = State::fresh(settings).unwrap();
        state.committed = ring(settings, 3000);
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
        assert_eq!(*limit, CONFIGMAP_LIMIT);
        assert_eq!((*members, *tokens), (3000, 192_000));
        assert!(!err.is_retryable());
        let message = err.to_string();
        for needle in [
            "configmap prod/ringleader-state",
            &size.to_string(),
            "1048576",
            "3000 members",
            &format!("{tokens} tokens"),
            "--tokens-per-member",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
    }

    #[test]
    fn a_configmap_without_the_state_key_is_refused() {
        let err = decode(&ConfigMap::default(), "configmap t/s").unwrap_err();
        assert!(err.to_string().contains("will not overwrite"), "{err}");
        let garbage = ConfigMap {
            binary_data: Some(BTreeMap::from([(
                STATE_KEY.to_owned(),
                ByteString(b"not gzip".to_vec()),
            )])),
            ..ConfigMap::default()
        };
        let err = decode(&garbage, "configmap t/s").unwrap_err();
        assert!(err.to_string().contains("does not decompress"), "{err}");
    }
}

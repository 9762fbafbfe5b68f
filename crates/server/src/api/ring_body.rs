//! `GET /v1/ring` bodies, built once and shared.
//!
//! At 1,000 members × 256 tokens the token list is 13 MB of JSON; built per
//! request, 32 slow readers held 32 copies (537 MiB). Here the token list of
//! a ring is serialised once per epoch (the [`Ring`] is shared by every view
//! of one epoch, so its pointer identifies it), in both forms DESIGN §6
//! names: `tokens=true` (`[{"token": "…", "member": "…"}, …]`) and
//! `tokens=compact` (each member's tokens as base64 of little-endian u64s).
//! The rest of the body (members, states, addresses: small) is serialised
//! once per published view. A response is the chain of the shared parts, so
//! readers hold references, not copies; the ETag is a hash of those parts,
//! known once they exist, so a `304` costs a string comparison.

use base64::Engine as _;
use bytes::Bytes;
use ringleader_client::api::{PlanResponse, RingResponse};
use ringleader_ring::Ring;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::view::View;

/// Which token list a request asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenForm {
    /// No tokens.
    #[default]
    False,
    /// Every token with its owner, sorted by token, decimal strings.
    True,
    /// Each member's tokens as base64 of little-endian u64s.
    Compact,
}

/// One encoded part and its hash.
#[derive(Clone, Debug)]
struct Part {
    bytes: Bytes,
    hash: u64,
}

impl Part {
    fn new(bytes: Vec<u8>) -> Self {
        let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
        Self {
            bytes: Bytes::from(bytes),
            hash,
        }
    }
}

/// The token lists of one ring, each built on first use.
#[derive(Default)]
struct TokenLists {
    full: OnceLock<Part>,
    compact: OnceLock<Part>,
}

/// The body of one view without its token list.
struct Head {
    /// `{"epoch": …, …}` without the closing brace.
    open: Part,
}

/// A ready answer: its parts and its ETag.
#[derive(Clone, Debug)]
pub struct RingBody {
    /// The ETag, quoted.
    pub etag: String,
    /// The body in parts, to send in order.
    pub parts: Vec<Bytes>,
}

/// The head of one view, with the directory version it was built with.
type CachedHead = (Arc<View>, u64, Arc<Head>);

/// The shared caches of `GET /v1/ring` (one per server).
#[derive(Default)]
pub struct RingBodies {
    tokens: Mutex<Option<(Arc<Ring>, Arc<TokenLists>)>>,
    head: Mutex<Option<CachedHead>>,
    plan: Mutex<Option<(Arc<View>, Part)>>,
}

impl std::fmt::Debug for RingBodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBodies").finish_non_exhaustive()
    }
}

/// Drops `value` on tokio's blocking pool when there is a runtime, else
/// here. A cache here often holds the last reference to the view it
/// replaces: freeing that view (its rings with their indexes, its plan)
/// took 2 % of a change's CPU at 1,000 × 256, on the first request that
/// shows the new epoch.
fn drop_off_path<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(value));
        }
        Err(_) => drop(value),
    }
}

impl RingBodies {
    /// The body of `view` with the token list asked for.
    pub fn body(
        &self,
        view: &Arc<View>,
        directory: Option<&super::Directory>,
        form: TokenForm,
    ) -> Result<RingBody, serde_json::Error> {
        let head = self.head(view, directory)?;
        let tokens = match form {
            TokenForm::False => None,
            TokenForm::True => Some(self.lists(view).full_part(&view.ring)),
            TokenForm::Compact => Some(self.lists(view).compact_part(&view.ring)),
        };
        let (tag, key) = match form {
            TokenForm::False => ("", "".as_bytes()),
            TokenForm::True => ("t", r#","tokens":"#.as_bytes()),
            TokenForm::Compact => ("c", r#","compact_tokens":"#.as_bytes()),
        };
        let mut parts = vec![head.open.bytes.clone()];
        let mut hash = head.open.hash;
        if let Some(tokens) = tokens {
            parts.push(Bytes::from_static(key));
            parts.push(tokens.bytes);
            hash = xxhash_rust::xxh3::xxh3_64_with_seed(&tokens.hash.to_le_bytes(), hash);
        }
        parts.push(Bytes::from_static(b"}"));
        Ok(RingBody {
            etag: format!("\"{hash:016x}{tag}\""),
            parts,
        })
    }

    /// `GET /v1/plan`'s body of `view`, serialised once per view.
    pub fn plan(&self, view: &Arc<View>) -> Result<RingBody, serde_json::Error> {
        let mut cached = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let part = match &*cached {
            Some((cached_view, part)) if Arc::ptr_eq(cached_view, view) => part.clone(),
            _ => {
                let body = PlanResponse {
                    plan: view.plan_view().cloned(),
                };
                let part = Part::new(serde_json::to_vec(&body)?);
                drop_off_path(cached.replace((view.clone(), part.clone())));
                part
            }
        };
        Ok(RingBody {
            etag: format!("\"{:016x}p\"", part.hash),
            parts: vec![part.bytes],
        })
    }

    fn head(
        &self,
        view: &Arc<View>,
        directory: Option<&super::Directory>,
    ) -> Result<Arc<Head>, serde_json::Error> {
        let version = directory.map_or(0, |d| d.version);
        if let Some((cached_view, cached_version, head)) =
            &*self.head.lock().unwrap_or_else(PoisonError::into_inner)
            && Arc::ptr_eq(cached_view, view)
            && *cached_version == version
        {
            return Ok(head.clone());
        }
        let response = RingResponse {
            epoch: view.epoch,
            settings: view.settings_view(),
            members: super::handlers::member_views(view, directory),
            balance: view.figures.balance,
            tokens: None,
            compact_tokens: None,
            plan_in_flight: view.plan_in_progress().is_some(),
            leader: view.leader.clone(),
        };
        let mut bytes = serde_json::to_vec(&response)?;
        // An object always ends with '}': open it up for the token list.
        if bytes.last() == Some(&b'}') {
            bytes.pop();
        }
        let head = Arc::new(Head {
            open: Part::new(bytes),
        });
        let previous = self
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace((view.clone(), version, head.clone()));
        drop_off_path(previous);
        Ok(head)
    }

    fn lists(&self, view: &View) -> Arc<TokenLists> {
        let mut cached = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        match &*cached {
            Some((ring, lists)) if Arc::ptr_eq(ring, &view.ring) => lists.clone(),
            _ => {
                let lists = Arc::new(TokenLists::default());
                drop_off_path(cached.replace((view.ring.clone(), lists.clone())));
                lists
            }
        }
    }
}

impl TokenLists {
    fn full_part(&self, ring: &Ring) -> Part {
        self.full.get_or_init(|| Part::new(full_list(ring))).clone()
    }

    fn compact_part(&self, ring: &Ring) -> Part {
        self.compact
            .get_or_init(|| Part::new(compact_list(ring)))
            .clone()
    }
}

/// `[{"token":"…","member":"…"},…]`, sorted by token.
fn full_list(ring: &Ring) -> Vec<u8> {
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(ring.tokens().len() * 48 + 2);
    out.push(b'[');
    for (i, (token, owner)) in ring.token_owners().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let name = names.entry(owner.as_str()).or_insert_with(|| {
            serde_json::to_string(owner.as_str()).unwrap_or_else(|_| "\"\"".to_owned())
        });
        out.extend_from_slice(br#"{"token":""#);
        out.extend_from_slice(token.to_string().as_bytes());
        out.extend_from_slice(br#"","member":"#);
        out.extend_from_slice(name.as_bytes());
        out.push(b'}');
    }
    out.push(b']');
    out
}

/// `[{"member":"…","tokens":"<base64 of LE u64s>"},…]`, members in ring
/// order, each member's tokens ascending.
fn compact_list(ring: &Ring) -> Vec<u8> {
    let mut by_member: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (token, owner) in ring.token_owners() {
        by_member
            .entry(owner.as_str())
            .or_default()
            .extend_from_slice(&token.to_le_bytes());
    }
    let mut out = Vec::with_capacity(ring.tokens().len() * 11 + ring.len() * 32 + 2);
    out.push(b'[');
    let mut first = true;
    for member in ring.members() {
        let Some(bytes) = by_member.get(member.id.as_str()) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(br#"{"member":"#);
        out.extend_from_slice(
            serde_json::to_string(member.id.as_str())
                .unwrap_or_else(|_| "\"\"".to_owned())
                .as_bytes(),
        );
        out.extend_from_slice(br#","tokens":""#);
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .as_bytes(),
        );
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
    out
}

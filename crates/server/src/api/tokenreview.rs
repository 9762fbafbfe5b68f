//! `--auth tokenreview`: a write's bearer token is checked with a
//! Kubernetes `TokenReview` (`authentication.k8s.io/v1`, create), and allowed
//! only if the API server authenticates it as one of the `--allow-writer`
//! users (`system:serviceaccount:NS:NAME`).
//!
//! It fails closed: when the API server cannot be asked (unreachable,
//! timing out, refusing the review), the write is refused with a 503 saying
//! so — never let through. Positive answers ("this token is user U") are
//! cached briefly (30 s), keyed by the token's SHA-256, so a shard reporting
//! many moves costs one review; refusals are not cached, so a token that
//! becomes valid works at once.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Api;
use kube::api::PostParams;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};

/// How long a positive review is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Entries kept at most (a cache full of live entries is emptied).
const CACHE_ENTRIES: usize = 4096;

/// How long a review may take before the write is refused.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of checking one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Review {
    /// Authenticated as this user, who is allowed to write.
    Allowed(String),
    /// Authenticated as this user, who is not allowed to write.
    NotAllowed(String),
    /// The API server did not authenticate the token (with its reason, if
    /// it gave one).
    Unauthenticated(Option<String>),
    /// The API server could not be asked; the write is refused.
    Unavailable(String),
}

/// Checks tokens with TokenReviews.
pub struct TokenReviewer {
    api: Api<TokenReview>,
    allowed: BTreeSet<String>,
    cache: Mutex<HashMap<[u8; 32], (Instant, String)>>,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TokenReviewer {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for TokenReviewer {}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(d.as_ref());
    key
}

impl TokenReviewer {
    /// A reviewer asking the API server behind `client`, allowing `writers`.
    pub fn new(client: kube::Client, writers: impl IntoIterator<Item = String>) -> Self {
        Self {
            api: Api::all(client),
            allowed: writers.into_iter().collect(),
            cache: Mutex::default(),
        }
    }

    /// The users allowed to write.
    pub fn allowed(&self) -> &BTreeSet<String> {
        &self.allowed
    }

    fn decide(&self, user: String) -> Review {
        if self.allowed.contains(&user) {
            Review::Allowed(user)
        } else {
            Review::NotAllowed(user)
        }
    }

    fn cached(&self, key: &[u8; 32], now: Instant) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|(at, _)| now < *at + CACHE_TTL)
            .map(|(_, user)| user.clone())
    }

    fn remember(&self, key: [u8; 32], user: String, now: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (at, _)| now < *at + CACHE_TTL);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (now, user));
    }

    /// Checks a bearer token.
    pub async fn review(&self, token: &str) -> Review {
        let key = digest(token);
        let now = Instant::now();
        if let Some(user) = self.cached(&key, now) {
            return self.decide(user);
        }
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = tokio::time::timeout(
            REVIEW_TIMEOUT,
            self.api.create(&PostParams::default(), &request),
        )
        .await;
        let review = match answer {
            Err(_) => {
                return Review::Unavailable(format!(
                    "the Kubernetes API server did not answer the TokenReview within {REVIEW_TIMEOUT:?}"
                ));
            }
            Ok(Err(kube::Error::Api(s))) if s.is_forbidden() => {
                warn!(error = %s, "the TokenReview was refused: this coordinator's ServiceAccount may not create tokenreviews");
                return Review::Unavailable(format!(
                    "the Kubernetes API server refused the TokenReview ({s}); the coordinator's ServiceAccount needs \
                     create on tokenreviews.authentication.k8s.io (deploy/kubernetes/components/tokenreview)"
                ));
            }
            Ok(Err(e)) => {
                warn!(error = %e, "TokenReview failed; refusing the write");
                return Review::Unavailable(format!(
                    "the Kubernetes API server could not review the token ({e})"
                ));
            }
            Ok(Ok(review)) => review,
        };
        let status = review.status.unwrap_or_default();
        let user = status
            .user
            .and_then(|u| u.username)
            .filter(|u| !u.is_empty());
        match (status.authenticated, user) {
            (Some(true), Some(user)) => {
                debug!(%user, "token reviewed");
                self.remember(key, user.clone(), now);
                self.decide(user)
            }
            _ => Review::Unauthenticated(status.error.filter(|e| !e.is_empty())),
        }
    }
}

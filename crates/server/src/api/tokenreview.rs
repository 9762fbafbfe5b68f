//! `--auth tokenreview`: a write's bearer token is checked with a
//! Kubernetes `TokenReview` (`authentication.k8s.io/v1`, create), and allowed
//! only if the API server authenticates it as one of the `--allow-writer`
//! users (`system:serviceaccount:NS:NAME`). With `--auth-reads`, reads are
//! checked the same way and allowed to the `--allow-reader` users (or, when
//! none are named, to anyone the API server authenticates).
//!
//! Reviews carry the `--token-audience` audiences, so only tokens minted
//! for this coordinator (a projected service-account token with that
//! audience) authenticate; without audiences the API server's own audience
//! applies.
//!
//! It fails closed: when the API server cannot be asked (unreachable,
//! timing out, refusing the review), the request is refused with a 503
//! saying so — never let through. Answers are cached, keyed by the token's
//! SHA-256 (the token itself is not kept): positive ones for 30 s, so a
//! shard reporting many moves costs one review; negative ones for 10 s, so
//! a client retrying a bogus token costs one review per 10 s, not one per
//! request. At most [`MAX_REVIEWS_IN_FLIGHT`] reviews run at once; beyond
//! that a request with an uncached token gets a 429, so a flood of random
//! tokens cannot turn into a flood of TokenReviews.

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

/// How long a token the API server did not authenticate is refused without
/// asking again.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(10);

/// TokenReviews running at once; more uncached tokens are refused (429).
pub const MAX_REVIEWS_IN_FLIGHT: usize = 8;

/// Entries kept at most (a cache full of live entries is emptied).
const CACHE_ENTRIES: usize = 4096;

/// How long a review may take before the write is refused.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of checking one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Review {
    /// The API server authenticated the token as this user.
    Authenticated(String),
    /// The API server did not authenticate the token (with its reason, if
    /// it gave one).
    Unauthenticated(Option<String>),
    /// The API server could not be asked; the request is refused.
    Unavailable(String),
    /// Too many reviews are running; the request is refused (429).
    Throttled,
}

/// Who may do what, and the audiences tokens must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReviewPolicy {
    /// Users allowed to write (`--allow-writer`).
    pub writers: BTreeSet<String>,
    /// Users allowed to read when reads are authenticated
    /// (`--allow-reader`); empty: anyone authenticated.
    pub readers: BTreeSet<String>,
    /// Audiences sent with each review (`--token-audience`).
    pub audiences: Vec<String>,
}

/// A cached answer.
#[derive(Clone, Debug)]
enum Cached {
    User(String),
    Refused(Option<String>),
}

/// Checks tokens with TokenReviews.
pub struct TokenReviewer {
    api: Api<TokenReview>,
    policy: ReviewPolicy,
    cache: Mutex<HashMap<[u8; 32], (Instant, Cached)>>,
    in_flight: tokio::sync::Semaphore,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("policy", &self.policy)
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
    /// A reviewer asking the API server behind `client`.
    pub fn new(client: kube::Client, policy: ReviewPolicy) -> Self {
        Self {
            api: Api::all(client),
            policy,
            cache: Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
        }
    }

    /// The users allowed to write.
    pub fn allowed(&self) -> &BTreeSet<String> {
        &self.policy.writers
    }

    /// Who may do what.
    pub fn policy(&self) -> &ReviewPolicy {
        &self.policy
    }

    /// Whether `user` may write.
    pub fn may_write(&self, user: &str) -> bool {
        self.policy.writers.contains(user)
    }

    /// Whether `user` may read (when reads are authenticated).
    pub fn may_read(&self, user: &str) -> bool {
        self.policy.readers.is_empty()
            || self.policy.readers.contains(user)
            || self.policy.writers.contains(user)
    }

    fn cached(&self, key: &[u8; 32], now: Instant) -> Option<Review> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(key).and_then(|(at, answer)| match answer {
            Cached::User(user) if now < *at + CACHE_TTL => {
                Some(Review::Authenticated(user.clone()))
            }
            Cached::Refused(reason) if now < *at + NEGATIVE_CACHE_TTL => {
                Some(Review::Unauthenticated(reason.clone()))
            }
            _ => None,
        })
    }

    fn remember(&self, key: [u8; 32], answer: Cached, now: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (at, _)| now < *at + CACHE_TTL);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (now, answer));
    }

    /// Checks a bearer token: who the API server says it belongs to.
    pub async fn review(&self, token: &str) -> Review {
        let key = digest(token);
        let now = Instant::now();
        if let Some(answer) = self.cached(&key, now) {
            return answer;
        }
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Review::Throttled;
        };
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: (!self.policy.audiences.is_empty())
                    .then(|| self.policy.audiences.clone()),
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
                self.remember(key, Cached::User(user.clone()), now);
                Review::Authenticated(user)
            }
            _ => {
                let reason = status.error.filter(|e| !e.is_empty());
                self.remember(key, Cached::Refused(reason.clone()), now);
                Review::Unauthenticated(reason)
            }
        }
    }
}

//! The HTTP API (DESIGN §6), on axum.
//!
//! Routes are declared in one place, [`router`], so the API reads as a
//! table. Handlers are small async functions that read the latest
//! [`View`](crate::view::View) (never waiting for the coordinator) or send a
//! [`Command`](crate::runtime::Command) for writes. Every error is
//! `{"error": {"code", "message"}}`; bodies have a size limit; requests
//! beyond the concurrency limit get a 503 `overloaded` rather than queueing
//! without bound, and requests that take longer than the request timeout a
//! 503 `timeout`. Connection-level bounds (connections, header-read and
//! idle timeouts) are in [`crate::http`].

mod error;
mod handlers;
mod openapi;
mod page;
mod ring_body;
mod sse;
pub(crate) mod status;
pub mod tokenreview;

pub use error::{ApiError, ApiJson};
pub use openapi::ApiDoc;
pub use ring_body::TokenForm;
pub use tokenreview::{Review, ReviewPolicy, TokenReviewer};

use crate::runtime::Handle;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tower::ServiceBuilder;

/// Who may write (report moves done).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteAuth {
    /// No writer is configured: writes are refused, saying how to enable
    /// them.
    Disabled,
    /// Anyone may write (`--auth none`, for local experiments).
    Open,
    /// The bearer token must equal this one (`--auth-token-file`).
    Token(String),
    /// The bearer token is checked with a Kubernetes TokenReview and must
    /// belong to an allowed user (`--auth tokenreview --allow-writer U`).
    TokenReview(Arc<TokenReviewer>),
}

/// Limits that keep the server responsive under load.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    /// Requests handled at once; more get a 503.
    pub concurrency: usize,
    /// `GET /v1/watch` subscribers at once; more get a 503.
    pub watchers: usize,
    /// Keys in one batch lookup.
    pub batch_keys: usize,
    /// Members in one preview.
    pub preview_members: usize,
    /// Largest weight of a member in a preview.
    pub preview_weight: u32,
    /// Tokens of a preview's ring (members × weight × tokens per member):
    /// what its memory and time grow with.
    pub preview_tokens: usize,
    /// Previews computed at once; more get a 503.
    pub previews: usize,
    /// Longest time a request may take before it is answered 503 `timeout`
    /// (streams count until their headers are sent).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 4 << 20,
            concurrency: 1024,
            watchers: 256,
            batch_keys: 10_000,
            preview_members: 1024,
            preview_weight: 16,
            // 1,024 members × 256 tokens: the largest ring DESIGN §8 sizes.
            preview_tokens: 262_144,
            previews: 2,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The running coordinator.
    pub handle: Handle,
    /// Who may write.
    pub write_auth: Arc<WriteAuth>,
    /// Whether reads need the token too.
    pub reads_need_token: bool,
    /// Limits.
    pub limits: Limits,
    /// Free slots for watchers.
    pub watchers: Arc<Semaphore>,
    /// Free slots for previews.
    pub previews: Arc<Semaphore>,
    /// `GET /v1/ring` and `GET /v1/plan` bodies, shared between requests.
    pub bodies: Arc<ring_body::RingBodies>,
    /// Turns true on shutdown (ends watch streams).
    pub shutdown: watch::Receiver<bool>,
    /// With leader election: the leader's advertised API URL, where a
    /// follower forwards writes.
    pub leader_url: Option<watch::Receiver<Option<String>>>,
    /// The HTTP client that forwards writes.
    pub forwarder: reqwest::Client,
    /// With leader election: members' addresses from this replica's own
    /// membership watch, for a follower's view (the stored state has none).
    pub directory: Option<watch::Receiver<Arc<Directory>>>,
}

/// Members' addresses as a replica's own membership source last saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    /// Changes with every update (part of cached bodies' identity).
    pub version: u64,
    /// Member id → addresses.
    pub addresses: std::collections::HashMap<String, Vec<String>>,
}

impl AppState {
    /// State for the router.
    pub fn new(
        handle: Handle,
        write_auth: WriteAuth,
        reads_need_token: bool,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            handle,
            write_auth: Arc::new(write_auth),
            reads_need_token,
            limits,
            watchers: Arc::new(Semaphore::new(limits.watchers)),
            previews: Arc::new(Semaphore::new(limits.previews)),
            bodies: Arc::default(),
            shutdown,
            leader_url: None,
            forwarder: reqwest::Client::new(),
            directory: None,
        }
    }

    /// Fills in members' addresses on a follower from `directory`.
    #[must_use]
    pub fn with_directory(mut self, directory: watch::Receiver<Arc<Directory>>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Forwards writes a follower receives to the URL the leader
    /// advertises (`--advertise-url`, on the Lease).
    #[must_use]
    pub fn with_leader_url(mut self, leader_url: watch::Receiver<Option<String>>) -> Self {
        self.leader_url = Some(leader_url);
        self
    }
}

/// The API as a router.
pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let metrics = state.handle.metrics.clone();
    Router::new()
        .route("/v1/ring", get(handlers::get_ring))
        .route(
            "/v1/lookup",
            get(handlers::get_lookup).post(handlers::post_lookup),
        )
        .route("/v1/members/{id}/ranges", get(handlers::get_member_ranges))
        .route("/v1/members/{id}/work", get(handlers::get_member_work))
        .route("/v1/plan", get(handlers::get_plan))
        .route("/v1/plan/moves/{id}/done", post(handlers::post_move_done))
        .route("/v1/preview", post(handlers::post_preview))
        .route("/v1/watch", get(sse::watch))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        // The operator's view: the page, and the one-screen status it and
        // `ringleader status` read.
        .route("/", get(page::index))
        .route("/v1/status", get(status::get_status))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        // The extractor's 413 does not know the limit: say it here.
        .layer(axum::middleware::map_response(
            move |response: axum::response::Response| async move {
                if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    return ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!(
                            "the request body is larger than the {} bytes this server accepts (--max-body)",
                            limits.body_bytes
                        ),
                    )
                    .into_response();
                }
                response
            },
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |error: tower::BoxError| {
                    let metrics = metrics.clone();
                    async move {
                        if error.is::<tower::timeout::error::Elapsed>() {
                            return ApiError::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "timeout",
                                format!(
                                    "the request took longer than {:?} (--request-timeout) and was abandoned",
                                    limits.request_timeout
                                ),
                            );
                        }
                        metrics.overload_rejections.inc();
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "overloaded",
                            "too many requests at once; retry shortly",
                        )
                    }
                }))
                .load_shed()
                .concurrency_limit(limits.concurrency)
                .timeout(limits.request_timeout),
        )
        .with_state(state)
}

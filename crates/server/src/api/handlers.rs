//! The route handlers.

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::ring_body::{RingBody, TokenForm};
use super::tokenreview::Review;
use super::{AppState, WriteAuth};
use crate::coordinator::CoordinatorError;
use crate::runtime::{Command, CommandError, not_leader_message};
use crate::state::PlanState;
use crate::view::{View, move_view, range_view, summary_view};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ringleader_client::api::{
    ErrorResponse, HealthResponse, LookupBatchRequest, LookupBatchResponse, LookupResponse,
    MemberRangesResponse, MemberState, MemberView, MoveDoneResponse, PlanResponse, PreviewRequest,
    PreviewResponse, RingResponse, WorkMove, WorkResponse,
};
use ringleader_planner::{Holdings, MoveState, Placement, PlanError, PlanOptions};
use ringleader_ring::{MemberSpec, Replication, hash_key};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

fn current(state: &AppState) -> Arc<View> {
    state.handle.view.borrow().clone()
}

/// The bearer token presented, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Compares a presented bearer token with the expected one in constant time.
fn token_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(presented) = bearer(headers) else {
        return false;
    };
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A write sent to a follower: 503 (the write may succeed against the
/// leader, or here after a take-over), naming the leader.
fn not_leader(leader: Option<&str>) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_leader",
        not_leader_message(leader),
    )
}

/// What a request wants to do, for authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Read => "reads",
            Access::Write => "writes",
        }
    }
}

async fn review(
    reviewer: &super::TokenReviewer,
    headers: &HeaderMap,
    access: Access,
) -> Result<(), ApiError> {
    let verb = access.verb();
    let Some(token) = bearer(headers) else {
        return Err(ApiError::unauthorized(format!(
            "{verb} need Authorization: Bearer <service-account token> (checked with a Kubernetes TokenReview)"
        )));
    };
    match reviewer.review(token).await {
        Review::Authenticated(user) => {
            let allowed = match access {
                Access::Read => reviewer.may_read(&user),
                Access::Write => reviewer.may_write(&user),
            };
            if allowed {
                return Ok(());
            }
            let (flag, users, what) = match access {
                Access::Write => ("--allow-writer", &reviewer.policy().writers, "write to"),
                Access::Read => ("--allow-reader", &reviewer.policy().readers, "read from"),
            };
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{user} may not {what} this coordinator; it allows {} ({flag})",
                    users
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
        Review::Unauthenticated(reason) => Err(ApiError::unauthorized(format!(
            "the Kubernetes API server did not authenticate the bearer token{}",
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ))),
        Review::Unavailable(reason) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            format!(
                "cannot check the bearer token, so the request is refused: {reason}; retry once the API server answers"
            ),
        )),
        Review::Throttled => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_reviews",
            "too many tokens are being checked with TokenReviews at once; retry in a second",
        )),
    }
}

async fn authorize(state: &AppState, headers: &HeaderMap, access: Access) -> Result<(), ApiError> {
    if access == Access::Read && !state.reads_need_token {
        return Ok(());
    }
    let verb = access.verb();
    match &*state.write_auth {
        WriteAuth::TokenReview(reviewer) => review(reviewer, headers, access).await,
        WriteAuth::Open => Ok(()),
        WriteAuth::Disabled => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "writes_disabled",
            format!(
                "this coordinator accepts no {verb}: start it with --auth-token-file PATH (or --auth none for a local experiment)"
            ),
        )),
        WriteAuth::Token(expected) => {
            if token_matches(headers, expected) {
                Ok(())
            } else if headers.contains_key(header::AUTHORIZATION) {
                Err(ApiError::unauthorized(
                    "the bearer token is not the one this coordinator was given",
                ))
            } else {
                Err(ApiError::unauthorized(format!(
                    "{verb} need Authorization: Bearer <token> (the --auth-token-file contents)"
                )))
            }
        }
    }
}

async fn check_write(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    authorize(state, headers, Access::Write).await
}

/// Checks a read: open unless `--auth-reads`, then as a write's token (or a
/// TokenReview of an allowed reader).
pub(super) async fn check_read(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    authorize(state, headers, Access::Read).await
}

/// Query of `GET /v1/ring`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RingQuery {
    /// Add the token list: `true` (every token and its owner, decimal),
    /// `compact` (each member's tokens as base64 of little-endian u64s;
    /// what the client library uses) or `false` (none, the default).
    #[serde(default)]
    #[param(inline)]
    pub tokens: TokenForm,
}

/// Whether an `If-None-Match` header names `etag`.
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|t| {
                let t = t.trim();
                t == etag || t == "*" || t.trim_start_matches("W/") == etag
            })
        })
}

/// A shared body in parts, or a 304 when the client has it.
fn shared_body(headers: &HeaderMap, body: RingBody) -> Response {
    let etag = HeaderValue::from_str(&body.etag).expect("hex in quotes is a valid header");
    if etag_matches(headers, &body.etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let length: usize = body.parts.iter().map(bytes::Bytes::len).sum();
    let chunks = futures::stream::iter(
        body.parts
            .into_iter()
            .map(Ok::<_, std::convert::Infallible>),
    );
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("encoding the response: {e}"),
    )
}

/// Members as `GET /v1/ring` lists them. A follower's view comes from the
/// stored state, which has no addresses: they are filled in from the
/// membership directory when there is one.
pub(super) fn member_views(view: &View, directory: Option<&super::Directory>) -> Vec<MemberView> {
    let mut members = view.member_views();
    if let Some(directory) = directory.filter(|_| view.follower) {
        for member in members.iter_mut().filter(|m| m.addresses.is_empty()) {
            if let Some(addresses) = directory.addresses.get(&member.id) {
                member.addresses.clone_from(addresses);
            }
        }
    }
    members
}

/// `GET /v1/ring`.
#[utoipa::path(get, path = "/v1/ring", params(RingQuery),
    security((), ("bearer" = [])),
    responses((status = 200, body = RingResponse,
            headers(("ETag" = String, description = "changes whenever the body does; send it back in If-None-Match"))),
        (status = 304, description = "not modified: the If-None-Match ETag is current"),
        (status = 400, description = "unknown or malformed query parameter", body = ErrorResponse),
        (status = 401, description = "reads are authenticated (--auth-reads) and no valid token was sent", body = ErrorResponse),
        (status = 403, description = "the token's user may not read", body = ErrorResponse),
        (status = 503, description = "overloaded, timed out, or the token could not be checked", body = ErrorResponse)))]
pub async fn get_ring(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<RingQuery>,
) -> Result<Response, ApiError> {
    check_read(&state, &headers).await?;
    let view = current(&state);
    let directory = state.directory.as_ref().map(|d| d.borrow().clone());
    let body = state
        .bodies
        .body(&view, directory.as_deref(), query.tokens)
        .map_err(internal)?;
    Ok(shared_body(&headers, body))
}

/// Query of `GET /v1/lookup`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    /// The key (any bytes, hashed with xxh3-64).
    #[param(required = true)]
    pub key: Option<String>,
    /// Replicas wanted (default: the configured factor). More than the ring
    /// has members is a 409.
    #[param(minimum = 1, maximum = 16)]
    pub rf: Option<usize>,
}

fn lookup_one(view: &View, key: &str, rf: Option<usize>) -> Result<LookupResponse, ApiError> {
    let ring = &view.ring;
    if ring.is_empty() {
        return Err(ApiError::unavailable(
            "the ring has no members yet: the first plan commits once the source reports ready members (see /readyz)",
        ));
    }
    let factor = match rf {
        Some(0) => return Err(ApiError::bad_request("rf must be at least 1")),
        Some(n) if n > MAX_RF => {
            return Err(ApiError::bad_request(format!(
                "rf={n} is more than the {MAX_RF} replicas ringleader supports"
            )));
        }
        // A valid request the ring cannot answer as it is now.
        Some(n) if n > ring.len() => {
            return Err(ApiError::conflict(format!(
                "asked for rf={n} replicas but the ring has only {} members; use rf between 1 and {}",
                ring.len(),
                ring.len()
            )));
        }
        Some(n) => n,
        None => view.settings.rf.min(ring.len()),
    };
    let token = hash_key(key.as_bytes());
    let location = ring
        .locate(token)
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let replication = Replication::new(factor, view.settings.zone_aware);
    let replicas = ring
        .replicas_of_token(token, &replication)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(LookupResponse {
        epoch: view.epoch,
        key: key.to_owned(),
        token: token.to_string(),
        owner: location.owner.to_string(),
        replicas: replicas.into_iter().map(|m| m.to_string()).collect(),
        range: range_view(&location.range),
    })
}

/// The most replicas a lookup may ask for (as `--rf`).
const MAX_RF: usize = 16;

/// `GET /v1/lookup?key=K[&rf=N]`.
#[utoipa::path(get, path = "/v1/lookup", params(LookupQuery),
    security((), ("bearer" = [])),
    responses((status = 200, body = LookupResponse),
        (status = 400, description = "no key, rf out of range, or an unknown parameter", body = ErrorResponse),
        (status = 401, description = "reads are authenticated (--auth-reads) and no valid token was sent", body = ErrorResponse),
        (status = 403, description = "the token's user may not read", body = ErrorResponse),
        (status = 409, description = "rf is more than the ring has members", body = ErrorResponse),
        (status = 503, description = "the ring has no members yet, overloaded, or timed out", body = ErrorResponse)))]
pub async fn get_lookup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<LookupQuery>,
) -> Result<ApiJson<LookupResponse>, ApiError> {
    check_read(&state, &headers).await?;
    let key = query.key.ok_or_else(|| {
        ApiError::bad_request("missing query parameter `key`: GET /v1/lookup?key=K[&rf=N]")
    })?;
    let view = current(&state);
    let response = lookup_one(&view, &key, query.rf)?;
    state.handle.metrics.lookups.inc();
    Ok(ApiJson(response))
}

/// `POST /v1/lookup`.
#[utoipa::path(post, path = "/v1/lookup", request_body = LookupBatchRequest,
    security((), ("bearer" = [])),
    responses((status = 200, body = LookupBatchResponse),
        (status = 400, description = "malformed body, too many keys, rf out of range", body = ErrorResponse),
        (status = 401, description = "reads are authenticated (--auth-reads) and no valid token was sent", body = ErrorResponse),
        (status = 403, description = "the token's user may not read", body = ErrorResponse),
        (status = 409, description = "rf is more than the ring has members", body = ErrorResponse),
        (status = 413, description = "the body is larger than --max-body", body = ErrorResponse),
        (status = 415, description = "the body is not sent as application/json", body = ErrorResponse),
        (status = 503, description = "the ring has no members yet, overloaded, or timed out", body = ErrorResponse)))]
pub async fn post_lookup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<LookupBatchRequest>,
) -> Result<ApiJson<LookupBatchResponse>, ApiError> {
    check_read(&state, &headers).await?;
    match request.rf {
        Some(0) => return Err(ApiError::bad_request("rf must be at least 1")),
        Some(n) if n > MAX_RF => {
            return Err(ApiError::bad_request(format!(
                "rf={n} is more than the {MAX_RF} replicas ringleader supports"
            )));
        }
        _ => {}
    }
    if request.keys.len() > state.limits.batch_keys {
        return Err(ApiError::bad_request(format!(
            "{} keys in one batch; at most {} are allowed, split the batch",
            request.keys.len(),
            state.limits.batch_keys
        )));
    }
    let view = current(&state);
    let results = request
        .keys
        .iter()
        .map(|key| lookup_one(&view, key, request.rf))
        .collect::<Result<Vec<_>, _>>()?;
    state.handle.metrics.lookups.inc_by(results.len() as u64);
    Ok(ApiJson(LookupBatchResponse {
        epoch: view.epoch,
        results,
    }))
}

/// `GET /v1/members/{id}/ranges`.
#[utoipa::path(get, path = "/v1/members/{id}/ranges", params(("id" = String, Path, description = "member id", example = "db-0")),
    security((), ("bearer" = [])),
    responses((status = 200, body = MemberRangesResponse),
        (status = 401, description = "reads are authenticated (--auth-reads) and no valid token was sent", body = ErrorResponse),
        (status = 403, description = "the token's user may not read", body = ErrorResponse),
        (status = 404, description = "no such member", body = ErrorResponse),
        (status = 503, description = "overloaded, or timed out", body = ErrorResponse)))]
pub async fn get_member_ranges(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<MemberRangesResponse>, ApiError> {
    check_read(&state, &headers).await?;
    let view = current(&state);
    let member_state = view.member_state(&id).ok_or_else(|| {
        ApiError::not_found(format!("no member {id:?}; GET /v1/ring lists the members"))
    })?;
    let view_for_task = view.clone();
    let member = id.clone();
    let (owns, replicates) = tokio::task::spawn_blocking(move || {
        let ring = &view_for_task.ring;
        if ring.member(&member).is_none() {
            return (Vec::new(), Vec::new());
        }
        let owns = ring.ranges_of(&member).unwrap_or_default();
        let replicates = Holdings::of(&view_for_task.placement())
            .canonical()
            .into_iter()
            .filter(|(_, holders)| holders.iter().any(|h| h.as_str() == member))
            .map(|(range, _)| range)
            .collect::<Vec<_>>();
        (owns, replicates)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let (receiving, handing_off, cleanups) = match view.plan_in_progress() {
        Some(record) => {
            let open = |m: &&ringleader_planner::Move| m.state.is_open();
            (
                record
                    .plan
                    .moves
                    .iter()
                    .filter(open)
                    .filter(|m| m.to.as_str() == id)
                    .map(move_view)
                    .collect(),
                record
                    .plan
                    .moves
                    .iter()
                    .filter(open)
                    .filter(|m| m.from.as_str() == id)
                    .map(move_view)
                    .collect(),
                record
                    .plan
                    .cleanups
                    .iter()
                    .filter(|c| c.member.as_str() == id)
                    .map(|c| range_view(&c.range))
                    .collect(),
            )
        }
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    Ok(ApiJson(MemberRangesResponse {
        epoch: view.epoch,
        member: id,
        state: member_state,
        owns: owns.iter().map(range_view).collect(),
        replicates: replicates.iter().map(range_view).collect(),
        receiving,
        handing_off,
        cleanups,
    }))
}

/// `GET /v1/members/{id}/work`.
#[utoipa::path(get, path = "/v1/members/{id}/work", params(("id" = String, Path, description = "member id", example = "db-3")),
    security((), ("bearer" = [])),
    responses((status = 200, body = WorkResponse,
            headers(("ETag" = String, description = "changes whenever the body does; send it back in If-None-Match"))),
        (status = 304, description = "not modified: the If-None-Match ETag is current"),
        (status = 401, description = "reads are authenticated (--auth-reads) and no valid token was sent", body = ErrorResponse),
        (status = 403, description = "the token's user may not read", body = ErrorResponse),
        (status = 404, description = "no such member", body = ErrorResponse),
        (status = 503, description = "overloaded, timed out, or the token could not be checked", body = ErrorResponse)))]
pub async fn get_member_work(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    check_read(&state, &headers).await?;
    let view = current(&state);
    if view.member_state(&id).is_none() {
        return Err(ApiError::not_found(format!(
            "no member {id:?}; GET /v1/ring lists the members"
        )));
    }
    let directory = state.directory.as_ref().map(|d| d.borrow().clone());
    let addresses = |member: &str| -> Vec<String> {
        let own = view
            .members
            .iter()
            .find(|m| m.id.as_str() == member)
            .map(|m| m.addresses.clone())
            .unwrap_or_default();
        match directory
            .as_deref()
            .filter(|_| view.follower && own.is_empty())
        {
            Some(d) => d.addresses.get(member).cloned().unwrap_or_default(),
            None => own,
        }
    };
    let record = view.plan_in_progress();
    let towards = || {
        record
            .into_iter()
            .flat_map(|p| &p.plan.moves)
            .filter(|m| m.to.as_str() == id)
    };
    let work = WorkResponse {
        epoch: view.epoch,
        member: id.clone(),
        plan: record.map(|p| p.id.clone()),
        moves: towards()
            .filter(|m| m.state == MoveState::Ready)
            .map(|m| WorkMove {
                r#move: move_view(m),
                source_addresses: addresses(m.from.as_str()),
            })
            .collect(),
        // Also those of a plan cancelled as a whole (the members went back
        // to the committed set): nothing of it runs any more.
        cancelled: view
            .plan
            .as_deref()
            .filter(|p| p.state != PlanState::Committed)
            .into_iter()
            .flat_map(|p| &p.plan.moves)
            .filter(|m| m.to.as_str() == id && m.state == MoveState::Cancelled)
            .map(|m| m.id.to_string())
            .collect(),
        waiting: towards().filter(|m| m.state == MoveState::Pending).count(),
    };
    let body = serde_json::to_vec(&work).map_err(internal)?;
    let etag = format!("\"{:016x}w\"", xxhash_rust::xxh3::xxh3_64(&body));
    let etag_value = HeaderValue::from_str(&etag).expect("hex in quotes is a valid header");
    if etag_matches(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag_value),
        ],
        body,
    )
        .into_response())
}

/// `GET /v1/plan`.
#[utoipa::path(get, path = "/v1/plan",
    security((), ("bearer" = [])),
    responses((status = 200, body = PlanResponse,
            headers(("ETag" = String, description = "changes whenever the body does; send it back in If-None-Match"))),
        (status = 304, description = "not modified: the If-None-Match ETag is current"),
        (status = 401, description = "reads are authenticated (--auth-reads) and no valid token was sent", body = ErrorResponse),
        (status = 403, description = "the token's user may not read", body = ErrorResponse),
        (status = 503, description = "overloaded, timed out, or the token could not be checked", body = ErrorResponse)))]
pub async fn get_plan(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_read(&state, &headers).await?;
    let view = current(&state);
    let body = state.bodies.plan(&view).map_err(internal)?;
    Ok(shared_body(&headers, body))
}

/// `POST /v1/plan/moves/{id}/done`.
#[utoipa::path(post, path = "/v1/plan/moves/{id}/done",
    params(("id" = String, Path, description = "move id, as GET /v1/plan lists it", pattern = "^[A-Za-z0-9-]{1,64}$")),
    security(("bearer" = [])),
    responses((status = 200, body = MoveDoneResponse),
        (status = 400, description = "not a move id", body = ErrorResponse),
        (status = 401, description = "no valid bearer token", body = ErrorResponse),
        (status = 403, description = "writes are disabled, or the token's user may not write", body = ErrorResponse),
        (status = 404, description = "no such move in the plan", body = ErrorResponse),
        (status = 409, description = "no plan in flight, the move was cancelled, or it belongs to an earlier plan (cancelled or replaced since; its id names its plan's lineage): nothing is marked done", body = ErrorResponse),
        (status = 429, description = "too many tokens being reviewed at once", body = ErrorResponse),
        (status = 503, description = "no leader reachable (code not_leader), the token could not be checked (auth_unavailable), the state could not be saved", body = ErrorResponse)))]
pub async fn post_move_done(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<MoveDoneResponse>, ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::bad_request(format!(
            "{id:?} is not a move id; GET /v1/plan lists the moves and their ids"
        )));
    }
    // Only the leader applies writes: a follower forwards the request to
    // the leader (which checks its token), so one Service in front of every
    // replica works.
    let view = current(&state);
    if view.follower {
        return forward_to_leader(&state, &view, &id, &headers).await;
    }
    check_write(&state, &headers).await?;
    let (reply, answer) = oneshot::channel();
    state
        .handle
        .commands
        .send(Command::MoveDone { id, reply })
        .await
        .map_err(|_| {
            ApiError::unavailable(
                "the coordinator is shutting down; retry against the new instance",
            )
        })?;
    let outcome = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .map_err(|_| ApiError::unavailable("the coordinator did not answer in time; retry"))?
        .map_err(|_| {
            ApiError::unavailable(
                "the coordinator is shutting down; retry against the new instance",
            )
        })?;
    outcome.map(ApiJson).map_err(|e| match e {
        CommandError::Coordinator(CoordinatorError::NoPlan) => ApiError::conflict(e.to_string()),
        CommandError::Coordinator(CoordinatorError::Plan(PlanError::UnknownMove(_))) => {
            ApiError::not_found(e.to_string())
        }
        CommandError::Coordinator(CoordinatorError::Plan(PlanError::MoveCancelled(_))) => {
            ApiError::conflict(e.to_string())
        }
        CommandError::Coordinator(CoordinatorError::EarlierPlan { .. }) => {
            ApiError::conflict(e.to_string())
        }
        CommandError::Coordinator(other) => ApiError::bad_request(other.to_string()),
        CommandError::NotLeader { leader } => not_leader(leader.as_deref()),
        CommandError::Store(_) | CommandError::ShuttingDown => ApiError::unavailable(e.to_string()),
    })
}

/// Marks a write forwarded by a follower, so that it is never forwarded
/// twice (a stale leader address answers `not_leader` instead of looping).
pub const FORWARDED_HEADER: &str = "x-ringleader-forwarded";

/// A follower passes a write on to the leader and relays its answer.
async fn forward_to_leader(
    state: &AppState,
    view: &View,
    id: &str,
    headers: &HeaderMap,
) -> Result<ApiJson<MoveDoneResponse>, ApiError> {
    let leader = view.leader.as_deref();
    let url = state
        .leader_url
        .as_ref()
        .and_then(|rx| rx.borrow().clone())
        .filter(|_| !headers.contains_key(FORWARDED_HEADER));
    let Some(url) = url else {
        return Err(not_leader(leader));
    };
    let target = format!("{}/v1/plan/moves/{id}/done", url.trim_end_matches('/'));
    let mut request = state
        .forwarder
        .post(&target)
        .header(FORWARDED_HEADER, "1")
        .timeout(Duration::from_secs(10));
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth.clone());
    }
    let answer = request.send().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_leader",
            format!(
                "this coordinator is a follower and could not reach the leader{} at {url} to forward the write ({e}); retry shortly",
                leader.map(|l| format!(" {l}")).unwrap_or_default()
            ),
        )
    })?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = answer.bytes().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_leader",
            format!("the leader at {url} broke off its answer to a forwarded write ({e}); retry"),
        )
    })?;
    if status.is_success() {
        return serde_json::from_slice(&body).map(ApiJson).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                format!(
                    "the leader at {url} answered a forwarded write with an unreadable body: {e}"
                ),
            )
        });
    }
    let error: ErrorResponse = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            format!(
                "the leader at {url} answered a forwarded write with {status} and no error body"
            ),
        )
    })?;
    Err(ApiError::new(
        status,
        forwarded_code(&error.error.code),
        error.error.message,
    ))
}

/// Error codes are `&'static str`: a forwarded one maps back to ours.
fn forwarded_code(code: &str) -> &'static str {
    [
        "bad_request",
        "unauthorized",
        "forbidden",
        "writes_disabled",
        "not_found",
        "conflict",
        "too_many_reviews",
        "unavailable",
        "overloaded",
        "timeout",
        "not_leader",
        "auth_unavailable",
    ]
    .into_iter()
    .find(|c| *c == code)
    .unwrap_or("forwarded_error")
}

/// `POST /v1/preview`.
#[utoipa::path(post, path = "/v1/preview", request_body = PreviewRequest,
    security((), ("bearer" = [])),
    responses((status = 200, body = PreviewResponse),
        (status = 400, description = "malformed body, unparseable EndpointSlices, or beyond a bound (members, weight, total tokens; the message names it)", body = ErrorResponse),
        (status = 401, description = "reads are authenticated (--auth-reads) and no valid token was sent", body = ErrorResponse),
        (status = 403, description = "the token's user may not read", body = ErrorResponse),
        (status = 413, description = "the body is larger than --max-body", body = ErrorResponse),
        (status = 415, description = "the body is not sent as application/json", body = ErrorResponse),
        (status = 503, description = "too many previews at once, overloaded, or timed out", body = ErrorResponse)))]
pub async fn post_preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PreviewRequest>,
) -> Result<ApiJson<PreviewResponse>, ApiError> {
    check_read(&state, &headers).await?;
    let limits = state.limits;
    let desired: Vec<MemberSpec> = match (request.members, request.endpoint_slices) {
        (Some(members), None) => {
            if members.len() > limits.preview_members {
                return Err(ApiError::bad_request(format!(
                    "{} members in the preview; at most {} are allowed (--max-preview-members)",
                    members.len(),
                    limits.preview_members
                )));
            }
            members
                .into_iter()
                .map(|m| {
                    if m.id.is_empty() {
                        return Err(ApiError::bad_request("a member has an empty id"));
                    }
                    let weight = m.weight.unwrap_or(1);
                    if weight == 0 || weight > limits.preview_weight {
                        return Err(ApiError::bad_request(format!(
                            "member {:?} has weight {weight}; weights go from 1 to {} in a preview",
                            m.id, limits.preview_weight
                        )));
                    }
                    Ok(MemberSpec {
                        id: m.id.into(),
                        zone: m.zone,
                        weight,
                    })
                })
                .collect::<Result<_, _>>()?
        }
        // Weights come from a Service in the text (its ringleader.io/weights
        // annotation), bounded as a member list's are.
        (None, Some(text)) => ringleader_watch::members_from_text(&text, None)
            .map_err(|e| ApiError::bad_request(format!("endpoint_slices: {e}")))?
            .iter()
            .filter(|m| m.ready && !m.terminating)
            .map(|m| {
                let weight = m.weight.unwrap_or(1);
                if weight > limits.preview_weight {
                    return Err(ApiError::bad_request(format!(
                        "endpoint_slices: member {:?} has weight {weight}; weights go from 1 to {} in a preview",
                        m.id.as_str(),
                        limits.preview_weight
                    )));
                }
                Ok(MemberSpec {
                    id: m.id.as_str().into(),
                    zone: m.zone.clone(),
                    weight,
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `members` (a list of {id, zone, weight}) or `endpoint_slices` (YAML or JSON text)",
            ));
        }
    };
    if desired.is_empty() {
        return Err(ApiError::bad_request(
            "a preview needs at least one (ready) member",
        ));
    }
    if desired.len() > limits.preview_members {
        return Err(ApiError::bad_request(format!(
            "{} members in the preview; at most {} are allowed (--max-preview-members)",
            desired.len(),
            limits.preview_members
        )));
    }
    let mut ids = std::collections::HashSet::with_capacity(desired.len());
    if let Some(twice) = desired.iter().find(|m| !ids.insert(m.id.as_str())) {
        return Err(ApiError::bad_request(format!(
            "member {:?} is listed twice; give each member once",
            twice.id.as_str()
        )));
    }
    let view = current(&state);
    let tokens: u64 = desired
        .iter()
        .map(|m| u64::from(m.weight) * u64::from(view.settings.tokens_per_member))
        .sum();
    if tokens > limits.preview_tokens as u64 {
        return Err(ApiError::bad_request(format!(
            "the preview's ring would have {tokens} tokens (members × weight × {} tokens per member); \
             at most {} are allowed (--max-preview-tokens)",
            view.settings.tokens_per_member, limits.preview_tokens
        )));
    }
    // Previews run on the blocking pool, a few at a time; one abandoned by
    // its client (disconnected, timed out) stops at its next step.
    let Ok(permit) = state.previews.clone().try_acquire_owned() else {
        state.handle.metrics.overload_rejections.inc();
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "{} previews are being computed already; retry shortly",
                limits.previews
            ),
        ));
    };
    let cancel = Cancel::default();
    let _guard = cancel.guard();
    let work = cancel.clone();
    let metrics = state.handle.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let answer = preview(&view, &desired, &work);
        if work.is_set() {
            metrics.previews_cancelled.inc();
        }
        answer
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map(ApiJson)
}

/// Set when the request that asked for some work is gone.
#[derive(Clone, Debug, Default)]
pub(super) struct Cancel(Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the flag when dropped (the request future was dropped, or
    /// finished).
    fn guard(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }

    fn check(&self) -> Result<(), ApiError> {
        if self.0.load(std::sync::atomic::Ordering::Relaxed) {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    /// What the work answers once cancelled (nobody reads it: the request
    /// is gone).
    fn error(&self) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cancelled",
            "the request was cancelled",
        )
    }
}

struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        (self.0).0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn preview(
    view: &View,
    desired: &[MemberSpec],
    cancel: &Cancel,
) -> Result<PreviewResponse, ApiError> {
    cancel.check()?;
    // The allocator looks at the flag inside its loops: the one stage whose
    // time grows faster than the ring.
    let ring = ringleader_ring::cancellable(&cancel.0, || {
        crate::coordinator::next_ring(view.target_ring(), &view.settings, desired)
    })
    .map_err(|_| cancel.error())?
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    cancel.check()?;
    let to = Placement::new(ring.clone(), view.settings.replication())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut plan = ringleader_planner::plan(&view.placement(), &to, &PlanOptions::default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    cancel.check()?;
    if view.settings.mode == crate::settings::Mode::Ack {
        // As the coordinator would run it: the first wave ready, the
        // expected number of waves at the pace.
        let leaving = |m: &ringleader_ring::MemberId| ring.member(m.as_str()).is_none();
        // (Who is down now is not the preview's concern: it shows the
        // plan as it starts with every member up.)
        ringleader_planner::pace(&mut plan, view.settings.pace, leaving, |_| false);
        plan.summary.waves = Some(ringleader_planner::waves(
            &plan,
            view.settings.pace,
            leaving,
        ));
    }
    cancel.check()?;
    let figures = crate::view::RingFigures::of(&ring, view.settings.replication());
    let members = ring
        .members()
        .iter()
        .enumerate()
        .map(|(i, m)| MemberView {
            id: m.id.to_string(),
            state: if view.ring.member(m.id.as_str()).is_some() {
                MemberState::Up
            } else {
                MemberState::Joining
            },
            zone: m.zone.clone(),
            addresses: Vec::new(),
            weight: m.weight,
            ownership: figures.ownership[i].fraction,
            replica_ownership: figures.replica_ownership.get(i).map_or(0.0, |o| o.fraction),
            tokens: figures.token_counts.get(i).copied().unwrap_or(0),
            grace_ends_at: None,
        })
        .collect();
    Ok(PreviewResponse {
        from_epoch: view.epoch,
        members,
        balance: figures.balance,
        moves: plan
            .moves
            .iter()
            .filter(|m| m.state != MoveState::Cancelled)
            .map(move_view)
            .collect(),
        summary: summary_view(&plan),
    })
}

fn health(view: &View, status: &str) -> HealthResponse {
    HealthResponse {
        status: status.to_owned(),
        source: view.source.state,
        source_error: view.source.detail.clone(),
        state_loaded: view.state_loaded,
        epoch: view.epoch,
        leader: view.leader.clone(),
    }
}

/// `GET /healthz`: the process is alive and its coordinator loop turns (a
/// loop stuck on a hung call gets 503, so the kubelet restarts it).
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let view = current(&state);
    match state.handle.heartbeat.stalled() {
        None => (StatusCode::OK, ApiJson(health(&view, "ok"))).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ApiJson(health(&view, &reason)),
        )
            .into_response(),
    }
}

/// `GET /readyz`: the source has delivered members, the state is loaded,
/// the last save succeeded and lookups can be answered (see
/// [`View::readiness`]).
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let view = current(&state);
    match view.readiness() {
        Ok(()) => (StatusCode::OK, ApiJson(health(&view, "ok"))).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ApiJson(health(&view, &reason)),
        )
            .into_response(),
    }
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", responses((status = 200,
    description = "OpenMetrics text format (what Prometheus scrapes)",
    content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.handle.metrics.encode(),
    )
        .into_response()
}

/// Unknown routes.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {}; GET /openapi.json describes the API",
        uri.path()
    ))
}

/// Known routes, wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; GET /openapi.json describes the API",
            uri.path()
        ),
    )
}

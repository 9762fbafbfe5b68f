//! The route handlers.

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::tokenreview::Review;
use super::{AppState, WriteAuth};
use crate::coordinator::CoordinatorError;
use crate::runtime::{Command, CommandError, not_leader_message};
use crate::view::{View, move_view, range_view, summary_view};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ringleader_client::api::{
    HealthResponse, LookupBatchRequest, LookupBatchResponse, LookupResponse, MemberRangesResponse,
    MemberState, MemberView, MoveDoneResponse, PlanResponse, PreviewRequest, PreviewResponse,
    RingResponse,
};
use ringleader_planner::{Holdings, MoveState, Placement, PlanError, PlanOptions};
use ringleader_ring::{MemberSpec, Replication, balance_of, hash_key};
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

async fn check_write(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &*state.write_auth {
        WriteAuth::TokenReview(reviewer) => {
            let Some(token) = bearer(headers) else {
                return Err(ApiError::unauthorized(
                    "writes need Authorization: Bearer <service-account token> (checked with a Kubernetes TokenReview)",
                ));
            };
            match reviewer.review(token).await {
                Review::Allowed(_) => Ok(()),
                Review::NotAllowed(user) => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "{user} may not write to this coordinator; it allows {} (--allow-writer)",
                        reviewer
                            .allowed()
                            .iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
                Review::Unauthenticated(reason) => Err(ApiError::unauthorized(format!(
                    "the Kubernetes API server did not authenticate the bearer token{}",
                    reason.map(|r| format!(" ({r})")).unwrap_or_default()
                ))),
                Review::Unavailable(reason) => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "auth_unavailable",
                    format!(
                        "cannot check the bearer token, so the write is refused: {reason}; retry once the API server answers"
                    ),
                )),
            }
        }
        WriteAuth::Open => Ok(()),
        WriteAuth::Disabled => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "writes_disabled",
            "this coordinator accepts no writes: start it with --auth-token-file PATH (or --auth none for a local experiment)",
        )),
        WriteAuth::Token(expected) => {
            if token_matches(headers, expected) {
                Ok(())
            } else if headers.contains_key(header::AUTHORIZATION) {
                Err(ApiError::unauthorized(
                    "the bearer token is not the one this coordinator was given",
                ))
            } else {
                Err(ApiError::unauthorized(
                    "writes need Authorization: Bearer <token> (the --auth-token-file contents)",
                ))
            }
        }
    }
}

pub(super) fn check_read(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match (&*state.write_auth, state.reads_need_token) {
        (WriteAuth::Token(expected), true) if !token_matches(headers, expected) => Err(
            ApiError::unauthorized("reads need Authorization: Bearer <token> on this coordinator"),
        ),
        _ => Ok(()),
    }
}

/// Serializes `body`, tags it with a content ETag and answers 304 when the
/// client already has it.
fn with_etag<T: serde::Serialize>(headers: &HeaderMap, body: &T) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("encoding the response: {e}"),
            )
            .into_response();
        }
    };
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&bytes));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|t| {
                t.trim() == etag || t.trim() == "*" || t.trim().trim_start_matches("W/") == etag
            })
        });
    let etag_value = HeaderValue::from_str(&etag).expect("hex in quotes is a valid header");
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag_value),
        ],
        bytes,
    )
        .into_response()
}

/// Query of `GET /v1/ring`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RingQuery {
    /// Add every token and its owner.
    #[serde(default)]
    pub tokens: bool,
}

/// `GET /v1/ring`.
#[utoipa::path(get, path = "/v1/ring", params(RingQuery),
    responses((status = 200, body = RingResponse), (status = 304, description = "not modified")))]
pub async fn get_ring(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<RingQuery>,
) -> Result<Response, ApiError> {
    check_read(&state, &headers)?;
    let view = current(&state);
    let body = RingResponse {
        epoch: view.epoch,
        settings: view.settings_view(),
        members: view.member_views(),
        balance: view.figures.balance,
        tokens: query.tokens.then(|| view.token_views().to_vec()),
        plan_in_flight: view.plan_in_progress().is_some(),
        leader: view.leader.clone(),
    };
    Ok(with_etag(&headers, &body))
}

/// Query of `GET /v1/lookup`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    /// The key.
    pub key: Option<String>,
    /// Replicas wanted (default: the configured factor).
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
        Some(n) if n > ring.len() => {
            return Err(ApiError::bad_request(format!(
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

/// `GET /v1/lookup?key=K[&rf=N]`.
#[utoipa::path(get, path = "/v1/lookup", params(LookupQuery),
    responses((status = 200, body = LookupResponse), (status = 400, body = ringleader_client::api::ErrorResponse)))]
pub async fn get_lookup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<LookupQuery>,
) -> Result<ApiJson<LookupResponse>, ApiError> {
    check_read(&state, &headers)?;
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
    responses((status = 200, body = LookupBatchResponse), (status = 400, body = ringleader_client::api::ErrorResponse)))]
pub async fn post_lookup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<LookupBatchRequest>,
) -> Result<ApiJson<LookupBatchResponse>, ApiError> {
    check_read(&state, &headers)?;
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
#[utoipa::path(get, path = "/v1/members/{id}/ranges", params(("id" = String, Path, description = "member id")),
    responses((status = 200, body = MemberRangesResponse), (status = 404, body = ringleader_client::api::ErrorResponse)))]
pub async fn get_member_ranges(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<MemberRangesResponse>, ApiError> {
    check_read(&state, &headers)?;
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

/// `GET /v1/plan`.
#[utoipa::path(get, path = "/v1/plan", responses((status = 200, body = PlanResponse), (status = 304, description = "not modified")))]
pub async fn get_plan(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_read(&state, &headers)?;
    let view = current(&state);
    Ok(with_etag(
        &headers,
        &PlanResponse {
            plan: view.plan_view().cloned(),
        },
    ))
}

/// `POST /v1/plan/moves/{id}/done`.
#[utoipa::path(post, path = "/v1/plan/moves/{id}/done", params(("id" = String, Path, description = "move id")),
    security(("bearer" = [])),
    responses((status = 200, body = MoveDoneResponse), (status = 401, body = ringleader_client::api::ErrorResponse),
        (status = 403, body = ringleader_client::api::ErrorResponse),
        (status = 404, body = ringleader_client::api::ErrorResponse), (status = 409, body = ringleader_client::api::ErrorResponse),
        (status = 503, description = "a follower (code not_leader, naming the leader), or the token could not be checked (auth_unavailable)", body = ringleader_client::api::ErrorResponse)))]
pub async fn post_move_done(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<MoveDoneResponse>, ApiError> {
    // Only the leader applies writes; a follower says who leads before
    // spending a TokenReview on a write it would refuse anyway.
    let view = current(&state);
    if view.follower {
        return Err(not_leader(view.leader.as_deref()));
    }
    check_write(&state, &headers).await?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::bad_request(format!(
            "{id:?} is not a move id; GET /v1/plan lists the moves and their ids"
        )));
    }
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
        CommandError::Coordinator(other) => ApiError::bad_request(other.to_string()),
        CommandError::NotLeader { leader } => not_leader(leader.as_deref()),
        CommandError::Store(_) | CommandError::ShuttingDown => ApiError::unavailable(e.to_string()),
    })
}

/// `POST /v1/preview`.
#[utoipa::path(post, path = "/v1/preview", request_body = PreviewRequest,
    responses((status = 200, body = PreviewResponse), (status = 400, body = ringleader_client::api::ErrorResponse)))]
pub async fn post_preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PreviewRequest>,
) -> Result<ApiJson<PreviewResponse>, ApiError> {
    check_read(&state, &headers)?;
    let desired: Vec<MemberSpec> = match (request.members, request.endpoint_slices) {
        (Some(members), None) => members
            .into_iter()
            .map(|m| {
                if m.id.is_empty() {
                    return Err(ApiError::bad_request("a member has an empty id"));
                }
                Ok(MemberSpec {
                    id: m.id.into(),
                    zone: m.zone,
                    weight: m.weight.unwrap_or(1),
                })
            })
            .collect::<Result<_, _>>()?,
        (None, Some(text)) => ringleader_watch::members_from_text(&text, None)
            .map_err(|e| ApiError::bad_request(format!("endpoint_slices: {e}")))?
            .iter()
            .filter(|m| m.ready && !m.terminating)
            .map(|m| MemberSpec {
                id: m.id.as_str().into(),
                zone: m.zone.clone(),
                weight: 1,
            })
            .collect(),
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
    let view = current(&state);
    tokio::task::spawn_blocking(move || preview(&view, &desired))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map(ApiJson)
}

fn preview(view: &View, desired: &[MemberSpec]) -> Result<PreviewResponse, ApiError> {
    let ring = crate::coordinator::next_ring(view.target_ring(), &view.settings, desired)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let to = Placement::new(ring.clone(), view.settings.replication())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let plan = ringleader_planner::plan(&view.placement(), &to, &PlanOptions::default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
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
        })
        .collect();
    Ok(PreviewResponse {
        from_epoch: view.epoch,
        members,
        balance: balance_of(&figures.ownership),
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
        source: view.source.state.to_owned(),
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
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
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

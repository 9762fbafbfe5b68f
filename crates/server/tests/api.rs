//! Every route of the API in process, as axum's `examples/testing` does it:
//! the real router over a real coordinator ([`Driver`] fed a fixed member
//! set), driven with `tower::ServiceExt::oneshot` — no sockets — including
//! each error path. Issue 12's findings each have a test here named after
//! them; connection-level bounds (which need sockets) are at the end.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use ringleader::api::{AppState, Limits, ReviewPolicy, TokenReviewer, WriteAuth, router};
use ringleader::http::ConnLimits;
use ringleader::settings::RingSettings;
use ringleader::testing::{self, Running, call};
use ringleader_client::api::{
    CompactTokens, ErrorResponse, MoveDoneResponse, PreviewResponse, RingResponse,
};
use ringleader_testkit::{TestApiServer, Verb};
use ringleader_watch::{SourceEvent, SourceHealth};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const TOKEN: &str = "a-write-token-of-some-length";

/// A coordinator with `members` members committed (ack mode, no settle).
async fn coordinator(members: usize) -> Running {
    let timing = testing::no_settle(Duration::from_secs(60));
    Running::start(RingSettings::default(), timing, testing::members(members)).await
}

/// The router with the write token, reads open, default limits.
fn open_app(c: &Running) -> Router {
    c.app(WriteAuth::Token(TOKEN.into()), false, Limits::default())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("a request")
}

fn post_json(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a request")
}

/// Asserts an error answer's status and code, returns its message.
fn error(status: StatusCode, body: &[u8], want: StatusCode, code: &str) -> String {
    let parsed: ErrorResponse = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {}", String::from_utf8_lossy(body)));
    assert_eq!(
        (status, parsed.error.code.as_str()),
        (want, code),
        "{}",
        parsed.error.message
    );
    parsed.error.message
}

// ---------------------------------------------------------------------------
// Every route answers.

#[tokio::test]
async fn every_read_route_answers_in_process() {
    let c = coordinator(3).await;
    let app = open_app(&c);
    for uri in [
        "/v1/ring",
        "/v1/ring?tokens=true",
        "/v1/ring?tokens=compact",
        "/v1/ring?tokens=false",
        "/v1/lookup?key=user:42",
        "/v1/lookup?key=user:42&rf=2",
        "/v1/members/db-0/ranges",
        "/v1/plan",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        let (status, _, body) = call(&app, get(uri)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _, body) = call(&app, post_json("/v1/lookup", &json!({"keys": ["a", "b"]}))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = call(
        &app,
        post_json(
            "/v1/preview",
            &json!({"members": [{"id": "db-0"}, {"id": "db-9"}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let preview: PreviewResponse = serde_json::from_slice(&body).expect("a preview");
    assert_eq!(preview.members.len(), 2);
}

#[tokio::test]
async fn the_watch_stream_starts_with_the_current_state() {
    let c = coordinator(3).await;
    let app = open_app(&c);
    let response = app.oneshot(get("/v1/watch")).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body().into_data_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("an event at once")
        .expect("a chunk")
        .expect("data");
    let text = String::from_utf8_lossy(&first);
    assert!(text.contains("event: state"), "{text}");
    assert!(text.contains("id: 1."), "{text}");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let c = coordinator(3).await;
    let app = open_app(&c);
    let (status, _, body) = call(&app, get("/v2/nothing")).await;
    error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, _, body) = call(
        &app,
        Request::delete("/v1/ring")
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let (status, _, body) = call(&app, get("/v1/members/db-9/ranges")).await;
    error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

// ---------------------------------------------------------------------------
// The OpenAPI document (issue 12: invalid, incomplete).

fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    doc.pointer(&format!("/paths/{}/{method}", path.replace('/', "~1")))
        .unwrap_or_else(|| panic!("{method} {path} is not in the document"))
}

#[tokio::test]
async fn openapi_declares_query_parameters_in_the_query() {
    // openapi-spec-validator: "Path parameter 'key' for 'get' operation in
    // '/v1/lookup' was not resolved"; `tokens` was declared in the path.
    let c = coordinator(3).await;
    let (_, _, body) = call(&open_app(&c), get("/openapi.json")).await;
    let doc: Value = serde_json::from_slice(&body).expect("JSON");
    for (path, name) in [
        ("/v1/lookup", "key"),
        ("/v1/lookup", "rf"),
        ("/v1/ring", "tokens"),
    ] {
        let params = operation(&doc, path, "get")["parameters"]
            .as_array()
            .expect("parameters");
        let param = params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"));
        assert_eq!(param["in"], "query", "{path} {name}");
    }
    let key = operation(&doc, "/v1/lookup", "get")["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "key")
        .cloned()
        .expect("key");
    assert_eq!(key["required"], true);
}

#[tokio::test]
async fn openapi_documents_every_error_status_the_routes_answer() {
    let c = coordinator(3).await;
    let (_, _, body) = call(&open_app(&c), get("/openapi.json")).await;
    let doc: Value = serde_json::from_slice(&body).expect("JSON");
    for (path, method, statuses) in [
        (
            "/v1/lookup",
            "post",
            &["400", "413", "415", "409", "503"][..],
        ),
        ("/v1/preview", "post", &["400", "413", "415", "503"][..]),
        ("/v1/ring", "get", &["304", "400", "401"][..]),
        (
            "/v1/plan/moves/{id}/done",
            "post",
            &["400", "401", "403", "404", "409", "429", "503"][..],
        ),
    ] {
        let responses = &operation(&doc, path, method)["responses"];
        for status in statuses {
            assert!(
                responses.get(status).is_some(),
                "{method} {path} does not document {status}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_are_served_as_the_media_type_documented() {
    // Served as application/openmetrics-text, documented as text/plain.
    let c = coordinator(3).await;
    let app = open_app(&c);
    let (_, headers, _) = call(&app, get("/metrics")).await;
    let served = headers[header::CONTENT_TYPE].to_str().expect("ASCII");
    let (_, _, body) = call(&app, get("/openapi.json")).await;
    let doc: Value = serde_json::from_slice(&body).expect("JSON");
    let documented = operation(&doc, "/metrics", "get")["responses"]["200"]["content"]
        .as_object()
        .expect("content");
    assert!(
        documented
            .keys()
            .any(|media| served.starts_with(media.as_str())),
        "served {served}, documented {:?}",
        documented.keys().collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------
// Lookups.

#[tokio::test]
async fn lookup_errors_name_what_to_fix() {
    let c = coordinator(3).await;
    let app = open_app(&c);
    let (status, _, body) = call(&app, get("/v1/lookup")).await;
    error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, _, body) = call(&app, get("/v1/lookup?key=a&rf=0")).await;
    error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, _, body) = call(&app, get("/v1/lookup?key=a&rf=17")).await;
    error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, _, body) = call(&app, get("/v1/lookup?key=a&bogus=1")).await;
    error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, _, body) =
        call(&app, post_json("/v1/lookup", &json!({"keys": [], "rf": 0}))).await;
    error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn a_schema_valid_rf_beyond_the_ring_size_is_a_conflict_not_a_bad_request() {
    // Schemathesis: schema-valid values rejected with 400.
    let c = coordinator(3).await;
    let (status, _, body) = call(&open_app(&c), get("/v1/lookup?key=a&rf=5")).await;
    let message = error(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(message.contains("only 3 members"), "{message}");
}

#[tokio::test]
async fn integral_numbers_are_integers() {
    // JSON Schema calls 2.0 an integer; so must the server.
    let c = coordinator(3).await;
    let (status, _, body) = call(
        &open_app(&c),
        post_json("/v1/lookup", &json!({"keys": ["a"], "rf": 2.0})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = call(
        &open_app(&c),
        post_json("/v1/lookup", &json!({"keys": ["a"], "rf": 1.5})),
    )
    .await;
    error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn bodies_without_json_content_type_get_415_and_oversized_ones_413_naming_the_limit() {
    let c = coordinator(3).await;
    let app = c.app(
        WriteAuth::Open,
        false,
        Limits {
            body_bytes: 1024,
            ..Limits::default()
        },
    );
    let (status, _, body) = call(
        &app,
        Request::post("/v1/lookup")
            .body(Body::from(r#"{"keys":["a"]}"#))
            .expect("a request"),
    )
    .await;
    error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let big = json!({"keys": vec!["x".repeat(100); 20]});
    let (status, _, body) = call(&app, post_json("/v1/lookup", &big)).await;
    let message = error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(
        message.contains("1024"),
        "the 413 names the limit: {message}"
    );
}

// ---------------------------------------------------------------------------
// Token lists (issue 12: built per request, ETag after serialising).

#[tokio::test]
async fn compact_tokens_are_the_same_tokens_as_the_full_list() {
    let c = coordinator(3).await;
    let app = open_app(&c);
    let (_, _, full) = call(&app, get("/v1/ring?tokens=true")).await;
    let (_, _, compact) = call(&app, get("/v1/ring?tokens=compact")).await;
    let full: RingResponse = serde_json::from_slice(&full).expect("a ring");
    let compact: RingResponse = serde_json::from_slice(&compact).expect("a ring");
    assert!(compact.tokens.is_none() && full.compact_tokens.is_none());
    let mut from_full: Vec<(u64, String)> = full
        .tokens
        .expect("tokens")
        .iter()
        .map(|t| (t.token.parse().expect("decimal"), t.member.clone()))
        .collect();
    let sets: Vec<CompactTokens> = compact.compact_tokens.expect("compact tokens");
    let mut from_compact: Vec<(u64, String)> = sets
        .iter()
        .flat_map(|s| {
            s.decode()
                .expect("base64 of u64s")
                .into_iter()
                .map(|t| (t, s.member.clone()))
        })
        .collect();
    from_full.sort();
    from_compact.sort();
    assert_eq!(from_full.len(), 48);
    assert_eq!(from_full, from_compact);
    // The rest of the body is the same.
    assert_eq!(full.members, compact.members);
    assert_eq!(full.epoch, compact.epoch);
}

#[tokio::test]
async fn ring_etags_differ_by_token_form_and_answer_304() {
    let c = coordinator(3).await;
    let app = open_app(&c);
    let mut etags = Vec::new();
    for uri in [
        "/v1/ring",
        "/v1/ring?tokens=true",
        "/v1/ring?tokens=compact",
        "/v1/plan",
    ] {
        let (status, headers, _) = call(&app, get(uri)).await;
        assert_eq!(status, StatusCode::OK);
        let etag = headers[header::ETAG].to_str().expect("ASCII").to_owned();
        let (again, _, _) = call(&app, get(uri)).await;
        assert_eq!(again, StatusCode::OK);
        let (status, headers, body) = call(
            &app,
            Request::get(uri)
                .header(header::IF_NONE_MATCH, &etag)
                .body(Body::empty())
                .expect("a request"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{uri}");
        assert!(body.is_empty());
        assert_eq!(headers[header::ETAG], etag.as_str());
        etags.push(etag);
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), 4, "every form has its own ETag");
}

#[tokio::test]
async fn the_token_list_of_an_epoch_is_shared_between_requests() {
    // 32 slow readers held 32 copies of 13 MB. Each answer now carries the
    // same bytes: the body of a second request is the very same buffer.
    let c = coordinator(3).await;
    let app = open_app(&c);
    let first = app
        .clone()
        .oneshot(get("/v1/ring?tokens=true"))
        .await
        .expect("infallible");
    let second = app
        .oneshot(get("/v1/ring?tokens=true"))
        .await
        .expect("infallible");
    let chunks = |response: axum::response::Response| async move {
        response
            .into_body()
            .into_data_stream()
            .map(|c| c.expect("data"))
            .collect::<Vec<_>>()
            .await
    };
    let (a, b) = (chunks(first).await, chunks(second).await);
    let largest = |chunks: &[bytes::Bytes]| {
        chunks
            .iter()
            .max_by_key(|c| c.len())
            .map(|c| (c.as_ptr(), c.len()))
            .expect("chunks")
    };
    assert_eq!(
        largest(&a),
        largest(&b),
        "the token list is one shared buffer"
    );
}

// ---------------------------------------------------------------------------
// Previews (issue 12: a memory bomb, not cancelled).

#[tokio::test]
async fn preview_bounds_are_400s_naming_the_bound() {
    let c = coordinator(3).await;
    let limits = Limits {
        preview_members: 10,
        preview_weight: 4,
        preview_tokens: 100,
        ..Limits::default()
    };
    let app = c.app(WriteAuth::Open, false, limits);
    let members = |n: usize, weight: u32| json!({"members": (0..n).map(|i| json!({"id": format!("m-{i}"), "weight": weight})).collect::<Vec<_>>()});
    for (body, bound) in [
        (members(11, 1), "--max-preview-members"),
        (members(2, 5), "from 1 to 4"),
        (members(4, 2), "--max-preview-tokens"),
        (members(1, 0), "from 1 to 4"),
    ] {
        let (status, _, answer) = call(&app, post_json("/v1/preview", &body)).await;
        let message = error(status, &answer, StatusCode::BAD_REQUEST, "bad_request");
        assert!(message.contains(bound), "{message}");
    }
    // 60 members of weight 4096 (the issue's 3 KB bomb) never reaches the
    // allocator.
    let (status, _, answer) =
        call(&open_app(&c), post_json("/v1/preview", &members(60, 4096))).await;
    error(status, &answer, StatusCode::BAD_REQUEST, "bad_request");
    // Within the bounds it works.
    let (status, _, answer) = call(&app, post_json("/v1/preview", &members(3, 2))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn preview_refuses_duplicates_empty_and_both_forms() {
    let c = coordinator(3).await;
    let app = open_app(&c);
    for body in [
        json!({"members": [{"id": "a"}, {"id": "a"}]}),
        json!({"members": []}),
        json!({"members": [{"id": ""}]}),
        json!({}),
        json!({"members": [{"id": "a"}], "endpoint_slices": "x"}),
        json!({"endpoint_slices": ""}),
    ] {
        let (status, _, answer) = call(&app, post_json("/v1/preview", &body)).await;
        error(status, &answer, StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn previews_beyond_the_concurrency_bound_get_503() {
    let c = coordinator(3).await;
    let limits = Limits {
        previews: 1,
        ..Limits::default()
    };
    let app = c.app(WriteAuth::Open, false, limits);
    let body =
        json!({"members": (0..1000).map(|i| json!({"id": format!("m-{i}")})).collect::<Vec<_>>()});
    let mut running = Vec::new();
    for _ in 0..4 {
        let app = app.clone();
        let body = body.clone();
        running.push(tokio::spawn(async move {
            call(&app, post_json("/v1/preview", &body)).await
        }));
    }
    let mut statuses = Vec::new();
    for task in running {
        let (status, _, answer) = task.await.expect("no panic");
        if status != StatusCode::OK {
            error(
                status,
                &answer,
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
            );
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
}

/// Issue 12: a preview went on computing after its request was gone (it
/// was cancelled only between stages, and the allocator is one long stage).
/// Dropped while the allocator runs, the largest preview the default bounds
/// allow stops there and frees its slot, counted as cancelled.
#[tokio::test]
async fn a_dropped_preview_stops_computing_within_the_allocator() {
    let c = coordinator(3).await;
    let limits = Limits::default();
    let state = AppState::new(
        c.handle.clone(),
        WriteAuth::Open,
        false,
        limits,
        c.stop_rx.clone(),
    );
    let slots = Arc::clone(&state.previews);
    let app = router(state);
    // 1,024 members × weight 16 × 16 tokens: 262,144 tokens, the default
    // --max-preview-tokens.
    let members = (0..limits.preview_members)
        .map(|i| json!({"id": format!("m-{i:04}"), "weight": limits.preview_weight}))
        .collect::<Vec<_>>();
    let body = json!({ "members": members });
    let request = tokio::spawn(async move { call(&app, post_json("/v1/preview", &body)).await });
    let wait_until = async |what: &str, done: &dyn Fn() -> bool| {
        for _ in 0..2_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting until {what}");
    };
    wait_until("the preview takes its slot", &|| {
        slots.available_permits() < limits.previews
    })
    .await;
    request.abort();
    assert!(request.await.is_err_and(|e| e.is_cancelled()));
    wait_until("the abandoned preview frees its slot", &|| {
        slots.available_permits() == limits.previews
    })
    .await;
    assert_eq!(
        c.handle.metrics.previews_cancelled.get(),
        1,
        "the work stopped because its request was gone, not because it was done"
    );
}

#[tokio::test]
async fn a_request_timeout_is_a_timeout_not_overloaded() {
    let c = coordinator(3).await;
    let limits = Limits {
        request_timeout: Duration::from_millis(1),
        ..Limits::default()
    };
    let app = c.app(WriteAuth::Open, false, limits);
    let body =
        json!({"members": (0..1000).map(|i| json!({"id": format!("m-{i}")})).collect::<Vec<_>>()});
    let (status, _, answer) = call(&app, post_json("/v1/preview", &body)).await;
    let message = error(status, &answer, StatusCode::SERVICE_UNAVAILABLE, "timeout");
    assert!(message.contains("--request-timeout"), "{message}");
}

// ---------------------------------------------------------------------------
// Authentication.

#[tokio::test]
async fn writes_without_a_configured_writer_are_refused_saying_how_to_enable_them() {
    let c = coordinator(3).await;
    let app = c.app(WriteAuth::Disabled, false, Limits::default());
    let (status, _, body) = call(
        &app,
        Request::post("/v1/plan/moves/abc/done")
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    let message = error(status, &body, StatusCode::FORBIDDEN, "writes_disabled");
    assert!(message.contains("--auth-token-file"), "{message}");
}

/// Scales `c` from 3 to 4 members and returns the ids of the plan it makes.
async fn move_ids_of_the_first_plan(c: &Running) -> Vec<String> {
    c.send(SourceEvent::Members(testing::members(4)));
    let view = c
        .wait_for("a plan", |v| v.plan_in_progress().is_some())
        .await;
    view.plan_in_progress()
        .map(|p| p.plan.moves.iter().map(|m| m.id.as_str().to_owned()))
        .into_iter()
        .flatten()
        .collect()
}

/// `POST /v1/plan/moves/{id}/done`, with a bearer token when one is given.
fn report_done(token: Option<&str>, id: &str) -> Request<Body> {
    let mut request = Request::post(format!("/v1/plan/moves/{id}/done"));
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::empty()).expect("a request")
}

#[tokio::test]
async fn writes_check_the_token_and_the_move_id() {
    let c = coordinator(3).await;
    let app = open_app(&c);
    let (status, _, body) = call(&app, report_done(None, "abc")).await;
    error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _, body) = call(&app, report_done(Some("wrong-token-of-any-length"), "abc")).await;
    error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _, body) = call(&app, report_done(Some(TOKEN), "not%20an%20id")).await;
    error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // No plan in flight: nothing to report done.
    let (status, _, body) = call(&app, report_done(Some(TOKEN), "abc")).await;
    error(status, &body, StatusCode::CONFLICT, "conflict");
}

/// Regression (issue 12): re-acking a done move after the commit answered
/// 409 "no plan" once the coordinator had restarted (or the lead had
/// moved): the committed plan's done moves were kept in memory only.
#[tokio::test]
async fn reacking_a_done_move_after_a_restart_answers_200_not_409() {
    let done = |id: &str| report_done(Some(TOKEN), id);
    let c = coordinator(3).await;
    let ids = move_ids_of_the_first_plan(&c).await;
    assert!(!ids.is_empty());
    let app = open_app(&c);
    let mut last = Vec::new();
    for id in &ids {
        let (status, _, body) = call(&app, done(id)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        last = body;
    }
    let committing: MoveDoneResponse = serde_json::from_slice(&last).expect("an ack answer");
    assert!(committing.committed && committing.epoch == 2);

    let c = c.restart().await;
    c.send(SourceEvent::Health(SourceHealth::Synced));
    c.send(SourceEvent::Members(testing::members(4)));
    let app = open_app(&c);
    for id in &ids {
        let (status, _, body) = call(&app, done(id)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let again: MoveDoneResponse = serde_json::from_slice(&body).expect("an ack answer");
        assert_eq!(
            (again.move_.id.as_str(), again.move_.state.as_str()),
            (id.as_str(), "done")
        );
        assert_eq!(
            (again.remaining, again.epoch, again.committed),
            (0, 2, true)
        );
    }
    let (_, _, again) = call(&app, done(ids.last().expect("a move"))).await;
    assert_eq!(
        again, last,
        "the committing ack answers as it did the first time"
    );
    // Not every id is taken for done: one the plan never had is still refused.
    let (status, _, body) = call(&app, done("0123456789abcdef")).await;
    error(status, &body, StatusCode::CONFLICT, "conflict");
}

/// Issue 10 (a): move ids carry their plan's lineage; a report of a move of
/// a plan that is over (here: the committed one, with an id it never had)
/// is told so, with what to do, and marks nothing done in the plan now in
/// flight.
#[tokio::test]
async fn a_report_of_an_earlier_plans_move_answers_409_and_marks_nothing_done() {
    let done = |id: &str| report_done(Some(TOKEN), id);
    let c = coordinator(3).await;
    let first = move_ids_of_the_first_plan(&c).await;
    let app = open_app(&c);
    for id in &first {
        let (status, _, body) = call(&app, done(id)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
    let lineage = first[0]
        .split_once('-')
        .expect("a numbered id")
        .0
        .to_owned();
    c.send(SourceEvent::Members(testing::members(5)));
    let view = c
        .wait_for("the next plan", |v| v.plan_in_progress().is_some())
        .await;
    let next = view.plan_in_progress().expect("a plan").clone();
    assert!(
        next.plan
            .moves
            .iter()
            .all(|m| !m.id.as_str().starts_with(&format!("{lineage}-"))),
        "the next plan is another lineage"
    );
    let (status, _, body) = call(&app, done(&format!("{lineage}-0123456789abcdef"))).await;
    let message = error(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(
        message.contains(&format!("plan lineage {lineage}")) && message.contains("/work"),
        "{message}"
    );
    let (_, _, body) = call(&app, get("/v1/plan")).await;
    let plan: Value = serde_json::from_slice(&body).expect("a plan");
    assert!(
        plan["plan"]["moves"]
            .as_array()
            .expect("moves")
            .iter()
            .all(|m| m["state"] != "done"),
        "nothing is done: {plan}"
    );
}

#[tokio::test]
async fn reads_are_authenticated_by_flag_with_a_token() {
    let c = coordinator(3).await;
    let app = c.app(WriteAuth::Token(TOKEN.into()), true, Limits::default());
    for uri in [
        "/v1/ring",
        "/v1/plan",
        "/v1/lookup?key=a",
        "/v1/watch",
        "/v1/members/db-0/ranges",
    ] {
        let (status, _, body) = call(&app, get(uri)).await;
        error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        // Only the status is read: the watch stream never ends.
        let response = app
            .clone()
            .oneshot(
                Request::get(uri)
                    .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                    .body(Body::empty())
                    .expect("a request"),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
    // Health, readiness, metrics and the document stay open for probes.
    for uri in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (status, _, _) = call(&app, get(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn reads_are_authenticated_by_flag_under_tokenreview_too() {
    // Issue 12: under --auth tokenreview reads were always open.
    let kit = TestApiServer::start().await.expect("testkit");
    kit.add_token("reader-token", "system:serviceaccount:default:reader");
    kit.add_token("writer-token", "system:serviceaccount:default:db");
    kit.add_token("other-token", "system:serviceaccount:default:other");
    let reviewer = TokenReviewer::new(
        kit.client(),
        ReviewPolicy {
            writers: ["system:serviceaccount:default:db".to_owned()].into(),
            readers: ["system:serviceaccount:default:reader".to_owned()].into(),
            audiences: vec!["ringleader".to_owned()],
        },
    );
    let c = coordinator(3).await;
    let app = c.app(
        WriteAuth::TokenReview(Arc::new(reviewer)),
        true,
        Limits::default(),
    );
    let read = |token: Option<&str>| {
        let mut request = Request::get("/v1/ring");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Body::empty()).expect("a request")
    };
    let (status, _, body) = call(&app, read(None)).await;
    error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _, body) = call(&app, read(Some("other-token"))).await;
    let message = error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert!(message.contains("--allow-reader"), "{message}");
    for token in ["reader-token", "writer-token"] {
        let (status, _, _) = call(&app, read(Some(token))).await;
        assert_eq!(status, StatusCode::OK, "{token}");
    }
    // The audience went with every review.
    assert!(
        kit.requests()
            .iter()
            .any(|r| r.verb == Verb::Create && r.path.contains("tokenreviews"))
    );
}

#[tokio::test]
async fn a_bogus_token_costs_one_token_review_not_one_per_request() {
    // Issue 12: failed reviews were neither cached nor rate-limited.
    let kit = TestApiServer::start().await.expect("testkit");
    let reviewer = TokenReviewer::new(
        kit.client(),
        ReviewPolicy {
            writers: ["system:serviceaccount:default:db".to_owned()].into(),
            ..ReviewPolicy::default()
        },
    );
    let c = coordinator(3).await;
    let app = c.app(
        WriteAuth::TokenReview(Arc::new(reviewer)),
        false,
        Limits::default(),
    );
    let before = kit.request_count(Verb::Create);
    for _ in 0..5 {
        let (status, _, body) = call(
            &app,
            Request::post("/v1/plan/moves/abc/done")
                .header(header::AUTHORIZATION, "Bearer bogus-token")
                .body(Body::empty())
                .expect("a request"),
        )
        .await;
        error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert_eq!(kit.request_count(Verb::Create), before + 1);
}

// ---------------------------------------------------------------------------
// Connection bounds (sockets on 127.0.0.1).

async fn served(limits: ConnLimits) -> (std::net::SocketAddr, Running) {
    let c = coordinator(3).await;
    let (addr, _) = c.serve(open_app(&c), limits).await;
    (addr, c)
}

/// Reads until the peer closes (true) or `within` passes (false).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    // 100 such connections were all still open after 35 s.
    let limits = ConnLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ConnLimits::default()
    };
    let (addr, _c) = served(limits).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /v1/ring HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let limits = ConnLimits {
        idle_timeout: Duration::from_millis(300),
        ..ConnLimits::default()
    };
    let (addr, _c) = served(limits).await;
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    // It gets its answer, then the kept-alive connection idles out.
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let limits = ConnLimits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(30),
        ..ConnLimits::default()
    };
    let (addr, _c) = served(limits).await;
    let ask = |mut s: tokio::net::TcpStream| async move {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 12];
        let got = tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await;
        (s, got.is_ok_and(|r| r.is_ok()))
    };
    let (first, ok1) = ask(tokio::net::TcpStream::connect(addr).await.expect("connect")).await;
    let (_second, ok2) = ask(tokio::net::TcpStream::connect(addr).await.expect("connect")).await;
    assert!(ok1 && ok2);
    let third = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (third, ok3) = ask(third).await;
    assert!(!ok3, "a third connection is not served while two are open");
    drop(first);
    let mut third = third;
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(3), third.read_exact(&mut buf))
        .await
        .expect("served once a slot frees")
        .expect("an answer");
    assert_eq!(&buf, b"HTTP/1.1 200");
}

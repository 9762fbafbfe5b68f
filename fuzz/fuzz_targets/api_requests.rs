//! Arbitrary HTTP requests — method, path, query, headers, body — through
//! the API router in process (`tower::ServiceExt::oneshot`), against a
//! running coordinator with a fixed member set and a plan in flight.
//!
//! Checks: no panic; no 5xx but 503; every answer that is neither 2xx nor
//! 304 has the JSON error shape `{"error": {"code", "message"}}`; 304 only
//! for a request with If-None-Match; a success that says it is JSON is.
#![no_main]

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use ringleader::api::{Limits, WriteAuth};
use ringleader::settings::{Mode, RingSettings};
use ringleader::testing::{self, Running};
use ringleader_ring::Strategy;
use ringleader_watch::SourceEvent;
use std::sync::OnceLock;
use std::time::Duration;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    open: axum::Router,
    closed: axum::Router,
    ring_etag: String,
    plan_etag: String,
    move_id: String,
    _running: Running,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let settings = RingSettings {
            rf: 2,
            strategy: Strategy::Balanced,
            tokens_per_member: 8,
            zone_aware: true,
            mode: Mode::Ack,
            ..RingSettings::default()
        };
        // Three members commit at once; a fourth makes a plan in flight.
        let (running, view) = runtime.block_on(async {
            let running = Running::start(
                settings,
                testing::no_settle(Duration::ZERO),
                testing::members(3),
            )
            .await;
            running.send(SourceEvent::Members(testing::members(4)));
            let view = running
                .wait_for("a plan in flight", |v| v.plan_in_progress().is_some())
                .await;
            (running, view)
        });
        let move_id = view
            .plan_in_progress()
            .and_then(|p| p.plan.moves.first().map(|m| m.id.as_str().to_owned()))
            .unwrap_or_default();
        let limits = Limits {
            body_bytes: 16 << 10,
            concurrency: 64,
            watchers: 2,
            batch_keys: 32,
            // Small previews: each fuzz input stays fast.
            preview_members: 16,
            preview_tokens: 16 * 16 * 4,
            ..Limits::default()
        };
        let open = running.app(WriteAuth::Token(TOKEN.into()), false, limits);
        let closed = running.app(WriteAuth::Token(TOKEN.into()), true, limits);
        let etag = |path: &str| {
            runtime.block_on(async {
                let (_, headers, _) = testing::call(
                    &open,
                    Request::get(path).body(Body::empty()).expect("a request"),
                )
                .await;
                headers[header::ETAG].to_str().expect("ASCII").to_owned()
            })
        };
        Fixture {
            ring_etag: etag("/v1/ring"),
            plan_etag: etag("/v1/plan"),
            runtime,
            open,
            closed,
            move_id,
            _running: running,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum PathChoice {
    Ring,
    Lookup,
    MemberRanges(String),
    KnownMemberRanges(u8),
    Plan,
    MoveDone(String),
    KnownMoveDone,
    Preview,
    Watch,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Root,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum MethodChoice {
    Get,
    Post,
    Head,
    Put,
    Delete,
    Options,
    Patch,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum EtagChoice {
    None,
    Ring,
    Plan,
    Star,
    Weak,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum AuthChoice {
    None,
    Right,
    Wrong(String),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct PreviewMember {
    id: String,
    zone: Option<String>,
    weight: Option<u32>,
}

#[derive(Arbitrary, Debug)]
enum BodyChoice {
    Empty,
    Raw(Vec<u8>),
    Keys(Vec<String>, Option<u64>),
    Members(Vec<PreviewMember>),
    Slices(String),
    Both(Vec<PreviewMember>, String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    reads_need_token: bool,
    method: MethodChoice,
    path: PathChoice,
    query: Option<String>,
    json_content_type: bool,
    etag: EtagChoice,
    auth: AuthChoice,
    last_event_id: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: BodyChoice,
}

fn path_of(choice: &PathChoice, fixture: &Fixture) -> String {
    match choice {
        PathChoice::Ring => "/v1/ring".into(),
        PathChoice::Lookup => "/v1/lookup".into(),
        PathChoice::MemberRanges(id) => format!("/v1/members/{id}/ranges"),
        PathChoice::KnownMemberRanges(n) => format!("/v1/members/db-{}/ranges", n % 5),
        PathChoice::Plan => "/v1/plan".into(),
        PathChoice::MoveDone(id) => format!("/v1/plan/moves/{id}/done"),
        PathChoice::KnownMoveDone => format!("/v1/plan/moves/{}/done", fixture.move_id),
        PathChoice::Preview => "/v1/preview".into(),
        PathChoice::Watch => "/v1/watch".into(),
        PathChoice::Healthz => "/healthz".into(),
        PathChoice::Readyz => "/readyz".into(),
        PathChoice::Metrics => "/metrics".into(),
        PathChoice::OpenApi => "/openapi.json".into(),
        PathChoice::Root => "/".into(),
        PathChoice::Raw(raw) => raw.clone(),
    }
}

fn body_of(choice: BodyChoice) -> Vec<u8> {
    let members = |list: Vec<PreviewMember>| -> Vec<serde_json::Value> {
        list.into_iter()
            .take(16)
            .map(|m| serde_json::json!({"id": m.id, "zone": m.zone, "weight": m.weight}))
            .collect()
    };
    match choice {
        BodyChoice::Empty => Vec::new(),
        BodyChoice::Raw(bytes) => bytes,
        BodyChoice::Keys(keys, rf) => {
            serde_json::to_vec(&serde_json::json!({"keys": keys, "rf": rf})).expect("JSON")
        }
        BodyChoice::Members(list) => {
            serde_json::to_vec(&serde_json::json!({"members": members(list)})).expect("JSON")
        }
        BodyChoice::Slices(text) => {
            serde_json::to_vec(&serde_json::json!({"endpoint_slices": text})).expect("JSON")
        }
        BodyChoice::Both(list, text) => serde_json::to_vec(
            &serde_json::json!({"members": members(list), "endpoint_slices": text}),
        )
        .expect("JSON"),
    }
}

fuzz_target!(|input: Input| {
    let fixture = fixture();
    let method = match &input.method {
        MethodChoice::Get => Method::GET,
        MethodChoice::Post => Method::POST,
        MethodChoice::Head => Method::HEAD,
        MethodChoice::Put => Method::PUT,
        MethodChoice::Delete => Method::DELETE,
        MethodChoice::Options => Method::OPTIONS,
        MethodChoice::Patch => Method::PATCH,
        MethodChoice::Raw(raw) => match Method::from_bytes(raw.as_bytes()) {
            Ok(m) => m,
            Err(_) => return,
        },
    };
    let mut target = path_of(&input.path, fixture);
    if let Some(query) = &input.query {
        target.push('?');
        target.push_str(query);
    }
    let Ok(uri) = target.parse::<Uri>() else {
        return; // hyper would refuse it before the router
    };
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    let mut sent_if_none_match = false;
    for (name, value) in input.headers.iter().take(8) {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        sent_if_none_match |= name == header::IF_NONE_MATCH;
        builder = builder.header(name, value);
    }
    let etag = match &input.etag {
        EtagChoice::None => None,
        EtagChoice::Ring => Some(fixture.ring_etag.clone()),
        EtagChoice::Plan => Some(fixture.plan_etag.clone()),
        EtagChoice::Star => Some("*".to_owned()),
        EtagChoice::Weak => Some(format!("W/{}", fixture.ring_etag)),
        EtagChoice::Raw(raw) => Some(raw.clone()),
    };
    if let Some(value) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        sent_if_none_match = true;
        builder = builder.header(header::IF_NONE_MATCH, value);
    }
    let auth = match &input.auth {
        AuthChoice::None => None,
        AuthChoice::Right => Some(format!("Bearer {TOKEN}")),
        AuthChoice::Wrong(t) => Some(format!("Bearer {t}")),
        AuthChoice::Raw(raw) => Some(raw.clone()),
    };
    if let Some(value) = auth.and_then(|a| HeaderValue::from_str(&a).ok()) {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    if let Some(value) = input
        .last_event_id
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        builder = builder.header("last-event-id", value);
    }
    if input.json_content_type {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let Ok(request) = builder.body(Body::from(body_of(input.body))) else {
        return;
    };
    let app = if input.reads_need_token {
        fixture.closed.clone()
    } else {
        fixture.open.clone()
    };
    fixture.runtime.block_on(async move {
        let response = app
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        assert!(
            !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
            "{method} {target} answered {status}"
        );
        if status == StatusCode::NOT_MODIFIED {
            assert!(
                sent_if_none_match,
                "304 for a request without If-None-Match"
            );
            return;
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if status.is_success() && content_type.starts_with("text/event-stream") {
            return; // a live stream: dropping it unsubscribes
        }
        let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
            .await
            .expect("a non-streaming body completes")
            .expect("the body reads")
            .to_bytes();
        if method == Method::HEAD {
            return;
        }
        if !status.is_success() {
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "{method} {target} answered {status} with a body that is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&body)
                )
            });
            let error = &value["error"];
            assert!(
                error["code"].is_string() && error["message"].is_string(),
                "{method} {target} answered {status} without the error shape: {value}"
            );
            assert!(
                content_type.starts_with("application/json"),
                "{method} {target} answered {status} as {content_type:?}"
            );
        } else if content_type.starts_with("application/json") {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                "{method} {target} answered {status} with a body that is not JSON: {:?}",
                String::from_utf8_lossy(&body)
            );
        }
    });
});

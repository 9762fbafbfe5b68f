//! The operator's view, in process (axum's `oneshot`, no sockets): `GET
//! /v1/status` says which endpoints the ring doesn't have and why, how long
//! a down member has left and how old the plan is; the watch stream tells
//! the page when member states move; `GET /` is the self-contained page.
//! The page itself is driven in a real browser by .ci/browser-test.sh.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use ringleader::api::{Limits, WriteAuth};
use ringleader::settings::{RingSettings, Timing};
use ringleader::testing::{self, Running, call};
use ringleader_client::api::{OutsideReason, StatusResponse};
use ringleader_watch::{Member, MemberSet, SourceEvent};
use std::time::Duration;
use tower::ServiceExt;

const SETTLE: Duration = Duration::from_millis(300);

fn member(id: &str, ready: bool, terminating: bool) -> Member {
    Member {
        zone: Some("a".into()),
        terminating,
        ..testing::pod(id, ready)
    }
}

fn set(members: &[(&str, bool, bool)]) -> MemberSet {
    members
        .iter()
        .map(|&(id, ready, terminating)| member(id, ready, terminating))
        .collect()
}

struct Coordinator {
    app: Router,
    running: Running,
}

/// A coordinator (ack mode, short settle, long grace) over three members,
/// once their first epoch is committed.
async fn start() -> Coordinator {
    let timing = Timing {
        settle: SETTLE,
        settle_max: SETTLE * 3,
        down_grace: Duration::from_secs(60),
    };
    let first = set(&[
        ("db-0", true, false),
        ("db-1", true, false),
        ("db-2", true, false),
    ]);
    let running = Running::start(RingSettings::default(), timing, first).await;
    let app = running.app(WriteAuth::Open, false, Limits::default());
    Coordinator { app, running }
}

impl Coordinator {
    async fn wait_for(&self, what: &str, done: impl Fn(&ringleader::view::View) -> bool) {
        self.running.wait_for(what, done).await;
    }

    async fn get(&self, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        call(
            &self.app,
            Request::get(path).body(Body::empty()).expect("a request"),
        )
        .await
    }

    async fn status(&self) -> StatusResponse {
        let (code, _, body) = self.get("/v1/status").await;
        assert_eq!(code, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("a StatusResponse")
    }
}

#[tokio::test]
async fn status_says_which_endpoints_the_ring_lacks_and_why() {
    let c = start().await;
    // db-1 turns not ready (down, in grace); db-3 is new and ready
    // (settling); db-4 is new and not ready; db-5 is terminating.
    c.running.send(SourceEvent::Members(set(&[
        ("db-0", true, false),
        ("db-1", false, false),
        ("db-2", true, false),
        ("db-3", true, false),
        ("db-4", false, false),
        ("db-5", true, true),
    ])));
    c.wait_for("the change to be seen", |v| v.outside.len() == 3)
        .await;
    let status = c.status().await;
    assert_eq!(status.epoch, 1);
    let reasons: Vec<(&str, OutsideReason)> = status
        .outside
        .iter()
        .map(|e| (e.id.as_str(), e.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("db-3", OutsideReason::Settling),
            ("db-4", OutsideReason::NotReady),
            ("db-5", OutsideReason::Terminating),
        ]
    );
    let settling = &status.outside[0];
    let planned_in = settling.planned_in_seconds.expect("settling says when");
    assert!(planned_in <= SETTLE.as_secs_f64() * 3.0, "{planned_in}");
    let db1 = status
        .members
        .iter()
        .find(|m| m.member.id == "db-1")
        .expect("db-1 listed");
    assert_eq!(db1.member.state.as_str(), "down");
    let left = db1.grace_left_seconds.expect("a down member's grace left");
    assert!(left > 50.0 && left <= 60.0, "{left}");
    assert!(db1.member.grace_ends_at.is_some());
    assert_eq!(db1.member.tokens, 16);
    assert!(status.plan.is_none());

    // Once settled: a plan with its times, db-3 joining in it.
    c.wait_for("the plan", |v| v.plan.is_some()).await;
    let status = c.status().await;
    let plan = status.plan.expect("a plan");
    assert!(plan.created_at.is_some() && plan.changed_at.is_some());
    let age = plan.age_seconds.expect("an age");
    assert!((0.0..10.0).contains(&age), "{age}");
    assert_eq!(plan.done, 0);
    assert!(plan.summary.moves > 0);
    let db3 = status
        .outside
        .iter()
        .find(|e| e.id == "db-3")
        .expect("db-3 still outside the committed ring");
    assert_eq!(db3.reason, OutsideReason::Joining);

    // `GET /v1/plan` carries the same times, in RFC 3339.
    let (_, _, body) = c.get("/v1/plan").await;
    let plan_json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let created = plan_json["plan"]["created_at"]
        .as_str()
        .expect("created_at");
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
}

#[tokio::test]
async fn the_watch_stream_says_when_member_states_move_without_a_new_epoch() {
    let c = start().await;
    let response = c
        .app
        .clone()
        .oneshot(
            Request::get("/v1/watch")
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    let mut read_until = async |needle: &str, text: &mut String| {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !text.contains(needle) {
                let chunk = body
                    .next()
                    .await
                    .expect("the stream goes on")
                    .expect("bytes");
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} in {text}"));
    };
    read_until("event: state", &mut text).await;
    read_until("\n\n", &mut text).await;
    text.clear();
    c.running.send(SourceEvent::Members(set(&[
        ("db-0", true, false),
        ("db-1", false, false),
        ("db-2", true, false),
    ])));
    read_until("event: members", &mut text).await;
    read_until("\n\n", &mut text).await;
    assert!(
        !text.contains("id:"),
        "a members event carries no id, so resuming keeps its meaning: {text}"
    );
    assert!(text.contains("\"epoch\":1"), "{text}");
}

#[tokio::test]
async fn the_page_is_served_self_contained_with_a_strict_policy() {
    let c = start().await;
    let (code, headers, body) = c.get("/").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().expect("ASCII");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let html = String::from_utf8(body).expect("UTF-8");
    assert!(
        html.contains("<svg id=\"ring\""),
        "the ring is drawn in SVG"
    );
    assert!(html.contains("/v1/watch") && html.contains("/v1/status"));
    // The status route is described like the others.
    let (_, _, doc) = c.get("/openapi.json").await;
    let doc: serde_json::Value = serde_json::from_slice(&doc).expect("JSON");
    assert!(doc["paths"]["/v1/status"]["get"].is_object());
    assert!(doc["components"]["schemas"]["StatusResponse"].is_object());
}

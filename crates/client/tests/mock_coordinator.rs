//! The client against a mock coordinator: a small axum server on
//! 127.0.0.1:0 serving canned answers, an `ETag`/304 ring, error bodies and
//! scripted Server-Sent Event streams.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::{StreamExt, stream};
use ringleader_client::api::{
    CompactTokens, ErrorDetail, ErrorResponse, HealthResponse, LookupBatchRequest,
    LookupBatchResponse, LookupResponse, MemberState, MemberView, MoveDoneResponse, MoveView,
    PlanResponse, PreviewMember, PreviewRequest, PreviewResponse, RangeView, RingResponse,
    SettingsView, SummaryView, TokenView, WatchEvent,
};
use ringleader_client::{Client, Error, LocalRing, SyncOptions, SyncState};
use ringleader_ring::{MemberSpec, Replication, Ring, RingConfig, Strategy};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every test runs under this bound.
const TEST_LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("the test finished within its time limit")
}

/// One step of a scripted watch connection.
#[derive(Clone)]
enum Step {
    /// Send these bytes as one chunk.
    Send(String),
    /// Make the ring of this epoch the one served.
    SetEpoch(u64),
    /// Pause.
    Sleep(u64),
    /// Keep the connection open without sending anything.
    Hang,
}

#[derive(Default)]
struct Mock {
    /// Ring answers (with tokens) by epoch.
    rings: BTreeMap<u64, RingResponse>,
    /// The epoch served by `GET /v1/ring`.
    epoch: Mutex<u64>,
    /// Watch connection `i` plays `scripts[i]`; later ones hang.
    scripts: Vec<Vec<Step>>,
    /// Watch connections answer 503 instead.
    watch_fails: bool,
    /// `GET /v1/ring` answers 500 with a non-JSON body.
    ring_fails: bool,
    /// `Last-Event-ID` of each watch connection.
    watch_connections: Mutex<Vec<Option<String>>>,
    /// Chunks sent so far over all watch connections.
    sent: AtomicUsize,
    /// `sent` when each watch connection opened.
    sent_at_connect: Mutex<Vec<usize>>,
    /// `If-None-Match` of each ring request, and whether it got a 304.
    ring_requests: Mutex<Vec<(Option<String>, bool)>>,
}

impl Mock {
    fn with_rings(rings: &[&Ring], settings: &SettingsView) -> Self {
        let rings = rings
            .iter()
            .enumerate()
            .map(|(i, ring)| {
                let epoch = i as u64 + 1;
                (epoch, ring_response(epoch, ring, settings))
            })
            .collect();
        Mock {
            rings,
            epoch: Mutex::new(1),
            ..Default::default()
        }
    }
}

fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorResponse {
        error: ErrorDetail {
            code: code.into(),
            message: message.into(),
        },
    };
    (status, axum::Json(body)).into_response()
}

fn ring_response(epoch: u64, ring: &Ring, settings: &SettingsView) -> RingResponse {
    let mut members: Vec<MemberView> = ring
        .members()
        .iter()
        .map(|m| MemberView {
            id: m.id.to_string(),
            state: MemberState::Up,
            zone: m.zone.clone(),
            addresses: vec![format!("10.0.0.{}", m.id.as_str().len())],
            weight: m.weight,
            ownership: 0.0,
            replica_ownership: 0.0,
            tokens: 0,
            grace_ends_at: None,
        })
        .collect();
    // A joining member without tokens yet, as the coordinator lists them.
    members.push(MemberView {
        id: "db-joining".into(),
        state: MemberState::Joining,
        zone: Some("a".into()),
        addresses: vec![],
        weight: 1,
        ownership: 0.0,
        replica_ownership: 0.0,
        tokens: 0,
        grace_ends_at: None,
    });
    RingResponse {
        epoch,
        settings: settings.clone(),
        members,
        balance: ring.balance(),
        tokens: Some(
            ring.token_owners()
                .map(|(token, member)| TokenView {
                    token: token.to_string(),
                    member: member.to_string(),
                })
                .collect(),
        ),
        compact_tokens: Some(
            ring.members()
                .iter()
                .map(|m| {
                    let tokens: Vec<u64> = ring
                        .token_owners()
                        .filter(|(_, owner)| owner.as_str() == m.id.as_str())
                        .map(|(t, _)| t)
                        .collect();
                    CompactTokens::encode(m.id.as_str(), &tokens)
                })
                .collect(),
        ),
        plan_in_flight: false,
        leader: None,
    }
}

async fn ring_route(
    State(mock): State<Arc<Mock>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if mock.ring_fails {
        mock.ring_requests.lock().unwrap().push((None, false));
        return (StatusCode::INTERNAL_SERVER_ERROR, "store unreadable").into_response();
    }
    let form = query.get("tokens").cloned().unwrap_or_default();
    let epoch = *mock.epoch.lock().unwrap();
    let etag = format!("\"{epoch}-{form}\"");
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .map(|v| v.to_str().unwrap().to_owned());
    let not_modified = if_none_match.as_deref() == Some(etag.as_str());
    mock.ring_requests
        .lock()
        .unwrap()
        .push((if_none_match, not_modified));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut body = mock.rings[&epoch].clone();
    if form != "true" {
        body.tokens = None;
    }
    if form != "compact" {
        body.compact_tokens = None;
    }
    ([(header::ETAG, etag)], axum::Json(body)).into_response()
}

async fn watch_route(State(mock): State<Arc<Mock>>, headers: HeaderMap) -> Response {
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let n = {
        let mut connections = mock.watch_connections.lock().unwrap();
        connections.push(last);
        let sent = mock.sent.load(Ordering::SeqCst);
        mock.sent_at_connect.lock().unwrap().push(sent);
        connections.len() - 1
    };
    if mock.watch_fails {
        return error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_leader",
            "no leader elected yet",
        );
    }
    let script = mock.scripts.get(n).cloned().unwrap_or(vec![Step::Hang]);
    let chunks = stream::iter(script)
        .then(move |step| {
            let mock = mock.clone();
            async move {
                match step {
                    Step::Send(text) => {
                        mock.sent.fetch_add(1, Ordering::SeqCst);
                        Some(Bytes::from(text))
                    }
                    Step::SetEpoch(epoch) => {
                        *mock.epoch.lock().unwrap() = epoch;
                        None
                    }
                    Step::Sleep(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        None
                    }
                    Step::Hang => futures::future::pending().await,
                }
            }
        })
        .filter_map(|chunk| async move { chunk.map(Ok::<_, Infallible>) });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(chunks),
    )
        .into_response()
}

fn range_view(start: u64, end: u64) -> RangeView {
    RangeView {
        start: start.to_string(),
        end: end.to_string(),
    }
}

fn lookup_answer(key: &str, rf: Option<usize>) -> LookupResponse {
    LookupResponse {
        epoch: 1,
        key: key.to_owned(),
        token: "42".into(),
        owner: "db-0".into(),
        replicas: vec!["db-0".to_owned(); rf.unwrap_or(1)],
        range: range_view(1, 42),
    }
}

async fn lookup_route(Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(key) = query.get("key") else {
        return error_body(StatusCode::BAD_REQUEST, "bad_request", "missing key");
    };
    let rf = query.get("rf").map(|rf| rf.parse().unwrap());
    axum::Json(lookup_answer(key, rf)).into_response()
}

async fn lookup_batch_route(axum::Json(body): axum::Json<LookupBatchRequest>) -> Response {
    axum::Json(LookupBatchResponse {
        epoch: 1,
        results: body
            .keys
            .iter()
            .map(|k| lookup_answer(k, body.rf))
            .collect(),
    })
    .into_response()
}

async fn member_ranges_route(Path(id): Path<String>) -> Response {
    error_body(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no member {id:?}"),
    )
}

async fn move_done_route(Path(id): Path<String>, headers: HeaderMap) -> Response {
    if headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) != Some(b"Bearer s3cret") {
        return error_body(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required",
        );
    }
    axum::Json(MoveDoneResponse {
        move_: MoveView {
            id,
            range: range_view(1, 2),
            from: "db-0".into(),
            to: "db-3".into(),
            state: "done".into(),
        },
        remaining: 0,
        epoch: 2,
        committed: true,
    })
    .into_response()
}

async fn preview_route(axum::Json(body): axum::Json<PreviewRequest>) -> Response {
    let members = body.members.unwrap_or_default();
    axum::Json(PreviewResponse {
        from_epoch: 1,
        members: members
            .iter()
            .map(|m| MemberView {
                id: m.id.clone(),
                state: MemberState::Up,
                zone: m.zone.clone(),
                addresses: vec![],
                weight: m.weight.unwrap_or(1),
                ownership: 1.0 / members.len() as f64,
                replica_ownership: 1.0 / members.len() as f64,
                tokens: 0,
                grace_ends_at: None,
            })
            .collect(),
        balance: 1.0,
        moves: vec![],
        summary: SummaryView {
            moved_fraction: 0.0,
            ideal_fraction: 0.0,
            moves: 0,
            states: BTreeMap::new(),
            members: BTreeMap::new(),
            waves: None,
        },
    })
    .into_response()
}

fn health(status: &str) -> HealthResponse {
    HealthResponse {
        status: status.into(),
        source: ringleader_client::api::SourceState::Resyncing,
        source_error: None,
        state_loaded: true,
        epoch: 1,
        leader: None,
    }
}

fn app(mock: Arc<Mock>) -> Router {
    Router::new()
        .route("/v1/ring", get(ring_route))
        .route("/v1/watch", get(watch_route))
        .route(
            "/v1/plan",
            get(|| async { axum::Json(PlanResponse { plan: None }) }),
        )
        .route("/v1/lookup", get(lookup_route).post(lookup_batch_route))
        .route("/v1/members/{id}/ranges", get(member_ranges_route))
        .route("/v1/plan/moves/{id}/done", post(move_done_route))
        .route("/v1/preview", post(preview_route))
        .route("/healthz", get(|| async { axum::Json(health("ok")) }))
        .route(
            "/readyz",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(health("source not synced")),
                )
            }),
        )
        .route(
            "/broken/healthz",
            get(|| async { (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>") }),
        )
        .with_state(mock)
}

/// Serves `mock` on 127.0.0.1:0; returns its base URL and the shared mock.
async fn serve(mock: Mock) -> (String, Arc<Mock>) {
    let mock = Arc::new(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app(mock.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, mock)
}

fn settings() -> SettingsView {
    SettingsView {
        rf: 2,
        strategy: "balanced".into(),
        tokens_per_member: 8,
        zone_aware: true,
        mode: "ack".into(),
        max_moves_per_member: Some(2),
        max_moves: None,
    }
}

/// Epoch 1: three members in three zones (one of weight 2); epoch 2: a
/// fourth joins.
fn rings() -> (Ring, Ring) {
    let config = RingConfig::new(Strategy::Balanced, 8);
    let first = Ring::with_members(
        config,
        [
            MemberSpec::new("db-0").with_zone("a"),
            MemberSpec::new("db-1").with_zone("b"),
            MemberSpec::new("db-2").with_zone("c").with_weight(2),
        ],
    )
    .unwrap();
    let second = first.join(MemberSpec::new("db-3").with_zone("a")).unwrap();
    (first, second)
}

fn watch_event(kind: &str, epoch: u64) -> String {
    serde_json::to_string(&WatchEvent {
        kind: kind.into(),
        epoch,
        revision: 0,
        plan: None,
        ready: Vec::new(),
    })
    .unwrap()
}

/// One whole SSE message.
fn sse(id: &str, kind: &str, epoch: u64) -> String {
    format!(
        "id: {id}\nevent: {kind}\ndata: {}\n\n",
        watch_event(kind, epoch)
    )
}

fn fast_options() -> SyncOptions {
    SyncOptions {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        max_retries: Some(20),
        idle_timeout: Some(Duration::from_secs(10)),
    }
}

/// Waits until the synced ring reaches `epoch`.
async fn wait_for_epoch(handle: &mut ringleader_client::RingHandle, epoch: u64) -> Arc<LocalRing> {
    loop {
        let ring = handle.current();
        if ring.epoch() == epoch {
            return ring;
        }
        handle.changed().await.expect("the sync loop is running");
    }
}

/// The ring a client should build from a served answer, built here without
/// the client.
fn ring_from_answer(answer: &RingResponse) -> Ring {
    let tokens = answer.tokens.as_ref().unwrap();
    let members = answer
        .members
        .iter()
        .filter(|m| tokens.iter().any(|t| t.member == m.id))
        .map(|m| MemberSpec {
            id: m.id.as_str().into(),
            zone: m.zone.clone(),
            weight: m.weight,
        });
    let config = RingConfig::new(answer.settings.strategy.parse().unwrap(), 8);
    let assignments = tokens
        .iter()
        .map(|t| (t.token.parse().unwrap(), t.member.as_str().into()));
    Ring::from_assignments(config, members, assignments).unwrap()
}

#[tokio::test]
async fn sync_follows_an_epoch_change_and_lookups_match_the_served_ring() {
    bounded(async {
        let (first, second) = rings();
        let mut mock = Mock::with_rings(&[&first, &second], &settings());
        mock.scripts = vec![vec![
            Step::Send(sse("1-0", "state", 1)),
            Step::Sleep(50),
            Step::SetEpoch(2),
            Step::Send(": keep-alive\n\n".into()),
            Step::Send(sse("2-0", "epoch", 2)),
            Step::Hang,
        ]];
        let (base, mock) = serve(mock).await;
        let synced = LocalRing::sync(Client::new(&base).unwrap(), fast_options())
            .await
            .unwrap();
        let mut handle = synced.handle();
        let local = wait_for_epoch(&mut handle, 2).await;

        let expected = ring_from_answer(&mock.rings[&2]);
        assert_eq!(local.ring(), &expected);
        assert_eq!(local.ring(), &second);
        let replication = Replication::new(2, true);
        assert_eq!(local.replication(), replication);
        for i in 0..2_000 {
            let key = format!("user:{i}");
            assert_eq!(
                local.owner(&key).unwrap(),
                expected.owner(key.as_bytes()).unwrap()
            );
            assert_eq!(
                local.replicas(&key).unwrap(),
                expected.replicas(key.as_bytes(), &replication).unwrap()
            );
        }
        for member in ["db-0", "db-1", "db-2", "db-3"] {
            assert_eq!(
                local.ranges_of(member).unwrap(),
                expected.ranges_of(member).unwrap()
            );
        }
        // Listed but without tokens: known by state, not in the ring.
        assert_eq!(local.state_of("db-joining"), Some(MemberState::Joining));
        assert!(local.ranges_of("db-joining").is_err());

        assert_eq!(synced.state(), SyncState::Following);
        assert_eq!(*mock.watch_connections.lock().unwrap(), vec![None]);
    })
    .await;
}

#[tokio::test]
async fn reconnect_after_the_stream_closes_resumes_with_last_event_id() {
    bounded(async {
        let (first, second) = rings();
        let mut mock = Mock::with_rings(&[&first, &second], &settings());
        mock.scripts = vec![
            // The second event is cut mid-field across chunks; then the
            // server closes the stream.
            vec![
                Step::Send(sse("1-0", "state", 1)),
                Step::Send("id: 1-1\nevent: pl".into()),
                Step::Send(format!("an\ndata: {}\n\n", watch_event("plan", 1))),
            ],
            vec![
                Step::SetEpoch(2),
                Step::Send(sse("2-0", "epoch", 2)),
                Step::Hang,
            ],
        ];
        let (base, mock) = serve(mock).await;
        let synced = LocalRing::sync(Client::new(&base).unwrap(), fast_options())
            .await
            .unwrap();
        let mut handle = synced.handle();
        let local = wait_for_epoch(&mut handle, 2).await;
        assert_eq!(local.ring(), &second);

        assert_eq!(
            *mock.watch_connections.lock().unwrap(),
            vec![None, Some("1-1".to_owned())]
        );
        // The refresh on reconnect asked with the ETag and got a 304.
        let requests = mock.ring_requests.lock().unwrap().clone();
        assert_eq!(requests[0], (None, false), "initial fetch");
        assert_eq!(
            requests[1],
            (Some("\"1-compact\"".to_owned()), true),
            "refresh on reconnect"
        );
        assert_eq!(requests.len(), 3, "then the fetch of epoch 2: {requests:?}");
    })
    .await;
}

#[tokio::test]
async fn sync_gives_up_after_max_retries_and_keeps_the_last_ring() {
    bounded(async {
        let (first, _) = rings();
        let mut mock = Mock::with_rings(&[&first], &settings());
        mock.watch_fails = true;
        let (base, mock) = serve(mock).await;
        let options = SyncOptions {
            max_retries: Some(2),
            ..fast_options()
        };
        let synced = LocalRing::sync(Client::new(&base).unwrap(), options)
            .await
            .unwrap();
        let mut states = synced.states();
        let state = states
            .wait_for(|s| matches!(s, SyncState::Stopped { .. }))
            .await
            .unwrap()
            .clone();
        let SyncState::Stopped { reason } = state else {
            unreachable!()
        };
        assert!(reason.contains("no leader elected yet"), "{reason}");
        assert_eq!(mock.watch_connections.lock().unwrap().len(), 3);
        assert_eq!(synced.current().epoch(), 1);
    })
    .await;
}

#[tokio::test]
async fn sync_fails_when_the_first_ring_cannot_be_fetched() {
    bounded(async {
        let (first, _) = rings();
        let mut mock = Mock::with_rings(&[&first], &settings());
        mock.ring_fails = true;
        let (base, mock) = serve(mock).await;
        let options = SyncOptions {
            max_retries: Some(1),
            ..fast_options()
        };
        let error = LocalRing::sync(Client::new(&base).unwrap(), options)
            .await
            .unwrap_err();
        match error {
            Error::Api {
                status,
                code,
                message,
            } => {
                assert_eq!(status, 500);
                assert_eq!(code, "internal_server_error");
                assert_eq!(message, "store unreadable");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(mock.ring_requests.lock().unwrap().len(), 2, "one retry");
    })
    .await;
}

#[tokio::test]
async fn watch_parses_events_split_across_chunks_and_sends_last_event_id() {
    bounded(async {
        let mock = Mock {
            scripts: vec![vec![
                Step::Send(": hello\n\n".into()),
                Step::Send("id: 5\nevent: plan\ndata: {\"kind\":\"plan\",\n".into()),
                Step::Send("data: \"epoch\":1,\"revision\":3,\"plan\":null}\n".into()),
                Step::Send("\n".into()),
                Step::Send("id: 6\ndata: not json\n\n".into()),
                Step::Send(sse("7", "epoch", 2)),
            ]],
            ..Default::default()
        };
        let (base, mock) = serve(mock).await;
        let client = Client::new(&base).unwrap();
        let items: Vec<_> = client.watch(Some("4")).collect().await;
        assert_eq!(items.len(), 3, "{items:?}");
        let (id, event) = items[0].as_ref().unwrap();
        assert_eq!(id, "5");
        assert_eq!(
            (event.kind.as_str(), event.epoch, event.revision),
            ("plan", 1, 3)
        );
        assert!(matches!(&items[1], Err(Error::BadEvent { id, .. }) if id == "6"));
        let (id, event) = items[2].as_ref().unwrap();
        assert_eq!(
            (id.as_str(), event.kind.as_str(), event.epoch),
            ("7", "epoch", 2)
        );
        assert_eq!(
            *mock.watch_connections.lock().unwrap(),
            vec![Some("4".to_owned())]
        );
    })
    .await;
}

#[tokio::test]
async fn watch_error_status_is_one_error_then_the_end() {
    bounded(async {
        let mock = Mock {
            watch_fails: true,
            ..Default::default()
        };
        let (base, _) = serve(mock).await;
        let items: Vec<_> = Client::new(&base).unwrap().watch(None).collect().await;
        assert_eq!(items.len(), 1);
        let error = items.into_iter().next().unwrap().unwrap_err();
        assert_eq!(error.status(), Some(503));
        assert_eq!(error.code(), Some("not_leader"));
    })
    .await;
}

#[tokio::test]
async fn ring_uses_etag_and_returns_the_cached_answer_on_304() {
    bounded(async {
        let (first, _) = rings();
        let (base, mock) = serve(Mock::with_rings(&[&first], &settings())).await;
        let client = Client::new(&base).unwrap();
        let fresh = client.ring(false).await.unwrap();
        assert!(fresh.tokens.is_none());
        let cached = client.ring(false).await.unwrap();
        assert_eq!(cached, fresh);
        // With tokens is another answer with its own ETag.
        let with_tokens = client.clone().ring(true).await.unwrap();
        assert!(with_tokens.tokens.is_some());
        assert_eq!(
            *mock.ring_requests.lock().unwrap(),
            vec![
                (None, false),
                (Some("\"1-\"".to_owned()), true),
                (None, false)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn endpoints_round_trip_and_errors_carry_status_code_and_message() {
    bounded(async {
        let (base, _) = serve(Mock::default()).await;
        let client = Client::new(&base).unwrap();

        let answer = client.lookup("user:42 & more/?", Some(3)).await.unwrap();
        assert_eq!(answer.key, "user:42 & more/?");
        assert_eq!(answer.replicas.len(), 3);
        let batch = client.lookup_batch(["a", "b"], None).await.unwrap();
        let keys: Vec<_> = batch.results.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);

        assert_eq!(client.plan().await.unwrap(), PlanResponse { plan: None });
        assert!(client.health().await.unwrap().is_ok());
        let ready = client.ready().await.unwrap();
        assert!(!ready.is_ok());
        assert_eq!(ready.status, "source not synced");

        let preview = client
            .preview(&PreviewRequest {
                members: Some(vec![PreviewMember {
                    id: "db-0".into(),
                    zone: None,
                    weight: Some(2),
                }]),
                endpoint_slices: None,
            })
            .await
            .unwrap();
        assert_eq!(preview.members[0].weight, 2);

        let error = client.member_ranges("db-9").await.unwrap_err();
        assert_eq!(error.status(), Some(404));
        assert_eq!(error.code(), Some("not_found"));
        assert!(error.to_string().contains("no member \"db-9\""), "{error}");

        let error = client.move_done("m-1").await.unwrap_err();
        assert_eq!(error.status(), Some(401));
        assert_eq!(error.code(), Some("unauthorized"));
        let done = client
            .clone()
            .with_token("s3cret\n")
            .move_done("m-1")
            .await
            .unwrap();
        assert_eq!(done.move_.id, "m-1");
        assert!(done.committed);
    })
    .await;
}

#[tokio::test]
async fn non_json_error_body_and_refused_connection_are_reported() {
    bounded(async {
        let (base, _) = serve(Mock::default()).await;
        // Behind a path prefix, a proxy answering HTML: the raw text is kept.
        let error = Client::new(&format!("{base}/broken"))
            .unwrap()
            .health()
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(502));
        assert_eq!(error.code(), Some("bad_gateway"));
        assert!(
            error.to_string().contains("<html>bad gateway</html>"),
            "{error}"
        );

        // Nobody listens on a port just released.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let error = Client::new(&format!("http://127.0.0.1:{port}"))
            .unwrap()
            .health()
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Http { .. }), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn keep_alives_hold_off_the_idle_timeout_and_silence_triggers_a_reconnect() {
    bounded(async {
        let (first, _) = rings();
        let mut mock = Mock::with_rings(&[&first], &settings());
        let mut script = vec![Step::Send(sse("1-0", "state", 1))];
        for _ in 0..10 {
            script.push(Step::Sleep(50));
            script.push(Step::Send(": keep-alive\n\n".into()));
        }
        script.push(Step::Hang);
        mock.scripts = vec![script];
        let (base, mock) = serve(mock).await;
        let options = SyncOptions {
            idle_timeout: Some(Duration::from_millis(400)),
            ..fast_options()
        };
        let synced = LocalRing::sync(Client::new(&base).unwrap(), options)
            .await
            .unwrap();
        while mock.watch_connections.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first connection lived through every keep-alive (11 chunks,
        // 50 ms apart), and was dropped only once silent.
        assert_eq!(mock.sent_at_connect.lock().unwrap()[..2], [0, 11]);
        assert_eq!(
            mock.watch_connections.lock().unwrap()[..2],
            [None, Some("1-0".to_owned())]
        );
        assert_eq!(synced.current().epoch(), 1);
    })
    .await;
}

//! End-to-end: moves at a pace the cluster can take, carried out by real
//! shards. The real `ringleader` binary plans a scale-up from 3 to 6
//! members with `--max-moves-per-member 1`; six example shard processes
//! (crates/client/examples/shard, each an in-memory store following its
//! work with the client library's `Runner`) stream the ranges from each
//! other over HTTP and report them done. The watch stream's history shows
//! that no member ever had more than one move in progress and that the plan
//! committed; the data ends up where the new ring says it lives.
//!
//! The shard processes are this test binary run again: a process started
//! with `RINGLEADER_TEST_SHARD` set runs only `example_shard_process`, which
//! then runs the example shard with the flags in that variable.

mod common;

// Its `USAGE` is for the example's `main` only.
#[allow(dead_code)]
#[path = "../../client/examples/shard/shard.rs"]
mod shard;

use common::*;
use futures::StreamExt as _;
use ringleader_client::Client;
use ringleader_client::api::WatchEvent;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "pace-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);
const SHARD_ENV: &str = "RINGLEADER_TEST_SHARD";
const KEYS: usize = 300;

/// Not a test of its own: the entry point of the shard processes that
/// [`scaling_three_to_six_at_one_move_per_member_runs_one_move_per_member_and_commits`]
/// starts (this binary, run again with `RINGLEADER_TEST_SHARD` set to the
/// shard's flags as a JSON list). Without the variable it returns at once.
#[test]
fn example_shard_process() {
    let Ok(flags) = std::env::var(SHARD_ENV) else {
        return;
    };
    let flags: Vec<String> = serde_json::from_str(&flags).expect("shard flags as a JSON list");
    let config = shard::Config::from_args(flags).expect("valid shard flags");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime
        .block_on(shard::run(config, std::future::pending()))
        .expect("the shard runs");
}

/// An example shard process, killed when dropped.
struct ShardProcess {
    child: Child,
    url: String,
    log: PathBuf,
}

impl ShardProcess {
    fn start(dir: &Path, member: &str, flags: Vec<String>) -> Self {
        let log = dir.join(format!("{member}.log"));
        let port = flags
            .iter()
            .position(|f| f == "--listen")
            .and_then(|i| flags.get(i + 1))
            .expect("--listen")
            .clone();
        let child = Command::new(std::env::current_exe().expect("this test binary"))
            .args(["example_shard_process", "--exact", "--nocapture"])
            .env(SHARD_ENV, serde_json::to_string(&flags).expect("JSON"))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start a shard");
        Self {
            child,
            url: format!("http://{port}"),
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ShardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Moves in progress (`ready`) per member in a plan's JSON shape.
fn in_progress(plan: &ringleader_client::api::PlanView) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in plan.moves.iter().filter(|m| m.state == "ready") {
        *counts.entry(m.from.clone()).or_insert(0) += 1;
        *counts.entry(m.to.clone()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_three_to_six_at_one_move_per_member_runs_one_move_per_member_and_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut all = pods(6);
    for pod in &mut all {
        pod.ip = "127.0.0.1".into();
    }
    let members = dir.join("members.yaml");
    write_atomically(&members, &slices_yaml(&all[..3], 100));
    std::fs::write(dir.join("token"), TOKEN).expect("token file");
    let args = [
        "--source",
        "file:members.yaml",
        "--state",
        "file:state.json",
        "--auth-token-file",
        "token",
        "--settle",
        "200ms",
        "--settle-max",
        "2s",
        "--down-grace",
        "30s",
        "--max-moves-per-member",
        "1",
    ];
    let mut server = Server::start(&args, &[], dir, "ringleader.log");
    let ring_url = format!("{}/v1/ring", server.url);
    eventually("epoch 1 with 3 members", WAIT, || {
        let url = ring_url.clone();
        async move {
            let (_, body) = get(&url).await;
            (body["epoch"] == 1 && body["members"].as_array().map(Vec::len) == Some(3))
                .then_some(())
        }
    })
    .await;
    let (_, ring) = get(&ring_url).await;
    assert_eq!(ring["settings"]["max_moves_per_member"], 1, "{ring}");
    assert_eq!(ring["settings"]["max_moves"], Value::Null, "{ring}");

    // Six shards: the first three own the data, the others start empty.
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let peers: Vec<String> = all
        .iter()
        .zip(&ports)
        .flat_map(|(pod, port)| {
            [
                "--peer".to_owned(),
                format!("{}=127.0.0.1:{port}", pod.name),
            ]
        })
        .collect();
    let shards: Vec<ShardProcess> = all
        .iter()
        .zip(&ports)
        .map(|(pod, port)| {
            let mut flags: Vec<String> = [
                "--coordinator",
                &server.url,
                "--member",
                &pod.name,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--token-file",
                "token",
                "--seed",
                &KEYS.to_string(),
                "--delay",
                "20",
            ]
            .map(str::to_owned)
            .to_vec();
            flags.extend(peers.iter().cloned());
            if pod.name == "db-4" {
                // One shard fails every first attempt: the runner retries.
                flags.push("--flaky".into());
            }
            ShardProcess::start(dir, &pod.name, flags)
        })
        .collect();
    let mut seeded = 0;
    for shard in &shards {
        let url = format!("{}/keys", shard.url);
        let keys = eventually(&format!("shard {} up", shard.url), WAIT, || {
            let url = url.clone();
            async move {
                let (status, body) = get(&url).await;
                (status == 200).then(|| body.as_array().map_or(0, Vec::len))
            }
        })
        .await;
        seeded += keys;
    }
    assert_eq!(seeded, KEYS, "every key seeded on its owner once");

    // The history: every watch event from before the scale-up to the
    // commit.
    let client = Client::new(&server.url).expect("client");
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    let history = tokio::spawn(async move {
        let mut connected_tx = Some(connected_tx);
        let mut events: Vec<WatchEvent> = Vec::new();
        let mut stream = std::pin::pin!(client.watch(None));
        while let Some(item) = stream.next().await {
            let (_, event) = item.expect("a watch event");
            if let Some(tx) = connected_tx.take() {
                let _ = tx.send(());
            }
            let done = event.kind == "epoch" && event.epoch == 2;
            events.push(event);
            if done {
                break;
            }
        }
        events
    });
    connected.await.expect("the watch stream answers");
    write_atomically(&members, &slices_yaml(&all, 100));
    let events = tokio::time::timeout(WAIT, history)
        .await
        .unwrap_or_else(|_| {
            let logs: Vec<String> = shards.iter().map(ShardProcess::logs).collect();
            panic!(
                "no commit within {WAIT:?}:\n{}\n{}",
                server.logs(),
                logs.join("\n")
            )
        })
        .expect("the history task");

    // No member ever had more than one move in progress.
    let plans: Vec<&ringleader_client::api::PlanView> =
        events.iter().filter_map(|e| e.plan.as_ref()).collect();
    let first = plans.first().expect("the plan was seen");
    let waves = first
        .summary
        .waves
        .expect("the plan says its expected waves");
    assert!(
        waves > 1,
        "one move per member takes several waves: {waves}"
    );
    let mut busiest = 0;
    for plan in &plans {
        for (member, n) in in_progress(plan) {
            assert!(
                n <= 1,
                "{member} had {n} moves in progress at revision of plan {}",
                plan.id
            );
            busiest = busiest.max(n);
        }
        let p = &plan.progress;
        assert_eq!(
            p.done + p.in_progress + p.waiting + p.source_lost,
            plan.moves.iter().filter(|m| m.state != "cancelled").count()
        );
    }
    assert_eq!(busiest, 1, "moves ran");
    let announced: usize = events.iter().map(|e| e.ready.len()).sum();
    let moves = first.moves.len();
    assert!(
        announced >= moves,
        "every move was announced ready: {announced} of {moves}"
    );
    // …and the plan committed: its last revision had every move done but
    // the one whose report committed it, then epoch 2 came.
    let last = events.last().expect("events");
    assert_eq!(
        (last.kind.as_str(), last.epoch, &last.plan),
        ("epoch", 2, &None)
    );
    let before_commit = &plans.last().expect("plan revisions").progress;
    assert_eq!(
        (
            before_commit.done + 1,
            before_commit.in_progress,
            before_commit.waiting
        ),
        (moves, 1, 0)
    );
    let (_, ring) = get(&ring_url).await;
    assert_eq!(ring["epoch"], 2, "{ring}");
    assert_eq!(ring["members"].as_array().map(Vec::len), Some(6), "{ring}");
    assert!(
        shards[4].logs().contains("failed (a flaky first attempt"),
        "{}",
        shards[4].logs()
    );

    // The data is where the new ring says it lives.
    let owners = Client::new(&server.url)
        .expect("client")
        .lookup_batch((0..KEYS).map(|i| format!("key-{i}")), None)
        .await
        .expect("lookups");
    let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (pod, shard) in all.iter().zip(&shards) {
        let (_, keys) = get(&format!("{}/keys", shard.url)).await;
        let keys = keys
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        held.insert(pod.name.clone(), keys);
    }
    for r in &owners.results {
        assert!(
            held[&r.owner].contains(&r.key),
            "{} belongs to {} now, which lacks it",
            r.key,
            r.owner
        );
    }

    // The work endpoint: nothing left to do, cached with an ETag; unknown
    // members are a 404.
    let work_url = format!("{}/v1/members/db-5/work", server.url);
    let response = reqwest::get(&work_url).await.expect("work");
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].clone();
    let work: Value = response.json().await.expect("JSON");
    assert_eq!(work["moves"], serde_json::json!([]), "{work}");
    assert_eq!(
        (work["epoch"].as_u64(), &work["plan"]),
        (Some(2), &Value::Null)
    );
    let again = reqwest::Client::new()
        .get(&work_url)
        .header("if-none-match", etag)
        .send()
        .await
        .expect("work again");
    assert_eq!(again.status(), 304);
    let (status, body) = get(&format!("{}/v1/members/db-9/work", server.url)).await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    assert!(server.alive(), "{}", server.logs());
}

/// In process (the real router over a real coordinator): mid-plan, the work
/// endpoint lists a member's ready moves with their sources' addresses and
/// how many wait; it answers 304 to its own ETag; the preview gives the
/// expected waves at the pace.
#[tokio::test]
async fn the_work_endpoint_lists_ready_moves_with_their_sources_mid_plan() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use ringleader::api::{Limits, WriteAuth};
    use ringleader::settings::{Pace, RingSettings};
    use ringleader::testing::{self, Running, call};
    use ringleader_client::api::{PreviewResponse, WorkResponse};
    use ringleader_watch::SourceEvent;

    let settings = RingSettings {
        pace: Pace::new(Some(1), None),
        ..RingSettings::default()
    };
    let c = Running::start(
        settings,
        testing::no_settle(Duration::from_secs(60)),
        testing::members(3),
    )
    .await;
    let app = c.app(WriteAuth::Token(TOKEN.into()), false, Limits::default());
    let request = |uri: &str| Request::get(uri).body(Body::empty()).expect("a request");

    let (status, _, body) = call(
        &app,
        Request::post("/v1/preview")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"members": [{"id": "db-0"}, {"id": "db-1"}, {"id": "db-2"}, {"id": "db-3"}]}"#,
            ))
            .expect("a request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let preview: PreviewResponse = serde_json::from_slice(&body).expect("a preview");
    let moves = preview.moves.len();
    assert!(moves > 1);
    // Every move goes to db-3, one at a time: a wave each.
    assert_eq!(preview.summary.waves, Some(moves));
    assert_eq!(
        preview.moves.iter().filter(|m| m.state == "ready").count(),
        1
    );

    c.send(SourceEvent::Members(testing::members(4)));
    c.wait_for("a plan", |v| v.plan_in_progress().is_some())
        .await;
    let (status, headers, body) = call(&app, request("/v1/members/db-3/work")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let work: WorkResponse = serde_json::from_slice(&body).expect("work");
    assert_eq!(work.moves.len(), 1, "{work:?}");
    assert_eq!(work.waiting + 1, moves, "{work:?}");
    let m = &work.moves[0];
    assert_eq!(
        (m.r#move.to.as_str(), m.r#move.state.as_str()),
        ("db-3", "ready")
    );
    let source = m
        .r#move
        .from
        .trim_start_matches("db-")
        .parse::<usize>()
        .expect("db-N");
    assert_eq!(m.source_addresses, testing::member(source).addresses);
    let etag = headers[header::ETAG].clone();
    let (status, _, _) = call(
        &app,
        Request::get("/v1/members/db-3/work")
            .header(header::IF_NONE_MATCH, etag)
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    // A source has no work of its own (it sends, it does not receive).
    let (status, _, body) = call(&app, request("/v1/members/db-0/work")).await;
    assert_eq!(status, StatusCode::OK);
    let work: WorkResponse = serde_json::from_slice(&body).expect("work");
    assert!(work.moves.is_empty() && work.waiting == 0, "{work:?}");
    let (status, _, _) = call(&app, request("/v1/members/db-9/work")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

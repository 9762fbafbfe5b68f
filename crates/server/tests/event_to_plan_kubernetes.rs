//! Member change → new epoch readable over HTTP with the Kubernetes source
//! (DESIGN §8: ≤ 50 ms at 1,000 × 256, settle excluded), from the outside:
//! the real binary watching EndpointSlices on the in-memory API server
//! (crates/testkit). The file source's twin is `benches/event-to-plan.sh`.
//!
//! A measurement, not a check of the figure, so it is ignored by default;
//! run it on a release build:
//!
//! ```text
//! cargo test --release -p ringleader --test event_to_plan_kubernetes -- --ignored --nocapture
//! ```
//!
//! `RINGLEADER_E2P_MEMBERS` (1000), `_TOKENS` (256), `_RF` (1; zone-aware
//! over three zones when more) and `_CHANGES` (7) set the size. The pods
//! sit 100 to a slice, as the EndpointSlice controller packs them; a join
//! creates a slice holding one more pod and a leave deletes it again. One
//! sample is the time from just before the API server is told to the
//! first `GET /v1/ring` (polled every 2 ms with `If-None-Match` on one
//! keep-alive connection) that shows the next epoch.

mod common;

use common::*;
use ringleader_testkit::TestApiServer;
use ringleader_watch::EndpointSlice;
use std::path::Path;
use std::time::{Duration, Instant};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(format!("RINGLEADER_E2P_{name}"))
        .ok()
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn kubeconfig(dir: &Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\nusers:\n- name: test\n  user: {{}}\n"
        ),
    )
    .expect("kubeconfig");
    path
}

/// The slices of `pods`, 100 a slice, the first named `db-slice{first}`.
fn slices(pods: &[Pod], first: usize) -> Vec<EndpointSlice> {
    let mut slices = ringleader_watch::parse_endpoint_slices(&slices_yaml(pods, 100))
        .expect("our own YAML parses");
    for (k, slice) in slices.iter_mut().enumerate() {
        slice.metadata.name = Some(format!("db-slice{}", first + k));
    }
    slices
}

/// Polls `/v1/ring` until its epoch reaches `want`; returns the body.
async fn wait_for_epoch(
    server: &mut Server,
    client: &reqwest::Client,
    url: &str,
    etag: &mut Option<String>,
    want: u64,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let mut request = client.get(url);
        if let Some(tag) = etag.as_deref() {
            request = request.header("If-None-Match", tag);
        }
        if let Ok(response) = request.send().await
            && response.status() == 200
        {
            let tag = response
                .headers()
                .get("ETag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: serde_json::Value = response.json().await.expect("JSON ring");
            *etag = tag;
            if body["epoch"].as_u64().is_some_and(|e| e >= want) {
                return body;
            }
        }
        assert!(
            server.alive() && Instant::now() < deadline,
            "no epoch {want} within {timeout:?}:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement at 1,000 × 256; run with --release --ignored --nocapture"]
async fn member_change_to_epoch_readable_from_kubernetes() {
    let members = knob("MEMBERS", 1000);
    let tokens = knob("TOKENS", 256);
    let rf = knob("RF", 1);
    let changes = knob("CHANGES", 7);
    let dir = tempfile::tempdir().expect("tempdir");
    let api = TestApiServer::start().await.expect("testkit");
    let config = kubeconfig(dir.path(), &api.url());
    let config = config.to_str().expect("utf-8 path");
    // Addresses as benches/slices.py gives them (the common pods' run out
    // of IPv4 octets past 245).
    let all: Vec<Pod> = pods(members + 1)
        .into_iter()
        .enumerate()
        .map(|(i, pod)| Pod {
            ip: format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256),
            ..pod
        })
        .collect();
    let base = slices(&all[..members], 0);
    let extra = slices(&all[members..], base.len());
    for slice in &base {
        api.apply(slice).expect("apply slice");
    }
    let mut args: Vec<String> = [
        "--source",
        "kubernetes",
        "--namespace",
        "default",
        "--service",
        "db",
        "--state",
        "file:state",
        "--mode",
        "auto",
        "--settle",
        "0s",
        "--settle-max",
        "0s",
        "--down-grace",
        "0s",
        "--auth",
        "none",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "--tokens-per-member".into(),
        tokens.to_string(),
        "--rf".into(),
        rf.to_string(),
    ]);
    if rf > 1 {
        args.push("--zone-aware".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The log at info, as a deployment runs it (the common default logs
    // debug, which costs time on this path).
    let env = [("KUBECONFIG", config), ("RINGLEADER_LOG", "info")];
    let mut server = Server::start(&args, &env, dir.path(), "e2p.log");
    let client = reqwest::Client::new();
    let url = format!("{}/v1/ring", server.url);
    let mut etag = None;
    let first = wait_for_epoch(
        &mut server,
        &client,
        &url,
        &mut etag,
        1,
        Duration::from_secs(120),
    )
    .await;
    let mut epoch = first["epoch"].as_u64().expect("epoch");
    let mut samples = Vec::new();
    for k in 0..changes {
        let started = Instant::now();
        if k % 2 == 0 {
            for slice in &extra {
                api.apply(slice).expect("apply slice");
            }
        } else {
            for slice in &extra {
                let name = slice.metadata.name.as_deref().expect("named");
                api.delete::<EndpointSlice>("default", name)
                    .expect("delete slice");
            }
        }
        let body = wait_for_epoch(
            &mut server,
            &client,
            &url,
            &mut etag,
            epoch + 1,
            Duration::from_secs(60),
        )
        .await;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        epoch = body["epoch"].as_u64().expect("epoch");
        let expected = if k % 2 == 0 { members + 1 } else { members };
        assert_eq!(
            body["members"].as_array().map(Vec::len),
            Some(expected),
            "change {k}: the new epoch has the new member set"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(server.alive(), "{}", server.logs());
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let text: Vec<String> = samples.iter().map(|s| format!("{s:.1}")).collect();
    println!(
        "{members} x {tokens}, rf {rf}: samples (ms): {}",
        text.join(" ")
    );
    let n = sorted.len();
    let median = (sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0;
    println!(
        "median {median:.1} ms, min {:.1}, max {:.1}",
        sorted[0],
        sorted[sorted.len() - 1]
    );
}

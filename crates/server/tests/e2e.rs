//! End-to-end: the real `ringleader` binary, fed membership changes through
//! a file of EndpointSlices and through the in-memory Kubernetes API server,
//! read through its HTTP API.

mod common;

use common::*;
use ringleader_testkit::TestApiServer;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "e2e-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

fn serve_args(source: &str) -> Vec<String> {
    vec![
        "--source".into(),
        source.into(),
        "--state".into(),
        "file:state.json".into(),
        "--auth-token-file".into(),
        "token".into(),
        "--settle".into(),
        "300ms".into(),
        "--settle-max".into(),
        "3s".into(),
        "--down-grace".into(),
        "3s".into(),
    ]
}

fn start(dir: &Path, args: &[String], env: &[(&str, &str)], log: &str) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args, env, dir, log)
}

async fn ring(server: &Server) -> Value {
    let (status, body) = get(&format!("{}/v1/ring", server.url)).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn plan(server: &Server) -> Value {
    let (status, body) = get(&format!("{}/v1/plan", server.url)).await;
    assert_eq!(status, 200, "{body}");
    body["plan"].clone()
}

async fn wait_ready(server: &mut Server) {
    let url = format!("{}/readyz", server.url);
    eventually("readiness", WAIT, || {
        let url = url.clone();
        async move { (get(&url).await.0 == 200).then_some(()) }
    })
    .await;
    assert!(server.alive(), "{}", server.logs());
}

async fn wait_epoch(server: &Server, epoch: u64, members: usize) -> Value {
    let url = format!("{}/v1/ring", server.url);
    eventually(
        &format!("epoch {epoch} with {members} members"),
        WAIT,
        || {
            let url = url.clone();
            async move {
                let (_, body) = get(&url).await;
                (body["epoch"] == epoch
                    && body["members"].as_array().map(Vec::len) == Some(members))
                .then_some(body)
            }
        },
    )
    .await
}

async fn wait_plan(server: &Server, members: usize) -> Value {
    let url = format!("{}/v1/plan", server.url);
    eventually(&format!("a plan to {members} members"), WAIT, || {
        let url = url.clone();
        async move {
            let (_, body) = get(&url).await;
            let plan = &body["plan"];
            (plan["members"].as_array().map(Vec::len) == Some(members)).then(|| plan.clone())
        }
    })
    .await
}

async fn owners(server: &Server, keys: usize) -> Vec<String> {
    let keys: Vec<String> = (0..keys).map(|i| format!("user:{i}")).collect();
    let (status, body) = send(
        reqwest::Client::new()
            .post(format!("{}/v1/lookup", server.url))
            .json(&json!({ "keys": keys })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["owner"].as_str().expect("owner").to_owned())
        .collect()
}

async fn ack_all(server: &Server, plan: &Value) -> Value {
    let client = reqwest::Client::new();
    let moves = plan["moves"].as_array().expect("moves").clone();
    let first = &moves[0]["id"];
    // Without a token, and with a wrong one: 401.
    let url = |id: &Value| {
        format!(
            "{}/v1/plan/moves/{}/done",
            server.url,
            id.as_str().expect("id")
        )
    };
    let (status, body) = send(client.post(url(first))).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
    let (status, body) = send(
        client
            .post(url(first))
            .bearer_auth("wrong-token-wrong-token"),
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
    let mut last = Value::Null;
    for m in &moves {
        let (status, body) = send(client.post(url(&m["id"])).bearer_auth(TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        last = body;
    }
    // Done again is fine while the plan runs, and after the commit too
    // (DESIGN §5): the same answer as the report that committed it.
    assert_eq!(last["committed"], true, "{last}");
    let last_id = &moves[moves.len() - 1]["id"];
    let (status, body) = send(client.post(url(last_id)).bearer_auth(TOKEN)).await;
    assert_eq!((status, &body), (200, &last));
    let (status, body) = send(client.post(url(first)).bearer_auth(TOKEN)).await;
    assert_eq!(
        (status, &body["committed"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    // An id no plan had: still no plan in flight.
    let unknown = Value::String("0123456789abcdef".into());
    let (status, body) = send(client.post(url(&unknown)).bearer_auth(TOKEN)).await;
    assert_eq!((status, error_code(&body).as_str()), (409, "conflict"));
    last
}

/// Checks that a plan only moves data to `joining` members and no more than
/// 5 % over the ideal.
fn check_join_plan(plan: &Value, joining: &[&str]) {
    let moves = plan["moves"].as_array().expect("moves");
    assert!(!moves.is_empty(), "{plan}");
    for m in moves {
        assert!(
            joining.contains(&m["to"].as_str().expect("to")),
            "move to an old member: {m}"
        );
        // Waiting its turn or running: the pace decides (DESIGN §4).
        assert!(m["state"] == "pending" || m["state"] == "ready", "{m}");
    }
    let moved = plan["summary"]["moved_fraction"].as_f64().expect("moved");
    let ideal = plan["summary"]["ideal_fraction"].as_f64().expect("ideal");
    assert!(moved / ideal <= 1.05, "moved {moved} vs ideal {ideal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_of_a_coordinator_on_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slices = dir.path().join("slices.yaml");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token");
    write_atomically(&slices, &slices_yaml(&pods(3), 100));
    let args = serve_args("file:slices.yaml");
    let mut server = start(dir.path(), &args, &[], "first.log");
    wait_ready(&mut server).await;
    let first = wait_epoch(&server, 1, 3).await;
    assert_eq!(first["settings"]["strategy"], "balanced");
    assert!(first["balance"].as_f64().expect("balance") < 1.01);
    let before = owners(&server, 200).await;

    // Bad requests get the right status and the JSON error shape.
    bad_requests(&server).await;

    // A pod restart within the grace (not ready, then back with a new IP):
    // no plan, same owners.
    let mut restarting = pods(3);
    restarting[1].ready = false;
    write_atomically(&slices, &slices_yaml(&restarting, 100));
    let url = format!("{}/v1/ring", server.url);
    eventually("db-1 down", WAIT, || {
        let url = url.clone();
        async move {
            let (_, body) = get(&url).await;
            body["members"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["id"] == "db-1"))
                .is_some_and(|m| m["state"] == "down")
                .then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    restarting[1].ready = true;
    restarting[1].ip = "10.244.9.99".into();
    write_atomically(&slices, &slices_yaml(&restarting, 100));
    tokio::time::sleep(Duration::from_secs(4)).await; // past the grace
    assert_eq!(
        plan(&server).await,
        Value::Null,
        "a restart within the grace plans nothing"
    );
    let after_restart = ring(&server).await;
    assert_eq!(after_restart["epoch"], 1);
    let db1 = after_restart["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == "db-1")
        .cloned();
    assert_eq!(db1.as_ref().map(|m| m["state"].clone()), Some(json!("up")));
    assert_eq!(
        db1.map(|m| m["addresses"].clone()),
        Some(json!(["10.244.9.99"]))
    );
    assert_eq!(owners(&server, 200).await, before);

    // Scale 3 → 5, two slices: one plan, moves only to the new members.
    write_atomically(&slices, &slices_yaml(&pods(5), 3));
    let plan5 = wait_plan(&server, 5).await;
    check_join_plan(&plan5, &["db-3", "db-4"]);
    assert_eq!(plan5["from_epoch"], 1);
    assert_eq!(plan5["to_epoch"], 2);
    let states: Vec<(String, String)> = ring(&server).await["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or("").to_owned(),
                m["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("db-3".into(), "joining".into())),
        "{states:?}"
    );
    // Shards can ask what they receive.
    let (status, ranges) = get(&format!("{}/v1/members/db-3/ranges", server.url)).await;
    assert_eq!(status, 200);
    assert!(
        !ranges["receiving"]
            .as_array()
            .expect("receiving")
            .is_empty()
    );
    // Conditional GET.
    let response = reqwest::Client::new()
        .get(format!("{}/v1/plan", server.url))
        .send()
        .await
        .expect("get plan");
    let etag = response.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    let (status, _) = send(
        reqwest::Client::new()
            .get(format!("{}/v1/plan", server.url))
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(status, 304);
    // The watch stream starts with the current state.
    let watch = reqwest::Client::new()
        .get(format!("{}/v1/watch", server.url))
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.headers()["content-type"], "text/event-stream");
    let mut stream = watch.bytes_stream();
    use futures::StreamExt;
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event")
        .expect("bytes")
        .expect("ok");
    let text = String::from_utf8_lossy(&chunk);
    assert!(
        text.contains("event: state") && text.contains("id: 1."),
        "{text}"
    );
    drop(stream);

    // Acks: all done → epoch 2 with five members, no plan.
    let last = ack_all(&server, &plan5).await;
    assert_eq!(last["epoch"], 2);
    wait_epoch(&server, 2, 5).await;
    assert_eq!(plan(&server).await, Value::Null);
    let five = owners(&server, 200).await;
    assert!(five.iter().any(|o| o == "db-3") && five.iter().any(|o| o == "db-4"));

    // SIGKILL and restart: same epoch, same owner for every key.
    server.kill();
    let mut server = start(dir.path(), &args, &[], "second.log");
    wait_ready(&mut server).await;
    let again = wait_epoch(&server, 2, 5).await;
    assert_eq!(again["epoch"], 2);
    assert_eq!(
        owners(&server, 200).await,
        five,
        "a restart must not change ownership"
    );

    // A broken source file: members unchanged, server alive, health says so.
    std::fs::write(
        &slices,
        "apiVersion: v1\nkind: List\nitems:\n- {{{ not yaml",
    )
    .expect("write broken file");
    let url = format!("{}/healthz", server.url);
    // The file is written in place, so the source may first read it half
    // written (another error): wait for the error of the whole file.
    let health = eventually("the source to report the broken file", WAIT, || {
        let url = url.clone();
        async move {
            let (_, body) = get(&url).await;
            let located = body["source_error"]
                .as_str()
                .is_some_and(|e| e.contains("slices.yaml:4:"));
            (body["source"] == "failing" && located).then_some(body)
        }
    })
    .await;
    // path:line:column of the fault.
    assert!(
        health["source_error"]
            .as_str()
            .unwrap_or("")
            .contains("slices.yaml:4:"),
        "{health}"
    );
    assert!(server.alive());
    assert_eq!(
        ring(&server).await["members"].as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(
        get(&format!("{}/readyz", server.url)).await.0,
        200,
        "the last member set stands"
    );

    // Scale down 5 → 4: after the grace, a plan moves db-4's ranges away.
    write_atomically(&slices, &slices_yaml(&pods(4), 3));
    let plan4 = wait_plan(&server, 4).await;
    let moves = plan4["moves"].as_array().expect("moves");
    assert!(!moves.is_empty());
    assert!(moves.iter().all(|m| m["from"] == "db-4"), "{plan4}");
    // rf 1 and db-4 is gone: nobody else holds its ranges.
    assert!(moves.iter().all(|m| m["state"] == "source_lost"), "{plan4}");
    let leaving = ring(&server).await;
    let db4 = leaving["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == "db-4")
        .cloned()
        .expect("db-4 listed");
    assert_eq!(db4["state"], "down");

    // Metrics and the API description.
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("ringleader_epoch 2"), "{metrics}");
    assert!(
        metrics.contains("ringleader_plan_moves{state=\"source_lost\"}"),
        "{metrics}"
    );
    let (status, openapi) = get(&format!("{}/openapi.json", server.url)).await;
    assert_eq!(status, 200);
    assert!(openapi["openapi"].as_str().unwrap_or("").starts_with("3."));
    assert!(openapi["paths"]["/v1/plan/moves/{id}/done"]["post"].is_object());

    // SIGTERM: a clean exit.
    let status = server.terminate();
    assert!(status.success(), "exit {status:?}\n{}", server.logs());
    assert!(server.logs().contains("coordinator stopped"));
}

async fn bad_requests(server: &Server) {
    let c = reqwest::Client::new();
    let u = |path: &str| format!("{}{path}", server.url);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "lookup without key",
            c.get(u("/v1/lookup")),
            400,
            "bad_request",
        ),
        (
            "rf 0",
            c.get(u("/v1/lookup?key=a&rf=0")),
            400,
            "bad_request",
        ),
        (
            "rf too large",
            c.get(u("/v1/lookup?key=a&rf=99")),
            400,
            "bad_request",
        ),
        (
            "rf not a number",
            c.get(u("/v1/lookup?key=a&rf=x")),
            400,
            "bad_request",
        ),
        (
            "unknown parameter",
            c.get(u("/v1/lookup?key=a&color=red")),
            400,
            "bad_request",
        ),
        (
            "tokens not a bool",
            c.get(u("/v1/ring?tokens=maybe")),
            400,
            "bad_request",
        ),
        (
            "batch: broken JSON",
            c.post(u("/v1/lookup"))
                .header("content-type", "application/json")
                .body("{\"keys\": ["),
            400,
            "bad_request",
        ),
        (
            "batch: wrong type",
            c.post(u("/v1/lookup")).json(&json!({"keys": "a"})),
            400,
            "bad_request",
        ),
        (
            "batch: unknown field",
            c.post(u("/v1/lookup")).json(&json!({"keys": [], "x": 1})),
            400,
            "bad_request",
        ),
        (
            "batch: not JSON",
            c.post(u("/v1/lookup"))
                .header("content-type", "text/plain")
                .body("keys"),
            415,
            "unsupported_media_type",
        ),
        (
            "batch: too many keys",
            c.post(u("/v1/lookup"))
                .json(&json!({"keys": vec!["k"; 10_001]})),
            400,
            "bad_request",
        ),
        // Its own client: the server closes the connection after refusing
        // a body it did not read.
        (
            "batch: too large",
            reqwest::Client::new()
                .post(u("/v1/lookup"))
                .header("content-type", "application/json")
                .body(vec![b' '; 5 << 20]),
            413,
            "payload_too_large",
        ),
        (
            "unknown member",
            c.get(u("/v1/members/nobody/ranges")),
            404,
            "not_found",
        ),
        (
            "ack without token",
            c.post(u("/v1/plan/moves/abc/done")),
            401,
            "unauthorized",
        ),
        (
            "ack, no plan",
            c.post(u("/v1/plan/moves/abc/done")).bearer_auth(TOKEN),
            409,
            "conflict",
        ),
        (
            "ack, not a move id",
            c.post(u("/v1/plan/moves/a%20b/done")).bearer_auth(TOKEN),
            400,
            "bad_request",
        ),
        (
            "preview: neither",
            c.post(u("/v1/preview")).json(&json!({})),
            400,
            "bad_request",
        ),
        (
            "preview: both",
            c.post(u("/v1/preview"))
                .json(&json!({"members": [], "endpoint_slices": ""})),
            400,
            "bad_request",
        ),
        (
            "preview: bad slices",
            c.post(u("/v1/preview"))
                .json(&json!({"endpoint_slices": "kind: EndpointSlice\nendpoints: 7"})),
            400,
            "bad_request",
        ),
        (
            "preview: empty id",
            c.post(u("/v1/preview"))
                .json(&json!({"members": [{"id": ""}]})),
            400,
            "bad_request",
        ),
        (
            "preview: weight 0",
            c.post(u("/v1/preview"))
                .json(&json!({"members": [{"id": "a", "weight": 0}]})),
            400,
            "bad_request",
        ),
        ("unknown route", c.get(u("/v2/ring")), 404, "not_found"),
        (
            "wrong method",
            c.delete(u("/v1/ring")),
            405,
            "method_not_allowed",
        ),
    ];
    for (what, request, status, code) in cases {
        let (got, body) = send(request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(error_code(&body), code, "{what}");
    }
    // And a good preview, for contrast.
    let (status, body) = send(c.post(u("/v1/preview")).json(
        &json!({"members": [{"id": "db-0"}, {"id": "db-1"}, {"id": "db-2"}, {"id": "db-9"}]}),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["moves"]
            .as_array()
            .expect("moves")
            .iter()
            .all(|m| m["to"] == "db-9")
    );
    assert_eq!(ring(server).await["epoch"], 1, "a preview changes nothing");
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

async fn publish(api: &TestApiServer, pods: &[Pod], per_slice: usize, previous: &mut Vec<String>) {
    use ringleader_watch::EndpointSlice;
    let slices = ringleader_watch::parse_endpoint_slices(&slices_yaml(pods, per_slice))
        .expect("our own YAML parses");
    let mut names = Vec::new();
    for slice in slices {
        names.push(slice.metadata.name.clone().expect("named"));
        api.apply(&slice).expect("apply slice");
    }
    for gone in previous.iter().filter(|n| !names.contains(n)) {
        api.delete::<EndpointSlice>("default", gone)
            .expect("delete slice");
    }
    *previous = names;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn life_of_a_coordinator_on_kubernetes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token");
    let api = TestApiServer::start().await.expect("testkit");
    let config = kubeconfig(dir.path(), &api.url());
    let config = config.to_str().expect("utf-8 path");
    let mut slices = Vec::new();
    publish(&api, &pods(3), 100, &mut slices).await;
    let mut args = serve_args("kubernetes");
    args.extend([
        "--namespace".into(),
        "default".into(),
        "--service".into(),
        "db".into(),
    ]);
    let env = [("KUBECONFIG", config)];
    let mut server = start(dir.path(), &args, &env, "k8s-first.log");
    wait_ready(&mut server).await;
    wait_epoch(&server, 1, 3).await;

    // Scale 3 → 5 over two slices; the API server drops every watch
    // meanwhile: the source recovers and one plan comes out.
    publish(&api, &pods(5), 3, &mut slices).await;
    api.close_all_watches();
    let plan5 = wait_plan(&server, 5).await;
    check_join_plan(&plan5, &["db-3", "db-4"]);

    ack_all(&server, &plan5).await;
    wait_epoch(&server, 2, 5).await;
    let five = owners(&server, 200).await;

    // SIGKILL and restart: same epoch, same owners, even across a 410.
    server.kill();
    api.compact();
    let mut server = start(dir.path(), &args, &env, "k8s-second.log");
    wait_ready(&mut server).await;
    wait_epoch(&server, 2, 5).await;
    assert_eq!(owners(&server, 200).await, five);

    // Scale down: after the grace, db-4's ranges move away.
    publish(&api, &pods(4), 3, &mut slices).await;
    let plan4 = wait_plan(&server, 4).await;
    assert!(
        plan4["moves"]
            .as_array()
            .expect("moves")
            .iter()
            .all(|m| m["from"] == "db-4"),
        "{plan4}"
    );

    let status = server.terminate();
    assert!(status.success(), "{}", server.logs());
}

fn move_states(plan: &Value) -> Vec<(String, String, String, String)> {
    let mut moves: Vec<_> = plan["moves"]
        .as_array()
        .map(|moves| {
            moves
                .iter()
                .map(|m| {
                    let text = |k: &str| m[k].as_str().unwrap_or("").to_owned();
                    (text("id"), text("from"), text("to"), text("state"))
                })
                .collect()
        })
        .unwrap_or_default();
    moves.sort();
    moves
}

/// Issue 10, items 1–4 on the real binary: ready only once lookups answer;
/// a scale-up reverted mid-plan cancels the plan, moves nothing and keeps
/// its moves listed as cancelled; a source down for a second mid-plan
/// changes no move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_stay_safe_when_kubernetes_changes_its_mind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slices = dir.path().join("slices.yaml");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token");
    write_atomically(&slices, &slices_yaml(&pods(3), 100));
    let mut args = serve_args("file:slices.yaml");
    let settle = args.iter().position(|a| a == "--settle").expect("--settle") + 1;
    args[settle] = "1500ms".into();
    let mut server = start(dir.path(), &args, &[], "safe.log");

    // Item 4: whenever /readyz says 200, lookups answer.
    let mut saw_not_ready = false;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (ready, _) = get(&format!("{}/readyz", server.url)).await;
        let (lookup, body) = get(&format!("{}/v1/lookup?key=user:1", server.url)).await;
        if ready == 200 {
            // The lookup ran after the readiness check: it must answer.
            assert_eq!(lookup, 200, "ready but lookups answer {lookup}: {body}");
            break;
        }
        if ready == 503 {
            saw_not_ready = true;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_not_ready, "not ready during the first --settle");
    wait_epoch(&server, 1, 3).await;
    let owners_before = owners(&server, 200).await;

    // Items 1 and 3: 3 → 5, one move done, back to 3.
    write_atomically(&slices, &slices_yaml(&pods(5), 100));
    let plan5 = wait_plan(&server, 5).await;
    let first = plan5["moves"][0]["id"].as_str().expect("a move").to_owned();
    let (status, body) = send(
        reqwest::Client::new()
            .post(format!("{}/v1/plan/moves/{first}/done", server.url))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    write_atomically(&slices, &slices_yaml(&pods(3), 100));
    let url = format!("{}/v1/plan", server.url);
    let cancelled = eventually("the plan cancelled", WAIT, || {
        let url = url.clone();
        async move {
            let (_, body) = get(&url).await;
            (body["plan"]["state"] == "cancelled").then(|| body["plan"].clone())
        }
    })
    .await;
    let states = move_states(&cancelled);
    assert_eq!(
        states.len(),
        move_states(&plan5).len(),
        "every move still listed: {cancelled}"
    );
    assert!(
        states.iter().all(|(id, .., state)| if *id == first {
            state == "done"
        } else {
            state == "cancelled"
        }),
        "{cancelled}"
    );
    assert_eq!(ring(&server).await["epoch"], 1, "no new epoch");
    assert_eq!(owners(&server, 200).await, owners_before, "nothing moved");
    // Still listed a while later (they vanished within milliseconds).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(move_states(&plan(&server).await), states);

    // Item 2: 3 → 5 again; a source not ready for a second mid-plan.
    write_atomically(&slices, &slices_yaml(&pods(5), 100));
    let url = format!("{}/v1/plan", server.url);
    let planned = eventually("a new plan to five", WAIT, || {
        let url = url.clone();
        async move {
            let (_, body) = get(&url).await;
            (body["plan"]["state"] == "in_progress").then(|| body["plan"].clone())
        }
    })
    .await;
    let before = move_states(&planned);
    let source = before[0].1.clone();
    let mut blip = pods(5);
    for pod in &mut blip {
        pod.ready = pod.name != source;
    }
    write_atomically(&slices, &slices_yaml(&blip, 100));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        move_states(&plan(&server).await),
        before,
        "down within the grace"
    );
    write_atomically(&slices, &slices_yaml(&pods(5), 100));
    tokio::time::sleep(Duration::from_secs(4)).await; // past the grace
    assert_eq!(
        move_states(&plan(&server).await),
        before,
        "back within the grace"
    );
    let last = ack_all(&server, &planned).await;
    assert_eq!(last["epoch"], 2);
    let status = server.terminate();
    assert!(status.success(), "{}", server.logs());
}

/// A member's `(weight, ownership)` in a `/v1/ring` body.
fn weight_and_share(ring: &Value, id: &str) -> (u64, f64) {
    let member = ring["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {ring}"));
    (
        member["weight"].as_u64().expect("weight"),
        member["ownership"].as_f64().expect("ownership"),
    )
}

/// Issue 10 (b): a weight set in the Service's `ringleader.io/weights`
/// annotation, in the served file, is planned like any membership change:
/// the member's share doubles against the others', data moves only to it,
/// and putting the annotation back moves it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_in_the_service_annotation_doubles_the_members_share() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let plain = std::fs::read_to_string(examples.join("db-3.yaml")).expect("db-3.yaml");
    let weighted =
        std::fs::read_to_string(examples.join("db-3-weighted.yaml")).expect("db-3-weighted.yaml");
    let dir = tempfile::tempdir().expect("tempdir");
    let slices = dir.path().join("slices.yaml");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token");
    write_atomically(&slices, &plain);
    let mut server = start(
        dir.path(),
        &serve_args("file:slices.yaml"),
        &[],
        "weights.log",
    );
    wait_ready(&mut server).await;
    let first = wait_epoch(&server, 1, 3).await;
    let (weight, share) = weight_and_share(&first, "db-2");
    assert_eq!(weight, 1);
    assert!((share - 1.0 / 3.0).abs() < 0.02, "db-2 owns {share}");

    // The Service beside the slices now says db-2=2.
    write_atomically(&slices, &weighted);
    let plan = wait_plan(&server, 3).await;
    let moves = plan["moves"].as_array().expect("moves");
    assert!(!moves.is_empty(), "{plan}");
    assert!(
        moves.iter().all(|m| m["to"] == "db-2"),
        "moves to db-2 only: {plan}"
    );
    let moved = plan["summary"]["moved_fraction"].as_f64().expect("moved");
    let ideal = plan["summary"]["ideal_fraction"].as_f64().expect("ideal");
    assert!(
        (ideal - 1.0 / 6.0).abs() < 0.02,
        "ideal {ideal}: db-2 goes from 1/3 to 1/2"
    );
    assert!(moved / ideal <= 1.05, "moved {moved} vs ideal {ideal}");
    ack_all(&server, &plan).await;
    let second = wait_epoch(&server, 2, 3).await;
    let (weight, share) = weight_and_share(&second, "db-2");
    let (_, other) = weight_and_share(&second, "db-0");
    assert_eq!(weight, 2);
    assert!((share - 0.5).abs() < 0.02, "db-2 owns {share}");
    assert!(
        (share / other - 2.0).abs() < 0.1,
        "db-2 owns {share}, db-0 {other}: not double"
    );

    // The status screen shows the weight.
    let (status, body) = get(&format!("{}/v1/status", server.url)).await;
    assert_eq!(status, 200, "{body}");
    let db2 = body["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == "db-2")
        .cloned()
        .expect("db-2 in /v1/status");
    assert_eq!(db2["weight"], 2, "{db2}");

    // The annotation gone (the plain file again): back to a third each.
    write_atomically(&slices, &plain);
    let back = wait_plan(&server, 3).await;
    let moves = back["moves"].as_array().expect("moves");
    assert!(
        moves.iter().all(|m| m["from"] == "db-2"),
        "moves from db-2 only: {back}"
    );
    ack_all(&server, &back).await;
    let third = wait_epoch(&server, 3, 3).await;
    let (weight, share) = weight_and_share(&third, "db-2");
    assert_eq!(weight, 1);
    assert!((share - 1.0 / 3.0).abs() < 0.02, "db-2 owns {share}");
    assert!(server.alive(), "{}", server.logs());
}

/// Issue 10 (b) on Kubernetes: the weights annotation on the watched
/// Service reaches the first ring; a coordinator restarted while the
/// annotation is malformed keeps the stored weights (no plan) and says why
/// on `/v1/status`; the annotation fixed, the change is planned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_weights_survive_a_restart_over_a_malformed_annotation() {
    use k8s_openapi::api::core::v1::Service;
    let service = |weights: &str| -> Service {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "db", "namespace": "default",
                         "annotations": {"ringleader.io/weights": weights}},
        }))
        .expect("a Service")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token");
    let api = TestApiServer::start().await.expect("testkit");
    let config = kubeconfig(dir.path(), &api.url());
    let config = config.to_str().expect("utf-8 path");
    let mut slices = Vec::new();
    publish(&api, &pods(3), 100, &mut slices).await;
    api.apply(&service("db-2=2")).expect("Service");
    let mut args = serve_args("kubernetes");
    args.extend(
        [
            "--namespace",
            "default",
            "--service",
            "db",
            "--mode",
            "auto",
        ]
        .map(String::from),
    );
    let env = [("KUBECONFIG", config)];
    let mut server = start(dir.path(), &args, &env, "k8s-weights-first.log");
    wait_ready(&mut server).await;
    let first = wait_epoch(&server, 1, 3).await;
    assert_eq!(
        weight_and_share(&first, "db-2").0,
        2,
        "the first ring has db-2's weight"
    );

    // Restarted while the annotation is malformed: no weights are known,
    // so the stored ones stay and nothing is planned.
    server.kill();
    api.apply(&service("db-2=0")).expect("Service");
    let mut server = start(dir.path(), &args, &env, "k8s-weights-second.log");
    wait_ready(&mut server).await;
    let url = format!("{}/v1/status", server.url);
    let status = eventually("the warning on /v1/status", WAIT, || {
        let url = url.clone();
        async move {
            let (_, body) = get(&url).await;
            body["source_detail"]
                .as_str()
                .is_some_and(|d| d.contains("weight 0 is below 1"))
                .then_some(body)
        }
    })
    .await;
    assert_eq!(status["source"], "synced", "{status}");
    tokio::time::sleep(Duration::from_secs(1)).await; // past the settle window
    let ring_now = ring(&server).await;
    assert_eq!(ring_now["epoch"], 1, "nothing planned: {ring_now}");
    assert_eq!(weight_and_share(&ring_now, "db-2").0, 2);

    // Fixed to db-2=3: planned (auto mode commits at once).
    api.apply(&service("db-2=3")).expect("Service");
    let second = wait_epoch(&server, 2, 3).await;
    let (weight, share) = weight_and_share(&second, "db-2");
    assert_eq!(weight, 3);
    assert!((share - 0.6).abs() < 0.03, "db-2 owns {share}, not 3/5");
    let (_, body) = get(&url).await;
    assert!(
        body["source_detail"].is_null(),
        "the warning is gone: {body}"
    );
    let status = server.terminate();
    assert!(status.success(), "{}", server.logs());
}

//! Load and faults against the API on 127.0.0.1 (DESIGN §9: malformed and
//! abusive clients get a clear answer and nothing else changes).
//!
//! One coordinator (the real [`Driver`] fed a fixed member set over a
//! channel) behind the real router on a TCP listener, with small limits so
//! they are reached quickly. Clients speak raw HTTP/1.1 over `TcpStream`, so
//! a test can be as rude as it likes: vanish mid-stream, never read, never
//! finish a body. Every loop is bounded in count and in time; the whole file
//! runs in a few seconds.

use ringleader::api::{Limits, WriteAuth};
use ringleader::http::ConnLimits;
use ringleader::settings::{Mode, RingSettings};
use ringleader::testing::{self, Running};
use ringleader_ring::Strategy;
use ringleader_watch::SourceEvent;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Requests handled at once before the server answers 503.
const CONCURRENCY: usize = 8;
/// Watch subscribers at once before the server answers 503.
const WATCHERS: usize = 4;
/// Longest a single request may take, even in the storm.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    running: Running,
    served: tokio::task::JoinHandle<()>,
}

/// The coordinator and API, wired as `ringleader serve` wires them, on an
/// ephemeral loopback port; returns once the first epoch is committed.
async fn start() -> Server {
    let settings = RingSettings {
        rf: 2,
        strategy: Strategy::Balanced,
        tokens_per_member: 16,
        zone_aware: true,
        mode: Mode::Auto,
        ..RingSettings::default()
    };
    let running = Running::start(
        settings,
        testing::no_settle(Duration::ZERO),
        testing::members(6),
    )
    .await;
    let limits = Limits {
        body_bytes: 64 << 10,
        concurrency: CONCURRENCY,
        watchers: WATCHERS,
        batch_keys: 100,
        ..Limits::default()
    };
    let app = running.app(WriteAuth::Open, false, limits);
    let (addr, served) = running.serve(app, ConnLimits::default()).await;
    Server {
        addr,
        running,
        served,
    }
}

impl Server {
    async fn shutdown(self) {
        let _ = self.running.stop.send(true);
        // Slow and vanished clients must not hold the shutdown up for long.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.served).await;
    }
}

/// A parsed answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status, self.body
            )
        })
    }

    /// Asserts the `{"error": {"code", "message"}}` shape; returns the code.
    fn error_code(&self) -> String {
        let value = self.json();
        let error = &value["error"];
        assert!(
            error["message"].is_string(),
            "status {} without the error shape: {value}",
            self.status
        );
        error["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {value}"))
            .to_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), read to the
/// end, within [`ANSWER_WITHIN`].
async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: ringleader\r\nConnection: close\r\n");
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        stream.write_all(head.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("receive");
        parse(&raw)
    };
    tokio::time::timeout(ANSWER_WITHIN, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} took longer than {ANSWER_WITHIN:?}"))
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    Answer {
        status,
        body: body.to_owned(),
    }
}

/// Opens `GET /v1/watch` and reads until the response head (and, for a
/// 200, the first event) arrives; returns the status and the open stream.
async fn subscribe(addr: SocketAddr) -> (u16, TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            b"GET /v1/watch HTTP/1.1\r\nHost: ringleader\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .expect("send");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.expect("receive");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let is_stream = head.contains("200");
                // A 200 is done once the first event is in; an error once
                // its JSON body is complete.
                if (is_stream && rest.contains("\n\n"))
                    || (!is_stream && serde_json::from_str::<Value>(rest).is_ok())
                {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(ANSWER_WITHIN, read)
        .await
        .expect("the watch answers in time");
    let text = String::from_utf8_lossy(&seen).into_owned();
    let status = parse(text.as_bytes()).status;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, stream, body)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_clients_gets_answers_and_limits_answer_503_json() {
    let started = Instant::now();
    let server = start().await;
    let addr = server.addr;
    // Warm up, then take the memory baseline.
    for i in 0..20 {
        let a = request(addr, "GET", &format!("/v1/lookup?key=warm-{i}"), None).await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let rss_before = rss_kib();

    // --- The storm -------------------------------------------------------
    let storm_over = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));

    // Slow clients: ask for the biggest answers and never read them. They
    // hold sockets (and whatever the server buffers) until the end.
    let mut slow = Vec::new();
    for i in 0..16 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let path = if i % 2 == 0 {
            "/v1/ring?tokens=true"
        } else {
            "/openapi.json"
        };
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: ringleader\r\n\r\n").as_bytes())
            .await
            .expect("send");
        slow.push(s);
    }
    // Half-sent request heads: never completed.
    for _ in 0..8 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /v1/ring HTTP/1.1\r\nHost: ring")
            .await
            .expect("send");
        slow.push(s);
    }

    // Watchers that connect and vanish, over and over.
    let watchers_over = storm_over.clone();
    let vanishing = tokio::spawn(async move {
        let mut connected = 0u32;
        let mut refused = 0u32;
        for _ in 0..60 {
            if watchers_over.load(Ordering::Relaxed) {
                break;
            }
            let (status, stream, body) = subscribe(addr).await;
            match status {
                200 => connected += 1,
                503 => {
                    let code = Answer { status, body }.error_code();
                    assert!(code == "unavailable" || code == "overloaded", "{code}");
                    refused += 1;
                }
                other => panic!("GET /v1/watch answered {other}: {body}"),
            }
            drop(stream); // vanish without a word
        }
        (connected, refused)
    });

    // A prober: the health check answers within the bound throughout.
    let probe_over = storm_over.clone();
    let prober = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut answered = 0u32;
        for _ in 0..200 {
            if probe_over.load(Ordering::Relaxed) {
                break;
            }
            let t = Instant::now();
            let a = request(addr, "GET", "/healthz", None).await;
            worst = worst.max(t.elapsed());
            // During the storm the concurrency limit may shed the probe too:
            // a quick 503 is an answer; anything else is not.
            assert!(a.status == 200 || a.status == 503, "{a:?}");
            if a.status == 503 {
                assert_eq!(a.error_code(), "overloaded");
            }
            answered += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (answered, worst)
    });

    // 64 clients doing lookups.
    let mut clients = Vec::new();
    for c in 0..64 {
        let (ok, shed) = (ok.clone(), shed.clone());
        clients.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            for i in 0..25 {
                let t = Instant::now();
                let a = request(
                    addr,
                    "GET",
                    &format!("/v1/lookup?key=user:{c}:{i}&rf=2"),
                    None,
                )
                .await;
                worst = worst.max(t.elapsed());
                match a.status {
                    200 => {
                        let v = a.json();
                        assert_eq!(v["replicas"].as_array().map(Vec::len), Some(2), "{v}");
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    503 => {
                        assert_eq!(a.error_code(), "overloaded");
                        shed.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => panic!("lookup answered {a:?}"),
                }
            }
            worst
        }));
    }
    let mut worst_lookup = Duration::ZERO;
    for c in clients {
        worst_lookup = worst_lookup.max(c.await.expect("a client never panics"));
    }
    storm_over.store(true, Ordering::Relaxed);
    let (answered, worst_probe) = prober.await.expect("the prober never panics");
    let (connected, refused) = vanishing.await.expect("the watchers never panic");
    let (ok, shed) = (ok.load(Ordering::Relaxed), shed.load(Ordering::Relaxed));
    eprintln!(
        "storm: {ok} lookups answered, {shed} shed with 503, slowest lookup {worst_lookup:?}; \
         {answered} health probes, slowest {worst_probe:?}; watchers {connected} served, \
         {refused} refused"
    );
    assert_eq!(ok + shed, 64 * 25);
    assert!(
        ok >= 64 * 25 / 2,
        "most lookups must succeed: {ok} of {}",
        64 * 25
    );
    assert!(answered > 0 && connected > 0);

    // --- A burst beyond the concurrency limit -----------------------------
    // Requests whose body never finishes arriving hold their slot: the
    // extractor is still reading. CONCURRENCY of them fill the server.
    let mut stuck = Vec::new();
    for _ in 0..CONCURRENCY {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            b"POST /v1/lookup HTTP/1.1\r\nHost: ringleader\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"keys\": [",
        )
        .await
        .expect("send");
        stuck.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let burst: Vec<_> = (0..32)
        .map(|i| {
            tokio::spawn(async move {
                let body = format!("{{\"keys\": [\"burst-{i}\"]}}");
                request(addr, "POST", "/v1/lookup", Some(&body)).await
            })
        })
        .collect();
    let mut burst_503 = 0;
    for b in burst {
        let a = b.await.expect("no panic");
        assert_eq!(a.status, 503, "beyond the limit: {a:?}");
        assert_eq!(a.error_code(), "overloaded");
        burst_503 += 1;
    }
    // The limit is applied per route by `Router::layer`: other routes
    // still answer while this one is full.
    let health_while_full = request(addr, "GET", "/healthz", None).await.status;
    drop(stuck);
    // Once the stuck uploads are gone, the server serves again.
    let recovered = Instant::now();
    loop {
        let a = request(addr, "GET", "/v1/lookup?key=after-burst", None).await;
        if a.status == 200 {
            break;
        }
        assert!(
            recovered.elapsed() < ANSWER_WITHIN,
            "no recovery after the burst: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // --- Watchers beyond the limit ----------------------------------------
    let mut held = Vec::new();
    let free_slot = Instant::now();
    while held.len() < WATCHERS {
        // Slots of vanished watchers free up once the server notices.
        let (status, stream, body) = subscribe(addr).await;
        match status {
            200 => held.push(stream),
            503 => {
                assert!(
                    free_slot.elapsed() < Duration::from_secs(20),
                    "watch slots never free up"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = body;
            }
            other => panic!("watch answered {other}: {body}"),
        }
    }
    let watch_slots_freed_in = free_slot.elapsed();
    let (status, _extra, body) = subscribe(addr).await;
    assert_eq!(status, 503, "one watcher beyond the limit: {body}");
    assert_eq!(Answer { status, body }.error_code(), "unavailable");
    // A member change reaches the held watchers.
    server
        .running
        .send(SourceEvent::Members(testing::members(7)));
    for stream in &mut held {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(ANSWER_WITHIN, stream.read(&mut buf))
            .await
            .expect("an event in time")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.contains("event: "), "{text}");
    }
    drop(held);

    // --- Still healthy, memory bounded ------------------------------------
    let a = request(addr, "GET", "/healthz", None).await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = request(addr, "GET", "/v1/ring", None).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["members"].as_array().map(Vec::len), Some(7));
    drop(slow);
    let rss_after = rss_kib();
    eprintln!(
        "burst: {burst_503} of 32 answered 503 (GET /healthz meanwhile: {health_while_full}); watch slots freed in {watch_slots_freed_in:?}; \
         RSS {rss_before} KiB before, {rss_after} KiB after; {:?} in all",
        started.elapsed()
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_json_errors_and_change_nothing() {
    let server = start().await;
    let addr = server.addr;
    let before = request(addr, "GET", "/v1/ring?tokens=true", None).await;
    assert_eq!(before.status, 200);
    let huge = format!("{{\"keys\": [\"{}\"]}}", "x".repeat(128 << 10));
    let cases: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("POST", "/v1/lookup", Some("{not json"), 400),
        ("POST", "/v1/lookup", Some(&huge), 413),
        (
            "POST",
            "/v1/preview",
            Some("{\"endpoint_slices\": \"kind: Pod\"}"),
            400,
        ),
        (
            "POST",
            "/v1/preview",
            Some("{\"members\": [{\"id\": \"a\", \"weight\": 4294967295}]}"),
            400,
        ),
        ("GET", "/v1/lookup?key=k&rf=0", None, 400),
        ("GET", "/v1/lookup?key=k&rf=banana", None, 400),
        ("GET", "/v1/members/%FF/ranges", None, 400),
        ("GET", "/v1/nowhere", None, 404),
        ("DELETE", "/v1/ring", None, 405),
    ];
    for (method, path, body, want) in cases {
        let a = request(addr, method, path, body).await;
        assert_eq!(a.status, want, "{method} {path}: {a:?}");
        let _ = a.error_code();
    }
    let after = request(addr, "GET", "/v1/ring?tokens=true", None).await;
    assert_eq!(
        after.json(),
        before.json(),
        "a bad request changed the ring"
    );
    server.shutdown().await;
}

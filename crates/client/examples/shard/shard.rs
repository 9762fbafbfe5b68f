//! The example shard's logic, apart from `main` so that tests can run it
//! too (the end-to-end test of the pace starts it as processes).

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use ringleader_client::api::WorkMove;
use ringleader_client::{Client, Progress, Runner, RunnerOptions};
use ringleader_ring::{TokenRange, hash_key};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The flags.
pub const USAGE: &str = "\
usage: shard --coordinator URL --member ID --listen IP:PORT [options]

  --coordinator URL    the ringleader API, e.g. http://127.0.0.1:8080
  --member ID          this shard's member id (its pod name)
  --listen IP:PORT     where this shard serves /range, /keys, /healthz
  --token-file PATH    the bearer token for reporting moves done
  --peer-port PORT     the port peers serve on at their addresses (default: --listen's)
  --peer ID=HOST:PORT  where peer ID serves (repeat; overrides --peer-port)
  --seed N             first store the keys key-0..key-N-1 that this member owns
  --delay MS           take this long over every transfer (to watch the pace)
  --flaky              fail the first attempt of every transfer (to watch the retries)";

/// What the shard runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// The coordinator's base URL.
    pub coordinator: String,
    /// This shard's member id.
    pub member: String,
    /// Where it serves.
    pub listen: SocketAddr,
    /// The token for reports.
    pub token: Option<String>,
    /// Where peers serve, by id.
    pub peers: HashMap<String, String>,
    /// The port peers serve on at their addresses.
    pub peer_port: u16,
    /// Keys to seed.
    pub seed: usize,
    /// Extra time per transfer.
    pub delay: Duration,
    /// Fail every first attempt.
    pub flaky: bool,
}

impl Config {
    /// Reads the flags.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut args = args.into_iter();
        let (mut coordinator, mut member, mut listen) = (None, None, None);
        let mut config = Config {
            coordinator: String::new(),
            member: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            peers: HashMap::new(),
            peer_port: 0,
            seed: 0,
            delay: Duration::ZERO,
            flaky: false,
        };
        let mut peer_port = None;
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--coordinator" => coordinator = Some(value()?),
                "--member" => member = Some(value()?),
                "--listen" => {
                    let v = value()?;
                    listen = Some(
                        v.parse::<SocketAddr>()
                            .map_err(|e| format!("--listen {v}: {e}"))?,
                    );
                }
                "--token-file" => {
                    let path = value()?;
                    let token = std::fs::read_to_string(&path)
                        .map_err(|e| format!("--token-file {path}: {e}"))?;
                    config.token = Some(token.trim().to_owned());
                }
                "--peer-port" => {
                    let v = value()?;
                    peer_port = Some(v.parse().map_err(|e| format!("--peer-port {v}: {e}"))?);
                }
                "--peer" => {
                    let v = value()?;
                    let (id, at) = v
                        .split_once('=')
                        .ok_or_else(|| format!("--peer {v}: expected ID=HOST:PORT"))?;
                    config.peers.insert(id.to_owned(), at.to_owned());
                }
                "--seed" => {
                    let v = value()?;
                    config.seed = v.parse().map_err(|e| format!("--seed {v}: {e}"))?;
                }
                "--delay" => {
                    let v = value()?;
                    let ms: u64 = v.parse().map_err(|e| format!("--delay {v}: {e}"))?;
                    config.delay = Duration::from_millis(ms);
                }
                "--flaky" => config.flaky = true,
                other => return Err(format!("unknown flag {other}")),
            }
        }
        config.coordinator = coordinator.ok_or("--coordinator is required")?;
        config.member = member.ok_or("--member is required")?;
        config.listen = listen.ok_or("--listen is required")?;
        config.peer_port = peer_port.unwrap_or(config.listen.port());
        Ok(config)
    }
}

/// The shard's data: key → value.
type Data = Arc<Mutex<BTreeMap<String, String>>>;

/// `GET /range` query: the range `(start, end]`.
#[derive(Debug, Deserialize)]
struct RangeQuery {
    start: u64,
    end: u64,
}

/// `GET /range` answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Entries {
    /// `[key, value]` pairs.
    pub entries: Vec<(String, String)>,
}

async fn range(State(data): State<Data>, Query(q): Query<RangeQuery>) -> Json<Entries> {
    let range = TokenRange::new(q.start, q.end);
    let data = data.lock().unwrap_or_else(PoisonError::into_inner);
    Json(Entries {
        entries: data
            .iter()
            .filter(|(k, _)| range.contains(hash_key(k.as_bytes())))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

async fn keys(State(data): State<Data>) -> Json<Vec<String>> {
    let data = data.lock().unwrap_or_else(PoisonError::into_inner);
    Json(data.keys().cloned().collect())
}

/// Stores the keys `key-0..key-{n-1}` this member owns in the committed
/// ring, once the coordinator answers lookups.
async fn seed(client: &Client, member: &str, n: usize, data: &Data) -> Result<usize, String> {
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
    let mut last = String::new();
    for _ in 0..100 {
        match client.lookup_batch(keys.clone(), None).await {
            Ok(answer) => {
                let mut data = data.lock().unwrap_or_else(PoisonError::into_inner);
                let mine = answer.results.iter().filter(|r| r.owner == member);
                let mut count = 0;
                for r in mine {
                    data.insert(r.key.clone(), format!("value-of-{}", r.key));
                    count += 1;
                }
                return Ok(count);
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the coordinator answers no lookups: {last}"))
}

/// Fetches a move's range from its source and stores it.
async fn transfer(
    http: reqwest::Client,
    config: Arc<Config>,
    data: Data,
    attempts: Arc<Mutex<HashMap<String, u32>>>,
    work: WorkMove,
) -> Result<(), String> {
    let m = &work.r#move;
    let attempt = {
        let mut attempts = attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = attempts.entry(m.id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    if config.flaky && attempt == 1 {
        return Err("a flaky first attempt (--flaky)".into());
    }
    let at = match config.peers.get(&m.from) {
        Some(at) => at.clone(),
        None => {
            let address = work
                .source_addresses
                .first()
                .ok_or_else(|| format!("no address known for {}", m.from))?;
            format!("{address}:{}", config.peer_port)
        }
    };
    let url = format!(
        "http://{at}/range?start={}&end={}",
        m.range.start, m.range.end
    );
    let entries: Entries = http
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("GET {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    tokio::time::sleep(config.delay).await;
    let mut data = data.lock().unwrap_or_else(PoisonError::into_inner);
    data.extend(entries.entries);
    Ok(())
}

/// Runs the shard until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let mut client = Client::new(&config.coordinator).map_err(|e| e.to_string())?;
    if let Some(token) = &config.token {
        client = client.with_token(token.clone());
    }
    let data: Data = Arc::default();
    if config.seed > 0 {
        let n = seed(&client, &config.member, config.seed, &data).await?;
        eprintln!("shard {}: seeded {n} keys", config.member);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    let app = Router::new()
        .route("/range", get(range))
        .route("/keys", get(keys))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(data.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let member = config.member.clone();
    let runner = Runner::new(
        client,
        member.clone(),
        RunnerOptions {
            poll: Duration::from_secs(2),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            ..RunnerOptions::default()
        },
    )
    .on_progress(move |p| match p {
        Progress::Started { r#move, attempt } => eprintln!(
            "shard {member}: move {} from {} started (attempt {attempt})",
            r#move.r#move.id, r#move.r#move.from
        ),
        Progress::Failed {
            r#move,
            error,
            retry_in,
            ..
        } => eprintln!(
            "shard {member}: move {} failed ({error}); retrying in {retry_in:?}",
            r#move.r#move.id
        ),
        Progress::Done {
            r#move,
            remaining,
            committed,
        } => eprintln!(
            "shard {member}: move {} done; {remaining} open in the plan{}",
            r#move.r#move.id,
            if *committed { ", which committed" } else { "" }
        ),
        Progress::Stopped { id, reason } => {
            eprintln!("shard {member}: move {id} stopped: {reason:?}")
        }
    });
    let http = reqwest::Client::new();
    let config = Arc::new(config);
    let attempts = Arc::default();
    runner
        .run(
            move |work| {
                transfer(
                    http.clone(),
                    config.clone(),
                    data.clone(),
                    Arc::clone(&attempts),
                    work,
                )
            },
            shutdown,
        )
        .await;
    server.abort();
    Ok(())
}

//! `ringleader`: the coordinator binary and its operator CLI.
//!
//! `ringleader serve` runs the coordinator; `ring`, `plan`, `members`,
//! `status`, `lookup`, `ranges`, `preview` and `done` talk to a running one;
//! `simulate` runs offline scenarios. Flags are parsed here (what was
//! typed) and turned into validated options (what it means) before
//! anything runs.

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use ringleader::api::{Limits, WriteAuth};
use ringleader::lease::LeaseConfig;
use ringleader::runtime::{SourceSpec, StoreSpec};
use ringleader::serve::{AuthSpec, ServeOptions, run, shutdown_signal};
use ringleader::settings::{Mode, RingSettings, Timing, parse_duration};
use ringleader::simulate;
use ringleader_client::Client;
use ringleader_client::api::{PreviewRequest, RingResponse};
use ringleader_client::render;
use ringleader_ring::{Replication, RingConfig, Strategy};
use std::path::PathBuf;

/// A consistent-hash ring coordinator for stateful services on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "ringleader", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the coordinator: watch members, keep the ring, plan, serve the API.
    ///
    /// Example (a laptop, no cluster):
    /// `ringleader serve --source file:examples/db-3.yaml --auth none`
    /// then `curl localhost:8080/v1/ring`. In a cluster:
    /// `ringleader serve --source kubernetes --namespace prod --service db
    /// --rf 3 --zone-aware --auth-token-file /var/run/ringleader/token`.
    Serve(Box<ServeArgs>),
    /// Show the committed ring: members, states, ownership.
    ///
    /// Example: `ringleader ring --server http://127.0.0.1:8080`
    Ring(ClientArgs),
    /// Show the pending plan: moves, their states, moved vs ideal.
    ///
    /// Example: `ringleader plan`
    Plan(ClientArgs),
    /// List members with their states and addresses.
    ///
    /// Example: `ringleader members`
    Members(ClientArgs),
    /// One screen, like `nodetool status`: members with state, zone, tokens
    /// and ownership; the endpoints the ring doesn't have and why; the
    /// plan's progress and age.
    ///
    /// Example: `ringleader status`
    Status(ClientArgs),
    /// Look up the owner and replicas of a key.
    ///
    /// Example: `ringleader lookup user:42 --rf 3`
    Lookup {
        /// The key.
        key: String,
        /// Replicas wanted (default: the configured factor).
        #[arg(long)]
        rf: Option<usize>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show what a member owns, receives and hands off.
    ///
    /// Example: `ringleader ranges db-0`
    Ranges {
        /// Member id.
        member: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Preview the plan a file of EndpointSlices would produce, without
    /// applying it.
    ///
    /// Example: `ringleader preview examples/db-5.yaml`
    Preview {
        /// EndpointSlices (YAML or JSON, as `kubectl get endpointslices -o yaml` prints).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Report a move done (what a shard does when it has streamed a range).
    ///
    /// Example: `ringleader done 3f66ee76f9f81b0c --token-file token`
    Done {
        /// Move id, as `ringleader plan` shows it.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Simulate joins and leaves offline and print balance and data movement
    /// for each step.
    ///
    /// Example: `ringleader simulate --members 10 --tokens 16 +3 -1 +10`
    /// (ten members, then three join, one leaves, ten join). `--churn 500`
    /// appends 500 random steps.
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Where members come from: `file:PATH` (EndpointSlices in YAML or JSON,
    /// re-read on change) or `kubernetes`.
    #[arg(long, env = "RINGLEADER_SOURCE")]
    source: String,
    /// Namespace of the Service (with `--source kubernetes`), of the state
    /// ConfigMap and of the Lease (default: env POD_NAMESPACE).
    #[arg(long, env = "RINGLEADER_NAMESPACE")]
    namespace: Option<String>,
    /// The Service whose EndpointSlices are the members (with `--source
    /// kubernetes`; with a file, only its slices are used when given).
    #[arg(long, env = "RINGLEADER_SERVICE")]
    service: Option<String>,
    /// Address of the HTTP API.
    #[arg(long, env = "RINGLEADER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where state is kept: `file:PATH`, or `configmap:NAME` (a ConfigMap in
    /// the namespace; needed with --leader-election).
    #[arg(
        long,
        env = "RINGLEADER_STATE",
        default_value = "file:ringleader-state.json"
    )]
    state: String,
    /// Replication factor.
    #[arg(long, env = "RINGLEADER_RF", default_value_t = 1)]
    rf: usize,
    /// Tokens per member (per unit of weight).
    #[arg(long, env = "RINGLEADER_TOKENS_PER_MEMBER", default_value_t = 16)]
    tokens_per_member: u32,
    /// Token allocation: `balanced` (even ownership, persisted) or `hashed`.
    #[arg(long, env = "RINGLEADER_STRATEGY", default_value = "balanced")]
    strategy: String,
    /// Replicate one member per zone first.
    #[arg(long, env = "RINGLEADER_ZONE_AWARE")]
    zone_aware: bool,
    /// `ack`: shards report moves done; `auto`: plans commit at once.
    #[arg(long, env = "RINGLEADER_MODE", default_value = "ack")]
    mode: String,
    /// Quiet time before a membership change is planned.
    #[arg(long, env = "RINGLEADER_SETTLE", default_value = "5s")]
    settle: String,
    /// Longest wait for quiet before planning anyway.
    #[arg(long, env = "RINGLEADER_SETTLE_MAX", default_value = "30s")]
    settle_max: String,
    /// How long a member may be not-ready or gone before it leaves the ring.
    #[arg(long, env = "RINGLEADER_DOWN_GRACE", default_value = "60s")]
    down_grace: String,
    /// File holding the bearer token that writes must present.
    #[arg(long, env = "RINGLEADER_AUTH_TOKEN_FILE")]
    auth_token_file: Option<PathBuf>,
    /// `token` (with --auth-token-file; the default), `tokenreview` (the
    /// caller's Kubernetes token, checked with a TokenReview, must belong to
    /// an --allow-writer) or `none` (anyone may write: local experiments
    /// only).
    #[arg(long, env = "RINGLEADER_AUTH", default_value = "token")]
    auth: String,
    /// With `--auth tokenreview`: a user allowed to write, e.g.
    /// `system:serviceaccount:prod:db` (repeat, or separate with commas).
    #[arg(long, env = "RINGLEADER_ALLOW_WRITER", value_delimiter = ',')]
    allow_writer: Vec<String>,
    /// Elect a leader among replicas with a Lease: only the leader watches,
    /// plans and writes; the others serve the stored state (needs --state
    /// configmap:NAME).
    #[arg(long, env = "RINGLEADER_LEADER_ELECTION")]
    leader_election: bool,
    /// The Lease to elect on (in the namespace).
    #[arg(
        long,
        env = "RINGLEADER_LEASE_NAME",
        default_value = "ringleader-leader"
    )]
    lease_name: String,
    /// How long a silent leader keeps the Lease; it renews every third of it.
    #[arg(long, env = "RINGLEADER_LEASE_DURATION", default_value = "15s")]
    lease_duration: String,
    /// This replica's identity in the Lease (default: env POD_NAME, else
    /// the hostname). Must differ between replicas.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Reads need the token too.
    #[arg(long, env = "RINGLEADER_AUTH_READS")]
    auth_reads: bool,
    /// Accept settings that differ from the stored state's and plan the
    /// change (data will move).
    #[arg(long, env = "RINGLEADER_RECONFIGURE")]
    reconfigure: bool,
    /// Log format: `text` or `json`.
    #[arg(long, env = "RINGLEADER_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// Largest request body in bytes.
    #[arg(long, env = "RINGLEADER_MAX_BODY", default_value_t = 4 << 20)]
    max_body: usize,
    /// Requests handled at once; more get a 503.
    #[arg(long, env = "RINGLEADER_MAX_CONCURRENCY", default_value_t = 1024)]
    max_concurrency: usize,
    /// `GET /v1/watch` subscribers at once; more get a 503.
    #[arg(long, env = "RINGLEADER_MAX_WATCHERS", default_value_t = 256)]
    max_watchers: usize,
}

#[derive(Args, Debug, Clone)]
struct ClientArgs {
    /// The coordinator's address.
    #[arg(
        long,
        env = "RINGLEADER_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// `table` or `json`.
    #[arg(long, short, default_value = "table", global = true)]
    output: String,
    /// File holding the bearer token.
    #[arg(long, env = "RINGLEADER_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Members at the start.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Tokens per member.
    #[arg(long, default_value_t = 16)]
    tokens: u32,
    /// Token allocation: balanced or hashed.
    #[arg(long, default_value = "balanced", value_parser = simulate::parse_strategy)]
    strategy: Strategy,
    /// Replication factor used for the plans.
    #[arg(long, default_value_t = 1)]
    rf: usize,
    /// Spread members over this many zones and replicate zone-aware.
    #[arg(long, default_value_t = 0)]
    zones: usize,
    /// Append this many random steps (one or two joins and/or leaves).
    #[arg(long, default_value_t = 0)]
    churn: usize,
    /// Seed for who leaves and for the churn.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print only the worst balance and moved/ideal over all steps.
    #[arg(long)]
    summary: bool,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    output: String,
    /// Steps: +N (N join), -N (N leave), +N-M (both at once).
    #[arg(allow_hyphen_values = true)]
    steps: Vec<simulate::Step>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Simulate(args) => run_simulate(args),
        other => client_command(other),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format)?;
    let options = serve_options(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| {
                format!(
                    "listening on {} (is another process using it? pass --listen)",
                    args.listen
                )
            })?;
        run(options, listener, shutdown_signal()).await
    })
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("RINGLEADER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().flatten_event(true).init(),
        "text" => builder.init(),
        other => bail!("unknown --log-format {other:?}: use text or json"),
    }
    Ok(())
}

/// Turns what was typed into what it means, with messages that say what to
/// fix.
fn serve_options(args: &ServeArgs) -> anyhow::Result<ServeOptions> {
    let source = match args.source.as_str() {
        "kubernetes" => SourceSpec::Kubernetes {
            namespace: args
                .namespace
                .clone()
                .context("--source kubernetes needs --namespace NS (or RINGLEADER_NAMESPACE)")?,
            service: args
                .service
                .clone()
                .context("--source kubernetes needs --service SVC (or RINGLEADER_SERVICE)")?,
        },
        other => match other.strip_prefix("file:") {
            Some(path) if !path.is_empty() => SourceSpec::File(PathBuf::from(path)),
            _ => bail!("--source must be file:PATH or kubernetes, got {other:?}"),
        },
    };
    // The namespace of the ConfigMap and the Lease.
    let namespace = || {
        args.namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|ns| !ns.is_empty())
    };
    let store = if let Some(path) = args.state.strip_prefix("file:") {
        if path.is_empty() {
            bail!("--state file: needs a path, e.g. file:ringleader-state.json");
        }
        StoreSpec::File(PathBuf::from(path))
    } else if let Some(name) = args.state.strip_prefix("configmap:") {
        if !valid_object_name(name) {
            bail!(
                "--state configmap:{name}: {name:?} is not a valid ConfigMap name (lowercase letters, digits, '-' and '.', at most 253)"
            );
        }
        StoreSpec::ConfigMap {
            namespace: namespace().context(
                "--state configmap:NAME needs a namespace: --namespace NS (or RINGLEADER_NAMESPACE, or POD_NAMESPACE)",
            )?,
            name: name.to_owned(),
        }
    } else {
        bail!(
            "--state must be file:PATH or configmap:NAME, got {:?}",
            args.state
        );
    };
    let settings = RingSettings {
        rf: args.rf,
        strategy: args.strategy.parse().map_err(anyhow::Error::msg)?,
        tokens_per_member: args.tokens_per_member,
        zone_aware: args.zone_aware,
        mode: args.mode.parse::<Mode>().map_err(anyhow::Error::msg)?,
    };
    settings.validate().map_err(anyhow::Error::msg)?;
    let duration =
        |flag: &str, text: &str| parse_duration(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"));
    let timing = Timing {
        settle: duration("--settle", &args.settle)?,
        settle_max: duration("--settle-max", &args.settle_max)?,
        down_grace: duration("--down-grace", &args.down_grace)?,
    };
    if timing.settle_max < timing.settle {
        bail!(
            "--settle-max ({:?}) must not be shorter than --settle ({:?})",
            timing.settle_max,
            timing.settle
        );
    }
    let leader_election = if args.leader_election {
        if !matches!(store, StoreSpec::ConfigMap { .. }) {
            bail!(
                "--leader-election needs --state configmap:NAME: every replica must read the state the leader writes"
            );
        }
        if !valid_object_name(&args.lease_name) {
            bail!(
                "--lease-name {:?} is not a valid Lease name",
                args.lease_name
            );
        }
        let duration = duration("--lease-duration", &args.lease_duration)?;
        if duration < std::time::Duration::from_secs(1) {
            bail!("--lease-duration must be at least 1s (15s is usual)");
        }
        let identity = match args.identity.clone().filter(|i| !i.is_empty()) {
            Some(identity) => identity,
            None => hostname().context(
                "--leader-election needs this replica's identity: --identity NAME (or POD_NAME; the hostname could not be read)",
            )?,
        };
        Some(LeaseConfig {
            namespace: namespace().context(
                "--leader-election needs a namespace: --namespace NS (or RINGLEADER_NAMESPACE, or POD_NAMESPACE)",
            )?,
            name: args.lease_name.clone(),
            identity,
            duration,
        })
    } else {
        None
    };
    if !args.allow_writer.is_empty() && args.auth != "tokenreview" {
        bail!("--allow-writer goes with --auth tokenreview");
    }
    let auth = match (args.auth.as_str(), &args.auth_token_file) {
        ("tokenreview", None) => {
            let allowed_writers: Vec<String> = args
                .allow_writer
                .iter()
                .map(|w| w.trim().to_owned())
                .filter(|w| !w.is_empty())
                .collect();
            if allowed_writers.is_empty() {
                bail!(
                    "--auth tokenreview needs at least one --allow-writer USER, e.g. system:serviceaccount:NAMESPACE:SERVICEACCOUNT"
                );
            }
            AuthSpec::TokenReview { allowed_writers }
        }
        ("tokenreview", Some(_)) => {
            bail!("--auth tokenreview and --auth-token-file contradict each other; pick one")
        }
        (mode, file) => AuthSpec::Ready(token_auth(mode, file.as_ref())?),
    };
    if args.auth_reads && !matches!(auth, AuthSpec::Ready(WriteAuth::Token(_))) {
        bail!("--auth-reads needs --auth-token-file");
    }
    if args.max_body == 0 || args.max_concurrency == 0 || args.max_watchers == 0 {
        bail!("--max-body, --max-concurrency and --max-watchers must be at least 1");
    }
    Ok(ServeOptions {
        source,
        store,
        settings,
        timing,
        reconfigure: args.reconfigure,
        auth,
        reads_need_token: args.auth_reads,
        limits: Limits {
            body_bytes: args.max_body,
            concurrency: args.max_concurrency,
            watchers: args.max_watchers,
            ..Limits::default()
        },
        leader_election,
        follower_poll: std::time::Duration::from_secs(1),
        kube: None,
    })
}

/// A Kubernetes object name (DNS subdomain).
fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// `--auth token|none` with `--auth-token-file`.
fn token_auth(mode: &str, file: Option<&PathBuf>) -> anyhow::Result<WriteAuth> {
    Ok(match (mode, file) {
        ("none", None) => WriteAuth::Open,
        ("none", Some(_)) => {
            bail!("--auth none and --auth-token-file contradict each other; pick one")
        }
        ("token", Some(path)) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("reading --auth-token-file {}", path.display()))?
                .trim()
                .to_owned();
            if token.len() < 16 {
                bail!(
                    "the token in {} is {} characters long; use at least 16 (e.g. `head -c 32 /dev/urandom | base64`)",
                    path.display(),
                    token.len()
                );
            }
            WriteAuth::Token(token)
        }
        ("token", None) => WriteAuth::Disabled,
        (other, _) => bail!("--auth must be token, tokenreview or none, got {other:?}"),
    })
}

fn client_command(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let args = match &command {
            Command::Ring(c) | Command::Plan(c) | Command::Members(c) | Command::Status(c) => {
                c.clone()
            }
            Command::Lookup { client, .. }
            | Command::Ranges { client, .. }
            | Command::Preview { client, .. }
            | Command::Done { client, .. } => client.clone(),
            Command::Serve(_) | Command::Simulate(_) => unreachable!("handled in main"),
        };
        let json = match args.output.as_str() {
            "json" => true,
            "table" => false,
            other => bail!("unknown --output {other:?}: use table or json"),
        };
        let mut client =
            Client::new(&args.server).with_context(|| format!("--server {}", args.server))?;
        if let Some(path) = &args.token_file {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("reading --token-file {}", path.display()))?;
            client = client.with_token(token.trim());
        }
        let context = || format!("asking the coordinator at {}", args.server);
        let out = match command {
            Command::Ring(_) => show(
                json,
                &client.ring(false).await.with_context(context)?,
                render::ring,
            )?,
            Command::Members(_) => show(
                json,
                &client.ring(false).await.with_context(context)?,
                |r: &RingResponse| render::members(r),
            )?,
            Command::Status(_) => show(
                json,
                &client.status().await.with_context(context)?,
                render::status,
            )?,
            Command::Plan(_) => show(
                json,
                &client.plan().await.with_context(context)?,
                render::plan,
            )?,
            Command::Lookup { key, rf, .. } => show(
                json,
                &client.lookup(&key, rf).await.with_context(context)?,
                render::lookup,
            )?,
            Command::Ranges { member, .. } => show(
                json,
                &client.member_ranges(&member).await.with_context(context)?,
                render::member_ranges,
            )?,
            Command::Preview { file, .. } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let request = PreviewRequest {
                    members: None,
                    endpoint_slices: Some(text),
                };
                show(
                    json,
                    &client.preview(&request).await.with_context(context)?,
                    render::preview,
                )?
            }
            Command::Done { id, .. } => {
                let done = client.move_done(&id).await.with_context(context)?;
                if json {
                    serde_json::to_string_pretty(&done)?
                } else if done.committed {
                    format!(
                        "move {} done; that was the last one: epoch {} is committed\n",
                        done.move_.id, done.epoch
                    )
                } else {
                    format!(
                        "move {} done; {} still open\n",
                        done.move_.id, done.remaining
                    )
                }
            }
            Command::Serve(_) | Command::Simulate(_) => unreachable!("handled in main"),
        };
        print!("{out}");
        if json {
            println!();
        }
        Ok(())
    })
}

fn show<T: serde::Serialize>(
    json: bool,
    value: &T,
    table: impl Fn(&T) -> String,
) -> anyhow::Result<String> {
    Ok(if json {
        serde_json::to_string_pretty(value)?
    } else {
        table(value)
    })
}

fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let mut steps = args.steps;
    if args.churn > 0 {
        let start = args.members as i64
            + steps
                .iter()
                .map(|s| s.join as i64 - s.leave as i64)
                .sum::<i64>();
        let start = start.max(0) as usize;
        let min = (args.members / 2).max(args.rf).max(3);
        let max = args.members * 2 + 3;
        steps.extend(simulate::churn(args.churn, start, min, max, args.seed));
    }
    let scenario = simulate::Scenario {
        members: args.members,
        config: RingConfig::new(args.strategy, args.tokens),
        replication: Replication::new(args.rf, args.zones > 1),
        zones: args.zones,
        steps,
        seed: args.seed,
    };
    let reports = simulate::run(&scenario)?;
    let (balance, ratio) = simulate::worst(&reports);
    match (args.output.as_str(), args.summary) {
        ("json", _) => println!("{}", serde_json::to_string_pretty(&reports)?),
        ("table", false) => {
            print!("{}", simulate::table(&reports));
            println!("worst max/mean {balance:.4}, worst moved/ideal {ratio:.3}");
        }
        ("table", true) => println!(
            "members={} tokens={} strategy={} rf={} steps={}: start max/mean {:.4}, worst max/mean {balance:.4}, worst moved/ideal {ratio:.3}",
            args.members,
            args.tokens,
            args.strategy,
            args.rf,
            reports.len() - 1,
            reports[0].balance
        ),
        (other, _) => bail!("unknown output format {other:?}: use table or json"),
    }
    Ok(())
}

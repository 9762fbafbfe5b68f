//! `ringleader`: the coordinator binary and its operator CLI.
//!
//! `ringleader serve` runs the coordinator; `ring`, `plan`, `members`,
//! `status`, `lookup`, `ranges`, `preview` and `done` talk to a running one;
//! `simulate` runs offline scenarios. Flags are parsed here (what was
//! typed) and turned into validated options (what it means) before
//! anything runs.

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use ringleader::api::{Limits, ReviewPolicy, WriteAuth};
use ringleader::http::ConnLimits;
use ringleader::lease::LeaseConfig;
use ringleader::runtime::{SourceSpec, StoreSpec};
use ringleader::serve::{AuthSpec, ServeOptions, run, shutdown_signal};
use ringleader::settings::{Mode, Pace, RingSettings, Timing, parse_duration};
use ringleader::simulate;
use ringleader_client::Client;
use ringleader_client::api::{PreviewRequest, RingResponse};
use ringleader_client::render;
use ringleader_ring::{Replication, RingConfig, Strategy};
use std::path::PathBuf;
use std::time::Duration;

mod malloc;

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

/// `--source`: where members come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SourceArg {
    File(PathBuf),
    Kubernetes,
}

fn parse_source(text: &str) -> Result<SourceArg, String> {
    match text {
        "kubernetes" => Ok(SourceArg::Kubernetes),
        other => match other.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(SourceArg::File(PathBuf::from(path))),
            _ => Err(format!(
                "{other:?} is not a source: use file:PATH or kubernetes"
            )),
        },
    }
}

/// `--state`: where state is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StateArg {
    File(PathBuf),
    ConfigMap(String),
}

fn parse_state(text: &str) -> Result<StateArg, String> {
    if let Some(path) = text.strip_prefix("file:") {
        if path.is_empty() {
            return Err("file: needs a path, e.g. file:ringleader-state.json".into());
        }
        Ok(StateArg::File(PathBuf::from(path)))
    } else if let Some(name) = text.strip_prefix("configmap:") {
        if !valid_object_name(name) {
            return Err(format!(
                "{name:?} is not a valid ConfigMap name (lowercase letters, digits, '-' and '.', at most 253)"
            ));
        }
        Ok(StateArg::ConfigMap(name.to_owned()))
    } else {
        Err(format!("{text:?}: use file:PATH or configmap:NAME"))
    }
}

fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("{text:?} is not an IP address and port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
    })
}

/// `--auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AuthMode {
    /// A bearer token from --auth-token-file (without one, writes are
    /// refused).
    Token,
    /// The caller's Kubernetes token, checked with a TokenReview.
    Tokenreview,
    /// Anyone may write: local experiments only.
    None,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (coloured only on a terminal, never with NO_COLOR).
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// A limit of the pace: a number of moves, or none.
#[derive(Clone, Copy, Debug)]
struct PaceLimit(Option<u32>);

fn parse_pace_limit(text: &str) -> Result<PaceLimit, String> {
    ringleader::settings::parse_limit(text).map(PaceLimit)
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Where members come from: `file:PATH` (EndpointSlices in YAML or JSON,
    /// re-read on change) or `kubernetes`.
    #[arg(long, env = "RINGLEADER_SOURCE", value_parser = parse_source)]
    source: SourceArg,
    /// Namespace of the Service (with `--source kubernetes`), of the state
    /// ConfigMap and of the Lease (default: env POD_NAMESPACE).
    #[arg(long, env = "RINGLEADER_NAMESPACE")]
    namespace: Option<String>,
    /// The Service whose EndpointSlices are the members (with `--source
    /// kubernetes`; with a file, only its slices are used when given).
    #[arg(long, env = "RINGLEADER_SERVICE")]
    service: Option<String>,
    /// Address of the HTTP API (IP:PORT).
    #[arg(long, env = "RINGLEADER_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: std::net::SocketAddr,
    /// Where state is kept: `file:PATH`, or `configmap:NAME` (a ConfigMap in
    /// the namespace; needed with --leader-election).
    #[arg(
        long,
        env = "RINGLEADER_STATE",
        default_value = "file:ringleader-state.json",
        value_parser = parse_state
    )]
    state: StateArg,
    /// Replication factor.
    #[arg(long, env = "RINGLEADER_RF", default_value_t = 1)]
    rf: usize,
    /// Tokens per member (per unit of weight).
    #[arg(long, env = "RINGLEADER_TOKENS_PER_MEMBER", default_value_t = 16)]
    tokens_per_member: u32,
    /// Token allocation: `balanced` (even ownership, persisted) or `hashed`.
    #[arg(long, env = "RINGLEADER_STRATEGY", default_value = "balanced", value_parser = simulate::parse_strategy)]
    strategy: Strategy,
    /// Replicate one member per zone first.
    #[arg(long, env = "RINGLEADER_ZONE_AWARE")]
    zone_aware: bool,
    /// `ack`: shards report moves done; `auto`: plans commit at once.
    #[arg(long, env = "RINGLEADER_MODE", default_value = "ack")]
    mode: Mode,
    /// At most this many moves in progress per member, sending or
    /// receiving (`--mode ack`): a whole number, or `unlimited`.
    #[arg(long, env = "RINGLEADER_MAX_MOVES_PER_MEMBER", default_value = "2", value_parser = parse_pace_limit)]
    max_moves_per_member: PaceLimit,
    /// At most this many moves in progress in the whole cluster (`--mode
    /// ack`): a whole number, or `unlimited`.
    #[arg(long, env = "RINGLEADER_MAX_MOVES", default_value = "unlimited", value_parser = parse_pace_limit)]
    max_moves: PaceLimit,
    /// Quiet time before a membership change is planned.
    #[arg(long, env = "RINGLEADER_SETTLE", default_value = "5s", value_parser = parse_duration)]
    settle: Duration,
    /// Longest wait for quiet before planning anyway.
    #[arg(long, env = "RINGLEADER_SETTLE_MAX", default_value = "30s", value_parser = parse_duration)]
    settle_max: Duration,
    /// How long a member may be not-ready or gone before it leaves the ring.
    #[arg(long, env = "RINGLEADER_DOWN_GRACE", default_value = "60s", value_parser = parse_duration)]
    down_grace: Duration,
    /// File holding the bearer token that writes must present.
    #[arg(long, env = "RINGLEADER_AUTH_TOKEN_FILE")]
    auth_token_file: Option<PathBuf>,
    /// How writes (and, with --auth-reads, reads) are authenticated.
    #[arg(long, env = "RINGLEADER_AUTH", value_enum, default_value = "token")]
    auth: AuthMode,
    /// With `--auth tokenreview`: a user allowed to write, e.g.
    /// `system:serviceaccount:prod:db` (repeat, or separate with commas).
    #[arg(long, env = "RINGLEADER_ALLOW_WRITER", value_delimiter = ',')]
    allow_writer: Vec<String>,
    /// With `--auth tokenreview --auth-reads`: a user allowed to read
    /// (writers may always read). Without any, every user the API server
    /// authenticates may read.
    #[arg(long, env = "RINGLEADER_ALLOW_READER", value_delimiter = ',')]
    allow_reader: Vec<String>,
    /// With `--auth tokenreview`: the audience tokens must be issued for
    /// (sent with every TokenReview; repeat for several). Shards then mount
    /// a projected service-account token with this audience.
    #[arg(long, env = "RINGLEADER_TOKEN_AUDIENCE", value_delimiter = ',')]
    token_audience: Vec<String>,
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
    #[arg(long, env = "RINGLEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// This replica's identity in the Lease (default: env POD_NAME, else
    /// the hostname). Must differ between replicas.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// This replica's API as the other replicas reach it, e.g.
    /// `http://10.1.2.3:8080` (default with --leader-election: from env
    /// POD_IP and the --listen port). The leader writes it on the Lease;
    /// followers forward writes there.
    #[arg(long, env = "RINGLEADER_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Reads need authentication too (the token of --auth-token-file, or a
    /// TokenReview with --auth tokenreview).
    #[arg(long, env = "RINGLEADER_AUTH_READS")]
    auth_reads: bool,
    /// Accept settings that differ from the stored state's and plan the
    /// change (data will move).
    #[arg(long, env = "RINGLEADER_RECONFIGURE")]
    reconfigure: bool,
    /// Log format.
    #[arg(
        long,
        env = "RINGLEADER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Largest request body in bytes.
    #[arg(long, env = "RINGLEADER_MAX_BODY", default_value_t = 4 << 20)]
    max_body: usize,
    /// Requests handled at once; more get a 503.
    #[arg(long, env = "RINGLEADER_MAX_CONCURRENCY", default_value_t = 1024)]
    max_concurrency: usize,
    /// `GET /v1/watch` subscribers at once; more get a 503.
    #[arg(long, env = "RINGLEADER_MAX_WATCHERS", default_value_t = 256)]
    max_watchers: usize,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, env = "RINGLEADER_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Longest wait for a request's headers before the connection is closed.
    #[arg(long, env = "RINGLEADER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// A connection that reads and writes nothing for this long is closed
    /// (also a watch subscriber or a reader that stopped reading). Longer
    /// than the watch keep-alive (15 s) and --request-timeout.
    #[arg(long, env = "RINGLEADER_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Longest time a request may take; then it is answered 503 `timeout`.
    #[arg(long, env = "RINGLEADER_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Members in one `POST /v1/preview`.
    #[arg(long, env = "RINGLEADER_MAX_PREVIEW_MEMBERS", default_value_t = 1024)]
    max_preview_members: usize,
    /// Largest member weight in a preview.
    #[arg(long, env = "RINGLEADER_MAX_PREVIEW_WEIGHT", default_value_t = 16)]
    max_preview_weight: u32,
    /// Tokens of a preview's ring (members × weight × tokens per member).
    #[arg(long, env = "RINGLEADER_MAX_PREVIEW_TOKENS", default_value_t = 262_144)]
    max_preview_tokens: usize,
    /// Previews computed at once; more get a 503.
    #[arg(long, env = "RINGLEADER_MAX_PREVIEWS", default_value_t = 2)]
    max_previews: usize,
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
    malloc::tune();
    init_logging(args.log_format);
    let options = serve_options(&args)?;
    log_settings(&args, &options);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
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

/// Whether text logs get colour: only on a terminal, never with `NO_COLOR`
/// (<https://no-color.org>) set to anything non-empty.
fn colour(no_color: Option<std::ffi::OsString>, terminal: bool) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    // kube logs a WARN for every failed retry (a 403 every second); the
    // source logs its own, rate-limited, with advice.
    let filter = EnvFilter::try_from_env("RINGLEADER_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,kube_runtime=error,kube_client=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
        LogFormat::Text => builder
            .with_ansi(colour(
                std::env::var_os("NO_COLOR"),
                std::io::stderr().is_terminal(),
            ))
            .init(),
    }
}

/// The effective settings, once at startup, and warnings for the ones that
/// leave the coordinator crippled or open.
/// A pace limit as typed.
fn limit(n: Option<std::num::NonZeroU32>) -> String {
    n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

fn log_settings(args: &ServeArgs, options: &ServeOptions) {
    let auth = match &options.auth {
        AuthSpec::Ready(WriteAuth::Disabled) => "disabled (no --auth-token-file)".to_owned(),
        AuthSpec::Ready(WriteAuth::Open) => "none (anyone may write)".to_owned(),
        AuthSpec::Ready(WriteAuth::Token(_)) => "token (--auth-token-file)".to_owned(),
        AuthSpec::Ready(WriteAuth::TokenReview(_)) | AuthSpec::TokenReview(_) => {
            "tokenreview".to_owned()
        }
    };
    let (writers, audiences) = match &options.auth {
        AuthSpec::TokenReview(policy) => (
            policy.writers.iter().cloned().collect::<Vec<_>>().join(","),
            policy.audiences.join(","),
        ),
        _ => (String::new(), String::new()),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        source = ?options.source,
        store = ?options.store,
        listen = %args.listen,
        rf = options.settings.rf,
        tokens_per_member = options.settings.tokens_per_member,
        strategy = %options.settings.strategy,
        zone_aware = options.settings.zone_aware,
        mode = %options.settings.mode,
        max_moves_per_member = %limit(options.settings.pace.max_moves_per_member),
        max_moves = %limit(options.settings.pace.max_moves),
        settle = ?options.timing.settle,
        settle_max = ?options.timing.settle_max,
        down_grace = ?options.timing.down_grace,
        auth = %auth,
        auth_reads = options.reads_need_token,
        allowed_writers = %writers,
        token_audiences = %audiences,
        leader_election = options.leader_election.is_some(),
        max_body = options.limits.body_bytes,
        max_concurrency = options.limits.concurrency,
        max_connections = options.connections.max_connections,
        header_read_timeout = ?options.connections.header_read_timeout,
        idle_timeout = ?options.connections.idle_timeout,
        request_timeout = ?options.limits.request_timeout,
        "effective settings"
    );
    if matches!(options.auth, AuthSpec::Ready(WriteAuth::Disabled)) {
        let consequence = if options.settings.mode == Mode::Ack {
            "; in --mode ack no plan can ever commit, since no shard can report a move done"
        } else {
            ""
        };
        tracing::warn!(
            "writes are disabled: no --auth-token-file was given (or --auth tokenreview, or --auth none for a local experiment){consequence}"
        );
    }
    if matches!(options.auth, AuthSpec::Ready(WriteAuth::Open)) && !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "--auth none on a non-loopback address: anyone who can reach it may mark moves done"
        );
    }
}

/// Turns what was typed into what it means, with messages that say what to
/// fix.
fn serve_options(args: &ServeArgs) -> anyhow::Result<ServeOptions> {
    let source = match &args.source {
        SourceArg::Kubernetes => SourceSpec::Kubernetes {
            namespace: args
                .namespace
                .clone()
                .context("--source kubernetes needs --namespace NS (or RINGLEADER_NAMESPACE)")?,
            service: args
                .service
                .clone()
                .context("--source kubernetes needs --service SVC (or RINGLEADER_SERVICE)")?,
        },
        SourceArg::File(path) => SourceSpec::File(path.clone()),
    };
    // The namespace of the ConfigMap and the Lease.
    let namespace = || {
        args.namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|ns| !ns.is_empty())
    };
    let store = match &args.state {
        StateArg::File(path) => StoreSpec::File(path.clone()),
        StateArg::ConfigMap(name) => StoreSpec::ConfigMap {
            namespace: namespace().context(
                "--state configmap:NAME needs a namespace: --namespace NS (or RINGLEADER_NAMESPACE, or POD_NAMESPACE)",
            )?,
            name: name.clone(),
        },
    };
    let settings = RingSettings {
        rf: args.rf,
        strategy: args.strategy,
        tokens_per_member: args.tokens_per_member,
        zone_aware: args.zone_aware,
        mode: args.mode,
        pace: Pace::new(args.max_moves_per_member.0, args.max_moves.0),
    };
    settings.validate().map_err(anyhow::Error::msg)?;
    let timing = Timing {
        settle: args.settle,
        settle_max: args.settle_max,
        down_grace: args.down_grace,
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
        if args.lease_duration < Duration::from_secs(1) {
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
            duration: args.lease_duration,
        })
    } else {
        None
    };
    let tokenreview_only = [
        ("--allow-writer", !args.allow_writer.is_empty()),
        ("--allow-reader", !args.allow_reader.is_empty()),
        ("--token-audience", !args.token_audience.is_empty()),
    ];
    if args.auth != AuthMode::Tokenreview
        && let Some((flag, _)) = tokenreview_only.iter().find(|(_, given)| *given)
    {
        bail!("{flag} goes with --auth tokenreview");
    }
    let cleaned = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty())
            .collect()
    };
    let auth = match (args.auth, &args.auth_token_file) {
        (AuthMode::Tokenreview, None) => {
            let writers = cleaned(&args.allow_writer);
            if writers.is_empty() {
                bail!(
                    "--auth tokenreview needs at least one --allow-writer USER, e.g. system:serviceaccount:NAMESPACE:SERVICEACCOUNT"
                );
            }
            AuthSpec::TokenReview(ReviewPolicy {
                writers: writers.into_iter().collect(),
                readers: cleaned(&args.allow_reader).into_iter().collect(),
                audiences: cleaned(&args.token_audience),
            })
        }
        (AuthMode::Tokenreview, Some(_)) => {
            bail!("--auth tokenreview and --auth-token-file contradict each other; pick one")
        }
        (mode, file) => AuthSpec::Ready(token_auth(mode, file.as_ref())?),
    };
    if args.auth_reads && matches!(auth, AuthSpec::Ready(WriteAuth::Open | WriteAuth::Disabled)) {
        bail!(
            "--auth-reads needs something to check reads with: --auth-token-file PATH or --auth tokenreview"
        );
    }
    if args.max_body == 0
        || args.max_concurrency == 0
        || args.max_watchers == 0
        || args.max_connections == 0
        || args.max_previews == 0
        || args.max_preview_members == 0
        || args.max_preview_weight == 0
        || args.max_preview_tokens == 0
    {
        bail!("--max-* limits must be at least 1");
    }
    for (flag, value) in [
        ("--header-read-timeout", args.header_read_timeout),
        ("--idle-timeout", args.idle_timeout),
        ("--request-timeout", args.request_timeout),
    ] {
        if value.is_zero() {
            bail!("{flag} must be more than 0");
        }
    }
    let advertise_url = match &args.advertise_url {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => Some(url.clone()),
        Some(url) => bail!("--advertise-url {url:?} must be an http:// or https:// URL"),
        None => std::env::var("POD_IP")
            .ok()
            .filter(|ip| !ip.is_empty())
            .map(|ip| match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => format!("http://[{v6}]:{}", args.listen.port()),
                _ => format!("http://{ip}:{}", args.listen.port()),
            }),
    };
    let service_filter = match (&args.source, &args.service) {
        (SourceArg::File(_), Some(service)) => Some(service.clone()),
        _ => None,
    };
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
            preview_members: args.max_preview_members,
            preview_weight: args.max_preview_weight,
            preview_tokens: args.max_preview_tokens,
            previews: args.max_previews,
            request_timeout: args.request_timeout,
            ..Limits::default()
        },
        connections: ConnLimits {
            max_connections: args.max_connections,
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            ..ConnLimits::default()
        },
        service_filter,
        advertise_url,
        leader_election,
        follower_resync: std::time::Duration::from_secs(30),
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
fn token_auth(mode: AuthMode, file: Option<&PathBuf>) -> anyhow::Result<WriteAuth> {
    Ok(match (mode, file) {
        (AuthMode::None, None) => WriteAuth::Open,
        (AuthMode::None, Some(_)) => {
            bail!("--auth none and --auth-token-file contradict each other; pick one")
        }
        (AuthMode::Token, Some(path)) => {
            let token = match std::fs::read_to_string(path) {
                Ok(token) => token.trim().to_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "the write token file {} does not exist. In Kubernetes, create the Secret first \
                     (docs/deploy.md, step 1: kubectl create secret generic ringleader-token \
                     --from-literal=token=\"$(openssl rand -hex 32)\"); elsewhere, write a token of at \
                     least 16 characters to that file",
                    path.display()
                ),
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading --auth-token-file {}", path.display())));
                }
            };
            if token.contains("REPLACE-ME") {
                bail!(
                    "the token in {} is the placeholder from an old deploy/kubernetes/secret.yaml, which anyone \
                     who read the repository knows; create a real one (docs/deploy.md, step 1)",
                    path.display()
                );
            }
            if token.len() < 16 {
                bail!(
                    "the token in {} is {} characters long; use at least 16 (e.g. `head -c 32 /dev/urandom | base64`)",
                    path.display(),
                    token.len()
                );
            }
            WriteAuth::Token(token)
        }
        (AuthMode::Token, None) => WriteAuth::Disabled,
        (AuthMode::Tokenreview, _) => {
            unreachable!("--auth tokenreview is decided before the token file")
        }
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
    let simulate::Worst {
        balance,
        moved_over_ideal: ratio,
        moved_over_zone_ideal: zone_ratio,
    } = simulate::worst(&reports);
    match (args.output.as_str(), args.summary) {
        ("json", _) => println!("{}", serde_json::to_string_pretty(&reports)?),
        ("table", false) => {
            print!("{}", simulate::table(&reports));
            println!(
                "worst balance {balance:.4}, worst moved/ideal {ratio:.3}, worst moved/zone-aware bound {zone_ratio:.3}"
            );
        }
        ("table", true) => println!(
            "members={} tokens={} strategy={} rf={} zones={} steps={}: start balance {:.4}, worst balance {balance:.4}, worst moved/ideal {ratio:.3}, worst moved/zone-aware bound {zone_ratio:.3}",
            args.members,
            args.tokens,
            args.strategy,
            args.rf,
            args.zones,
            reports.len() - 1,
            reports[0].balance
        ),
        (other, _) => bail!("unknown output format {other:?}: use table or json"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour(None, true));
        assert!(!colour(None, false));
        assert!(!colour(Some("1".into()), true));
        // An empty NO_COLOR is unset, as no-color.org says.
        assert!(colour(Some("".into()), true));
    }
}

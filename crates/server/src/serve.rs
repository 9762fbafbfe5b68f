//! `ringleader serve`: wires source → coordinator → store → API and runs
//! them until shutdown.
//!
//! Alone (no `--leader-election`), the instance loads the state, runs the
//! coordinator and serves. With leader election, an [`Elector`] campaigns for
//! the Lease and a [`Replica`] follows or leads accordingly (see
//! [`crate::runtime`]); on shutdown the coordinator stops first (its last
//! save), then the Lease is released, so a follower takes over at once.

use crate::api::{self, AppState, Limits, ReviewPolicy, TokenReviewer, WriteAuth};
use crate::http::ConnLimits;
use crate::lease::{Elector, LeaseConfig};
use crate::runtime::{Driver, Lead, Outlets, Replica, SourceSpec, StoreSpec, load_state};
use crate::settings::{RingSettings, Timing};
use crate::state::{ConfigMapStore, FileStore, State, Store};
use anyhow::{Context as _, bail};
use ringleader_watch::{FileSource, KubernetesSource, MembershipStream};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// A Kubernetes client to use instead of the default one (tests point it at
/// the testkit).
#[derive(Clone)]
pub struct KubeClient(pub kube::Client);

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeClient(..)")
    }
}

/// Who may write, as asked for.
#[derive(Clone, Debug)]
pub enum AuthSpec {
    /// Decided already (no token, `--auth none`, `--auth-token-file`).
    Ready(WriteAuth),
    /// `--auth tokenreview --allow-writer U…`: needs a Kubernetes client.
    TokenReview(ReviewPolicy),
}

/// Everything `serve` needs, validated.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where members come from.
    pub source: SourceSpec,
    /// Where state is kept.
    pub store: StoreSpec,
    /// Ring settings.
    pub settings: RingSettings,
    /// Flap damping and batching.
    pub timing: Timing,
    /// Plan a change of settings against an existing state.
    pub reconfigure: bool,
    /// Who may write.
    pub auth: AuthSpec,
    /// Whether reads need the token too.
    pub reads_need_token: bool,
    /// Request limits.
    pub limits: Limits,
    /// Connection limits.
    pub connections: ConnLimits,
    /// With a file source: only the slices of this Service count
    /// (`--service`).
    pub service_filter: Option<String>,
    /// This replica's API URL as the others reach it (`--advertise-url`):
    /// written on the Lease while leading, so followers forward writes.
    pub advertise_url: Option<String>,
    /// Leader election (`--leader-election`), or `None` to run alone.
    pub leader_election: Option<LeaseConfig>,
    /// How often a follower reads the whole state besides watching it (a
    /// safety net against a wedged watch or a missed event).
    pub follower_resync: Duration,
    /// The Kubernetes client; `None`: `Client::try_default()` when one is
    /// needed.
    pub kube: Option<KubeClient>,
}

impl ServeOptions {
    /// Options with defaults for everything but what must be given.
    pub fn new(source: SourceSpec, store: StoreSpec, settings: RingSettings) -> Self {
        Self {
            source,
            store,
            settings,
            timing: Timing::default(),
            reconfigure: false,
            auth: AuthSpec::Ready(WriteAuth::Disabled),
            reads_need_token: false,
            limits: Limits::default(),
            connections: ConnLimits::default(),
            service_filter: None,
            advertise_url: None,
            leader_election: None,
            follower_resync: Duration::from_secs(30),
            kube: None,
        }
    }

    fn needs_kube(&self) -> bool {
        matches!(self.source, SourceSpec::Kubernetes { .. })
            || matches!(self.store, StoreSpec::ConfigMap { .. })
            || matches!(self.auth, AuthSpec::TokenReview { .. })
            || self.leader_election.is_some()
    }
}

/// What opening a source needs besides its spec.
#[derive(Clone, Debug)]
struct SourceOpener {
    /// `--service` with a file source.
    service_filter: Option<String>,
    /// The API server's URL, for the Kubernetes source's messages.
    server_url: Option<String>,
}

async fn open_source(
    spec: &SourceSpec,
    opener: &SourceOpener,
    client: Option<kube::Client>,
) -> anyhow::Result<MembershipStream> {
    let service_filter = opener.service_filter.as_deref();
    Ok(match spec {
        SourceSpec::File(path) => {
            info!(
                path = %path.display(),
                service = service_filter.unwrap_or("(any)"),
                "membership from a file of EndpointSlices"
            );
            let mut source = FileSource::new(path.clone());
            if let Some(service) = service_filter {
                source = source.service(service);
            }
            source.stream()
        }
        SourceSpec::Kubernetes { namespace, service } => {
            info!(%namespace, %service, "membership from the Service's EndpointSlices");
            let client = client.context("the Kubernetes source needs a Kubernetes client")?;
            let mut source = KubernetesSource::new(namespace.clone(), service.clone());
            if let Some(url) = &opener.server_url {
                source = source.server_url(url.clone());
            }
            source.stream(client)
        }
    })
}

/// A task aborted when dropped, so that dropping [`run`]'s future (a crash,
/// in tests) stops everything it started, without any clean-up.
struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the coordinator and its API on `listener` until `shutdown`
/// completes, then stops both cleanly (state saved, watch streams closed,
/// the Lease released).
pub async fn run(
    options: ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut server_url = None;
    let client = match (&options.kube, options.needs_kube()) {
        (Some(k), _) => Some(k.0.clone()),
        (None, true) => {
            let config = kube::Config::infer().await.context(
                "finding the Kubernetes API server (in a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config)",
            )?;
            info!(server = %config.cluster_url, "Kubernetes API server");
            server_url = Some(config.cluster_url.to_string());
            Some(kube::Client::try_from(config).context("connecting to Kubernetes")?)
        }
        (None, false) => None,
    };
    let sources = SourceOpener {
        service_filter: options.service_filter.clone(),
        server_url,
    };
    let store: Store = match &options.store {
        StoreSpec::File(path) => FileStore::open_locked(path.clone())?.into(),
        StoreSpec::ConfigMap { namespace, name } => ConfigMapStore::new(
            client
                .clone()
                .context("a ConfigMap store needs a Kubernetes client")?,
            namespace,
            name,
        )
        .into(),
    };
    let write_auth = match &options.auth {
        AuthSpec::Ready(auth) => auth.clone(),
        AuthSpec::TokenReview(policy) => {
            let client = client
                .clone()
                .context("TokenReview needs a Kubernetes client")?;
            WriteAuth::TokenReview(Arc::new(TokenReviewer::new(client, policy.clone())))
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let (elector_stop_tx, elector_stop_rx) = watch::channel(false);
    let mut elector = None;
    let mut leader_urls = None;

    let (handle, coordinator) = match &options.leader_election {
        None => {
            let state = load_state(&store, options.settings, options.reconfigure).await?;
            let source = open_source(&options.source, &sources, client.clone()).await?;
            let (driver, handle) =
                Driver::new(state, options.settings, options.timing, store, source);
            let stop = stop_rx.clone();
            let task = tokio::spawn(async move {
                driver.run(stop).await;
                Ok(())
            });
            (handle, task)
        }
        Some(lease) => {
            if !matches!(store, Store::ConfigMap(_)) {
                bail!(
                    "--leader-election needs a state store every replica can read: --state configmap:NAME \
                     (a file is local to one pod)"
                );
            }
            let client = client
                .clone()
                .context("leader election needs a Kubernetes client")?;
            info!(
                lease = %format!("{}/{}", lease.namespace, lease.name),
                identity = %lease.identity,
                duration = ?lease.duration,
                "leader election on"
            );
            let (campaign, leadership) = Elector::new(client.clone(), lease.clone());
            let campaign = campaign.advertise(options.advertise_url.clone());
            leader_urls = Some(campaign.leader_urls());
            elector = Some(Task(tokio::spawn(campaign.run(elector_stop_rx))));
            let shown = crate::coordinator::Coordinator::new(
                State::fresh(options.settings).context("creating a fresh state")?,
                options.settings,
                options.timing,
            );
            let (outlets, handle) = Outlets::new(&shown);
            let spec = options.source.clone();
            let sources = sources.clone();
            let replica = Replica {
                store,
                settings: options.settings,
                timing: options.timing,
                reconfigure: options.reconfigure,
                lead: Lead {
                    leadership,
                    identity: lease.identity.clone(),
                },
                open_source: move || {
                    let (spec, client) = (spec.clone(), client.clone());
                    let sources = sources.clone();
                    async move { open_source(&spec, &sources, Some(client)).await }
                },
                resync: options.follower_resync,
            };
            let stop = stop_rx.clone();
            let task = tokio::spawn(async move { replica.run(outlets, stop).await });
            (handle, task)
        }
    };
    // The coordinator ending on its own (a state it cannot use) stops the
    // server too.
    let coordinator = Task(coordinator);

    let mut app_state = AppState::new(
        handle,
        write_auth,
        options.reads_need_token,
        options.limits,
        stop_rx.clone(),
    );
    if let Some(urls) = leader_urls {
        app_state = app_state.with_leader_url(urls);
    }
    let mut directory_task = None;
    if options.leader_election.is_some() {
        let (tx, rx) = watch::channel(Arc::new(api::Directory::default()));
        let source = open_source(&options.source, &sources, client.clone()).await?;
        directory_task = Some(Task(tokio::spawn(follow_directory(source, tx))));
        app_state = app_state.with_directory(rx);
    }
    let app = api::router(app_state);
    let address = listener
        .local_addr()
        .context("reading the listening address")?;
    info!(%address, "serving the API: GET /v1/ring, /v1/plan, /v1/lookup?key=K, /openapi.json");
    let stop = {
        let stop_tx = stop_tx.clone();
        let mut stopped = stop_rx.clone();
        async move {
            tokio::select! {
                () = shutdown => info!("shutting down"),
                _ = stopped.wait_for(|s| *s) => {}
            }
            let _ = stop_tx.send(true);
        }
    };
    let serve = crate::http::serve(listener, app, options.connections, stop);
    let mut coordinator = coordinator;
    let outcome = tokio::select! {
        served = serve => {
            served.context("serving HTTP")?;
            (&mut coordinator.0).await
        }
        ended = &mut coordinator.0 => {
            // Ended by itself (a state it cannot use): stop serving too.
            let _ = stop_tx.send(true);
            ended
        }
    };
    drop(directory_task);
    let result = outcome.context("the coordinator task failed")?;
    // Release the Lease only after the last save.
    let _ = elector_stop_tx.send(true);
    if let Some(mut elector) = elector {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut elector.0).await;
    }
    result
}

/// Keeps the members' addresses from this replica's own membership source,
/// so that a follower (whose state comes from the store, without addresses)
/// serves complete member data.
async fn follow_directory(
    mut source: MembershipStream,
    directory: watch::Sender<Arc<api::Directory>>,
) {
    use futures::StreamExt as _;
    let mut version = 0;
    while let Some(event) = source.next().await {
        if let ringleader_watch::SourceEvent::Members(members) = event {
            version += 1;
            let addresses = members
                .iter()
                .map(|m| (m.id.as_str().to_owned(), m.addresses.clone()))
                .collect();
            directory.send_replace(Arc::new(api::Directory { version, addresses }));
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

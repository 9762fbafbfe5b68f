//! `ringleader serve`: wires source → coordinator → store → API and runs
//! them until shutdown.

use crate::api::{self, AppState, Limits, WriteAuth};
use crate::runtime::{Driver, SourceSpec, StoreSpec, load_state};
use crate::settings::{RingSettings, Timing};
use crate::state::FileStore;
use anyhow::Context as _;
use ringleader_watch::{FileSource, KubernetesSource, MembershipStream};
use std::future::Future;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

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
    pub write_auth: WriteAuth,
    /// Whether reads need the token too.
    pub reads_need_token: bool,
    /// Request limits.
    pub limits: Limits,
}

async fn open_source(spec: &SourceSpec) -> anyhow::Result<MembershipStream> {
    Ok(match spec {
        SourceSpec::File(path) => {
            info!(path = %path.display(), "membership from a file of EndpointSlices");
            FileSource::new(path.clone()).stream()
        }
        SourceSpec::Kubernetes { namespace, service } => {
            info!(%namespace, %service, "membership from the Service's EndpointSlices");
            let client = kube::Client::try_default().await.context(
                "connecting to Kubernetes (in a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config)",
            )?;
            KubernetesSource::new(namespace.clone(), service.clone()).stream(client)
        }
    })
}

/// Runs the coordinator and its API on `listener` until `shutdown`
/// completes, then stops both cleanly (state saved, watch streams closed).
pub async fn run(
    options: ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let StoreSpec::File(path) = &options.store;
    let store = FileStore::new(path.clone());
    let state = load_state(&store, options.settings, options.reconfigure)?;
    let source = open_source(&options.source).await?;
    let (driver, handle) = Driver::new(state, options.settings, options.timing, store, source);
    let (stop_tx, stop_rx) = watch::channel(false);
    let coordinator = tokio::spawn(driver.run(stop_rx.clone()));
    let app = api::router(AppState::new(
        handle,
        options.write_auth.clone(),
        options.reads_need_token,
        options.limits,
        stop_rx,
    ));
    let address = listener
        .local_addr()
        .context("reading the listening address")?;
    info!(%address, "serving the API: GET /v1/ring, /v1/plan, /v1/lookup?key=K, /openapi.json");
    let stop = async move {
        shutdown.await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .context("serving HTTP")?;
    coordinator.await.context("the coordinator task failed")?;
    Ok(())
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

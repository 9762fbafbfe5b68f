//! Test support: the member fixtures and the running coordinator (a real
//! [`Driver`] fed over a channel, storing to a temporary file) that the unit
//! tests, the integration tests in `tests/` and the fuzz targets share.
//!
//! Compiled for the crate's own tests and with the `test-support` feature
//! (which the crate's dev-dependency on itself and the fuzz workspace turn
//! on); never part of the binary.

use crate::api::{AppState, Limits, WriteAuth, router};
use crate::http::ConnLimits;
use crate::runtime::{Driver, Handle};
use crate::settings::{RingSettings, Timing};
use crate::state::{FileStore, State};
use crate::view::View;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use futures::StreamExt;
use ringleader_watch::{Member, MemberId, MemberSet, MembershipStream, SourceEvent, SourceHealth};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

/// How long [`Running::wait_for`] waits before it fails the test.
pub const WAIT: Duration = Duration::from_secs(20);

/// The `i`th pod of the StatefulSet `db`: `db-{i}` at `10.0.0.{i+1}`, in
/// zone `a`, `b` or `c` by turns, ready and serving.
pub fn member(i: usize) -> Member {
    Member {
        zone: Some(["a", "b", "c"][i % 3].to_owned()),
        addresses: vec![format!("10.0.0.{}", i + 1)],
        ..pod(&format!("db-{i}"), true)
    }
}

/// `db-0` … `db-{n-1}` as [`member`] makes them.
pub fn members(n: usize) -> MemberSet {
    (0..n).map(member).collect()
}

/// A member named `id` without a zone; `ready` and serving alike.
pub fn pod(id: &str, ready: bool) -> Member {
    Member {
        id: MemberId::new(id),
        addresses: vec![format!("10.0.0.{}", id.len())],
        zone: None,
        node_name: None,
        ports: Vec::new(),
        ready,
        serving: ready,
        terminating: false,
        weight: Some(1),
    }
}

/// `db-0` … `db-{n-1}` as [`pod`] makes them, all ready.
pub fn pods(n: usize) -> MemberSet {
    (0..n).map(|i| pod(&format!("db-{i}"), true)).collect()
}

/// A membership source the test feeds by hand.
pub fn channel_source() -> (mpsc::UnboundedSender<SourceEvent>, MembershipStream) {
    let (tx, rx) = mpsc::unbounded_channel::<SourceEvent>();
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
            .boxed();
    (tx, stream)
}

/// Timing without settling; members down for `down_grace` leave.
pub fn no_settle(down_grace: Duration) -> Timing {
    Timing {
        settle: Duration::ZERO,
        settle_max: Duration::ZERO,
        down_grace,
    }
}

/// A coordinator at work, as `ringleader serve` runs it without leader
/// election: a [`Driver`] task over a channel source and a file store in a
/// temporary directory. Dropping it stops the driver.
pub struct Running {
    /// What the API reads and commands through.
    pub handle: Handle,
    /// Feeds the driver member sets and source health.
    pub source: mpsc::UnboundedSender<SourceEvent>,
    /// Turn true to stop the driver (and a server given [`Self::stop_rx`]).
    pub stop: watch::Sender<bool>,
    /// What the API's shutdown watches.
    pub stop_rx: watch::Receiver<bool>,
    /// Holds the state file.
    pub dir: tempfile::TempDir,
    /// The driver's task.
    task: Option<tokio::task::JoinHandle<()>>,
    settings: RingSettings,
    timing: Timing,
}

impl Running {
    /// Starts the driver with a fresh state, reports the source synced with
    /// `first` and returns once `first` is committed (epoch 1).
    ///
    /// Panics when the settings are invalid or nothing commits within
    /// [`WAIT`]: it is a test fixture.
    pub async fn start(settings: RingSettings, timing: Timing, first: MemberSet) -> Self {
        let running = Self::idle(settings, timing);
        running.send(SourceEvent::Health(SourceHealth::Synced));
        running.send(SourceEvent::Members(first));
        running
            .wait_for("the first members to commit", |v| v.epoch >= 1)
            .await;
        running
    }

    /// Starts the driver with a fresh state and an unsynced source that has
    /// sent nothing yet. Must be called within a tokio runtime.
    pub fn idle(settings: RingSettings, timing: Timing) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let state = State::fresh(settings).expect("valid settings");
        Self::on(dir, state, settings, timing)
    }

    /// Stops the driver and starts a new one over what it stored, as a
    /// restarted process would; its source is new and has sent nothing.
    pub async fn restart(mut self) -> Self {
        let (settings, timing) = (self.settings, self.timing);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let dir = std::mem::replace(&mut self.dir, dir);
        self.shut_down().await;
        let state = FileStore::new(dir.path().join("state.json"))
            .load()
            .expect("the stored state reads back")
            .expect("a stored state");
        Self::on(dir, state, settings, timing)
    }

    fn on(dir: tempfile::TempDir, state: State, settings: RingSettings, timing: Timing) -> Self {
        let (source, stream) = channel_source();
        let (driver, handle) = Driver::new(
            state,
            settings,
            timing,
            FileStore::new(dir.path().join("state.json")),
            stream,
        );
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(driver.run(stop_rx.clone()));
        Self {
            handle,
            source,
            stop,
            stop_rx,
            dir,
            task: Some(task),
            settings,
            timing,
        }
    }

    /// Stops the driver and waits until it has (it stores what it has).
    pub async fn shut_down(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.await.expect("the driver ends without a panic");
        }
    }

    /// Sends the driver `event`.
    pub fn send(&self, event: SourceEvent) {
        self.source.send(event).expect("the driver is running");
    }

    /// The API router over this coordinator.
    pub fn app(&self, auth: WriteAuth, reads_need_token: bool, limits: Limits) -> axum::Router {
        router(AppState::new(
            self.handle.clone(),
            auth,
            reads_need_token,
            limits,
            self.stop_rx.clone(),
        ))
    }

    /// Serves `app` on an ephemeral port of 127.0.0.1 with the binary's
    /// connection handling, until [`Self::stop`] turns true.
    pub async fn serve(
        &self,
        app: axum::Router,
        limits: ConnLimits,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound address");
        let mut stopped = self.stop_rx.clone();
        let served = tokio::spawn(async move {
            let _ = crate::http::serve(listener, app, limits, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
        });
        (addr, served)
    }

    /// Waits (at most [`WAIT`]) for a view that passes `done`, and returns it.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&View) -> bool) -> Arc<View> {
        wait_for(&self.handle, what, done).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One request through `app` in process (`tower::ServiceExt::oneshot`, no
/// sockets): the status, headers and whole body.
pub async fn call(app: &axum::Router, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    (status, headers, body.to_vec())
}

/// Waits (at most [`WAIT`]) for a view of `handle` that passes `done`.
pub async fn wait_for(handle: &Handle, what: &str, done: impl Fn(&View) -> bool) -> Arc<View> {
    let mut views = handle.view.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = views.borrow_and_update().clone();
        if done(&view) {
            return view;
        }
        let changed = tokio::time::timeout_at(deadline, views.changed()).await;
        assert!(
            matches!(changed, Ok(Ok(()))),
            "timed out waiting for {what}"
        );
    }
}

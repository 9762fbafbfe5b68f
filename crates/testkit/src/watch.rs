//! WATCH: a chunked body of newline-delimited JSON events.
//!
//! Each watch runs as its own task writing lines into a channel that is the
//! response body. It replays retained history after the requested
//! resourceVersion, then follows live writes; it sends BOOKMARKs when asked,
//! ends at `timeoutSeconds`, and obeys the fault plan (close, stall,
//! truncate). A resourceVersion older than the retained history gets an
//! `ERROR` event with a 410 `Expired` Status; one newer than the server
//! knows gets, after a short wait, an `ERROR` event with a 504 "Too large
//! resource version" Status — both as the real API server's watch cache does.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::shared::Shared;
use crate::status::ApiStatus;
use crate::store::{EventType, Filter, KindId, Since};

/// Where a watch starts.
#[derive(Clone, Debug)]
pub(crate) enum WatchStart {
    /// Synthetic ADDED events for the current objects first (resourceVersion
    /// unset or `0`, or a streaming list), then live events. A streaming
    /// list ends its initial events with an annotated BOOKMARK.
    InitialEvents {
        end_bookmark: bool,
        not_older_than: Option<u64>,
    },
    /// Live events only (`sendInitialEvents=false`).
    FromCurrent { not_older_than: Option<u64> },
    /// Every retained event after this resourceVersion, then live events.
    From(u64),
}

/// A parsed watch request.
#[derive(Clone, Debug)]
pub(crate) struct WatchRequest {
    pub(crate) kind: KindId,
    pub(crate) filter: Filter,
    pub(crate) start: WatchStart,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Duration,
}

type Chunk = Result<Bytes, io::Error>;

/// Starts the watch task and returns the streaming response.
pub(crate) fn watch_response(shared: Arc<Shared>, request: WatchRequest) -> Response {
    let (tx, rx) = mpsc::channel::<Chunk>(64);
    tokio::spawn(run_watch(shared, request, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Waits (up to the configured time) until the server has reached `rv`.
pub(crate) async fn wait_for_resource_version(shared: &Shared, rv: u64) -> bool {
    let mut control = shared.control.subscribe();
    let deadline = Instant::now() + shared.settings.too_large_wait;
    loop {
        if shared.store().resource_version() >= rv {
            return true;
        }
        tokio::select! {
            changed = control.changed() => if changed.is_err() { return false },
            () = sleep_until(deadline) => return shared.store().resource_version() >= rv,
        }
    }
}

/// The writing end of a watch body.
struct Output {
    tx: mpsc::Sender<Chunk>,
    /// Cut the next line in half and abort the body.
    truncate: bool,
}

impl Output {
    /// Sends one event line; false when the watch must end.
    async fn send(&mut self, event: &Value) -> bool {
        let mut line = event.to_string().into_bytes();
        line.push(b'\n');
        if self.truncate {
            let half = line.len() / 2;
            line.truncate(half);
            let _ = self.tx.send(Ok(Bytes::from(line))).await;
            let _ = self
                .tx
                .send(Err(io::Error::other(
                    "watch body truncated by the test server",
                )))
                .await;
            return false;
        }
        self.tx.send(Ok(Bytes::from(line))).await.is_ok()
    }
}

fn event(event_type: &str, object: Value) -> Value {
    json!({"type": event_type, "object": object})
}

fn error_event(status: &ApiStatus) -> Value {
    event("ERROR", status.to_json())
}

fn bookmark(kind: &crate::ResourceKind, rv: u64, initial_events_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event(
        "BOOKMARK",
        json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": metadata}),
    )
}

async fn run_watch(shared: Arc<Shared>, request: WatchRequest, tx: mpsc::Sender<Chunk>) {
    let _open = shared.watch_opened();
    let mut control = shared.control.subscribe();
    let generation = control.borrow_and_update().close_generation;
    let mut out = Output {
        tx,
        truncate: shared.take_truncate(),
    };
    let kind = shared.kind(request.kind);
    let deadline = Instant::now() + request.timeout;

    let not_older_than = match request.start {
        WatchStart::From(rv) => Some(rv),
        WatchStart::InitialEvents { not_older_than, .. }
        | WatchStart::FromCurrent { not_older_than } => not_older_than,
    };
    if let Some(rv) = not_older_than
        && !wait_for_resource_version(&shared, rv).await
    {
        let current = shared.store().resource_version();
        let status = ApiStatus::too_large_resource_version(rv, current);
        out.send(&error_event(&status)).await;
        return;
    }

    let mut cursor = match request.start {
        WatchStart::From(rv) => rv,
        WatchStart::FromCurrent { .. } => shared.store().resource_version(),
        WatchStart::InitialEvents { end_bookmark, .. } => {
            let (objects, rv) = {
                let store = shared.store();
                let objects = store.snapshot(request.kind, &request.filter, None);
                (objects, store.resource_version())
            };
            let objects = match objects {
                Ok(objects) => objects,
                Err(status) => {
                    out.send(&error_event(&status)).await;
                    return;
                }
            };
            for (_, object) in objects {
                if !out.send(&event("ADDED", object)).await {
                    return;
                }
            }
            if end_bookmark && !out.send(&bookmark(&kind, rv, true)).await {
                return;
            }
            rv
        }
    };

    let interval = shared.settings.bookmark_interval;
    let mut next_bookmark = Instant::now() + interval;
    loop {
        let (stall_until, closed) = {
            let c = control.borrow_and_update();
            (
                c.stall_until,
                c.shutting_down || c.close_generation != generation,
            )
        };
        if closed {
            return;
        }
        if let Some(until) = stall_until.filter(|until| Instant::now() < *until) {
            // A wedged stream: nothing is sent, the connection stays open,
            // and not even timeoutSeconds ends it.
            tokio::select! {
                () = sleep_until(until) => {}
                changed = control.changed() => if changed.is_err() { return },
                () = out.tx.closed() => return,
            }
            continue;
        }
        if Instant::now() >= deadline {
            return;
        }

        let (lines, expired) = {
            let store = shared.store();
            match store.since(cursor) {
                Since::Expired { compacted } => (Vec::new(), Some(compacted)),
                Since::Events(events) => {
                    let lines = events
                        .into_iter()
                        .filter(|e| e.key.kind == request.kind)
                        .filter_map(|e| {
                            let now = request.filter.matches(&e.key, &e.object);
                            let before = e
                                .previous
                                .as_ref()
                                .is_some_and(|p| request.filter.matches(&e.key, p));
                            // An object whose labels move it into or out of
                            // the selection is ADDED or DELETED for this watch.
                            let event_type = match (e.event_type, before, now) {
                                (EventType::Deleted, true, _) => "DELETED",
                                (EventType::Deleted, false, _) => return None,
                                (_, false, true) => "ADDED",
                                (_, true, false) => "DELETED",
                                (_, true, true) => e.event_type.as_str(),
                                (_, false, false) => return None,
                            };
                            Some(event(event_type, e.object.clone()))
                        })
                        .collect::<Vec<_>>();
                    cursor = store.resource_version();
                    (lines, None)
                }
            }
        };
        for line in &lines {
            if !out.send(line).await {
                return;
            }
        }
        if let Some(compacted) = expired {
            let status =
                ApiStatus::expired(format!("too old resource version: {cursor} ({compacted})"));
            out.send(&error_event(&status)).await;
            return;
        }
        if request.bookmarks && Instant::now() >= next_bookmark {
            if !out.send(&bookmark(&kind, cursor, false)).await {
                return;
            }
            next_bookmark = Instant::now() + interval;
        }

        tokio::select! {
            changed = control.changed() => if changed.is_err() { return },
            () = sleep_until(deadline) => {}
            () = sleep_until(next_bookmark), if request.bookmarks => {}
            () = out.tx.closed() => return,
        }
    }
}

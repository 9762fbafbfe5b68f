//! `GET /v1/watch`: Server-Sent Events for every new epoch and plan change.
//!
//! Each event's id is `epoch.revision`; `members` events (member states
//! changed, no new epoch or plan) carry none. A new subscriber first gets a
//! `state` event with the current epoch and plan, unless its `Last-Event-ID`
//! is already the current one (a resume that missed nothing); then every
//! change as it happens. A subscriber too slow to keep up skips ahead to a
//! fresh `state` event rather than holding memory. Subscribers are limited;
//! beyond the limit the answer is 503.

use super::AppState;
use super::error::ApiError;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use ringleader_client::api::WatchEvent;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

fn state_event(state: &AppState) -> (String, WatchEvent) {
    let view = state.handle.view.borrow().clone();
    (
        view.event_id(),
        WatchEvent {
            kind: "state".into(),
            epoch: view.epoch,
            revision: view.revision,
            plan: view.plan_view().cloned(),
            ready: Vec::new(),
        },
    )
}

fn to_sse((id, event): (String, WatchEvent)) -> Result<Event, Infallible> {
    let kind = event.kind.clone();
    // `members` events carry no id: they change nothing a resume needs.
    let event_with_id = if id.is_empty() {
        Event::default()
    } else {
        Event::default().id(id)
    };
    Ok(event_with_id
        .event(kind)
        .json_data(event)
        .unwrap_or_else(|_| Event::default().comment("unencodable event")))
}

/// `GET /v1/watch`.
#[utoipa::path(get, path = "/v1/watch",
    params(("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")),
    responses((status = 200, description = "text/event-stream of WatchEvent", content_type = "text/event-stream", body = ringleader_client::api::WatchEvent),
        (status = 503, body = ringleader_client::api::ErrorResponse)))]
pub async fn watch(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    super::handlers::check_read(&state, &headers).await?;
    let permit = state.watchers.clone().try_acquire_owned().map_err(|_| {
        state.handle.metrics.overload_rejections.inc();
        ApiError::unavailable(
            "too many watch subscribers; retry later or poll GET /v1/plan with If-None-Match",
        )
    })?;
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Subscribe before reading the current state, so nothing falls between.
    let receiver = state.handle.events.subscribe();
    let first = state_event(&state);
    let initial = (last_seen.as_deref() != Some(first.0.as_str())).then_some(first);
    let for_lag = state.clone();
    let live = stream::unfold(
        (receiver, for_lag, permit),
        |(mut rx, st, permit)| async move {
            match rx.recv().await {
                Ok(item) => Some((item, (rx, st, permit))),
                Err(RecvError::Lagged(_)) => {
                    let fresh = state_event(&st);
                    Some((fresh, (rx, st, permit)))
                }
                Err(RecvError::Closed) => None,
            }
        },
    );
    let mut shutdown = state.shutdown.clone();
    let stopped = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    let events = stream::iter(initial)
        .chain(live)
        .map(to_sse)
        .take_until(Box::pin(stopped));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

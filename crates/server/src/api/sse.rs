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

/// `(epoch, revision)` of an event id (`epoch.revision`); `None` for the
/// `members` events' empty id.
fn position(id: &str) -> Option<(u64, u64)> {
    let (epoch, revision) = id.split_once('.')?;
    Some((epoch.parse().ok()?, revision.parse().ok()?))
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
    // A view is shown before its event is sent (runtime::outlets), so the
    // state read here may already be one a live event announces: events
    // of that position or before it say nothing new, and are left out.
    let shown = position(&first.0);
    let initial = (last_seen.as_deref() != Some(first.0.as_str())).then_some(first);
    let for_lag = state.clone();
    let live = stream::unfold(
        (receiver, for_lag, permit),
        move |(mut rx, st, permit)| async move {
            loop {
                match rx.recv().await {
                    Ok(item) if position(&item.0).is_some_and(|p| Some(p) <= shown) => {}
                    Ok(item) => return Some((item, (rx, st, permit))),
                    Err(RecvError::Lagged(_)) => {
                        let fresh = state_event(&st);
                        return Some((fresh, (rx, st, permit)));
                    }
                    Err(RecvError::Closed) => return None,
                }
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

#[cfg(test)]
mod tests {
    use super::position;

    #[test]
    fn event_ids_order_by_epoch_then_revision() {
        assert_eq!(position("12.3"), Some((12, 3)));
        assert_eq!(position(""), None);
        assert_eq!(position("x.1"), None);
        assert!(position("9.10") < position("10.0"));
        assert!(position("10.2") < position("10.10"));
    }
}

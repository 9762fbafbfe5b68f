//! `GET /v1/status`: one screen for operators (`ringleader status`, the
//! page at `/`), like `nodetool status`.
//!
//! What `GET /v1/ring` and `GET /v1/plan` don't say: the endpoints the
//! source sees that the ring doesn't have and why, how long a down member's
//! grace and the settle window have left, how old the plan is. Those
//! figures move with the clock, so this answer carries no ETag: it is read
//! when something changed (the watch stream says when) or when asked.

use super::AppState;
use super::error::{ApiError, ApiJson};
use crate::plan_times::{rfc3339, unix_ms};
use crate::view::View;
use axum::extract::State;
use axum::http::HeaderMap;
use ringleader_client::api::{
    OutsideEndpoint, OutsideReason, StatusMember, StatusPlan, StatusResponse,
};
use ringleader_planner::MoveState;
use std::time::{Instant, SystemTime};

/// `GET /v1/status`.
#[utoipa::path(get, path = "/v1/status",
    responses((status = 200, body = StatusResponse),
        (status = 401, body = ringleader_client::api::ErrorResponse)))]
pub async fn get_status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<ApiJson<StatusResponse>, ApiError> {
    super::handlers::check_read(&state, &headers).await?;
    let view = state.handle.view.borrow().clone();
    let directory = state.directory.as_ref().map(|d| d.borrow().clone());
    Ok(ApiJson(status(
        &view,
        directory.as_deref(),
        Instant::now(),
        SystemTime::now(),
    )))
}

/// The status of a view at `now` (`wall` on the wall clock). On a follower,
/// members' addresses come from `directory` (its own membership watch), as
/// in `GET /v1/ring`.
pub fn status(
    view: &View,
    directory: Option<&super::Directory>,
    now: Instant,
    wall: SystemTime,
) -> StatusResponse {
    let left = |deadline: Instant| deadline.saturating_duration_since(now).as_secs_f64();
    let planned_in_seconds = view.settle_ends.map(left);
    let now_ms = unix_ms(wall);
    let since = |ms: Option<u64>| ms.map(|ms| now_ms.saturating_sub(ms) as f64 / 1000.0);
    let members = super::handlers::member_views(view, directory)
        .into_iter()
        .map(|member| {
            let grace_left_seconds = view
                .grace_ends
                .get(member.id.as_str())
                .map(|&(ends, _)| left(ends));
            StatusMember {
                member,
                grace_left_seconds,
            }
        })
        .collect();
    let outside = view
        .outside
        .iter()
        .map(|o| OutsideEndpoint {
            id: o.id.to_string(),
            reason: o.reason,
            zone: o.zone.clone(),
            addresses: o.addresses.clone(),
            planned_in_seconds: if o.reason == OutsideReason::Settling {
                planned_in_seconds
            } else {
                None
            },
        })
        .collect();
    let plan = view.plan.as_deref().map(|record| {
        let summary = crate::view::summary_view(&record.plan);
        StatusPlan {
            id: record.id.clone(),
            from_epoch: record.from_epoch,
            to_epoch: record.to_epoch,
            state: record.state.as_str().to_owned(),
            done: record
                .plan
                .moves
                .iter()
                .filter(|m| m.state == MoveState::Done)
                .count(),
            summary,
            created_at: record.times.created_ms.map(rfc3339),
            changed_at: record.times.changed_ms.map(rfc3339),
            age_seconds: since(record.times.created_ms),
            idle_seconds: since(record.times.changed_ms),
        }
    });
    StatusResponse {
        epoch: view.epoch,
        settings: view.settings_view(),
        balance: view.figures.balance,
        members,
        outside,
        plan,
        planned_in_seconds,
        source: view.source.state,
        // A synced source's standing warning (a malformed weights
        // annotation) shows where a failing source's error would.
        source_detail: view
            .source
            .detail
            .clone()
            .or_else(|| view.source.warning.clone()),
        leader: view.leader.clone(),
        now: rfc3339(now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::Coordinator;
    use crate::settings::{RingSettings, Timing};
    use crate::state::State;
    use crate::view::SourceStatus;
    use ringleader_ring::{MemberSpec, Ring};

    /// Regression (issue 12): `/v1/status` on a follower showed members
    /// without addresses, while `/v1/ring` filled them in.
    #[test]
    fn a_follower_shows_members_addresses_from_its_directory() {
        let settings = RingSettings::default();
        let mut state = State::fresh(settings).unwrap();
        state.committed =
            Ring::with_members(settings.ring_config(), ["a", "b"].map(MemberSpec::new)).unwrap();
        state.epoch = 1;
        let coordinator = Coordinator::new(state, settings, Timing::default());
        let mut view = View::build(&coordinator, None, SourceStatus::default(), true, None);
        view.follower = true;
        let directory = super::super::Directory {
            version: 1,
            addresses: [("a".to_owned(), vec!["10.0.0.1".to_owned()])]
                .into_iter()
                .collect(),
        };
        let shown = status(&view, Some(&directory), Instant::now(), SystemTime::now());
        let addresses: Vec<(String, Vec<String>)> = shown
            .members
            .iter()
            .map(|m| (m.member.id.clone(), m.member.addresses.clone()))
            .collect();
        assert_eq!(
            addresses,
            [
                ("a".to_owned(), vec!["10.0.0.1".to_owned()]),
                ("b".to_owned(), Vec::new())
            ]
        );
        // The same as `/v1/ring` shows.
        let ring: Vec<Vec<String>> = crate::api::handlers::member_views(&view, Some(&directory))
            .into_iter()
            .map(|m| m.addresses)
            .collect();
        assert_eq!(
            ring,
            shown
                .members
                .iter()
                .map(|m| m.member.addresses.clone())
                .collect::<Vec<_>>()
        );
    }
}

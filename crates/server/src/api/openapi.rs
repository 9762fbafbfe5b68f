//! `GET /openapi.json`: the API described as OpenAPI 3, generated from the
//! handlers' annotations and the wire types (never written by hand).

use super::handlers;
use super::sse;
use super::status;
use axum::Json;
use ringleader_client::api;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "ringleader", description = "Consistent-hash ring coordinator for stateful services on Kubernetes."),
    paths(
        handlers::get_ring,
        handlers::get_lookup,
        handlers::post_lookup,
        handlers::get_member_ranges,
        handlers::get_member_work,
        handlers::get_plan,
        handlers::post_move_done,
        handlers::post_preview,
        sse::watch,
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        openapi_json,
        status::get_status,
    ),
    components(schemas(
        api::RingResponse, api::SettingsView, api::MemberView, api::MemberState, api::SourceState, api::TokenView,
        api::CompactTokens, super::ring_body::TokenForm,
        api::LookupResponse, api::LookupBatchRequest, api::LookupBatchResponse, api::RangeView,
        api::MemberRangesResponse, api::WorkResponse, api::WorkMove, api::ProgressView, api::PlanResponse, api::PlanView, api::MoveView, api::SummaryView,
        api::FlowView, api::CleanupView, api::MoveDoneResponse, api::PreviewRequest, api::PreviewMember,
        api::PreviewResponse, api::HealthResponse, api::ErrorResponse, api::ErrorDetail, api::WatchEvent,
        api::StatusResponse, api::StatusMember, api::StatusPlan, api::OutsideEndpoint, api::OutsideReason,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "the OpenAPI 3 document of this API", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

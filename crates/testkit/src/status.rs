//! `Status` errors, shaped as the real API server sends them.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

use crate::ResourceKind;

/// An API failure: the HTTP code, the `reason` and a message, sent as a
/// `Status` object (`{"kind":"Status","apiVersion":"v1","status":"Failure",…}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiStatus {
    /// HTTP status code, also the `code` field.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, `Expired`, …).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// `details` as the server fills them (name, group, kind, causes).
    pub details: Option<Value>,
}

impl ApiStatus {
    /// A failure with the reason the API server uses for `code`.
    pub fn from_code(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason_for(code).to_owned(),
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn with_reason(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::from_code(400, message)
    }

    pub(crate) fn not_found(kind: &ResourceKind, name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "group": kind.group, "kind": kind.plural})),
            ..Self::from_code(
                404,
                format!("{} \"{name}\" not found", kind.qualified_name()),
            )
        }
    }

    pub(crate) fn already_exists(kind: &ResourceKind, name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "group": kind.group, "kind": kind.plural})),
            ..Self::with_reason(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", kind.qualified_name()),
            )
        }
    }

    pub(crate) fn conflict(kind: &ResourceKind, name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "group": kind.group, "kind": kind.plural})),
            ..Self::with_reason(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                     please apply your changes to the latest version and try again",
                    kind.qualified_name()
                ),
            )
        }
    }

    /// The 410 the server sends when a resourceVersion is older than the
    /// retained history.
    pub(crate) fn expired(message: impl Into<String>) -> Self {
        Self::with_reason(410, "Expired", message)
    }

    /// The 504 the server sends when a resourceVersion is newer than it knows.
    pub(crate) fn too_large_resource_version(requested: u64, current: u64) -> Self {
        Self {
            details: Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1
            })),
            ..Self::with_reason(
                504,
                "Timeout",
                format!("Too large resource version: {requested}, current: {current}"),
            )
        }
    }

    /// The `Status` object as JSON.
    pub fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(details), Some(map)) = (&self.details, status.as_object_mut()) {
            map.insert("details".to_owned(), details.clone());
        }
        status
    }
}

impl std::fmt::Display for ApiStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl IntoResponse for ApiStatus {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, axum::Json(self.to_json())).into_response();
        if self.code == 429 || self.code == 503 {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The `reason` the real API server pairs with an HTTP code.
pub(crate) fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

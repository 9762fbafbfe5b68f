//! The client's error type.

use crate::api::ErrorResponse;
use ringleader_ring::RingError;

/// Everything that can go wrong talking to the coordinator or building a
/// local ring from what it serves.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The base URL given to [`Client::new`](crate::Client::new) is not an
    /// absolute `http://` or `https://` URL.
    #[error("invalid coordinator URL {url:?}: {reason} (expected e.g. http://127.0.0.1:8080)")]
    BadUrl {
        /// What was given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The request could not be sent or its response not read: connection
    /// refused, reset, timed out.
    #[error("request to {url} failed: {source}; is the coordinator running and reachable?")]
    Http {
        /// The URL asked.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The coordinator answered with a non-2xx status. `code` and `message`
    /// come from its `{"error": {"code", "message"}}` body; when the body is
    /// not of that shape, `code` is the status' reason and `message` the raw
    /// body.
    #[error("the coordinator answered {status} ({code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable code, e.g. `not_found`.
        code: String,
        /// What happened, as the coordinator says it.
        message: String,
    },
    /// A 2xx response whose body is not the expected JSON.
    #[error("the response of {url} is not the expected JSON: {source}")]
    Decode {
        /// The URL asked.
        url: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An event of the watch stream whose data is not a
    /// [`WatchEvent`](crate::api::WatchEvent).
    #[error("the watch stream sent a malformed event (id {id:?}): {source}")]
    BadEvent {
        /// The event's id.
        id: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The ring served by the coordinator cannot be rebuilt locally: a token
    /// that is not a decimal `u64`, an unknown strategy, no tokens.
    #[error("the coordinator's ring (epoch {epoch}) cannot be used locally: {reason}")]
    BadRing {
        /// The ring's epoch.
        epoch: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The served tokens break an invariant of the ring.
    #[error("the coordinator's ring (epoch {epoch}) is invalid: {source}")]
    Ring {
        /// The ring's epoch.
        epoch: u64,
        /// The ring's complaint.
        #[source]
        source: RingError,
    },
    /// A lookup on the local ring failed (empty ring, unknown member, a
    /// replication factor larger than the ring).
    #[error(transparent)]
    Lookup(#[from] RingError),
}

impl Error {
    /// The error for a non-2xx response with body `body`: the API's error
    /// shape when the body has it, else the raw text.
    pub fn from_response(status: reqwest::StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorResponse>(body) {
            Ok(parsed) => Error::Api {
                status: status.as_u16(),
                code: parsed.error.code,
                message: parsed.error.message,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body).trim().to_owned();
                let reason = status
                    .canonical_reason()
                    .unwrap_or("unknown status")
                    .to_ascii_lowercase()
                    .replace(' ', "_");
                Error::Api {
                    status: status.as_u16(),
                    code: reason,
                    message: if text.is_empty() {
                        "(empty body)".to_owned()
                    } else {
                        text
                    },
                }
            }
        }
    }

    /// The HTTP status, when the coordinator answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error code (`not_found`, `bad_request`, …), when the
    /// coordinator answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn api_error_body_is_decoded_into_status_code_and_message() {
        let body = br#"{"error": {"code": "not_found", "message": "no member \"db-9\""}}"#;
        let err = Error::from_response(StatusCode::NOT_FOUND, body);
        assert_eq!(err.status(), Some(404));
        assert_eq!(err.code(), Some("not_found"));
        match &err {
            Error::Api { message, .. } => assert_eq!(message, "no member \"db-9\""),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "the coordinator answered 404 (not_found): no member \"db-9\""
        );
    }

    #[test]
    fn non_json_error_body_falls_back_to_the_raw_text() {
        let err = Error::from_response(StatusCode::BAD_GATEWAY, b"<html>upstream down</html>\n");
        assert_eq!(err.status(), Some(502));
        assert_eq!(err.code(), Some("bad_gateway"));
        assert_eq!(
            err.to_string(),
            "the coordinator answered 502 (bad_gateway): <html>upstream down</html>"
        );
    }

    #[test]
    fn empty_error_body_says_so() {
        let err = Error::from_response(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(
            err.to_string(),
            "the coordinator answered 503 (service_unavailable): (empty body)"
        );
    }

    #[test]
    fn json_of_another_shape_falls_back_to_the_raw_text() {
        let err = Error::from_response(StatusCode::BAD_REQUEST, br#"{"oops": 1}"#);
        assert_eq!(err.code(), Some("bad_request"));
        match err {
            Error::Api { message, .. } => assert_eq!(message, r#"{"oops": 1}"#),
            other => panic!("unexpected {other:?}"),
        }
    }
}

//! Anthropic-shaped errors: `{"type":"error","error":{"type":…,"message":…}}`.
//!
//! Every failure a client can see is one [`ApiError`]: it knows its HTTP status, its Anthropic
//! error type and, for rate limits and outages, a `Retry-After` hint. It renders both as an HTTP
//! response (before any byte of the answer was sent) and as an SSE `error` event (after).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

/// The `error.type` values of the Anthropic API, each with its conventional status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 400: the request is malformed or the upstream rejected it as such.
    InvalidRequestError,
    /// 401: missing or wrong API key, or upstream credentials that could not be refreshed.
    AuthenticationError,
    /// 403: the account may not do this (suspended, quota for a paid feature).
    PermissionError,
    /// 404: unknown path.
    NotFoundError,
    /// 413: body over the configured limit.
    RequestTooLarge,
    /// 429: throttled upstream.
    RateLimitError,
    /// 500 / 502: an upstream failure that is not the client's fault.
    ApiError,
    /// 529 (or 503): no capacity anywhere right now.
    OverloadedError,
}

impl ErrorKind {
    /// The status used when nothing more specific applies.
    pub fn default_status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequestError => StatusCode::BAD_REQUEST,
            ErrorKind::AuthenticationError => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionError => StatusCode::FORBIDDEN,
            ErrorKind::NotFoundError => StatusCode::NOT_FOUND,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimitError => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::ApiError => StatusCode::BAD_GATEWAY,
            ErrorKind::OverloadedError => overloaded_status(),
        }
    }

    /// The wire name, as in `error.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequestError => "invalid_request_error",
            ErrorKind::AuthenticationError => "authentication_error",
            ErrorKind::PermissionError => "permission_error",
            ErrorKind::NotFoundError => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimitError => "rate_limit_error",
            ErrorKind::ApiError => "api_error",
            ErrorKind::OverloadedError => "overloaded_error",
        }
    }
}

/// Anthropic's own "overloaded" status. Claude Code retries it with backoff.
pub fn overloaded_status() -> StatusCode {
    StatusCode::from_u16(529).expect("529 is a valid status code")
}

/// One client-visible error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {message}", kind.as_str())]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorKind,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up) when set.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { status: kind.default_status(), kind, message: message.into(), retry_after: None }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequestError, message)
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The JSON body: `{"type":"error","error":{"type":…,"message":…}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "error",
            "error": { "type": self.kind.as_str(), "message": self.message },
        })
    }

    /// The same error as one SSE event, for failures after the stream started.
    pub fn to_sse(&self) -> String {
        format!("event: error\ndata: {}\n\n", self.body())
    }

    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)).map(|s| s.max(1))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_anthropic_shape() {
        let e = ApiError::invalid_request("messages: field missing");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            serde_json::json!({"type":"error","error":{"type":"invalid_request_error","message":"messages: field missing"}})
        );
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let e = ApiError::new(ErrorKind::RateLimitError, "slow down");
        assert_eq!(e.clone().with_retry_after(Duration::from_millis(1500)).retry_after_secs(), Some(2));
        assert_eq!(e.clone().with_retry_after(Duration::ZERO).retry_after_secs(), Some(1));
        assert_eq!(e.retry_after_secs(), None);
        let resp = ApiError::new(ErrorKind::OverloadedError, "busy")
            .with_retry_after(Duration::from_secs(3))
            .into_response();
        assert_eq!(resp.status().as_u16(), 529);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn sse_event_is_one_event() {
        let e = ApiError::new(ErrorKind::ApiError, "upstream reset");
        let s = e.to_sse();
        assert!(s.starts_with("event: error\ndata: {"));
        assert!(s.ends_with("}\n\n"));
    }
}

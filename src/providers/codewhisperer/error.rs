//! What went wrong upstream, classified once (protocol notes §6): the kinds, the client's
//! error for each, and what each means for the balancer ([`UpstreamError::failure_kind`]).

use super::token::TokenError;
use crate::anthropic::{ApiError, ErrorKind};
use crate::balancer::FailureKind;
use axum::http::StatusCode;
use std::time::Duration;

/// What went wrong talking to the upstream, classified once.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamErrorKind {
    /// Could not connect (refused, DNS, TLS).
    Connect,
    /// No answer or no first event in time, or silence mid-stream.
    Timeout,
    /// 400 "Improperly formed request" and friends: the request's fault. Never retried.
    Validation,
    /// 400 `Input is too long.` / `CONTENT_LENGTH_EXCEEDS_THRESHOLD`. Never retried.
    ContextTooLong,
    /// 400 `INVALID_MODEL_ID`. Never retried.
    InvalidModel,
    /// 429, or a ThrottlingException.
    Throttled { retry_after: Option<Duration> },
    /// `INSUFFICIENT_MODEL_CAPACITY`.
    Capacity,
    /// `MONTHLY_REQUEST_COUNT` and other quota reasons: out until the quota resets.
    QuotaExhausted,
    /// 401/403 that a token refresh did not cure, or no usable token.
    Auth,
    /// 403 account suspended.
    Suspended,
    /// The token refresh was refused (`invalid_grant`, 4xx): the account needs a new login.
    LoginExpired,
    /// 5xx.
    Server(u16),
    /// 413 from the upstream: the request is too large. Never retried.
    TooLarge,
    /// Any other 4xx (404, 409, 422, 431, 451, …): not the request's fault but the account's or
    /// the endpoint's, so the request fails over and the provider is charged with it.
    Rejected(u16),
    /// A corrupt frame, a cut stream, an upstream exception event.
    Protocol,
}

/// An upstream failure with a message safe to show (no tokens).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub kind: UpstreamErrorKind,
    pub message: String,
}

impl UpstreamError {
    pub fn new(kind: UpstreamErrorKind, message: impl Into<String>) -> Self {
        UpstreamError { kind, message: message.into() }
    }

    /// True when the request may move to another provider (before its first byte went out):
    /// everything except the request's own faults.
    pub fn is_provider_fault(&self) -> bool {
        !matches!(
            self.kind,
            UpstreamErrorKind::Validation
                | UpstreamErrorKind::ContextTooLong
                | UpstreamErrorKind::InvalidModel
                | UpstreamErrorKind::TooLarge
        )
    }

    /// How this failure counts against the provider that produced it.
    pub fn failure_kind(&self) -> FailureKind {
        use UpstreamErrorKind as K;
        match &self.kind {
            K::Connect => FailureKind::Connect,
            K::Timeout => FailureKind::Timeout,
            K::Server(code) => FailureKind::Status5xx(*code),
            K::Rejected(code) => FailureKind::Status4xx(*code),
            K::Throttled { retry_after } => FailureKind::RateLimited { retry_after: *retry_after },
            K::Capacity => FailureKind::RateLimited { retry_after: Some(Duration::from_secs(10)) },
            K::QuotaExhausted => FailureKind::QuotaExhausted {
                until: Some(tokio::time::Instant::now() + until_quota_reset(chrono::Utc::now())),
            },
            K::Auth => FailureKind::Auth,
            K::Suspended => FailureKind::Suspended,
            K::LoginExpired => FailureKind::NeedsLogin,
            K::Protocol | K::Validation | K::ContextTooLong | K::InvalidModel | K::TooLarge => {
                FailureKind::Protocol
            }
        }
    }

    /// The error the client sees when no provider could answer.
    pub fn to_api_error(&self) -> ApiError {
        use UpstreamErrorKind as K;
        match &self.kind {
            K::Validation => {
                ApiError::invalid_request(format!("upstream rejected the request: {}", self.message))
            }
            K::ContextTooLong => ApiError::invalid_request(format!(
                "prompt is too long: the conversation exceeds the model's context window ({})",
                self.message
            )),
            K::InvalidModel => {
                ApiError::invalid_request(format!("model not available upstream: {}", self.message))
            }
            K::Throttled { retry_after } => ApiError::new(ErrorKind::RateLimitError, self.message.clone())
                .with_retry_after(retry_after.unwrap_or(Duration::from_secs(5))),
            K::Capacity => ApiError::new(ErrorKind::OverloadedError, self.message.clone())
                .with_retry_after(Duration::from_secs(10)),
            K::QuotaExhausted => ApiError::new(ErrorKind::RateLimitError, self.message.clone())
                .with_retry_after(Duration::from_secs(3600)),
            // Not 401: that tells the client its own API key is wrong (see `server::unserved`).
            K::Auth | K::LoginExpired => ApiError::new(ErrorKind::ApiError, self.message.clone())
                .with_status(StatusCode::SERVICE_UNAVAILABLE),
            K::Suspended => ApiError::new(ErrorKind::PermissionError, self.message.clone()),
            K::TooLarge => ApiError::new(
                ErrorKind::RequestTooLarge,
                format!("upstream refused the request as too large: {}", self.message),
            ),
            K::Connect | K::Server(_) | K::Rejected(_) | K::Protocol => {
                ApiError::new(ErrorKind::ApiError, self.message.clone())
            }
            K::Timeout => ApiError::new(ErrorKind::ApiError, self.message.clone())
                .with_status(StatusCode::GATEWAY_TIMEOUT),
        }
    }

    pub(super) fn from_token(e: &TokenError) -> Self {
        let kind = match e {
            TokenError::Rejected { .. } => UpstreamErrorKind::LoginExpired,
            _ => UpstreamErrorKind::Auth,
        };
        UpstreamError::new(kind, format!("no usable token: {e}"))
    }
}

/// Classify a non-200 upstream answer by status and body (protocol notes §6.1).
pub fn classify_status(status: u16, body: &str, retry_after: Option<Duration>) -> UpstreamError {
    use UpstreamErrorKind as K;
    let reason = error_message(body);
    let has = |needle: &str| body.contains(needle);
    let kind = if has("INSUFFICIENT_MODEL_CAPACITY") {
        K::Capacity
    } else if status == 402
        || has("MONTHLY_REQUEST_COUNT")
        || has("DAILY_REQUEST_COUNT")
        || has("OVERAGE_REQUEST_LIMIT_EXCEEDED")
    {
        K::QuotaExhausted
    } else if has("CONTENT_LENGTH_EXCEEDS_THRESHOLD") || has("Input is too long") {
        K::ContextTooLong
    } else if has("INVALID_MODEL_ID") {
        K::InvalidModel
    } else if status == 429 || has("ThrottlingException") {
        K::Throttled { retry_after }
    } else if (status == 401 || status == 403)
        && (has("temporarily is suspended") || has("TEMPORARILY_SUSPENDED"))
    {
        K::Suspended
    } else if status == 401 || status == 403 {
        K::Auth
    } else if status == 408 {
        K::Timeout
    } else if status >= 500 {
        K::Server(status)
    } else if status == 413 {
        K::TooLarge
    } else if status == 400 {
        K::Validation
    } else {
        K::Rejected(status)
    };
    UpstreamError::new(kind, format!("upstream answered {status}: {reason}"))
}

use crate::usage::until_quota_reset;

/// True for the "bearer token invalid" answer that a refresh can cure.
pub fn is_bearer_invalid(status: u16, body: &str) -> bool {
    (status == 401 || status == 403)
        && (body.contains("bearer token included in the request is invalid")
            || body.contains("access token has expired"))
}

/// The `message` of an upstream error body, shortened; the raw text when it is not JSON.
fn error_message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    let reason = v.get("reason").and_then(|r| r.as_str());
    let mut s: String = message.chars().take(300).collect();
    if let Some(r) = reason {
        s.push_str(&format!(" ({r})"));
    }
    if s.is_empty() { "no body".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_documented_error_bodies() {
        use UpstreamErrorKind as K;
        let cases: &[(u16, &str, UpstreamErrorKind)] = &[
            (400, r#"{"message":"Improperly formed request.","reason":null}"#, K::Validation),
            (
                400,
                r#"{"message":"Input is too long.","reason":"CONTENT_LENGTH_EXCEEDS_THRESHOLD"}"#,
                K::ContextTooLong,
            ),
            (
                400,
                r#"{"__type":"com.amazon.aws.codewhisperer#ThrottlingException","message":"I am experiencing high traffic, please try again shortly.","reason":"INSUFFICIENT_MODEL_CAPACITY"}"#,
                K::Capacity,
            ),
            (
                402,
                r#"{"message":"You have reached the limit.","reason":"MONTHLY_REQUEST_COUNT"}"#,
                K::QuotaExhausted,
            ),
            (400, r#"{"message":"x","reason":"INVALID_MODEL_ID"}"#, K::InvalidModel),
            (413, r#"{"message":"Request entity too large"}"#, K::TooLarge),
            (404, r#"{"message":"not found"}"#, K::Rejected(404)),
            (409, r#"{"message":"conflict"}"#, K::Rejected(409)),
            (422, "", K::Rejected(422)),
            (431, "", K::Rejected(431)),
            (451, "", K::Rejected(451)),
            (429, r#"{"message":"Too many requests"}"#, K::Throttled { retry_after: None }),
            (403, r#"{"message":"The bearer token included in the request is invalid."}"#, K::Auth),
            (403, r#"{"message":"Your account temporarily is suspended"}"#, K::Suspended),
            (
                500,
                r#"{"message":"Encountered unexpectedly high load when processing the request, please try again."}"#,
                K::Server(500),
            ),
            (503, "", K::Server(503)),
        ];
        for (status, body, kind) in cases {
            assert_eq!(&classify_status(*status, body, None).kind, kind, "{status} {body}");
        }
        assert!(is_bearer_invalid(
            403,
            r#"{"message":"The bearer token included in the request is invalid."}"#
        ));
        assert!(!is_bearer_invalid(400, "bearer token included in the request is invalid"));
    }

    #[test]
    fn request_faults_are_not_provider_faults() {
        let v = classify_status(400, r#"{"message":"Improperly formed request.","reason":null}"#, None);
        assert!(!v.is_provider_fault());
        assert_eq!(v.to_api_error().status, StatusCode::BAD_REQUEST);
        let ctx = classify_status(
            400,
            r#"{"message":"Input is too long.","reason":"CONTENT_LENGTH_EXCEEDS_THRESHOLD"}"#,
            None,
        );
        assert!(ctx.to_api_error().message.starts_with("prompt is too long"));
        let t = classify_status(429, "{}", Some(Duration::from_secs(7)));
        assert!(t.is_provider_fault());
        let api = t.to_api_error();
        assert_eq!(api.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(api.retry_after_secs(), Some(7));
    }

    #[test]
    fn quota_resets_on_the_first_of_next_month() {
        use chrono::TimeZone;
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 30, 23, 0, 0).unwrap();
        assert_eq!(until_quota_reset(now), Duration::from_secs(3600));
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap();
        assert_eq!(until_quota_reset(now), Duration::from_secs(24 * 3600));
    }

    #[test]
    fn failures_count_against_the_provider_by_kind() {
        let kind = |k| UpstreamError::new(k, "x").failure_kind();
        assert_eq!(kind(UpstreamErrorKind::Connect), FailureKind::Connect);
        assert_eq!(kind(UpstreamErrorKind::Server(502)), FailureKind::Status5xx(502));
        assert_eq!(
            kind(UpstreamErrorKind::Capacity),
            FailureKind::RateLimited { retry_after: Some(Duration::from_secs(10)) }
        );
        assert_eq!(kind(UpstreamErrorKind::Suspended), FailureKind::Suspended);
        assert_eq!(kind(UpstreamErrorKind::LoginExpired), FailureKind::NeedsLogin);
        assert_eq!(kind(UpstreamErrorKind::Rejected(404)), FailureKind::Status4xx(404));
        assert_eq!(kind(UpstreamErrorKind::Validation), FailureKind::Protocol);
        let FailureKind::QuotaExhausted { until: Some(until) } = kind(UpstreamErrorKind::QuotaExhausted)
        else {
            panic!("a quota failure carries its reset");
        };
        assert!(until > tokio::time::Instant::now());
    }
}

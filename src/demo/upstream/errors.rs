//! Error answers the way the real services send them: AWS REST-JSON errors (`x-amzn-errortype`
//! plus `__type`) for the Q service, OAuth errors for the refresh endpoints.

use super::{BEARER_INVALID_MESSAGE, MALFORMED_MESSAGE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Namespace of the `__type` field of error bodies.
pub(super) const ERROR_TYPE_PREFIX: &str = "com.amazon.aws.codewhisperer#";

/// A JSON error the way AWS REST-JSON services send it: `x-amzn-errortype` header plus `__type`
/// in the body (the protocol notes §6.1: send both, clients rely on status + message).
pub(super) fn aws_error(status: StatusCode, error_type: &str, mut body: Value) -> Response {
    if let Value::Object(map) = &mut body {
        map.insert("__type".to_owned(), Value::String(format!("{ERROR_TYPE_PREFIX}{error_type}")));
    }
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert(HeaderName::from_static("x-amzn-errortype"), value);
    }
    add_request_id(&mut response);
    response
}

pub(super) fn add_request_id(response: &mut Response) {
    if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert(HeaderName::from_static("x-amzn-requestid"), value);
    }
}

pub(super) fn bearer_invalid() -> Response {
    aws_error(StatusCode::FORBIDDEN, "AccessDeniedException", json!({"message": BEARER_INVALID_MESSAGE}))
}

pub(super) fn malformed() -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        json!({"message": MALFORMED_MESSAGE, "reason": null}),
    )
}

pub(super) fn invalid_model() -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        json!({"message": "Invalid model. Please select a different model to continue.", "reason": "INVALID_MODEL_ID"}),
    )
}

pub(super) fn too_long() -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        json!({"message": "Input is too long.", "reason": "CONTENT_LENGTH_EXCEEDS_THRESHOLD"}),
    )
}

pub(super) fn quota_exhausted() -> Response {
    aws_error(
        StatusCode::PAYMENT_REQUIRED,
        "ThrottlingException",
        json!({"message": "You have reached the limit.", "reason": "MONTHLY_REQUEST_COUNT"}),
    )
}

pub(super) fn suspended() -> Response {
    aws_error(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        json!({"message": crate::demo::account::SUSPENDED_MESSAGE, "reason": "TEMPORARILY_SUSPENDED"}),
    )
}

pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response =
        (status, axum::Json(json!({"error": error, "error_description": description}))).into_response();
    add_request_id(&mut response);
    response
}

/// Placeholder answer for a request whose connection was cut: it is never written, because the
/// connection refuses writes once cut.
pub(super) fn cut_response() -> Response {
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

//! Limits on request bodies, applied before any handler reads one.
//!
//! - A `Content-Length` over `server.maxBodyBytes` is refused at once with a 413 (and the
//!   connection closed), before a byte of the body is read; in particular a client that sent
//!   `Expect: 100-continue` is never told to go on.
//! - A body that stops arriving for `server.bodyIdleTimeout` fails with a 408.
//! - `Content-Encoding: gzip` (or `x-gzip`, `deflate`) bodies are decoded, the decoded size held
//!   to `server.maxBodyBytes` too; any other encoding gets a 415 saying what is supported.

use super::Runtime;
use crate::anthropic::{ApiError, ErrorKind};
use crate::config::ms;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// The error a body stream ends with when the client stops sending.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no request body data for {} ms", .0.as_millis())]
pub struct BodyStalled(pub Duration);

/// The client's error for a read error caused by [`BodyStalled`], if it was.
pub fn stalled_error(e: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(stalled) = s.downcast_ref::<BodyStalled>() {
            return Some(
                ApiError::invalid_request(format!("request body stalled: {stalled}"))
                    .with_status(StatusCode::REQUEST_TIMEOUT),
            );
        }
        source = s.source();
    }
    None
}

/// The middleware.
pub async fn limit_bodies(State(rt): State<Arc<Runtime>>, request: Request, next: Next) -> Response {
    let server = &rt.config().server;
    let limit = usize::try_from(server.max_body_bytes).unwrap_or(usize::MAX);
    let idle = ms(server.body_idle_timeout);
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = announced
        && length > limit as u64
    {
        return close(
            ApiError::new(
                ErrorKind::RequestTooLarge,
                format!("request body of {length} bytes is larger than the limit of {limit} bytes"),
            )
            .into_response(),
        );
    }
    let encoding = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_ascii_lowercase());
    let (mut parts, body) = request.into_parts();
    let body = with_idle_timeout(body, idle);
    let body = match encoding.as_deref() {
        None | Some("" | "identity") => body,
        Some(coding @ ("gzip" | "x-gzip" | "deflate")) => {
            let gzip = coding != "deflate";
            match decode(body, gzip, limit).await {
                Ok(bytes) => {
                    parts.headers.remove(header::CONTENT_ENCODING);
                    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                    Body::from(bytes)
                }
                Err(e) => return close(e.into_response()),
            }
        }
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            return close(
                ApiError::invalid_request(format!(
                    "Content-Encoding `{shown}` is not supported: send the body uncompressed, or gzip / deflate"
                ))
                .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .into_response(),
            );
        }
    };
    next.run(Request::from_parts(parts, body)).await
}

/// The body, failing with [`BodyStalled`] when no data comes for `idle`.
fn with_idle_timeout(body: Body, idle: Duration) -> Body {
    let stream = body.into_data_stream();
    Body::from_stream(futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(axum::BoxError::from(e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(axum::BoxError::from(BodyStalled(idle))), None)),
        }
    }))
}

/// Read a compressed body under `limit` and decode it (on a blocking thread) under `limit`.
async fn decode(body: Body, gzip: bool, limit: usize) -> Result<Bytes, ApiError> {
    let compressed = axum::body::to_bytes(body, limit).await.map_err(|e| {
        stalled_error(&e).unwrap_or_else(|| {
            ApiError::new(
                ErrorKind::RequestTooLarge,
                format!(
                    "compressed request body is larger than the limit of {limit} bytes, or unreadable: {e}"
                ),
            )
        })
    })?;
    let decoded = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let read = if gzip {
            flate2::read::MultiGzDecoder::new(&compressed[..]).take(cap).read_to_end(&mut out)
        } else {
            flate2::read::ZlibDecoder::new(&compressed[..]).take(cap).read_to_end(&mut out)
        };
        read.map(|_| out)
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::ApiError, format!("decoding the request body failed: {e}")))?
    .map_err(|e| ApiError::invalid_request(format!("request body is not valid gzip / deflate data: {e}")))?;
    if decoded.len() > limit {
        return Err(ApiError::new(
            ErrorKind::RequestTooLarge,
            format!("decoded request body is larger than the limit of {limit} bytes"),
        ));
    }
    Ok(Bytes::from(decoded))
}

/// Ask hyper to close the connection after this answer: the rest of the body is not wanted.
fn close(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Anthropic-shaped JSON for error answers that axum produces as plain text or empty bodies:
/// 405 (wrong method), and the rejections of malformed paths, queries and JSON bodies.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/event-stream")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = match (status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            let allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            format!("method not allowed here (allowed: {allow})")
        }
        (_, true) => reason.to_string(),
        (_, false) => text,
    };
    let kind = match status {
        StatusCode::UNAUTHORIZED => ErrorKind::AuthenticationError,
        StatusCode::FORBIDDEN => ErrorKind::PermissionError,
        StatusCode::NOT_FOUND => ErrorKind::NotFoundError,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::RequestTooLarge,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimitError,
        s if s.is_server_error() => ErrorKind::ApiError,
        _ => ErrorKind::InvalidRequestError,
    };
    let mut shaped = ApiError::new(kind, message).with_status(status).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped
}

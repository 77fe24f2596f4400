//! The HTTP server: the Anthropic proxy routes, and (with the monitoring module) the
//! monitoring and admin endpoints, on one axum router.

mod admin;
pub mod guard;
pub mod limits;
pub mod listen;
// The `/v1/messages` handler: its visibility is settled with the provider face (issue #10).
#[allow(unreachable_pub)]
pub mod messages;
mod models;
mod monitoring;
pub mod session;
mod unserved;
mod websearch;

use crate::runtime::Runtime;

use crate::anthropic::{ApiError, ErrorKind};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

/// The whole router for one runtime.
pub fn router(rt: Arc<Runtime>) -> Router {
    let api = Router::new()
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::one))
        .route_layer(middleware::from_fn_with_state(rt.clone(), require_api_key));
    Router::new()
        .merge(api)
        .merge(monitoring::router(&rt))
        .route("/sessions/{id}", axum::routing::get(session::session_handler))
        .merge(admin::router(&rt))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(rt.clone(), limits::limit_bodies))
        .layer(middleware::from_fn(limits::json_errors))
        .layer(middleware::from_fn_with_state(rt.clone(), guard::guard))
        .with_state(rt)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(ErrorKind::NotFoundError, format!("no route for {}", uri.path())).into_response()
}

/// The API key a request presents: `x-api-key`, else `Authorization: Bearer`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Constant-time comparison of a presented key with the configured one.
pub fn key_matches(presented: Option<&str>, expected: &str) -> bool {
    presented
        .is_some_and(|p| p.len() == expected.len() && bool::from(p.as_bytes().ct_eq(expected.as_bytes())))
}

/// When `server.apiKey` is set, `/v1/*` requires it.
async fn require_api_key(State(rt): State<Arc<Runtime>>, request: Request, next: Next) -> Response {
    let config = rt.config();
    if let Some(expected) = config.server.api_key.as_deref()
        && !key_matches(presented_key(request.headers()), expected)
    {
        return ApiError::new(
            ErrorKind::AuthenticationError,
            "invalid or missing API key (x-api-key or Authorization: Bearer)",
        )
        .into_response();
    }
    next.run(request).await
}

/// Bind the listen address (see [`listen::bind`]).
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    listen::bind(host, port).await
}

/// Serve until `shutdown` resolves; in-flight answers are allowed to finish until
/// `server.shutdownTimeout` (see [`listen`]).
pub async fn serve(
    listener: TcpListener,
    rt: Arc<Runtime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        rt.set_listen_addr(addr);
    }
    let app = router(rt.clone());
    listen::serve(listener, rt, app, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_comparison() {
        assert!(key_matches(Some("secret"), "secret"));
        assert!(!key_matches(Some("secreT"), "secret"));
        assert!(!key_matches(Some("secret2"), "secret"));
        assert!(!key_matches(None, "secret"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented_key(&h), Some("abc"));
        h.insert("x-api-key", "xyz".parse().unwrap());
        assert_eq!(presented_key(&h), Some("xyz"));
    }
}

//! The HTTP server: the Anthropic proxy routes, and (with the monitoring module) the
//! monitoring and admin endpoints, on one axum router.

mod admin;
pub mod guard;
mod keys;
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
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The whole router for one runtime.
pub fn router(rt: Arc<Runtime>) -> Router {
    let api = Router::new()
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::one))
        .route_layer(middleware::from_fn_with_state(rt.clone(), keys::require_key));
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

pub use crate::keys::{key_matches, presented_key};

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

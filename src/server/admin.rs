//! Admin API (in progress: being built with the observability work).

use super::Runtime;
use axum::Router;
use std::sync::Arc;

/// `POST /admin/...`: the balancer's command path over HTTP.
pub fn router(_rt: &Arc<Runtime>) -> Router<Arc<Runtime>> {
    Router::new()
}

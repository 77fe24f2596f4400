//! Monitoring endpoints (in progress: being built with the observability work).

use super::Runtime;
use axum::Router;
use std::sync::Arc;

/// `GET` endpoints: health, metrics, dashboard JSON.
pub fn router(_rt: &Arc<Runtime>) -> Router<Arc<Runtime>> {
    Router::new()
}

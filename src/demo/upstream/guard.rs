//! The common start of the Q service's small JSON endpoints (record, latency, bearer, injected
//! faults), `GET /health`, and the 404 for everything else.

use super::errors::{aws_error, bearer_invalid, cut_response};
use super::options::{Endpoint, ErrorKind};
use super::state::Shared;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// Common start of the JSON endpoints that sit behind the Q service's auth and faults: `Some`
/// is the answer to send instead of the endpoint's own (cut, bearer invalid, injected fault).
pub(super) async fn guarded(
    sim: &Arc<Shared>,
    endpoint: Endpoint,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    needs_auth: bool,
) -> Option<Response> {
    let epoch = sim.record(endpoint, method, uri, headers, &Bytes::new());
    let knobs = sim.knobs();
    if sim.pause(knobs.latency, epoch).await.is_err() {
        return Some(cut_response());
    }
    if needs_auth && !sim.authorized(headers) {
        return Some(bearer_invalid());
    }
    match sim.take_fault(endpoint, &knobs) {
        Some(ErrorKind::Hang) => {
            sim.hang(epoch).await;
            Some(cut_response())
        }
        Some(kind) => sim.fault_response(kind),
        None => None,
    }
}

pub(super) async fn health(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = guarded(&sim, Endpoint::Health, &method, &uri, &headers, false).await {
        return response;
    }
    axum::Json(json!({"status": "ok"})).into_response()
}

pub(super) async fn not_found(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.record(Endpoint::Unknown, &method, &uri, &headers, &body);
    aws_error(StatusCode::NOT_FOUND, "UnknownOperationException", json!({"message": "Not Found"}))
}

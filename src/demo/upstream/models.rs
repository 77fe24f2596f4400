//! The models the simulated service knows, and `GET /ListAvailableModels`.

use super::errors::add_request_id;
use super::guard::guarded;
use super::options::Endpoint;
use super::state::Shared;
use crate::providers::codewhisperer::models;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// Model ids the simulated service accepts; anything else is `400 INVALID_MODEL_ID`. Both id
/// styles the service has used (upper-case until mid-2025, dotted since), `auto`, the `-1m`
/// variants and a few non-Claude ids Kiro lists. [`SimOptions::extra_models`] adds more.
pub const KNOWN_MODEL_IDS: &[&str] = &[
    "auto",
    "claude-sonnet-4",
    "claude-sonnet-4.5",
    "claude-sonnet-4.5-1m",
    "claude-sonnet-4.6",
    "claude-sonnet-4.6-1m",
    "claude-sonnet-5",
    "claude-haiku-4.5",
    "claude-opus-4.5",
    "claude-opus-4.6",
    "claude-opus-4.6-1m",
    "claude-opus-4.7",
    "claude-opus-4.8",
    "claude-3.7-sonnet",
    "deepseek-3.2",
    "glm-5",
    "minimax-m2.5",
    "qwen3-coder-next",
    "CLAUDE_SONNET_4_20250514_V1_0",
    "CLAUDE_SONNET_4_5_20250929_V1_0",
    "CLAUDE_3_7_SONNET_20250219_V1_0",
    "CLAUDE_3_5_HAIKU_20241022_V1_0",
];

pub(super) async fn list_models(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = guarded(&sim, Endpoint::ListModels, &method, &uri, &headers, true).await {
        return response;
    }
    let models: Vec<Value> = KNOWN_MODEL_IDS
        .iter()
        .copied()
        .chain(sim.fixed.extra_models.iter().map(String::as_str))
        .filter(|id| !id.contains('_') && sim.fixed.tier.lists(id))
        .map(|id| {
            json!({
                "modelId": id,
                "modelName": id,
                "description": format!("{id} (simulated)"),
                "supportedInputTypes": ["TEXT", "IMAGE"],
                "tokenLimits": {"maxInputTokens": models::context_window(id), "maxOutputTokens": 64000},
                "promptCaching": {"supportsPromptCaching": true},
                "rateMultiplier": 1,
                "rateUnit": "Credit",
            })
        })
        .collect();
    let mut response =
        axum::Json(json!({"defaultModel": {"modelId": models::AUTO}, "models": models})).into_response();
    add_request_id(&mut response);
    response
}

//! `GET /v1/models` and `GET /v1/models/{id}` in Anthropic's shape, from the accounts'
//! `ListAvailableModels` (see [`crate::providers::codewhisperer::model_list`]).
//!
//! List: `{"data":[{"type":"model","id","display_name","created_at"}],"has_more","first_id",
//! "last_id"}`, newest first, paginated with `limit` (default 20, 1–1000), `after_id` and
//! `before_id` like Anthropic's. An unknown id is a 404 `not_found_error`.

use crate::anthropic::{ApiError, ErrorKind};
use crate::providers::codewhisperer::model_list::{CREATED_AT, CatalogModel};
use crate::runtime::Runtime;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Query of `GET /v1/models`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    after_id: Option<String>,
    #[serde(default)]
    before_id: Option<String>,
}

fn model_json(m: &CatalogModel) -> Value {
    json!({"type": "model", "id": m.id, "display_name": m.display_name, "created_at": CREATED_AT})
}

async fn catalog(rt: &Arc<Runtime>) -> Result<Arc<Vec<CatalogModel>>, ApiError> {
    let live = rt.live();
    let mut clients: Vec<_> = live.clients.iter().map(|(id, c)| (id.clone(), c.clone())).collect();
    clients.sort_by(|a, b| a.0.cmp(&b.0));
    rt.models.get(&clients).await.map_err(|e| {
        let mut err = e.to_api_error();
        err.message = format!("could not list models: {}", err.message);
        err
    })
}

/// `GET /v1/models`.
pub(crate) async fn list(State(rt): State<Arc<Runtime>>, Query(query): Query<ListQuery>) -> Response {
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return ApiError::invalid_request("limit: must be an integer from 1 to 1000").into_response();
        }
    };
    let models = match catalog(&rt).await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let position = |id: &str| models.iter().position(|m| m.id == id);
    let (start, end) = match (query.after_id.as_deref(), query.before_id.as_deref()) {
        (Some(after), _) => {
            let start = position(after).map_or(models.len(), |i| i + 1);
            (start, (start + limit).min(models.len()))
        }
        (None, Some(before)) => {
            let end = position(before).unwrap_or(0);
            (end.saturating_sub(limit), end)
        }
        (None, None) => (0, limit.min(models.len())),
    };
    let page = &models[start..end];
    let has_more =
        if query.before_id.is_some() && query.after_id.is_none() { start > 0 } else { end < models.len() };
    axum::Json(json!({
        "data": page.iter().map(model_json).collect::<Vec<_>>(),
        "has_more": has_more,
        "first_id": page.first().map(|m| m.id.clone()),
        "last_id": page.last().map(|m| m.id.clone()),
    }))
    .into_response()
}

/// `GET /v1/models/{id}`.
pub(crate) async fn one(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Response {
    let models = match catalog(&rt).await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    match models.iter().find(|m| m.id == id || m.kiro_id == id) {
        Some(m) => axum::Json(model_json(m)).into_response(),
        None => {
            ApiError::new(ErrorKind::NotFoundError, format!("model: {id} is not available on any account"))
                .into_response()
        }
    }
}

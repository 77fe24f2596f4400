//! The models the accounts can use: `ListAvailableModels` (protocol notes §7.2), named the way
//! Anthropic names models, and the way back.
//!
//! Kiro ids are dotted (`claude-sonnet-4.5`, `claude-opus-4.6-1m`); Anthropic ids use dashes
//! (`claude-sonnet-4-5`) and Claude Code marks 1M-context variants with a `[1m]` suffix
//! (`claude-opus-4-6[1m]`). [`anthropic_id`] turns the first into the second; a request naming
//! an id of the catalog gets exactly the Kiro id it came from ([`ModelCatalog::kiro_id`]), so
//! non-Claude ids (`deepseek-3.2`, listed unchanged) round-trip too. `auto` is not listed: it is
//! not a model, and unknown names already map to it.
//!
//! The catalog is the union over every account that answered (an id is listed when at least one
//! account can use it), cached for [`CACHE_TTL`]; accounts that fail are skipped, and when all
//! fail the previous list is kept. With a shared pool (Redis) the per-account lists another
//! instance fetched are used while fresh ([`ModelCatalog::share_with`]).

use super::client::{CodeWhispererClient, JsonCall, UpstreamError, UpstreamErrorKind};
use super::models::AUTO;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a fetched model list is served before it is fetched again.
pub const CACHE_TTL: Duration = Duration::from_secs(600);

/// Pages read from `ListAvailableModels` at most (50 models each).
const MAX_PAGES: usize = 5;

/// `created_at` reported for every model: Kiro does not say when a model was released.
pub const CREATED_AT: &str = "2025-01-01T00:00:00Z";

/// One model as `ListAvailableModels` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KiroModel {
    pub model_id: String,
    #[serde(default)]
    pub model_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub token_limits: Option<TokenLimits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenLimits {
    #[serde(default)]
    pub max_input_tokens: Option<u64>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    models: Vec<KiroModel>,
    #[serde(default)]
    next_token: Option<String>,
}

/// Every model one account lists (all pages).
pub async fn list_models(client: &CodeWhispererClient) -> Result<Vec<KiroModel>, UpstreamError> {
    let mut models = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = vec![("origin", "AI_EDITOR"), ("maxResults", "50")];
        if let Some(token) = next.as_deref() {
            query.push(("nextToken", token));
        }
        let body = client.call_json(JsonCall::Get { path: "/ListAvailableModels", query: &query }).await?;
        let page: Page = serde_json::from_str(&body).map_err(|e| {
            UpstreamError::new(
                UpstreamErrorKind::Protocol,
                format!("ListAvailableModels answer not understood: {e}"),
            )
        })?;
        models.extend(page.models);
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(token) => next = Some(token),
            None => break,
        }
    }
    Ok(models)
}

/// The Anthropic-style id of a Kiro model id: dots between digits become dashes, a `-1m`
/// suffix becomes `[1m]` (`claude-opus-4.6-1m` → `claude-opus-4-6[1m]`). Ids that are not
/// Claude models are kept as they are.
pub fn anthropic_id(kiro_id: &str) -> String {
    if !kiro_id.starts_with("claude-") {
        return kiro_id.to_owned();
    }
    let (base, one_million) = match kiro_id.strip_suffix("-1m") {
        Some(base) => (base, true),
        None => (kiro_id, false),
    };
    let mut out = base.replace('.', "-");
    if one_million {
        out.push_str("[1m]");
    }
    out
}

/// A display name: Kiro's `modelName` when it is more than the id, else built from the id
/// (`claude-opus-4.6-1m` → `Claude Opus 4.6 (1M context)`).
pub fn display_name(model: &KiroModel) -> String {
    if let Some(name) = model.model_name.as_deref().filter(|n| !n.is_empty() && *n != model.model_id) {
        return name.to_owned();
    }
    let (base, one_million) = match model.model_id.strip_suffix("-1m") {
        Some(base) => (base, true),
        None => (model.model_id.as_str(), false),
    };
    let words: Vec<String> = base
        .split('-')
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect();
    let mut name = words.join(" ");
    if one_million {
        name.push_str(" (1M context)");
    }
    name
}

/// One entry of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogModel {
    /// The id clients use (`claude-sonnet-4-5`).
    pub id: String,
    /// The id sent to Kiro (`claude-sonnet-4.5`).
    pub kiro_id: String,
    pub display_name: String,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// The accounts that list it.
    pub providers: Vec<String>,
}

/// Newest first: Claude models by family rank and version descending, then the others by id.
fn sort_key(id: &str) -> (u8, Vec<std::cmp::Reverse<u32>>, String) {
    let family = if id.contains("opus") {
        0
    } else if id.contains("sonnet") {
        1
    } else if id.contains("haiku") {
        2
    } else {
        3
    };
    // Versions compared with missing parts as 0, so `4` sorts after `4-6` (4.0 < 4.6).
    let mut numbers: Vec<std::cmp::Reverse<u32>> = id
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty() && s.len() <= 2)
        .filter_map(|s| s.parse().ok())
        .map(std::cmp::Reverse)
        .collect();
    numbers.resize(numbers.len().max(3), std::cmp::Reverse(0));
    (family, numbers, id.to_owned())
}

/// Build the catalog from each account's list.
pub fn merge(lists: &[(String, Vec<KiroModel>)]) -> Vec<CatalogModel> {
    let mut by_id: BTreeMap<String, CatalogModel> = BTreeMap::new();
    for (provider, models) in lists {
        for model in models {
            if model.model_id.is_empty() || model.model_id == AUTO {
                continue;
            }
            let id = anthropic_id(&model.model_id);
            let entry = by_id.entry(id.clone()).or_insert_with(|| CatalogModel {
                id,
                kiro_id: model.model_id.clone(),
                display_name: display_name(model),
                max_input_tokens: model.token_limits.and_then(|l| l.max_input_tokens),
                max_output_tokens: model.token_limits.and_then(|l| l.max_output_tokens),
                providers: Vec::new(),
            });
            if !entry.providers.contains(provider) {
                entry.providers.push(provider.clone());
            }
        }
    }
    let mut out: Vec<CatalogModel> = by_id.into_values().collect();
    out.sort_by_key(|m| sort_key(&m.id));
    out
}

#[derive(Debug, Default)]
struct Cached {
    fetched_at: Option<Instant>,
    models: Arc<Vec<CatalogModel>>,
}

/// The cached catalog of one running ccr.
#[derive(Debug, Default)]
pub struct ModelCatalog {
    cached: Mutex<Cached>,
    /// One refresh at a time; the others wait for it and read its result.
    refreshing: tokio::sync::Mutex<()>,
    /// The pool's lists, when shared.
    shared: std::sync::OnceLock<Arc<dyn SharedModelLists>>,
}

/// Where the per-account lists are shared with the pool's other instances (Redis, in
/// `crate::state::models`), when they are.
pub trait SharedModelLists: Send + Sync + std::fmt::Debug {
    /// The lists the pool holds for `ids`, with how long each stays fresh (bounded; empty when
    /// the store does not answer).
    fn load<'a>(
        &'a self,
        ids: &'a [String],
    ) -> futures_util::future::BoxFuture<'a, Vec<(String, Vec<KiroModel>, Duration)>>;
    /// Publishes account `id`'s list for [`CACHE_TTL`] (does not wait).
    fn store(&self, id: &str, models: &[KiroModel]);
}

impl ModelCatalog {
    fn fresh(&self) -> Option<Arc<Vec<CatalogModel>>> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached.fetched_at.filter(|at| at.elapsed() < CACHE_TTL).map(|_| cached.models.clone())
    }

    /// Reads and publishes the per-account lists through the pool's store.
    pub fn share_with(&self, store: Arc<dyn SharedModelLists>) {
        let _ = self.shared.set(store);
    }

    /// What is cached now, fresh or not (never fetches).
    pub fn current(&self) -> Arc<Vec<CatalogModel>> {
        self.cached.lock().unwrap_or_else(|e| e.into_inner()).models.clone()
    }

    /// The Kiro id for a model name a client sent, when it is a catalog id. Never fetches.
    pub fn kiro_id(&self, requested: &str) -> Option<String> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached.models.iter().find(|m| m.id == requested || m.kiro_id == requested).map(|m| m.kiro_id.clone())
    }

    /// The catalog, fetched from every account when the cache is older than [`CACHE_TTL`].
    /// `Err` only when nothing was ever fetched and no account answers now.
    pub async fn get(
        &self,
        clients: &[(String, Arc<CodeWhispererClient>)],
    ) -> Result<Arc<Vec<CatalogModel>>, UpstreamError> {
        if let Some(models) = self.fresh() {
            return Ok(models);
        }
        let _one = self.refreshing.lock().await;
        if let Some(models) = self.fresh() {
            return Ok(models);
        }
        let mut lists = Vec::new();
        // The pool's lists that are still fresh, and when the first of them goes stale.
        let mut pool_left: Option<Duration> = None;
        if let Some(shared) = self.shared.get() {
            let ids: Vec<String> = clients.iter().map(|(id, _)| id.clone()).collect();
            for (id, models, left) in shared.load(&ids).await {
                pool_left = Some(pool_left.map_or(left, |l| l.min(left)));
                lists.push((id, models));
            }
        }
        let to_fetch: Vec<_> = clients.iter().filter(|(id, _)| !lists.iter().any(|(l, _)| l == id)).collect();
        let results = futures_util::future::join_all(
            to_fetch.into_iter().map(|(id, client)| async move { (id.clone(), list_models(client).await) }),
        )
        .await;
        let mut last_error = None;
        for (id, result) in results {
            match result {
                Ok(models) => {
                    if let Some(shared) = self.shared.get() {
                        shared.store(&id, &models);
                    }
                    lists.push((id, models));
                }
                Err(e) => {
                    tracing::warn!(provider = %id, "ListAvailableModels failed: {}", e.message);
                    last_error = Some(e);
                }
            }
        }
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if lists.is_empty() {
            if cached.fetched_at.is_some() {
                return Ok(cached.models.clone());
            }
            return Err(last_error.unwrap_or_else(|| {
                UpstreamError::new(UpstreamErrorKind::Connect, "no provider is configured")
            }));
        }
        lists.sort_by(|a, b| a.0.cmp(&b.0));
        cached.models = Arc::new(merge(&lists));
        let now = Instant::now();
        let age = CACHE_TTL.saturating_sub(pool_left.unwrap_or(CACHE_TTL));
        cached.fetched_at = Some(now.checked_sub(age).unwrap_or(now));
        Ok(cached.models.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::codewhisperer::models::map_model;

    fn model(id: &str) -> KiroModel {
        KiroModel { model_id: id.into(), model_name: None, description: None, token_limits: None }
    }

    #[test]
    fn anthropic_ids_map_back_exactly() {
        let cases = [
            ("claude-sonnet-4.5", "claude-sonnet-4-5"),
            ("claude-opus-4.6", "claude-opus-4-6"),
            ("claude-opus-4.6-1m", "claude-opus-4-6[1m]"),
            ("claude-sonnet-4.5-1m", "claude-sonnet-4-5[1m]"),
            ("claude-haiku-4.5", "claude-haiku-4-5"),
            ("claude-sonnet-4", "claude-sonnet-4"),
            ("claude-sonnet-5", "claude-sonnet-5"),
            ("claude-opus-4.8", "claude-opus-4-8"),
            ("deepseek-3.2", "deepseek-3.2"),
        ];
        for (kiro, anthropic) in cases {
            assert_eq!(anthropic_id(kiro), anthropic, "{kiro}");
            if kiro.starts_with("claude-") {
                assert_eq!(map_model(anthropic), kiro, "map_model round trip of {anthropic}");
            }
        }
    }

    #[test]
    fn merge_unions_sorts_and_skips_auto() {
        let a = vec![model("auto"), model("claude-haiku-4.5"), model("claude-sonnet-4.5"), model("glm-5")];
        let b = vec![
            model("claude-opus-4.6"),
            model("claude-sonnet-4.5"),
            model("claude-opus-4.8"),
            model("claude-sonnet-4"),
        ];
        let merged = merge(&[("free".into(), a), ("pro".into(), b)]);
        let ids: Vec<&str> = merged.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "claude-opus-4-8",
                "claude-opus-4-6",
                "claude-sonnet-4-5",
                "claude-sonnet-4",
                "claude-haiku-4-5",
                "glm-5"
            ]
        );
        let sonnet = merged.iter().find(|m| m.id == "claude-sonnet-4-5").unwrap();
        assert_eq!(sonnet.providers, ["free", "pro"]);
        assert_eq!(sonnet.display_name, "Claude Sonnet 4.5");
        assert_eq!(display_name(&model("claude-opus-4.6-1m")), "Claude Opus 4.6 (1M context)");
    }
}

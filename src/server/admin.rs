//! The admin API (design §9): the balancer's command path over HTTP, plus the runtime-level
//! commands the dashboard shares with it (reload the config, save the weights in force into the
//! config file).
//!
//! | path | does |
//! |---|---|
//! | `POST /admin/providers/{id}/weight` `{"weight": N, "rule": "default"}` | run-time weight (all rules without `rule`) |
//! | `POST /admin/providers/{id}/drain` · `/undrain` | take out of / put back into rotation |
//! | `POST /admin/providers/{id}/breaker/reset` | close the breaker, clear cooldown and quota exclusion |
//! | `POST /admin/providers/{id}/health-check` | run the health check now |
//! | `POST /admin/reload` | re-read the config file (a bad file keeps the old config) |
//! | `POST /admin/weights/save` | write the weights in force into the config file |
//!
//! Access: with `server.apiKey` set, every call must present it (`x-api-key` or
//! `Authorization: Bearer`, compared in constant time) from anywhere; without a key, only
//! loopback clients may call. Answers are `{"ok": true, "message": …}` or an Anthropic error body.

use super::{Runtime, key_matches, presented_key};
use crate::anthropic::{ApiError, ErrorKind};
use crate::balancer::{Command, CommandError};
use crate::config::{self, Config};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `POST /admin/...`: the balancer's command path over HTTP.
pub fn router(rt: &Arc<Runtime>) -> Router<Arc<Runtime>> {
    Router::new()
        .route("/admin/providers/{id}/weight", post(set_weight))
        .route("/admin/providers/{id}/drain", post(drain))
        .route("/admin/providers/{id}/undrain", post(undrain))
        .route("/admin/providers/{id}/breaker/reset", post(reset_breaker))
        .route("/admin/providers/{id}/health-check", post(check_now))
        .route("/admin/providers/{id}/usage-check", post(check_usage))
        .route("/admin/reload", post(reload))
        .route("/admin/weights/save", post(save_weights))
        .route_layer(middleware::from_fn_with_state(rt.clone(), require_admin_access))
}

/// Why an admin call was refused or failed. Each maps to one status and Anthropic error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// `server.apiKey` is set and the request did not present it.
    #[error("invalid or missing API key (x-api-key or Authorization: Bearer)")]
    BadKey,
    /// No key is configured and the client is not on this machine.
    #[error("the admin API answers only loopback clients while server.apiKey is not set (request from {0})")]
    NotLoopback(IpAddr),
    /// The balancer refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The request body is not what the endpoint takes.
    #[error("invalid request body: {0}")]
    Body(String),
    /// The config file was not accepted; the previous config stays live.
    #[error("{0}")]
    Reload(String),
    /// The weights could not be written into the config file.
    #[error("{0}")]
    Save(String),
}

impl AdminError {
    /// The one client-visible form of each error.
    pub fn api_error(&self) -> ApiError {
        let (kind, status) = match self {
            AdminError::BadKey => (ErrorKind::AuthenticationError, StatusCode::UNAUTHORIZED),
            AdminError::NotLoopback(_) => (ErrorKind::PermissionError, StatusCode::FORBIDDEN),
            AdminError::Command(CommandError::UnknownProvider(_) | CommandError::UnknownRule(_)) => {
                (ErrorKind::NotFoundError, StatusCode::NOT_FOUND)
            }
            AdminError::Command(CommandError::NotInRule { .. }) | AdminError::Body(_) => {
                (ErrorKind::InvalidRequestError, StatusCode::BAD_REQUEST)
            }
            AdminError::Command(CommandError::NoHealthCheck(_) | CommandError::NoUsageCheck(_))
            | AdminError::Save(_) => (ErrorKind::InvalidRequestError, StatusCode::CONFLICT),
            AdminError::Reload(_) => (ErrorKind::InvalidRequestError, StatusCode::UNPROCESSABLE_ENTITY),
        };
        ApiError::new(kind, self.to_string()).with_status(status)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        self.api_error().into_response()
    }
}

/// The access rule: the key when one is configured, else a loopback client.
pub fn admin_access(
    expected_key: Option<&str>,
    presented: Option<&str>,
    client: IpAddr,
) -> Result<(), AdminError> {
    match expected_key {
        Some(expected) if key_matches(presented, expected) => Ok(()),
        Some(_) => Err(AdminError::BadKey),
        None if client.to_canonical().is_loopback() => Ok(()),
        None => Err(AdminError::NotLoopback(client)),
    }
}

async fn require_admin_access(
    State(rt): State<Arc<Runtime>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let config = rt.config();
    if let Err(e) =
        admin_access(config.server.api_key.as_deref(), presented_key(request.headers()), client.ip())
    {
        tracing::warn!(client = %client, path = %request.uri().path(), "admin call refused: {e}");
        return e.into_response();
    }
    next.run(request).await
}

fn done(message: String) -> Response {
    axum::Json(json!({ "ok": true, "message": message })).into_response()
}

/// Apply a balancer command, logging what changed.
fn command(rt: &Runtime, cmd: Command) -> Result<Response, AdminError> {
    let message = rt.balancer.apply(cmd)?;
    tracing::info!("admin: {message}");
    Ok(done(message))
}

/// The body of `POST /admin/providers/{id}/weight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: u32,
    #[serde(default)]
    rule: Option<String>,
}

async fn set_weight(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let body: WeightBody = serde_json::from_slice(&body).map_err(|e| {
        AdminError::Body(format!(
            "{e}; expected {{\"weight\": N}} or {{\"weight\": N, \"rule\": \"default\"}}"
        ))
    })?;
    command(&rt, Command::SetWeight { provider: id, rule: body.rule, weight: body.weight })
}

async fn drain(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    command(&rt, Command::Drain(id))
}

async fn undrain(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    command(&rt, Command::Undrain(id))
}

async fn reset_breaker(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    command(&rt, Command::ResetBreaker(id))
}

async fn check_usage(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    command(&rt, Command::CheckUsage(id))
}

async fn check_now(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    command(&rt, Command::CheckNow(id))
}

/// Run blocking file work (reload, save) off the async workers.
async fn blocking(rt: &Arc<Runtime>, f: fn(&Runtime) -> Result<String, String>) -> Result<String, String> {
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || f(&rt)).await.unwrap_or_else(|e| Err(format!("task failed: {e}")))
}

async fn reload(State(rt): State<Arc<Runtime>>) -> Result<Response, AdminError> {
    let result = blocking(&rt, Runtime::reload).await;
    rt.snapshot_changed();
    result.map(done).map_err(AdminError::Reload)
}

async fn save_weights(State(rt): State<Arc<Runtime>>) -> Result<Response, AdminError> {
    blocking(&rt, Runtime::save_weights).await.map(done).map_err(AdminError::Save)
}

/// One weight to write into the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightEdit {
    /// `providers.<provider>.weight`.
    Provider { provider: String, weight: u32 },
    /// `routing.rules.<rule>.loadBalancing.weights.<provider>`.
    Rule { rule: String, provider: String, weight: u32 },
}

impl WeightEdit {
    fn describe(&self) -> String {
        match self {
            WeightEdit::Provider { provider, weight } => format!("providers.{provider}.weight = {weight}"),
            WeightEdit::Rule { rule, provider, weight } => {
                format!("routing.rules.{rule}.loadBalancing.weights.{provider} = {weight}")
            }
        }
    }
}

/// The edits that make the file's weights equal to the weights in force, given the config the
/// file holds now (`file`) and the balancer's state. Provider-level run-time weights become the
/// provider's `weight`; where a rule would then still differ (a rule weight in the file, or a
/// rule-level run-time weight), the rule's `weights` entry is set. Providers and rules the file
/// does not have are left alone, and so are providers a rule only reaches as its `fallback`
/// (weights do not steer `single`).
pub fn weight_edits(file: &Config, state: &crate::balancer::BalancerSnapshot) -> Vec<WeightEdit> {
    let mut edits = Vec::new();
    let provider_weight = |id: &str| -> Option<u32> {
        let p = file.providers.get(id)?;
        Some(u32::try_from(p.weight.max(0)).unwrap_or(u32::MAX))
    };
    let mut new_provider_weight = std::collections::HashMap::new();
    for p in &state.providers {
        let Some(in_file) = provider_weight(&p.id) else { continue };
        let in_force = p.weight_override.unwrap_or(p.weight);
        if in_force != in_file {
            edits.push(WeightEdit::Provider { provider: p.id.clone(), weight: in_force });
        }
        new_provider_weight.insert(p.id.clone(), in_force);
    }
    for r in &state.rules {
        let Some(rule) = file.routing.rules.get(&r.category) else { continue };
        for rp in &r.providers {
            if !rule.providers.contains(&rp.id) {
                continue;
            }
            let after = match rule.load_balancing.weights.get(&rp.id) {
                Some(w) => Some(u32::try_from((*w).max(0)).unwrap_or(u32::MAX)),
                None => new_provider_weight.get(&rp.id).copied(),
            };
            if after.is_some_and(|after| after != rp.weight) {
                edits.push(WeightEdit::Rule {
                    rule: r.category.clone(),
                    provider: rp.id.clone(),
                    weight: rp.weight,
                });
            }
        }
    }
    edits
}

/// Why [`apply_weight_edits`] could not edit the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text is not a JSON object.
    #[error("the config file is not valid JSON: {0}")]
    NotJson(String),
    /// A value on the way to a weight is not an object.
    #[error("cannot write {0}: a value on the way is not a JSON object")]
    NotAnObject(String),
    /// The edited config does not validate.
    #[error("the edited config would be invalid: {0}")]
    Invalid(String),
}

fn object_at<'a>(
    root: &'a mut Map<String, Value>,
    keys: &[&str],
    what: &str,
) -> Result<&'a mut Map<String, Value>, EditError> {
    let mut node = root;
    for key in keys {
        node = node
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| EditError::NotAnObject(what.to_owned()))?;
    }
    Ok(node)
}

/// Apply weight edits to a config file's text, keeping every other key, value and the key order;
/// the result is pretty-printed JSON (two-space indent) and is checked to be a valid config.
pub fn apply_weight_edits(text: &str, edits: &[WeightEdit]) -> Result<String, EditError> {
    let mut root: Value = serde_json::from_str(text).map_err(|e| EditError::NotJson(e.to_string()))?;
    let obj = root.as_object_mut().ok_or_else(|| EditError::NotJson("not an object".into()))?;
    for edit in edits {
        let what = edit.describe();
        match edit {
            WeightEdit::Provider { provider, weight } => {
                object_at(obj, &["providers", provider], &what)?.insert("weight".into(), json!(weight));
            }
            WeightEdit::Rule { rule, provider, weight } => {
                object_at(obj, &["routing", "rules", rule, "loadBalancing", "weights"], &what)?
                    .insert(provider.clone(), json!(weight));
            }
        }
    }
    let mut out = serde_json::to_string_pretty(&root).map_err(|e| EditError::NotJson(e.to_string()))?;
    out.push('\n');
    config::parse_config(&out).map_err(|e| EditError::Invalid(e.to_string()))?;
    Ok(out)
}

/// Replace `path` with `contents` in one step (write a sibling temporary file, then rename), so
/// a reader or the file watcher never sees a half-written config. The file keeps its permissions.
fn write_atomically(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents.as_bytes())?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions())?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl Runtime {
    /// Write the weights in force (configured plus run-time overrides) into the config file, then
    /// reload it, so the overrides become the configured weights. Other content and key order
    /// are kept; the file is rewritten as pretty-printed JSON in one atomic step. Refused when
    /// running on the built-in default, or when the file on disk does not validate (it may hold
    /// an edit in progress). Blocking file I/O: call it off the async workers.
    pub fn save_weights(&self) -> Result<String, String> {
        let result = self.save_weights_inner();
        match &result {
            Ok(m) => tracing::info!("{m}"),
            Err(m) => tracing::error!("weights not saved: {m}"),
        }
        self.snapshot_changed();
        result
    }

    fn save_weights_inner(&self) -> Result<String, String> {
        let Some(path) = self.source.path() else {
            return Err(
                "running on the built-in default config: there is no file to save to (start with --config)"
                    .into(),
            );
        };
        let (file_config, text) = config::load(&self.source).map_err(|e| {
            format!("the config file has problems, fix them first: {}", e.problems().join("; "))
        })?;
        let edits = weight_edits(&file_config, &self.balancer.snapshot());
        if edits.is_empty() {
            return Ok(format!("{} already holds the weights in force", path.display()));
        }
        let edited = apply_weight_edits(&text, &edits).map_err(|e| e.to_string())?;
        write_atomically(path, &edited).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let list: Vec<String> = edits.iter().map(WeightEdit::describe).collect();
        let reloaded = self.reload();
        let mut message = format!("saved to {}: {}", path.display(), list.join(", "));
        if let Err(e) = reloaded {
            message.push_str(&format!(" (but the reload failed: {e})"));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, parse_config};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn access_rules() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let lan = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));
        let mapped_lo = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(admin_access(None, None, lo), Ok(()));
        assert_eq!(admin_access(None, None, IpAddr::V6(Ipv6Addr::LOCALHOST)), Ok(()));
        assert_eq!(admin_access(None, None, mapped_lo), Ok(()));
        assert_eq!(admin_access(None, Some("anything"), lan), Err(AdminError::NotLoopback(lan)));
        assert_eq!(admin_access(Some("k"), Some("k"), lan), Ok(()));
        assert_eq!(admin_access(Some("k"), Some("x"), lo), Err(AdminError::BadKey));
        assert_eq!(admin_access(Some("k"), None, lo), Err(AdminError::BadKey));
    }

    #[test]
    fn errors_map_to_statuses() {
        let status = |e: AdminError| e.api_error().status;
        assert_eq!(status(AdminError::BadKey), StatusCode::UNAUTHORIZED);
        assert_eq!(status(AdminError::NotLoopback(IpAddr::V4(Ipv4Addr::UNSPECIFIED))), StatusCode::FORBIDDEN);
        assert_eq!(status(CommandError::UnknownProvider("x".into()).into()), StatusCode::NOT_FOUND);
        assert_eq!(
            status(CommandError::NotInRule { provider: "a".into(), rule: "b".into() }.into()),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(CommandError::NoHealthCheck("a".into()).into()), StatusCode::CONFLICT);
        assert_eq!(status(AdminError::Reload("bad".into())), StatusCode::UNPROCESSABLE_ENTITY);
    }

    const FILE: &str = r#"{
  "name": "keep me",
  "routing": {"rules": {
    "default": {"providers": ["a", "b"],
                "loadBalancing": {"strategy": "weighted-round-robin", "weights": {"a": 70, "b": 30}}},
    "background": {"providers": ["b", "a"]}
  }},
  "providers": {
    "a": {"weight": 70, "endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/a.json"},
    "b": {"weight": 30, "endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/b.json"}
  },
  "server": {"port": 3456}
}"#;

    #[test]
    fn edits_cover_provider_and_rule_overrides() {
        let config = parse_config(FILE).expect("config");
        let rt = Runtime::new(config.clone(), ConfigSource::Embedded);
        assert!(weight_edits(&config, &rt.balancer.snapshot()).is_empty());
        rt.balancer.apply(Command::SetWeight { provider: "a".into(), rule: None, weight: 50 }).expect("a");
        rt.balancer
            .apply(Command::SetWeight { provider: "b".into(), rule: Some("background".into()), weight: 4 })
            .expect("b");
        let edits = weight_edits(&config, &rt.balancer.snapshot());
        assert_eq!(
            edits,
            vec![
                WeightEdit::Provider { provider: "a".into(), weight: 50 },
                // The provider-level override also beats the rule weight in `default`.
                WeightEdit::Rule { rule: "default".into(), provider: "a".into(), weight: 50 },
                WeightEdit::Rule { rule: "background".into(), provider: "b".into(), weight: 4 },
            ]
        );
        let text = apply_weight_edits(FILE, &edits).expect("edit");
        let saved = parse_config(&text).expect("valid");
        assert_eq!(saved.providers["a"].weight, 50);
        assert_eq!(saved.routing.rules["default"].load_balancing.weights["a"], 50);
        assert_eq!(saved.routing.rules["background"].load_balancing.weights["b"], 4);
        // Order and other content kept.
        let keys: Vec<String> =
            serde_json::from_str::<Map<String, Value>>(&text).expect("json").keys().cloned().collect();
        assert_eq!(keys, ["name", "routing", "providers", "server"]);
        assert!(text.contains("\"keep me\""));
        // After saving, the file's weights are the weights in force: nothing more to write.
        rt.apply_config(saved.clone());
        assert!(weight_edits(&saved, &rt.balancer.snapshot()).is_empty());
    }

    #[test]
    fn edits_that_break_the_config_are_refused() {
        let edits = [
            WeightEdit::Rule { rule: "default".into(), provider: "a".into(), weight: 0 },
            WeightEdit::Rule { rule: "default".into(), provider: "b".into(), weight: 0 },
        ];
        assert!(matches!(apply_weight_edits(FILE, &edits), Err(EditError::Invalid(_))));
        assert!(matches!(apply_weight_edits("[1]", &[]), Err(EditError::NotJson(_))));
    }
}

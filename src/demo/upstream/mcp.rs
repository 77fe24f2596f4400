//! The simulated `POST /mcp`: Kiro's MCP endpoint as the proxies use it for web search
//! (protocol notes §7.5).
//!
//! Request: JSON-RPC 2.0 `{"id","jsonrpc":"2.0","method":"tools/call","params":{"name":"web_search",
//! "arguments":{"query":"…"}}}` with the account's bearer token. Answer: `{"jsonrpc":"2.0","id",
//! "result":{"content":[{"type":"text","text":"<JSON string>"}],"isError":false}}` where the text is
//! `{"results":[{"title","url","snippet","publishedDate","id","domain","maxVerbatimWordLimit",
//! "publicDomain"}],"totalResults","query"}`. The results are canned: [`RESULTS_PER_QUERY`]
//! entries derived from the query and the sim's name, so tests can assert exactly what reached
//! the client. Another method or tool name is a JSON-RPC error (`-32601` / `-32602`), a body that
//! is not JSON-RPC is `-32700`.
//!
//! The [`McpFailure`] knob makes the endpoint fail on purpose; the chat faults that apply to the
//! JSON endpoints (`Status500`, `Throttle429`, `Forbidden403`, `Hang`) apply here too.

use super::errors::{add_request_id, aws_error, bearer_invalid, cut_response};
use super::options::{Endpoint, ErrorKind};
use super::state::{Cut, Shared, lock};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// Results the simulated search returns for every query.
pub const RESULTS_PER_QUERY: usize = 3;

/// `publishedDate` of the canned results (epoch milliseconds): 2026-01-15T00:00:00Z.
pub const PUBLISHED_MS: i64 = 1_768_435_200_000;

/// How the simulated `/mcp` fails when asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpFailure {
    /// `200` with a JSON-RPC `error` member (`-32603` internal error).
    RpcError,
    /// `200` with a `result` whose `isError` is true and whose text says why.
    ToolError,
    /// `500` with an AWS error body, like the chat endpoint's high-load answer.
    Status500,
}

/// The canned search results for `query` from the sim named `sim_name`, in MCP's inner shape.
pub fn canned_results(sim_name: &str, query: &str) -> Value {
    let slug: String = query
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let results: Vec<Value> = (1..=RESULTS_PER_QUERY)
        .map(|i| {
            json!({
                "title": format!("Simulated result {i} for {query}"),
                "url": format!("https://{sim_name}.sim.invalid/{slug}/{i}"),
                "snippet": format!("Snippet {i} from {sim_name}: what the simulated web says about {query}."),
                "publishedDate": PUBLISHED_MS,
                "id": format!("sim-{i}"),
                "domain": format!("{sim_name}.sim.invalid"),
                "maxVerbatimWordLimit": 25,
                "publicDomain": false,
            })
        })
        .collect();
    json!({"results": results, "totalResults": RESULTS_PER_QUERY, "query": query})
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Response {
    let mut response =
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
            .into_response();
    add_request_id(&mut response);
    response
}

/// `POST /mcp`.
pub(super) async fn handle(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let epoch = sim.record(Endpoint::Mcp, &method, &uri, &headers, &body);
    let knobs = sim.knobs();
    if let Err(Cut) = sim.pause(knobs.latency, epoch).await {
        return cut_response();
    }
    if !sim.authorized(&headers) {
        return bearer_invalid();
    }
    match sim.take_fault(Endpoint::Mcp, &knobs) {
        Some(ErrorKind::Hang) => {
            sim.hang(epoch).await;
            return cut_response();
        }
        Some(kind) => {
            if let Some(response) = sim.fault_response(kind) {
                return response;
            }
        }
        None => {}
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return rpc_error(&Value::Null, -32700, "Parse error"),
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return rpc_error(&id, -32600, "Invalid Request: jsonrpc must be \"2.0\"");
    }
    if request.get("method").and_then(Value::as_str) != Some("tools/call") {
        return rpc_error(&id, -32601, "Method not found");
    }
    let params = request.get("params");
    if params.and_then(|p| p.get("name")).and_then(Value::as_str) != Some("web_search") {
        return rpc_error(&id, -32602, "Invalid params: unknown tool");
    }
    let Some(query) = params
        .and_then(|p| p.pointer("/arguments/query"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|q| !q.is_empty())
    else {
        return rpc_error(&id, -32602, "Invalid params: arguments.query is required");
    };
    let failure = *lock(&sim.mcp_failure);
    match failure {
        Some(McpFailure::RpcError) => {
            return rpc_error(&id, -32603, "Internal error: the search backend is unavailable");
        }
        Some(McpFailure::Status500) => {
            return aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                json!({"message": "Encountered unexpectedly high load when processing the request, please try again."}),
            );
        }
        Some(McpFailure::ToolError) => {
            let mut response = axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {
                "content": [{"type": "text", "text": "Web search failed: rate limit of the search backend reached"}],
                "isError": true,
            }}))
            .into_response();
            add_request_id(&mut response);
            return response;
        }
        None => {}
    }
    sim.counters.searches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let text = canned_results(&sim.name, query).to_string();
    let mut response = axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {
        "content": [{"type": "text", "text": text}],
        "isError": false,
    }}))
    .into_response();
    add_request_id(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_results_have_the_documented_shape() {
        let v = canned_results("up-1", "Weather in Paris, today?");
        assert_eq!(v["totalResults"], RESULTS_PER_QUERY);
        assert_eq!(v["query"], "Weather in Paris, today?");
        let first = &v["results"][0];
        assert_eq!(first["url"], "https://up-1.sim.invalid/weather-in-paris-today/1");
        for key in ["title", "url", "snippet", "publishedDate", "id", "domain", "maxVerbatimWordLimit"] {
            assert!(first.get(key).is_some(), "{key}");
        }
    }
}

//! Kiro's MCP endpoint (`POST {base}/mcp`), used to run web searches (protocol notes §7.5).
//!
//! One call is a JSON-RPC 2.0 `tools/call` of the `web_search` tool with `{"query"}`; the
//! answer's first text content is itself JSON: `{"results":[{"title","url","snippet",
//! "publishedDate",…}],"totalResults","query"}`. Every way this can fail is an [`McpError`]:
//! HTTP-level failures are classified like chat failures, JSON-RPC errors and `isError` results
//! are reported with the service's message. A failed search is never turned into "no results".

use super::client::{CodeWhispererClient, JsonCall, UpstreamError};
use crate::anthropic::{ApiError, ErrorKind};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub title: String,
    pub url: String,
    pub snippet: String,
    /// `publishedDate`, epoch milliseconds, when the service knows it.
    pub published_ms: Option<i64>,
}

/// Why a search failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum McpError {
    /// The HTTP call failed (connect, timeout, 4xx/5xx), classified like a chat call.
    #[error("{0}")]
    Upstream(UpstreamError),
    /// A JSON-RPC `error` member.
    #[error("web search failed: MCP error {code}: {message}")]
    Rpc { code: i64, message: String },
    /// A result with `isError: true`.
    #[error("web search failed: {0}")]
    Tool(String),
    /// An answer that does not have the documented shape.
    #[error("web search failed: unexpected MCP answer: {0}")]
    BadAnswer(String),
}

impl McpError {
    /// The error the client sees.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            McpError::Upstream(e) => {
                let mut err = e.to_api_error();
                err.message = format!("web search failed: {}", err.message);
                err
            }
            other => ApiError::new(ErrorKind::ApiError, other.to_string()),
        }
    }
}

/// The JSON-RPC request id the Kiro IDE uses: `web_search_tooluse_<22 alnum>_<epoch ms>_<8 alnum>`.
pub fn request_id() -> String {
    let mut rng = rand::rng();
    let mut alnum =
        |n: usize| -> String { (0..n).map(|_| rng.sample(rand::distr::Alphanumeric) as char).collect() };
    let first = alnum(22);
    let last = alnum(8);
    format!("web_search_tooluse_{first}_{}_{last}", chrono::Utc::now().timestamp_millis())
}

/// The JSON-RPC body of one search.
pub fn request_body(id: &str, query: &str) -> Vec<u8> {
    json!({
        "id": id,
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": {"name": "web_search", "arguments": {"query": query}},
    })
    .to_string()
    .into_bytes()
}

#[derive(Deserialize)]
struct RpcAnswer {
    #[serde(default)]
    result: Option<RpcResult>,
    #[serde(default)]
    error: Option<RpcErrorBody>,
}

#[derive(Deserialize)]
struct RpcErrorBody {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcResult {
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    is_error: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Results {
    #[serde(default)]
    results: Vec<RawHit>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHit {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    snippet: Option<String>,
    #[serde(default)]
    published_date: Option<f64>,
}

/// Reads an MCP answer body.
pub fn parse_answer(body: &str) -> Result<Vec<SearchHit>, McpError> {
    let answer: RpcAnswer =
        serde_json::from_str(body).map_err(|e| McpError::BadAnswer(format!("not JSON-RPC: {e}")))?;
    if let Some(err) = answer.error {
        return Err(McpError::Rpc { code: err.code, message: err.message });
    }
    let result = answer.result.ok_or_else(|| McpError::BadAnswer("neither result nor error".into()))?;
    let text: String = result
        .content
        .iter()
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    if result.is_error {
        let message = if text.trim().is_empty() { "the search tool reported an error" } else { text.trim() };
        return Err(McpError::Tool(message.chars().take(300).collect()));
    }
    let results: Results = serde_json::from_str(&text)
        .map_err(|e| McpError::BadAnswer(format!("result text is not the results JSON: {e}")))?;
    Ok(results
        .results
        .into_iter()
        .filter_map(|h| {
            let url = h.url.filter(|u| !u.is_empty())?;
            Some(SearchHit {
                title: h.title.unwrap_or_else(|| url.clone()),
                url,
                snippet: h.snippet.unwrap_or_default(),
                published_ms: h.published_date.filter(|d| d.is_finite()).map(|d| d as i64),
            })
        })
        .collect())
}

/// Run one search on the account behind `client`.
pub async fn web_search(client: &CodeWhispererClient, query: &str) -> Result<Vec<SearchHit>, McpError> {
    let body = request_body(&request_id(), query);
    let answer =
        client.call_json(JsonCall::Post { path: "/mcp", body: &body }).await.map_err(McpError::Upstream)?;
    parse_answer(&answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_the_ide_shape() {
        let id = request_id();
        let parts: Vec<&str> = id.strip_prefix("web_search_tooluse_").expect("prefix").split('_').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!(parts[0].len(), 22);
        assert!(parts[1].parse::<i64>().is_ok());
        assert_eq!(parts[2].len(), 8);
        let body: Value = serde_json::from_slice(&request_body("x", "q")).unwrap();
        assert_eq!(
            body,
            json!({"id":"x","jsonrpc":"2.0","method":"tools/call","params":{"name":"web_search","arguments":{"query":"q"}}})
        );
    }

    #[test]
    fn answers_and_errors() {
        let inner = json!({"results":[{"title":"T","url":"https://a.invalid","snippet":"S","publishedDate":1768435200000u64},
                                       {"url":""}, {"url":"https://b.invalid"}],"totalResults":3,"query":"q"});
        let body = json!({"jsonrpc":"2.0","id":"x","result":{"content":[{"type":"text","text":inner.to_string()}],"isError":false}});
        let hits = parse_answer(&body.to_string()).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].published_ms, Some(1_768_435_200_000));
        assert_eq!(hits[1].title, "https://b.invalid");
        let err = parse_answer(r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32603,"message":"down"}}"#)
            .unwrap_err();
        assert_eq!(err, McpError::Rpc { code: -32603, message: "down".into() });
        assert_eq!(err.to_api_error().status.as_u16(), 502);
        let err = parse_answer(
            r#"{"jsonrpc":"2.0","id":"x","result":{"content":[{"type":"text","text":"quota"}],"isError":true}}"#,
        )
        .unwrap_err();
        assert_eq!(err, McpError::Tool("quota".into()));
        assert!(matches!(parse_answer("<html>"), Err(McpError::BadAnswer(_))));
        assert!(matches!(
            parse_answer(
                r#"{"jsonrpc":"2.0","id":"x","result":{"content":[{"type":"text","text":"nope"}]}}"#
            ),
            Err(McpError::BadAnswer(_))
        ));
    }
}

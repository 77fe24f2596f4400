//! Anthropic's `web_search` server tool over Kiro (protocol notes §7.5): the request side (what
//! the model is given each round) and the answer side (the Anthropic blocks the client gets).
//!
//! Kiro has no server tools, so the model is given a plain client tool named `web_search`
//! (`{"query": string}`) in place of `web_search_20250305`. Each round goes to
//! `generateAssistantResponse`; every `web_search` call the model makes is run against the
//! account's MCP endpoint ([`super::mcp`]) and fed back as a tool result (text starting with
//! [`RESULTS_HEADER`]), until the model answers without searching. Searches beyond `max_uses`
//! are not run: the client gets a `max_uses_exceeded` error block and the model a tool result
//! saying so. Claude Code's WebSearch sub-request (the search forced by `tool_choice`, and the
//! query in "Perform a web search for the query: …") skips the first model round: ccr searches
//! at once and the model only writes the summary.
//!
//! What the client receives, streaming or not: the model's text, then per search a
//! `server_tool_use` block (`srvtoolu_…`, input whole) and a `web_search_tool_result` block
//! (`web_search_result`s with `title`, `url`, `encrypted_content` = the snippet, `page_age`),
//! then the model's answer; `usage.server_tool_use.web_search_requests` counts the searches run.
//! Client tools declared next to `web_search` stay client tools: a round in which the model calls
//! one ends the answer with `stop_reason: tool_use`.

use super::mcp::SearchHit;
use crate::anthropic::ApiError;
use crate::anthropic::sse::write_event;
use crate::anthropic::text::Text;
use crate::anthropic::types::{Content, ContentBlock, Message, MessagesRequest, Role, Tool, ToolResultBlock};
use bytes::BytesMut;
use serde_json::{Value, json};

/// First line of a tool result that carries search results (the model and the simulated upstream
/// read it).
pub const RESULTS_HEADER: &str = "Web search results for query:";

/// The name of the tool the model is given.
pub const TOOL_NAME: &str = "web_search";

/// `max_uses` when the request does not set one.
pub const DEFAULT_MAX_USES: u64 = 5;

/// Claude Code's WebSearch sub-request asks with exactly this prefix.
const CLAUDE_CODE_PREFIX: &str = "Perform a web search for the query:";

/// Description of the `web_search` tool given to the model.
const TOOL_DESCRIPTION: &str = "Search the web for current information. Returns result titles, URLs and \
snippets. Use it when the answer needs information from the web; cite the URLs you use.";

/// The web search server tool of a request, if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchTool {
    pub max_uses: u64,
}

/// The request's `web_search_*` server tool.
pub fn search_tool(req: &MessagesRequest) -> Option<SearchTool> {
    let tool = req.tools.iter().find(|t| t.kind.as_deref().is_some_and(|k| k.starts_with("web_search")))?;
    Some(SearchTool { max_uses: tool.max_uses.unwrap_or(DEFAULT_MAX_USES) })
}

/// The request each round starts from: the server tool replaced by the plain `web_search` tool,
/// other server tools dropped, thinking off (the answer side does not parse thinking tags here).
pub fn model_request(req: &MessagesRequest) -> MessagesRequest {
    let mut out = req.clone();
    out.tools.retain(|t| !t.is_server_tool() && t.name != TOOL_NAME);
    out.tools.push(Tool {
        kind: None,
        name: TOOL_NAME.to_owned(),
        description: Some(TOOL_DESCRIPTION.to_owned()),
        input_schema: Some(json!({
            "type": "object",
            "properties": {"query": {"type": "string", "description": "The search query"}},
            "required": ["query"],
        })),
        max_uses: None,
        input_examples: Vec::new(),
    });
    out.thinking = None;
    out
}

/// The query to search at once, without asking the model first: Claude Code's WebSearch
/// sub-request (the tool forced by `tool_choice`, or no client tool at all, and the query in
/// its "Perform a web search for the query: …" message).
pub fn direct_query(req: &MessagesRequest) -> Option<String> {
    let forced = req.tool_choice.as_ref().is_some_and(|c| {
        matches!(c.kind.as_str(), "any" | "tool") && c.name.as_deref().is_none_or(|n| n == TOOL_NAME)
    });
    if !forced && req.custom_tool_count() > 0 {
        return None;
    }
    let last = req.messages.last().filter(|m| m.role == Role::User)?;
    let text: String = match &last.content {
        Content::Text(s) => s.unescaped().into_owned(),
        Content::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.unescaped()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let at = text.find(CLAUDE_CODE_PREFIX)?;
    let query = text[at + CLAUDE_CODE_PREFIX.len()..].trim();
    (!query.is_empty()).then(|| query.to_owned())
}

/// One search call the model made (or ccr made for it).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchCall {
    /// The Kiro tool use id (fed back with the result).
    pub tool_use_id: String,
    /// The `srvtoolu_…` id the client sees.
    pub server_id: String,
    pub query: String,
}

impl SearchCall {
    pub fn new(tool_use_id: impl Into<String>, query: impl Into<String>) -> Self {
        SearchCall { tool_use_id: tool_use_id.into(), server_id: server_tool_id(), query: query.into() }
    }
}

/// A fresh `srvtoolu_` + 32 hex id.
pub fn server_tool_id() -> String {
    format!("srvtoolu_{}", uuid::Uuid::new_v4().simple())
}

/// What a search came back with, as fed to the model.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchOutcome {
    Hits(Vec<SearchHit>),
    /// Not run: `max_uses` reached.
    LimitReached,
}

/// Adds one round to the conversation: the assistant's text and search calls, then a user turn
/// with one tool result per call.
pub fn append_round(req: &mut MessagesRequest, text: &str, calls: &[(SearchCall, SearchOutcome)]) {
    let mut assistant = Vec::with_capacity(calls.len() + 1);
    if !text.trim().is_empty() {
        assistant.push(ContentBlock::Text { text: Text::new(text) });
    }
    let mut results = Vec::with_capacity(calls.len());
    for (call, outcome) in calls {
        assistant.push(ContentBlock::ToolUse {
            id: call.tool_use_id.clone(),
            name: TOOL_NAME.to_owned(),
            input: json!({"query": call.query}),
        });
        let (text, is_error) = match outcome {
            SearchOutcome::Hits(hits) => (results_text(&call.query, hits), false),
            SearchOutcome::LimitReached => (
                "The web search was not run: the maximum number of web searches for this request \
                 was reached. Answer with the information you already have."
                    .to_owned(),
                true,
            ),
        };
        results.push(ContentBlock::ToolResult {
            tool_use_id: call.tool_use_id.clone(),
            content: Some(Content::Blocks(vec![ToolResultBlock::Text { text: Text::new(&text) }])),
            is_error,
        });
    }
    req.messages.push(Message { role: Role::Assistant, content: Content::Blocks(assistant) });
    req.messages.push(Message { role: Role::User, content: Content::Blocks(results) });
}

/// The tool result text for one search.
pub fn results_text(query: &str, hits: &[SearchHit]) -> String {
    let mut out = format!("{RESULTS_HEADER} \"{query}\"\n");
    if hits.is_empty() {
        out.push_str("\nNo results.\n");
    }
    for (i, hit) in hits.iter().enumerate() {
        out.push_str(&format!("\n{}. {}\n   URL: {}\n", i + 1, hit.title, hit.url));
        if let Some(age) = hit.published_ms.and_then(page_age) {
            out.push_str(&format!("   Published: {age}\n"));
        }
        if !hit.snippet.is_empty() {
            out.push_str(&format!("   {}\n", hit.snippet));
        }
    }
    out
}

/// `publishedDate` (epoch ms) as Anthropic's `page_age` (`January 15, 2026`).
pub fn page_age(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.format("%B %-d, %Y").to_string())
}

/// An earlier answer's `server_tool_use` / `web_search_tool_result` as text for the history
/// (Kiro has no such blocks).
pub fn history_text(block: &ContentBlock) -> Option<String> {
    match block {
        ContentBlock::ServerToolUse { name, input, .. } => {
            let query = input.get("query").and_then(Value::as_str).unwrap_or("");
            Some(format!("[{name}: {query}]"))
        }
        ContentBlock::WebSearchToolResult { content, .. } => {
            let items = content.as_array()?;
            let lines: Vec<String> = items
                .iter()
                .filter_map(|r| {
                    let url = r.get("url")?.as_str()?;
                    let title = r.get("title").and_then(Value::as_str).unwrap_or(url);
                    Some(format!("- {title} ({url})"))
                })
                .collect();
            Some(if lines.is_empty() {
                "[web search returned no results]".to_owned()
            } else {
                lines.join("\n")
            })
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The answer.

/// Why the answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    EndTurn,
    ToolUse,
    MaxTokens,
    /// The search rounds hit their limit before the model answered.
    PauseTurn,
    Refusal,
    ModelContextWindowExceeded,
}

impl Stop {
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::EndTurn => "end_turn",
            Stop::ToolUse => "tool_use",
            Stop::MaxTokens => "max_tokens",
            Stop::PauseTurn => "pause_turn",
            Stop::Refusal => "refusal",
            Stop::ModelContextWindowExceeded => "model_context_window_exceeded",
        }
    }
}

/// Usage of the whole answer (all rounds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub searches: u64,
}

impl Totals {
    fn json(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "server_tool_use": {"web_search_requests": self.searches},
        })
    }
}

/// The answer being built: Anthropic content blocks, written as SSE as they happen (streaming)
/// or kept for one JSON message.
#[derive(Debug)]
pub struct Answer {
    streaming: bool,
    message_id: String,
    model: String,
    /// The SSE bytes not yet handed to the client.
    pub out: BytesMut,
    content: Vec<Value>,
    next_index: usize,
    text_open: bool,
    done: bool,
}

impl Answer {
    pub fn new(streaming: bool, message_id: String, model: String) -> Self {
        Answer {
            streaming,
            message_id,
            model,
            out: BytesMut::with_capacity(4096),
            content: Vec::new(),
            next_index: 0,
            text_open: false,
            done: false,
        }
    }

    /// `message_start` (streaming only).
    pub fn start(&mut self, input_tokens: u64) {
        if self.streaming {
            let start = json!({"type": "message_start", "message": {
                "id": self.message_id, "type": "message", "role": "assistant", "content": [],
                "model": self.model, "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            }});
            write_event(&mut self.out, "message_start", &start);
        }
    }

    /// A keep-alive ping (streaming only).
    pub fn ping(&mut self) {
        if self.streaming {
            crate::anthropic::sse::write_ping(&mut self.out);
        }
    }

    /// Model text, appended to the open text block (opened when needed).
    pub fn text(&mut self, text: &str) {
        if text.is_empty() || self.done {
            return;
        }
        if !self.text_open {
            self.text_open = true;
            self.content.push(json!({"type": "text", "text": ""}));
            if self.streaming {
                self.block_start(json!({"type": "text", "text": ""}));
            }
        }
        if let Some(Value::String(s)) = self.content.last_mut().and_then(|b| b.get_mut("text")) {
            s.push_str(text);
        }
        if self.streaming {
            let index = self.next_index - 1;
            let delta = json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": text}});
            write_event(&mut self.out, "content_block_delta", &delta);
        }
    }

    fn close_text(&mut self) {
        if self.text_open {
            self.text_open = false;
            if self.streaming {
                self.block_stop();
            }
        }
    }

    /// A whole block: start (with its full content) and stop.
    fn whole_block(&mut self, block: Value) {
        self.close_text();
        if self.streaming {
            self.block_start(block.clone());
            self.block_stop();
        }
        self.content.push(block);
    }

    fn block_start(&mut self, block: Value) {
        let event = json!({"type": "content_block_start", "index": self.next_index, "content_block": block});
        self.next_index += 1;
        write_event(&mut self.out, "content_block_start", &event);
    }

    fn block_stop(&mut self) {
        let event = json!({"type": "content_block_stop", "index": self.next_index - 1});
        write_event(&mut self.out, "content_block_stop", &event);
    }

    /// `server_tool_use` for one search.
    pub fn server_tool_use(&mut self, call: &SearchCall) {
        self.whole_block(json!({"type": "server_tool_use", "id": call.server_id, "name": TOOL_NAME,
                                "input": {"query": call.query}}));
    }

    /// `web_search_tool_result` for one search.
    pub fn search_result(&mut self, call: &SearchCall, outcome: &SearchOutcome) {
        let content = match outcome {
            SearchOutcome::Hits(hits) => Value::Array(
                hits.iter()
                    .map(|h| {
                        let mut r = json!({"type": "web_search_result", "title": h.title, "url": h.url,
                                           "encrypted_content": h.snippet});
                        if let Some(age) = h.published_ms.and_then(page_age) {
                            r["page_age"] = Value::String(age);
                        }
                        r
                    })
                    .collect(),
            ),
            SearchOutcome::LimitReached => {
                json!({"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"})
            }
        };
        self.whole_block(json!({"type": "web_search_tool_result", "tool_use_id": call.server_id,
                                "content": content}));
    }

    /// A client tool call (input whole: one `input_json_delta`).
    pub fn tool_use(&mut self, id: &str, name: &str, input: Value) {
        self.close_text();
        if self.streaming {
            self.block_start(json!({"type": "tool_use", "id": id, "name": name, "input": {}}));
            let delta = json!({"type": "content_block_delta", "index": self.next_index - 1,
                               "delta": {"type": "input_json_delta", "partial_json": input.to_string()}});
            write_event(&mut self.out, "content_block_delta", &delta);
            self.block_stop();
        }
        self.content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }

    /// The normal end: `message_delta` + `message_stop` (streaming); the JSON message otherwise.
    pub fn finish(&mut self, stop: Stop, totals: &Totals) -> Option<Value> {
        if self.done {
            return None;
        }
        self.close_text();
        self.done = true;
        if self.streaming {
            let delta = json!({"type": "message_delta",
                               "delta": {"stop_reason": stop.as_str(), "stop_sequence": null},
                               "usage": totals.json()});
            write_event(&mut self.out, "message_delta", &delta);
            write_event(&mut self.out, "message_stop", &json!({"type": "message_stop"}));
            return None;
        }
        Some(json!({
            "id": self.message_id, "type": "message", "role": "assistant",
            "content": std::mem::take(&mut self.content), "model": self.model,
            "stop_reason": stop.as_str(), "stop_sequence": null, "usage": totals.json(),
        }))
    }

    /// A failure after the answer started: close the open block, then one `error` event.
    pub fn fail(&mut self, err: &ApiError) {
        if self.done {
            return;
        }
        self.close_text();
        self.done = true;
        if self.streaming {
            write_event(&mut self.out, "error", &err.body());
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::sse::parse_events;
    use crate::anthropic::types::parse_request;

    fn claude_code_search(tool_choice: Value) -> MessagesRequest {
        let body = json!({
            "model": "claude-opus-4-8", "max_tokens": 64000, "stream": true,
            "system": [{"type": "text", "text": "You are an assistant for performing a web search tool use"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Perform a web search for the query: weather in Paris today"}]}],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}],
            "tool_choice": tool_choice, "thinking": {"type": "disabled"}
        });
        parse_request(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn claude_code_sub_requests_search_at_once() {
        let forced = claude_code_search(json!({"type": "tool", "name": "web_search"}));
        assert_eq!(search_tool(&forced), Some(SearchTool { max_uses: 8 }));
        assert_eq!(direct_query(&forced).as_deref(), Some("weather in Paris today"));
        let auto = claude_code_search(json!({"type": "auto"}));
        assert_eq!(direct_query(&auto).as_deref(), Some("weather in Paris today"), "no client tools");
        let model = model_request(&forced);
        assert_eq!(model.tools.len(), 1);
        assert_eq!(model.tools[0].name, TOOL_NAME);
        assert!(!model.tools[0].is_server_tool());
    }

    #[test]
    fn rounds_become_tool_turns_the_model_can_read() {
        let mut req = model_request(&claude_code_search(json!({"type": "auto"})));
        let hit = SearchHit {
            title: "T".into(),
            url: "https://a.invalid".into(),
            snippet: "S".into(),
            published_ms: Some(1_768_435_200_000),
        };
        let call = SearchCall::new("tooluse_1", "q");
        append_round(&mut req, "", &[(call, SearchOutcome::Hits(vec![hit]))]);
        assert_eq!(req.messages.len(), 3);
        let ContentBlock::ToolResult { content: Some(Content::Blocks(b)), is_error: false, .. } =
            &req.messages[2].content.blocks()[0]
        else {
            panic!("{:?}", req.messages[2]);
        };
        let ToolResultBlock::Text { text } = &b[0] else { panic!() };
        assert_eq!(
            text,
            "Web search results for query: \"q\"\n\n1. T\n   URL: https://a.invalid\n   Published: January 15, 2026\n   S\n"
        );
    }

    #[test]
    fn streaming_and_json_answers_carry_the_same_blocks() {
        let hit = SearchHit {
            title: "T".into(),
            url: "https://a.invalid".into(),
            snippet: "S".into(),
            published_ms: None,
        };
        let call = SearchCall::new("tooluse_1", "q");
        let totals = Totals { input_tokens: 10, output_tokens: 5, searches: 1, ..Totals::default() };
        let play = |answer: &mut Answer| {
            answer.start(10);
            answer.text("Searching.");
            answer.server_tool_use(&call);
            answer.search_result(&call, &SearchOutcome::Hits(vec![hit.clone()]));
            answer.text("Found it.");
            answer.finish(Stop::EndTurn, &totals)
        };
        let mut json_answer = Answer::new(false, "msg_1".into(), "m".into());
        let message = play(&mut json_answer).unwrap();
        let types: Vec<&str> =
            message["content"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["text", "server_tool_use", "web_search_tool_result", "text"]);
        assert_eq!(message["usage"]["server_tool_use"]["web_search_requests"], 1);
        assert_eq!(message["content"][2]["tool_use_id"], message["content"][1]["id"]);

        let mut sse_answer = Answer::new(true, "msg_1".into(), "m".into());
        assert!(play(&mut sse_answer).is_none());
        let events = parse_events(std::str::from_utf8(&sse_answer.out).unwrap());
        let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_stop",
                "content_block_start",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let result: Value = serde_json::from_str(&events[6].1).unwrap();
        assert_eq!(result["index"], 2);
        assert_eq!(result["content_block"]["content"][0]["encrypted_content"], "S");
    }
}

//! Claude-Code-shaped request bodies for the benchmarks and the load harness, built in code so
//! that the benches stand alone: the shapes follow real Claude Code 2.x requests (three system
//! blocks with `cache_control`, 24 tools with JSON-Schema inputs, adaptive thinking, a
//! mid-conversation system message, and a long history of thinking + text + `tool_use` turns
//! answered by `tool_result`s full of source code), with deterministic text in place of the
//! user's data.
#![allow(dead_code)]

use serde_json::{Value, json};

/// The session id carried in `metadata.user_id`, as Claude Code sends it.
pub const SESSION_ID: &str = "0cf01146-29c8-4564-a7f6-a5a1fde2c575";

/// Tool names of a Claude Code main turn (version 2.1.x).
const TOOL_NAMES: [&str; 24] = [
    "Agent",
    "Bash",
    "CronCreate",
    "CronDelete",
    "CronList",
    "Edit",
    "EnterWorktree",
    "ExitWorktree",
    "NotebookEdit",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "SendMessage",
    "Skill",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "WebFetch",
    "WebSearch",
    "Workflow",
    "Write",
];

/// Deterministic prose of about `len` bytes (ASCII with some punctuation and an occasional
/// non-ASCII word, so escaping and UTF-8 paths are exercised).
pub fn prose(seed: usize, len: usize) -> String {
    const WORDS: [&str; 24] = [
        "the",
        "request",
        "provider",
        "stream",
        "frame",
        "token",
        "balancer",
        "config",
        "reload",
        "latency",
        "breaker",
        "\"quoted\"",
        "path/to/file.rs",
        "naïve",
        "café",
        "→",
        "async",
        "await",
        "Result<T, E>",
        "{braces}",
        "tab\there",
        "line\nbreak",
        "backslash\\",
        "done.",
    ];
    let mut out = String::with_capacity(len + 16);
    let mut i = seed.wrapping_mul(7919);
    while out.len() < len {
        out.push_str(WORDS[i % WORDS.len()]);
        out.push(' ');
        i = i.wrapping_mul(31).wrapping_add(17);
    }
    out
}

/// Deterministic Rust-looking source of about `len` bytes: what `Read` tool results carry.
pub fn source_code(seed: usize, len: usize) -> String {
    let mut out = String::with_capacity(len + 128);
    let mut n = seed;
    while out.len() < len {
        n += 1;
        out.push_str(&format!(
            "{n:>6}\tfn handler_{n}(req: &Request) -> Result<Response, Error> {{\n\
             {n:>6}\t    let body = req.body().get(\"key_{n}\").ok_or(Error::Missing(\"key\"))?; // naïve\n\
             {n:>6}\t    Ok(Response::json(format!(\"{{\\\"n\\\": {{}}}}\", body.len())))\n\
             {n:>6}\t}}\n"
        ));
    }
    out
}

fn tool(i: usize, name: &str) -> Value {
    let description = prose(i, 400 + (i * 211) % 2400);
    json!({
        "name": name,
        "description": description,
        "input_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "command": {"description": prose(i + 100, 120), "type": "string"},
                "timeout": {"description": "Optional timeout in milliseconds (max 600000)", "type": "number"},
                "mode": {"description": "How to run it", "type": "string", "enum": ["default", "plan", "auto"]},
                "paths": {"type": "array", "items": {"type": "string"}, "description": "Files involved"}
            },
            "required": ["command"],
            "additionalProperties": false
        }
    })
}

fn system() -> Value {
    json!([
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197; cc_entrypoint=cli;"},
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": prose(1, 5700), "cache_control": {"type": "ephemeral"}}
    ])
}

/// The top-level fields every main turn carries.
fn envelope(messages: Vec<Value>, tools: Vec<Value>, stream: bool) -> Value {
    json!({
        "model": "claude-opus-4-8",
        "messages": messages,
        "system": system(),
        "tools": tools,
        "metadata": {"user_id": format!(
            "{{\"device_id\":\"5f1c0c6f9e2a4b7d8c3e1f0a2b4c6d8e\",\"account_uuid\":\"\",\"session_id\":\"{SESSION_ID}\"}}"
        )},
        "max_tokens": 64000,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stream": stream
    })
}

/// A small main turn (about 1.5 KB): one tool, one user message, adaptive thinking.
pub fn small_request(stream: bool) -> Value {
    let mut body = envelope(
        vec![json!({"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nAs you answer, use the context below.\n</system-reminder>"},
            {"type": "text", "text": "say hello", "cache_control": {"type": "ephemeral"}}
        ]})],
        vec![tool(1, "Bash")],
        stream,
    );
    body["system"] =
        json!([{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."}]);
    body
}

/// A Claude Code main turn deep into a session, grown with tool rounds until its JSON is at
/// least `target_bytes` long (1 MB is typical after an hour of work).
pub fn long_session_request(target_bytes: usize, stream: bool) -> Value {
    let tools: Vec<Value> = TOOL_NAMES.iter().enumerate().map(|(i, n)| tool(i, n)).collect();
    let mut messages = vec![
        json!({"role": "user", "content": [
            {"type": "text", "text": format!("<system-reminder>\n# claudeMd\n{}\n</system-reminder>", prose(2, 20_000))},
            {"type": "text", "text": "Refactor the request path and run the tests."}
        ]}),
        json!({"role": "system", "content": prose(3, 6000)}),
    ];
    let mut body = envelope(messages.clone(), tools.clone(), stream);
    let mut size = body.to_string().len();
    let mut round = 0;
    while size < target_bytes {
        round += 1;
        let id = format!("toolu_01{round:022}");
        let (name, input) = if round % 3 == 0 {
            (
                "Bash",
                json!({"command": format!("cargo test --lib round_{round} 2>&1 | tail -40"), "description": "Run the tests"}),
            )
        } else {
            ("Read", json!({"file_path": format!("/home/dev/ccr/src/module_{round}.rs")}))
        };
        let assistant = json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": prose(round, 600), "signature": "EqQBCkYIBxgCKkB".repeat(8)},
            {"type": "text", "text": prose(round + 1, 160)},
            {"type": "tool_use", "id": id, "name": name, "input": input}
        ]});
        let result_len = 4000 + (round * 1777) % 9000;
        let user = json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": source_code(round * 1000, result_len)}
        ]});
        size += assistant.to_string().len() + user.to_string().len() + 2;
        messages.push(assistant);
        messages.push(user);
    }
    // The last user message also carries text and a cache breakpoint, as Claude Code sends it.
    messages
        .push(json!({"role": "assistant", "content": [{"type": "text", "text": "Done; the tests pass."}]}));
    messages.push(json!({"role": "user", "content": [
        {"type": "text", "text": "Now summarise what changed.", "cache_control": {"type": "ephemeral"}}
    ]}));
    body["messages"] = Value::Array(messages);
    body
}

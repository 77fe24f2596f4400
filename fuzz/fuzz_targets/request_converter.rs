//! Fuzz target: the request path from the client's bytes to the upstream body: `parse_request`,
//! the token estimate, classification, `convert` and `request_body`.
//!
//! The first input byte picks how the rest is read: as a raw request body, or as a recipe for a
//! Messages request of Claude Code's shapes (every content block type, tool loops with missing,
//! duplicate and orphan results, long and non-ASCII tool names, system messages mid-
//! conversation, server tools, every thinking mode), which reaches deep into the conversion.
//!
//! Properties checked, beyond "no panic":
//! - a rejected body gets a 400 `invalid_request_error` with a message;
//! - every request the proxy accepts converts into a body the upstream accepts: valid JSON that
//!   passes `check_kiro_body` (the protocol notes' §3.5 rules, on which Kiro answers 400).
#![no_main]

use ccr::anthropic::ErrorKind;
use ccr::anthropic::types::parse_request;
use ccr::classify::{Thresholds, classify};
use ccr::providers::codewhisperer::internals::{ConvertOptions, check_kiro_body, convert, request_body};
use libfuzzer_sys::arbitrary::{self, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const MODELS: &[&str] = &[
    "claude-opus-4-8",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
    "claude-3-7-sonnet-20250219",
    "my-router-model",
    "",
];
const TOOL_NAMES: &[&str] = &[
    "Bash",
    "bash",
    "Read",
    "mcp__a_very_long_server_name__and_an_even_longer_tool_name_beyond_the_limit_x",
    "mcp__a_very_long_server_name__and_an_even_longer_tool_name_beyond_the_limit_y",
    "名前のツール",
    "",
    "web_search",
];
const IDS: &[&str] = &["toolu_01", "toolu_02", "toolu_03", ""];
const TEXTS: &[&str] = &[
    "",
    " ",
    "\n",
    "hello",
    "<system-reminder>ctx</system-reminder>",
    "<thinking>x</thinking>",
    "é😀",
    "\u{0}",
];

fn text(u: &mut Unstructured) -> arbitrary::Result<String> {
    if u.arbitrary::<bool>()? { Ok(u.choose(TEXTS)?.to_string()) } else { u.arbitrary() }
}

fn any_value(u: &mut Unstructured, depth: u32) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=7)? {
        0 => Value::Null,
        1 => json!(u.arbitrary::<bool>()?),
        2 => json!(u.arbitrary::<f64>()?),
        3 => json!(text(u)?),
        4 if depth < 3 => Value::Array(
            (0..u.int_in_range(0..=3)?).map(|_| any_value(u, depth + 1)).collect::<arbitrary::Result<_>>()?,
        ),
        5 if depth < 3 => {
            let mut m = serde_json::Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                m.insert(text(u)?, any_value(u, depth + 1)?);
            }
            Value::Object(m)
        }
        _ => json!(u.arbitrary::<i32>()?),
    })
}

fn image_source(u: &mut Unstructured) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=2)? {
        0 => {
            json!({"type": "base64", "media_type": *u.choose(&["image/png", "image/jpeg", "image/webp", "x"])?,
                    "data": text(u)?})
        }
        1 => json!({"type": "url", "url": text(u)?}),
        _ => any_value(u, 1)?,
    })
}

fn result_content(u: &mut Unstructured) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=3)? {
        0 => json!(text(u)?),
        1 => Value::Null,
        _ => {
            let mut blocks = Vec::new();
            for _ in 0..u.int_in_range(0..=3)? {
                blocks.push(match u.int_in_range(0..=4)? {
                    0 => json!({"type": "text", "text": text(u)?}),
                    1 => json!({"type": "image", "source": image_source(u)?}),
                    2 => json!({"type": "tool_reference", "tool_name": *u.choose(TOOL_NAMES)?}),
                    3 => json!({"type": "document", "source": {"type": "text", "data": text(u)?}, "title": text(u)?}),
                    _ => any_value(u, 2)?,
                });
            }
            Value::Array(blocks)
        }
    })
}

fn block(u: &mut Unstructured) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=10)? {
        0 | 1 => json!({"type": "text", "text": text(u)?, "cache_control": {"type": "ephemeral"}}),
        2 => json!({"type": "image", "source": image_source(u)?}),
        3 | 4 => json!({"type": "tool_use", "id": *u.choose(IDS)?, "name": *u.choose(TOOL_NAMES)?,
                        "input": any_value(u, 0)?}),
        5 | 6 => json!({"tool_use_id": *u.choose(IDS)?, "type": "tool_result", "content": result_content(u)?,
                        "is_error": u.arbitrary::<bool>()?}),
        7 => json!({"type": "thinking", "thinking": text(u)?, "signature": "sig"}),
        8 => json!({"type": "redacted_thinking", "data": "abc"}),
        9 => {
            json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text(u)?},
                    "title": text(u)?})
        }
        _ => json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
    })
}

fn content(u: &mut Unstructured) -> arbitrary::Result<Value> {
    if u.int_in_range(0..=3)? == 0 {
        return Ok(json!(text(u)?));
    }
    Ok(Value::Array((0..u.int_in_range(0..=4)?).map(|_| block(u)).collect::<arbitrary::Result<_>>()?))
}

fn tool(u: &mut Unstructured) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=4)? {
        0 => json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 8}),
        1 => json!({"name": *u.choose(TOOL_NAMES)?, "description": text(u)?}),
        _ => json!({"name": *u.choose(TOOL_NAMES)?, "description": text(u)?,
                    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                                     "required": ["command"], "extra": any_value(u, 1)?}}),
    })
}

fn request(u: &mut Unstructured) -> arbitrary::Result<Value> {
    let mut messages = Vec::new();
    for _ in 0..u.int_in_range(1..=8)? {
        let role = *u.choose(&["user", "user", "assistant", "assistant", "system"])?;
        messages.push(json!({"role": role, "content": content(u)?}));
    }
    let mut body = json!({
        "model": *u.choose(MODELS)?,
        "max_tokens": u.int_in_range(1..=64_000)?,
        "messages": messages,
    });
    if u.arbitrary::<bool>()? {
        body["stream"] = json!(u.arbitrary::<bool>()?);
    }
    match u.int_in_range(0..=2)? {
        0 => {}
        1 => body["system"] = json!(text(u)?),
        _ => {
            body["system"] = json!([{"type": "text", "text": text(u)?}, {"type": "text", "text": text(u)?,
                                      "cache_control": {"type": "ephemeral"}}])
        }
    }
    if u.arbitrary::<bool>()? {
        body["tools"] =
            Value::Array((0..u.int_in_range(0..=4)?).map(|_| tool(u)).collect::<arbitrary::Result<_>>()?);
    }
    if u.arbitrary::<bool>()? {
        body["tool_choice"] = json!({"type": *u.choose(&["auto", "any", "tool", "none"])?,
                                     "name": *u.choose(TOOL_NAMES)?});
    }
    body["thinking"] = match u.int_in_range(0..=4)? {
        0 => json!({"type": "enabled", "budget_tokens": u.arbitrary::<u32>()?}),
        1 => json!({"type": "adaptive"}),
        2 => json!({"type": "disabled"}),
        3 => json!({"type": "something-new"}),
        _ => Value::Null,
    };
    if u.arbitrary::<bool>()? {
        body["output_config"] = json!({"effort": *u.choose(&["low", "medium", "high", "xhigh", "max", ""])?});
    }
    if u.arbitrary::<bool>()? {
        body["metadata"] = json!({"user_id": if u.arbitrary::<bool>()? {
            format!("{{\"device_id\":\"d\",\"session_id\":\"{}\"}}", text(u)?.replace('"', ""))
        } else {
            text(u)?
        }});
    }
    Ok(body)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let raw = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        match request(&mut Unstructured::new(rest)) {
            Ok(v) => serde_json::to_vec(&v).expect("a Value serialises"),
            Err(_) => return,
        }
    };
    let req = match parse_request(&raw) {
        Ok(req) => req,
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::InvalidRequestError, "{e}");
            assert_eq!(e.status.as_u16(), 400);
            assert!(!e.message.is_empty());
            return;
        }
    };
    let estimate = req.estimate_input_tokens();
    let _ = classify(&req, estimate, Thresholds::default());
    let model = (mode & 2 == 2).then_some("CLAUDE_SONNET_4_20250514_V1_0");
    let converted = match convert(&req, &ConvertOptions { model_id: model, ..ConvertOptions::default() }) {
        Ok(c) => c,
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::InvalidRequestError, "{e}");
            return;
        }
    };
    let arn = (mode & 4 == 4).then_some("arn:aws:codewhisperer:us-east-1:1:profile/\"odd\"");
    let body = request_body(&converted, arn);
    let value: Value = serde_json::from_slice(&body).expect("the upstream body is JSON");
    if let Err(rule) = check_kiro_body(&value) {
        panic!(
            "the upstream would reject a converted request: {rule}\nrequest: {}\nbody: {value}",
            String::from_utf8_lossy(&raw)
        );
    }
});

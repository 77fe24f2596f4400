//! Scripted answers: the frames of each [`Scenario`](super::Scenario) (text cut mid-word, tool
//! calls in fragments, thinking tags split across frames, an exception), the trailer events, and
//! the stream faults applied to them (cut mid-frame, corrupt CRC).

use super::chat::{Plan, RequestView};
use super::options::Scenario;
use super::state::{Knobs, Shared};
use super::websearch_model;
use crate::providers::codewhisperer::frame::{encode_event, encode_exception};
use crate::providers::codewhisperer::models;
use axum::body::Bytes;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// One frame as the pieces it is written in (one piece, except in the split-UTF-8 scenario).
pub(super) type FramePieces = Vec<Bytes>;

/// Chunk sizes (in characters) that text is cut into: uneven, so words are split mid-word.
pub(super) const TEXT_CHUNKS: [usize; 6] = [4, 9, 6, 13, 3, 8];

pub(super) fn split_chars(text: &str, sizes: &[usize]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < chars.len() {
        let size = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(8).max(1);
        let end = (at + size).min(chars.len());
        out.push(chars[at..end].iter().collect());
        at = end;
        i += 1;
    }
    out
}

/// Split a string into `parts` non-empty pieces (fewer when it is shorter) at char boundaries.
pub(super) fn split_fragments(s: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let parts = parts.clamp(1, chars.len().max(1));
    (0..parts)
        .map(|i| chars[i * chars.len() / parts..(i + 1) * chars.len() / parts].iter().collect())
        .collect()
}

/// Sample arguments that satisfy a tool's schema well enough: each required property (or the
/// first property when none is required) gets a value of its type.
pub(super) fn sample_input(schema: Option<&Value>) -> Value {
    let Some(props) = schema.and_then(|s| s.get("properties")).and_then(Value::as_object) else {
        return json!({});
    };
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|name| props.contains_key(*name))
        .collect();
    let names: Vec<&str> =
        if required.is_empty() { props.keys().take(1).map(String::as_str).collect() } else { required };
    let mut out = serde_json::Map::new();
    for name in names {
        let prop = &props[name];
        let value = if let Some(first) = prop.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
            first.clone()
        } else {
            match prop.get("type").and_then(Value::as_str) {
                Some("integer") | Some("number") => json!(1),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => json!("sim"),
            }
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// All frames written.
    Complete,
    /// Deliberately ended mid-frame (`CutStream`): not counted as completed.
    Cut,
}

/// Builds the frames of one answer.
pub(super) struct Script<'s> {
    pub(super) sim: &'s Shared,
    pub(super) frames: Vec<FramePieces>,
    pub(super) out_chars: usize,
    pub(super) ended_by_exception: bool,
    pub(super) default_tool: (String, Value),
}

impl<'s> Script<'s> {
    pub(super) fn new(sim: &'s Shared, view: &RequestView<'_>) -> Self {
        let default_tool = match view.tools.first() {
            Some((name, schema)) => ((*name).to_owned(), sample_input(*schema)),
            None => ("get_weather".to_owned(), json!({"city": "Paris", "unit": "celsius"})),
        };
        Script { sim, frames: Vec::new(), out_chars: 0, ended_by_exception: false, default_tool }
    }

    pub(super) fn event(&mut self, event_type: &str, payload: &Value) {
        self.frames.push(vec![encode_event(event_type, payload.to_string().as_bytes())]);
    }

    pub(super) fn text_chunk(&mut self, chunk: &str) {
        self.out_chars += chunk.chars().count();
        self.event("assistantResponseEvent", &json!({"content": chunk}));
    }

    pub(super) fn text(&mut self, text: &str) {
        for chunk in split_chars(text, &TEXT_CHUNKS) {
            self.text_chunk(&chunk);
        }
    }

    pub(super) fn tool_id(&self) -> String {
        let n = self.sim.counters.tool_ids.fetch_add(1, Ordering::Relaxed);
        let mut x = self.sim.fixed.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut id = String::from("tooluse_");
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        for _ in 0..22 {
            // splitmix64 step: a deterministic, well-spread id from the counter.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            id.push(char::from(ALPHABET[(z % ALPHABET.len() as u64) as usize]));
        }
        id
    }

    /// A tool call whose input arrives as `fragments` string pieces, then a `stop` frame.
    pub(super) fn tool(&mut self, name: &str, input: &Value, fragments: usize) {
        let id = self.tool_id();
        let input = input.to_string();
        self.out_chars += input.chars().count();
        for piece in split_fragments(&input, fragments) {
            self.event(
                "toolUseEvent",
                &json!({"name": name, "toolUseId": id, "input": piece, "stop": false}),
            );
        }
        self.event("toolUseEvent", &json!({"name": name, "toolUseId": id, "stop": true}));
    }

    /// A tool call whose input is one JSON object, then a `stop` frame.
    pub(super) fn tool_object(&mut self, name: &str, input: &Value) {
        let id = self.tool_id();
        self.out_chars += input.to_string().chars().count();
        self.event("toolUseEvent", &json!({"name": name, "toolUseId": id, "input": input, "stop": false}));
        self.event("toolUseEvent", &json!({"name": name, "toolUseId": id, "stop": true}));
    }

    pub(super) fn thinking(&mut self) {
        let name = &self.sim.name;
        let chunks = [
            "<thin".to_owned(),
            format!("king>\nThe user wants a simulated answer from {name}"),
            "; thinking it over.</thi".to_owned(),
            "nking>\n\n".to_owned(),
        ];
        for chunk in chunks {
            self.text_chunk(&chunk);
        }
    }

    pub(super) fn plain_text(&self) -> String {
        format!("Hello from {}! This is a simulated Kiro answer, streamed in small pieces.", self.sim.name)
    }

    pub(super) fn play(&mut self, plan: Plan, view: &RequestView<'_>) {
        if view.thinking_requested || plan == Plan::Scenario(Scenario::Thinking) {
            self.thinking();
        }
        let (tool, input) = self.default_tool.clone();
        let scenario = match plan {
            Plan::ToolResultAck => {
                let ids: Vec<&str> = view.tool_results.iter().map(|(id, _)| *id).collect();
                let first: String =
                    view.tool_results.first().map(|(_, t)| t.chars().take(60).collect()).unwrap_or_default();
                let text = format!(
                    "Received {} tool result(s) ({}). First result: \"{first}\". All done, answered by {}.",
                    ids.len(),
                    ids.join(", "),
                    self.sim.name
                );
                self.text(&text);
                return;
            }
            Plan::WebSearch => {
                let query = websearch_model::query(view).unwrap_or_default();
                self.text("I'll search the web for that.");
                let tool = websearch_model::tool_name(view).unwrap_or(websearch_model::TOOL_NAME);
                self.tool(tool, &json!({"query": query}), 2);
                return;
            }
            Plan::SearchSummary => {
                let text = websearch_model::summary(view).unwrap_or_default();
                self.text(&text);
                return;
            }
            Plan::Scenario(s) => s,
        };
        match scenario {
            Scenario::Text | Scenario::Thinking => self.text(&self.plain_text()),
            Scenario::Repeat => {
                for _ in 0..3 {
                    self.text_chunk("6");
                }
            }
            Scenario::Tool => {
                self.text("Let me use a tool.");
                self.tool(&tool, &input, 3);
            }
            Scenario::TwoTools => {
                self.text("Two tools at once.");
                self.tool(&tool, &input, 3);
                let (second, second_input) = match view.tools.get(1) {
                    Some((name, schema)) => ((*name).to_owned(), sample_input(*schema)),
                    None => (tool.clone(), input.clone()),
                };
                self.tool(&second, &second_input, 2);
            }
            Scenario::TextAfterTool => {
                self.text("First a tool.");
                self.tool(&tool, &input, 3);
                self.text(&format!("The tool is done; {} continues the answer.", self.sim.name));
            }
            Scenario::ObjectInput => {
                self.text("Object input follows.");
                self.tool_object(&tool, &input);
            }
            Scenario::SplitUtf8 => {
                let text = format!("Grüße aus {}: 你好，世界！🦀 naïve café ✓", self.sim.name);
                for chunk in split_chars(&text, &TEXT_CHUNKS) {
                    self.text_chunk(&chunk);
                    if let Some(frame) = self.frames.pop() {
                        self.frames.push(split_inside_utf8(frame));
                    }
                }
            }
            Scenario::Exception => {
                self.text("This answer will be cut off because it is too lo");
                self.frames.push(vec![encode_exception(
                    "ContentLengthExceededException",
                    json!({"message": "Response exceeded length"}).to_string().as_bytes(),
                )]);
                self.ended_by_exception = true;
            }
            Scenario::Bracket => {
                self.text("I will look that up.\n");
                self.text(&format!("[Called {tool} with args: {input}]"));
            }
            Scenario::Long(n) => {
                for i in 0..n.max(1) {
                    self.text_chunk(&format!("word{i} "));
                }
            }
        }
    }

    /// `meteringEvent`, `contextUsageEvent`, optional `metadataEvent` (not after an exception).
    pub(super) fn trailer(&mut self, view: &RequestView<'_>, model: &str, knobs: &Knobs) {
        if self.ended_by_exception {
            return;
        }
        let input_tokens = (view.body_len / 4).max(1) as u64;
        let output_tokens = (self.out_chars / 4).max(1) as u64;
        let window = models::context_window(model) as f64;
        let percentage = knobs.context_usage.unwrap_or_else(|| {
            let raw = input_tokens as f64 * 100.0 / window;
            (raw * 10_000.0).round() / 10_000.0
        });
        let credits = ((0.01 + output_tokens as f64 * 0.0001) * 1e6).round() / 1e6;
        self.event("meteringEvent", &json!({"unit": "credit", "unitPlural": "credits", "usage": credits}));
        if let Some(a) = super::state::lock(&self.sim.account).as_mut() {
            a.charge(credits);
        }
        self.event("contextUsageEvent", &json!({"contextUsagePercentage": percentage}));
        if knobs.metadata_event {
            self.event(
                "metadataEvent",
                &json!({"tokenUsage": {
                    "uncachedInputTokens": input_tokens,
                    "outputTokens": output_tokens,
                    "totalTokens": input_tokens + output_tokens + knobs.cache_tokens.0 + knobs.cache_tokens.1,
                    "cacheReadInputTokens": knobs.cache_tokens.0,
                    "cacheWriteInputTokens": knobs.cache_tokens.1,
                }}),
            );
        }
    }
}

/// Split an encoded frame in two right after the first byte of its first multi-byte UTF-8
/// sequence (in the middle of the payload's character); in half when it has none.
pub(super) fn split_inside_utf8(frame: FramePieces) -> FramePieces {
    let bytes: Vec<u8> = frame.iter().flat_map(|b| b.iter().copied()).collect();
    // Skip the prelude and headers: only split inside the JSON payload.
    let headers_len =
        bytes.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).unwrap_or(0);
    let payload_start = (12 + headers_len).min(bytes.len());
    let at = bytes[payload_start..]
        .iter()
        .position(|b| *b >= 0xC0)
        .map(|i| payload_start + i + 1)
        .unwrap_or(bytes.len() / 2)
        .clamp(1, bytes.len().saturating_sub(1).max(1));
    let bytes = Bytes::from(bytes);
    vec![bytes.slice(..at), bytes.slice(at..)]
}

/// `CutStream`: keep two whole frames (fewer for tiny answers), then half of the next one.
pub(super) fn cut_mid_frame(frames: &mut Vec<FramePieces>) -> End {
    let keep = 2.min(frames.len().saturating_sub(1));
    frames.truncate(keep + 1);
    if let Some(last) = frames.pop() {
        let bytes: Vec<u8> = last.iter().flat_map(|b| b.iter().copied()).collect();
        let half = (bytes.len() / 2).max(1);
        frames.push(vec![Bytes::copy_from_slice(&bytes[..half.min(bytes.len())])]);
    }
    End::Cut
}

/// `CorruptFrame`: flip the message CRC of the third frame (or the last, for tiny answers).
pub(super) fn corrupt_a_frame(frames: &mut [FramePieces]) {
    let index = 2.min(frames.len().saturating_sub(1));
    if let Some(frame) = frames.get_mut(index) {
        let mut bytes: Vec<u8> = frame.iter().flat_map(|b| b.iter().copied()).collect();
        if let Some(last) = bytes.last_mut() {
            *last ^= 0xFF;
        }
        *frame = vec![Bytes::from(bytes)];
    }
}

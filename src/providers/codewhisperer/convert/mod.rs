//! Anthropic Messages request → Kiro `generateAssistantResponse` body (protocol notes §3.3–3.5).
//!
//! The conversion is one pass over the parsed request into alternating turns, followed by the
//! normalisations Kiro needs to not answer `400 Improperly formed request.`:
//!
//! 1. **Alternation.** Claude Code's mid-conversation `role:"system"` messages count as user
//!    text, so they fold into the neighbouring user turn (a trailing one becomes, or joins, the
//!    current message). Consecutive same-role messages are merged. History starts with a user
//!    turn (the system-prompt pair, or a placeholder) and ends with an assistant turn.
//! 2. **Current message is a user message.** A trailing assistant message (prefill) moves into
//!    history and the current message says `Continue`.
//! 3. **No empty content.** Empty user turns get `Continue` (`Tool results provided.` when they
//!    carry tool results), empty assistant turns (e.g. tool uses only) get `(empty)`, empty tool
//!    results `(empty result)`.
//! 4. **Every tool use answered, every result matched.** A `tool_result` must answer a tool use
//!    of the assistant turn right before it. Results that do not (orphans, e.g. after client-side
//!    compaction) become plain text in their user turn; duplicate result ids are dropped; a tool
//!    use that got no result is **answered with an error result** (`status:"error"`, text
//!    [`MISSING_TOOL_RESULT`]) rather than removed. Answering keeps the assistant turn as the
//!    model produced it (removing tool uses can leave an empty turn and hides that a call was
//!    made) and tells the model the call did not complete, which is exactly what happened;
//!    Anthropic itself would reject such a conversation, so the client is the one at fault.
//!    Duplicate tool use ids in history keep their first occurrence; a tool use with an empty id
//!    (no result can answer it, and Kiro rejects it) is dropped, and a result with an empty id is
//!    an orphan.
//! 5. **Tools declared.** Custom tools go to `currentMessage…tools`; server tools
//!    (`web_search_20250305`, …) are not sent as specs; tools used in history but not declared
//!    (case-insensitive) get a placeholder spec.
//! 6. **Names and sizes.** Tool names over [`MAX_TOOL_NAME_LEN`] are shortened to a 54-char
//!    prefix + `_` + 8 hex of SHA-256, with a reverse map in [`Converted::tool_names`];
//!    descriptions are capped (`...` appended); empty descriptions get a placeholder.
//! 7. **No nulls, no empty containers.** Schemas and tool inputs are written without `null`s,
//!    schemas always have `type` and `properties`; empty arrays/objects of the envelope are
//!    omitted.
//!
//! [`check_kiro_body`] is the validator for those rules; the simulated upstream uses it to answer
//! 400 exactly where Kiro would.
//!
//! Files: this one holds the entry points ([`convert`], [`request_body`]) and tool naming;
//! [`turns`] the merging into turns and rules 1–6, [`serialize`] the writing of the turns as
//! Kiro JSON (rule 7), [`validate`] the §3.5 validator.

mod serialize;
#[cfg(test)]
mod tests;
mod turns;
mod validate;

pub use validate::check_kiro_body;

use super::models;
use crate::anthropic::ApiError;
use crate::anthropic::text::TextBuf;
use crate::anthropic::types::MessagesRequest;
use crate::buffers;
use bytes::Bytes;
use serialize::{StateOut, write_state};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use turns::{
    Side, Turn, add_message, limit_images, pair_tool_results, push_raw, system_text, thinking_prefix,
    tool_specs,
};

/// Default cap on a tool description, in characters (KRS, K2A and KGW use 10 000).
pub const DEFAULT_MAX_TOOL_DESCRIPTION: usize = 10_000;
/// Longest tool name sent as is (KRS's limit; Kiro rejects names over 64).
pub const MAX_TOOL_NAME_LEN: usize = 63;
/// Bytes of the original name kept in a shortened tool name.
const SHORT_NAME_PREFIX: usize = 54;
/// Thinking budget sent in `<max_thinking_length>` when `budget_tokens` is missing.
pub const DEFAULT_THINKING_BUDGET: u64 = 20_000;
/// Largest thinking budget sent upstream (KRS and ACA cap at 24 576).
pub const MAX_THINKING_BUDGET: u64 = 24_576;
/// The assistant half of the system-prompt pair, as the official client sends it.
pub const SYSTEM_ACKNOWLEDGEMENT: &str = "I will follow these instructions.";
/// Current message after a prefill, and text of otherwise empty user turns.
pub const CONTINUE: &str = "Continue";
/// Text of a user turn that carries only tool results.
pub const TOOL_RESULTS_PROVIDED: &str = "Tool results provided.";
/// Text of an assistant turn without text (e.g. tool uses only).
pub const EMPTY_ASSISTANT: &str = "(empty)";
/// Text of a history user turn inserted to make history start with a user message.
pub const EMPTY_USER: &str = "(empty)";
/// Text of a tool result with no content.
pub const EMPTY_TOOL_RESULT: &str = "(empty result)";
/// Error result sent for a tool use the client never answered.
pub const MISSING_TOOL_RESULT: &str = "Tool result missing: the client sent no result for this tool call.";
/// Largest image Kiro takes, decoded bytes (KRS2 drops images over 5 MiB).
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Most images sent in one request; older ones are left out beyond it.
pub const MAX_IMAGES: usize = 20;
/// Description of a placeholder spec for a tool used in history but not declared.
pub const HISTORY_TOOL_DESCRIPTION: &str = "Tool used in conversation history";

/// How to convert one request.
#[derive(Debug, Clone, Copy)]
pub struct ConvertOptions<'a> {
    /// The routing rule's model, sent verbatim; `None` → [`models::map_model`] of the request's model.
    pub model_id: Option<&'a str>,
    /// Cap on tool descriptions, in characters.
    pub max_tool_description: usize,
    /// The request's input token estimate when the caller already has it (it sizes the output
    /// buffer); `None` → computed here.
    pub input_estimate: Option<u64>,
}

impl Default for ConvertOptions<'_> {
    fn default() -> Self {
        ConvertOptions {
            model_id: None,
            max_tool_description: DEFAULT_MAX_TOOL_DESCRIPTION,
            input_estimate: None,
        }
    }
}

/// The result of [`convert`]: everything an upstream attempt needs.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The serialized `conversationState` JSON object, built once per client request.
    pub conversation_state: Bytes,
    pub model_id: String,
    /// Thinking tags were injected; the response side parses `<thinking>` out of the text.
    pub thinking: bool,
    /// Shortened tool name → original name, for restoring names in responses.
    pub tool_names: HashMap<String, String>,
    pub conversation_id: String,
}

/// Converts an Anthropic request into a Kiro `conversationState`.
///
/// Fails only for a request without messages (which [`crate::anthropic::types::parse_request`]
/// already rejects).
pub fn convert(req: &MessagesRequest, opts: &ConvertOptions) -> Result<Converted, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid_request("messages: at least one message is required"));
    }
    let model_id = opts.model_id.map_or_else(|| models::map_model(&req.model), str::to_owned);
    let conversation_id = req.session_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut tool_names = HashMap::new();

    let mut turns: Vec<Turn> = Vec::with_capacity(req.messages.len() + 4);
    for message in &req.messages {
        add_message(&mut turns, message, &mut tool_names);
    }
    if turns.last().is_none_or(|t| t.side == Side::Assistant) {
        turns.push(Turn::text(Side::User, CONTINUE));
    }
    let Some(mut current) = turns.pop() else {
        return Err(ApiError::invalid_request("messages: at least one message is required"));
    };

    let prefix = thinking_prefix(req);
    let system = system_text(req);
    let mut history: Vec<Turn> = Vec::with_capacity(turns.len() + 3);
    if prefix.is_some() || !system.is_empty() {
        let mut text = TextBuf::with_capacity(system.raw().len() + 128);
        if let Some(prefix) = &prefix {
            text.push_plain(prefix);
        }
        push_raw(&mut text, &system, "\n");
        let mut turn = Turn::new(Side::User);
        turn.text = text;
        history.push(turn);
        history.push(Turn::text(Side::Assistant, SYSTEM_ACKNOWLEDGEMENT));
    }
    if turns.first().is_some_and(|t| t.side == Side::Assistant) {
        history.push(Turn::text(Side::User, EMPTY_USER));
    }
    history.extend(turns);

    limit_images(&mut history, &mut current)?;
    pair_tool_results(&mut history, &mut current);
    let tools = tool_specs(req, opts.max_tool_description, &history, &mut tool_names);
    for turn in history.iter_mut().chain(std::iter::once(&mut current)) {
        turn.fill_empty();
    }

    let state = StateOut {
        conversation_id: &conversation_id,
        model_id: &model_id,
        history: &history,
        current: &current,
        tools: &tools,
    };
    let estimate = opts.input_estimate.unwrap_or_else(|| req.estimate_input_tokens());
    let mut conversation_state =
        buffers::UPSTREAM_BODIES.take(serialized_size_hint(estimate, &history, &current));
    write_state(&mut conversation_state, &state)
        .map_err(|e| ApiError::invalid_request(format!("request could not be converted: {e}")))?;
    Ok(Converted {
        conversation_state: conversation_state.into_bytes(),
        model_id,
        thinking: prefix.is_some(),
        tool_names,
        conversation_id,
    })
}

/// Capacity for the serialised `conversationState`: the request's text and schema bytes (the
/// classifier's estimate) plus image data, with a quarter more for JSON escaping and structure.
/// Serialising a 1 MB conversation then allocates once instead of doubling its way up, which
/// costs a copy and fresh pages at every step.
fn serialized_size_hint(estimate: u64, history: &[Turn<'_>], current: &Turn<'_>) -> usize {
    let text = usize::try_from(estimate.saturating_mul(4)).unwrap_or(0);
    let images: usize = history
        .iter()
        .chain(std::iter::once(current))
        .flat_map(|t| t.images.iter())
        .map(|i| i.source.bytes.len())
        .sum();
    let bytes = text.saturating_add(images);
    bytes.saturating_add(bytes / 4).saturating_add(4096)
}

/// The request body for one upstream attempt, in three parts:
/// `{"conversationState":`, the state built once by [`convert`] (shared, not copied), and
/// `,"profileArn":"…"}` (an empty ARN is omitted). The client sends the parts one after the
/// other, so a 1 MB conversation is not copied into a second 1 MB buffer for each attempt.
pub fn request_parts(converted: &Converted, profile_arn: Option<&str>) -> [Bytes; 3] {
    let mut tail = Vec::with_capacity(profile_arn.map_or(0, str::len) + 20);
    if let Some(arn) = profile_arn.filter(|a| !a.is_empty()) {
        tail.extend_from_slice(b",\"profileArn\":");
        write_json_string(&mut tail, arn);
    }
    tail.push(b'}');
    [Bytes::from_static(b"{\"conversationState\":"), converted.conversation_state.clone(), Bytes::from(tail)]
}

/// The parts of [`request_parts`] in one buffer: `{"conversationState":<state>,"profileArn":…}`
/// (for tests, the benchmarks and the load harness, which send the Kiro body themselves).
pub fn request_body(converted: &Converted, profile_arn: Option<&str>) -> Bytes {
    request_parts(converted, profile_arn).concat().into()
}

/// Appends `s` as a JSON string literal.
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let mut buf = String::with_capacity(6);
                let _ = write!(buf, "\\u{:04x}", c as u32);
                out.extend_from_slice(buf.as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The `agentContinuationId` of a conversation: a UUID derived from the `conversationId`, so it
/// is the same for every turn of one Claude Code session (the Kiro IDE keeps one per chat).
pub fn agent_continuation_id(conversation_id: &str) -> String {
    let hash = Sha256::digest(format!("ccr-agent-continuation/{conversation_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// The name sent to Kiro for a tool: the name itself up to [`MAX_TOOL_NAME_LEN`] bytes, else a
/// 54-byte prefix (cut at a character boundary) + `_` + the first 8 hex digits of its SHA-256.
pub fn shorten_tool_name(name: &str) -> Cow<'_, str> {
    if name.len() <= MAX_TOOL_NAME_LEN {
        return Cow::Borrowed(name);
    }
    let mut end = SHORT_NAME_PREFIX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let hash = Sha256::digest(name.as_bytes());
    let mut short = String::with_capacity(end + 9);
    short.push_str(&name[..end]);
    short.push('_');
    for byte in &hash[..4] {
        let _ = write!(short, "{byte:02x}");
    }
    Cow::Owned(short)
}

/// Tool name for Kiro, recording shortened names in the reverse map. Empty names (never sent by
/// real clients) become `unnamed_tool` so that no spec or tool use has an empty name.
pub(super) fn kiro_tool_name<'a>(name: &'a str, names: &mut HashMap<String, String>) -> Cow<'a, str> {
    if name.is_empty() {
        return Cow::Borrowed("unnamed_tool");
    }
    let short = shorten_tool_name(name);
    if let Cow::Owned(s) = &short {
        names.entry(s.clone()).or_insert_with(|| name.to_owned());
    }
    short
}

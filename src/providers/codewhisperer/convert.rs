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

use super::buffers;
use super::models;
use crate::anthropic::ApiError;
use crate::anthropic::types::{
    Content, ContentBlock, Message, MessagesRequest, Role, Source, ThinkingKind, Tool, ToolResultBlock,
};
use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

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
/// Description of a placeholder spec for a tool used in history but not declared.
pub const HISTORY_TOOL_DESCRIPTION: &str = "Tool used in conversation history";

/// How to convert one request.
#[derive(Debug, Clone, Copy)]
pub struct ConvertOptions<'a> {
    /// The routing rule's model, sent verbatim; `None` → [`models::map_model`] of the request's model.
    pub model_id: Option<&'a str>,
    /// Cap on tool descriptions, in characters.
    pub max_tool_description: usize,
}

impl Default for ConvertOptions<'_> {
    fn default() -> Self {
        ConvertOptions { model_id: None, max_tool_description: DEFAULT_MAX_TOOL_DESCRIPTION }
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
        let mut text = String::with_capacity(system.len() + 128);
        if let Some(prefix) = &prefix {
            text.push_str(prefix);
        }
        push_part(&mut text, &system, "\n");
        history.push(Turn::text(Side::User, &text));
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
    let mut conversation_state = buffers::UPSTREAM_BODIES.take(serialized_size_hint(req, &history, &current));
    serde_json::to_writer(&mut *conversation_state, &state)
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
fn serialized_size_hint(req: &MessagesRequest, history: &[Turn<'_>], current: &Turn<'_>) -> usize {
    let text = usize::try_from(req.estimate_input_tokens().saturating_mul(4)).unwrap_or(0);
    let images: usize = history
        .iter()
        .chain(std::iter::once(current))
        .flat_map(|t| t.images.iter())
        .map(|i| i.source.bytes.len())
        .sum();
    let bytes = text.saturating_add(images);
    bytes.saturating_add(bytes / 4).saturating_add(4096)
}

/// The full request body for one upstream attempt: `{"conversationState":<state>,"profileArn":…}`
/// by byte concatenation (the state is not re-serialised). An empty ARN is omitted.
pub fn request_body(converted: &Converted, profile_arn: Option<&str>) -> Bytes {
    let arn = profile_arn.filter(|a| !a.is_empty());
    let mut out =
        buffers::UPSTREAM_BODIES.take(converted.conversation_state.len() + 48 + arn.map_or(0, str::len));
    out.extend_from_slice(b"{\"conversationState\":");
    out.extend_from_slice(&converted.conversation_state);
    if let Some(arn) = arn {
        out.extend_from_slice(b",\"profileArn\":");
        write_json_string(&mut out, arn);
    }
    out.push(b'}');
    out.into_bytes()
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
fn kiro_tool_name<'a>(name: &'a str, names: &mut HashMap<String, String>) -> Cow<'a, str> {
    if name.is_empty() {
        return Cow::Borrowed("unnamed_tool");
    }
    let short = shorten_tool_name(name);
    if let Cow::Owned(s) = &short {
        names.entry(s.clone()).or_insert_with(|| name.to_owned());
    }
    short
}

// ---------------------------------------------------------------------------------------------
// Turns: the request after merging, before serialisation.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    User,
    Assistant,
}

/// One history or current message.
#[derive(Debug)]
struct Turn<'a> {
    side: Side,
    text: String,
    images: Vec<KImage<'a>>,
    tool_results: Vec<KToolResult<'a>>,
    tool_uses: Vec<KToolUse<'a>>,
}

impl<'a> Turn<'a> {
    fn new(side: Side) -> Self {
        Turn {
            side,
            text: String::new(),
            images: Vec::new(),
            tool_results: Vec::new(),
            tool_uses: Vec::new(),
        }
    }

    fn text(side: Side, text: &str) -> Self {
        let mut turn = Turn::new(side);
        turn.text.push_str(text);
        turn
    }

    /// Rule 3: no empty content.
    fn fill_empty(&mut self) {
        if !self.text.trim().is_empty() {
            return;
        }
        let placeholder = match self.side {
            Side::Assistant => EMPTY_ASSISTANT,
            Side::User if !self.tool_results.is_empty() => TOOL_RESULTS_PROVIDED,
            Side::User => CONTINUE,
        };
        self.text.clear();
        self.text.push_str(placeholder);
    }
}

#[derive(Debug, Serialize)]
struct KImage<'a> {
    format: &'static str,
    source: KImageSource<'a>,
}

#[derive(Debug, Serialize)]
struct KImageSource<'a> {
    bytes: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KToolResult<'a> {
    tool_use_id: &'a str,
    content: [KText<'a>; 1],
    status: &'static str,
}

impl<'a> KToolResult<'a> {
    fn new(tool_use_id: &'a str, text: Cow<'a, str>, is_error: bool) -> Self {
        let text = if text.trim().is_empty() { Cow::Borrowed(EMPTY_TOOL_RESULT) } else { text };
        KToolResult {
            tool_use_id,
            content: [KText { text }],
            status: if is_error { "error" } else { "success" },
        }
    }
}

#[derive(Debug, Serialize)]
struct KText<'a> {
    text: Cow<'a, str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KToolUse<'a> {
    tool_use_id: &'a str,
    name: Cow<'a, str>,
    input: ToolInput<'a>,
    /// The client's name, for the case-insensitive "declared?" check.
    #[serde(skip)]
    original: &'a str,
}

/// One entry of `userInputMessageContext.tools`.
#[derive(Debug)]
struct ToolSpec<'a> {
    name: Cow<'a, str>,
    description: Cow<'a, str>,
    schema: Option<&'a Value>,
}

/// Joins `part` onto `buf` with `sep` when both are non-empty.
fn push_part(buf: &mut String, part: &str, sep: &str) {
    if part.is_empty() {
        return;
    }
    if !buf.is_empty() {
        buf.push_str(sep);
    }
    buf.push_str(part);
}

/// Appends the text pieces of one message: blocks joined with `\n`, messages merged into one
/// turn separated by a blank line, a replayed `<thinking>` block followed by a blank line.
struct TextJoiner {
    first: bool,
    after_thinking: bool,
}

impl TextJoiner {
    fn new() -> Self {
        TextJoiner { first: true, after_thinking: false }
    }

    fn push(&mut self, buf: &mut String, part: &str) {
        if part.is_empty() {
            return;
        }
        let sep = if self.first || self.after_thinking { "\n\n" } else { "\n" };
        push_part(buf, part, sep);
        self.first = false;
        self.after_thinking = false;
    }

    fn push_thinking(&mut self, buf: &mut String, thinking: &str) {
        if thinking.trim().is_empty() {
            return;
        }
        let sep = if self.first { "\n\n" } else { "\n" };
        if !buf.is_empty() {
            buf.push_str(sep);
        }
        buf.reserve(thinking.len() + 23);
        buf.push_str("<thinking>");
        buf.push_str(thinking);
        buf.push_str("</thinking>");
        self.first = false;
        self.after_thinking = true;
    }
}

/// Adds one Anthropic message to the turn list, merging it into the last turn when the role
/// (user and system count as one side) is the same.
fn add_message<'a>(turns: &mut Vec<Turn<'a>>, message: &'a Message, names: &mut HashMap<String, String>) {
    let side = match message.role {
        Role::Assistant => Side::Assistant,
        Role::User | Role::System => Side::User,
    };
    if !matches!(turns.last(), Some(t) if t.side == side) {
        turns.push(Turn::new(side));
    }
    let index = turns.len() - 1;
    let turn = &mut turns[index];
    let mut joiner = TextJoiner::new();
    let blocks = match &message.content {
        Content::Text(s) => {
            joiner.push(&mut turn.text, s);
            return;
        }
        Content::Blocks(blocks) => blocks,
    };
    for block in blocks {
        match (side, block) {
            (_, ContentBlock::Text { text }) => joiner.push(&mut turn.text, text),
            (_, ContentBlock::Document { source, title }) => {
                let mut text = String::new();
                document_text(source.as_ref(), title.as_deref(), &mut text);
                joiner.push(&mut turn.text, &text);
            }
            (Side::User, ContentBlock::Image { source }) => match image(source) {
                Ok(image) => turn.images.push(image),
                Err(Some(note)) => joiner.push(&mut turn.text, &note),
                Err(None) => {}
            },
            (Side::User, ContentBlock::ToolResult { tool_use_id, content, is_error }) => {
                let text = tool_result_text(content.as_ref(), &mut turn.images);
                turn.tool_results.push(KToolResult::new(tool_use_id, text, *is_error));
            }
            (Side::Assistant, ContentBlock::Thinking { thinking }) => {
                joiner.push_thinking(&mut turn.text, thinking);
            }
            (Side::Assistant, ContentBlock::ToolUse { id, name, input }) => turn.tool_uses.push(KToolUse {
                tool_use_id: id,
                name: kiro_tool_name(name, names),
                input: ToolInput(input),
                original: name,
            }),
            (
                Side::Assistant,
                block @ (ContentBlock::ServerToolUse { .. } | ContentBlock::WebSearchToolResult { .. }),
            ) => {
                if let Some(text) = super::websearch::history_text(block) {
                    joiner.push(&mut turn.text, &text);
                }
            }
            // Images and results in assistant turns, tool uses and thinking in user turns, redacted
            // thinking and unknown blocks have no Kiro equivalent.
            _ => {}
        }
    }
}

/// Largest image Kiro takes, decoded bytes (KRS2 drops images over 5 MiB).
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;

/// Most images sent in one request; older ones are left out beyond it.
pub const MAX_IMAGES: usize = 20;

/// Kiro's image limits: an image over [`MAX_IMAGE_BYTES`] is refused with a 400 that says so
/// (ccr does not re-encode images); beyond [`MAX_IMAGES`] in one request the oldest are left out
/// and their message says how many.
fn limit_images(history: &mut [Turn<'_>], current: &mut Turn<'_>) -> Result<(), ApiError> {
    let mut total = 0;
    for turn in history.iter().chain(std::iter::once(&*current)) {
        for img in &turn.images {
            let decoded = img.source.bytes.len() / 4 * 3;
            if decoded > MAX_IMAGE_BYTES {
                return Err(ApiError::invalid_request(format!(
                    "messages: an image of {:.1} MB is larger than the {} MB Kiro accepts per image; resize or compress it",
                    decoded as f64 / 1_048_576.0,
                    MAX_IMAGE_BYTES / 1_048_576
                )));
            }
        }
        total += turn.images.len();
    }
    let mut excess = total.saturating_sub(MAX_IMAGES);
    for turn in history.iter_mut() {
        if excess == 0 {
            break;
        }
        let drop = excess.min(turn.images.len());
        if drop > 0 {
            turn.images.drain(..drop);
            excess -= drop;
            push_part(
                &mut turn.text,
                &format!("[{drop} image(s) left out: Kiro takes at most {MAX_IMAGES} images per request]"),
                "\n",
            );
        }
    }
    Ok(())
}

/// Kiro image format for a media type; `None` for formats Kiro does not take.
fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type.trim().to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

/// A base64 image, or why not: `Err(Some(text))` for a URL image (described in the text),
/// `Err(None)` for an unsupported or empty one (dropped).
fn image(source: &Source) -> Result<KImage<'_>, Option<String>> {
    if let Some(url) = source.url.as_deref().filter(|_| source.kind == "url") {
        return Err(Some(format!("[Image: {url}]")));
    }
    let data = source.data.as_deref().unwrap_or("");
    // `data:image/png;base64,AAAA` carries its own media type.
    let (url_media, bytes) = match data.strip_prefix("data:").and_then(|rest| rest.split_once(',')) {
        Some((meta, bytes)) => (meta.split(';').next(), bytes),
        None => (None, data),
    };
    let media_type = source.media_type.as_deref().or(url_media).unwrap_or("");
    match image_format(media_type) {
        Some(format) if !bytes.is_empty() => Ok(KImage { format, source: KImageSource { bytes } }),
        _ => Err(None),
    }
}

/// The text of a tool result: string content as is, blocks joined with `\n`, images and
/// documents described, tool references named.
///
/// Kiro's tool results carry text only, so base64 images in a result move to `images`, the user
/// message that carries the result, and the result says where each went:
/// `[Image: attached to this message as image N]`.
fn tool_result_text<'a>(
    content: Option<&'a Content<ToolResultBlock>>,
    images: &mut Vec<KImage<'a>>,
) -> Cow<'a, str> {
    if let Some(Content::Blocks(blocks)) = content
        && blocks.iter().any(|b| matches!(b, ToolResultBlock::Image { .. }))
    {
        let mut out = String::new();
        for block in blocks {
            match block {
                ToolResultBlock::Image { source } => match image(source) {
                    Ok(img) => {
                        images.push(img);
                        let note = format!("[Image: attached to this message as image {}]", images.len());
                        push_part(&mut out, &note, "\n");
                    }
                    Err(_) => result_block_text(block, &mut out),
                },
                other => result_block_text(other, &mut out),
            }
        }
        return Cow::Owned(out);
    }
    match content {
        None => Cow::Borrowed(""),
        Some(Content::Text(s)) => Cow::Borrowed(s),
        Some(Content::Blocks(blocks)) => match blocks.as_slice() {
            [ToolResultBlock::Text { text }] => Cow::Borrowed(text),
            _ => {
                let mut out = String::new();
                for block in blocks {
                    result_block_text(block, &mut out);
                }
                Cow::Owned(out)
            }
        },
    }
}

fn result_block_text(block: &ToolResultBlock, out: &mut String) {
    match block {
        ToolResultBlock::Text { text } => push_part(out, text, "\n"),
        ToolResultBlock::Image { source } => {
            let media = source.media_type.as_deref().unwrap_or("unknown type");
            let note = match source.url.as_deref() {
                Some(url) => format!("[Image: {url}]"),
                None => format!("[Image omitted: {media} is not a format Kiro takes (png, jpeg, gif, webp)]"),
            };
            push_part(out, &note, "\n");
        }
        ToolResultBlock::ToolReference { tool_name } if !tool_name.is_empty() => {
            push_part(out, &format!("[Tool reference: {tool_name}]"), "\n");
        }
        ToolResultBlock::Document { source, title } => {
            let mut text = String::new();
            document_text(source.as_ref(), title.as_deref(), &mut text);
            push_part(out, &text, "\n");
        }
        ToolResultBlock::ToolReference { .. } | ToolResultBlock::Unknown => {}
    }
}

/// A document block as text: plain-text and nested-content documents inline (with their title),
/// URL documents by address, binary ones (PDF) as a note.
fn document_text(source: Option<&Source>, title: Option<&str>, out: &mut String) {
    let title = title.filter(|t| !t.is_empty());
    let Some(source) = source else {
        if let Some(title) = title {
            push_part(out, &format!("[Document: {title}]"), "\n");
        }
        return;
    };
    match source.kind.as_str() {
        "text" | "content" => {
            if let Some(title) = title {
                push_part(out, &format!("Document: {title}"), "\n");
            }
            if let Some(data) = source.data.as_deref() {
                push_part(out, data, "\n");
            }
            match &source.content {
                Some(Content::Text(s)) => push_part(out, s, "\n"),
                Some(Content::Blocks(blocks)) => blocks.iter().for_each(|b| result_block_text(b, out)),
                None => {}
            }
        }
        "url" => push_part(out, &format!("[Document: {}]", source.url.as_deref().unwrap_or("")), "\n"),
        _ => {
            let media = source.media_type.as_deref().unwrap_or("unknown type");
            let note = match title {
                Some(title) => format!("[Document omitted: {title} ({media})]"),
                None => format!("[Document omitted: {media}]"),
            };
            push_part(out, &note, "\n");
        }
    }
}

/// The top-level system prompt, blocks joined with `\n`.
fn system_text(req: &MessagesRequest) -> Cow<'_, str> {
    match &req.system {
        None => Cow::Borrowed(""),
        Some(Content::Text(s)) => Cow::Borrowed(s),
        Some(Content::Blocks(blocks)) => {
            let mut out = String::with_capacity(blocks.iter().map(|b| b.text.len() + 1).sum());
            for block in blocks {
                push_part(&mut out, &block.text, "\n");
            }
            Cow::Owned(out)
        }
    }
}

/// The KRS-style thinking tags put at the start of the system-prompt turn.
///
/// `enabled`: `<thinking_mode>enabled</thinking_mode><max_thinking_length>N</max_thinking_length>`
/// with N = `budget_tokens` (default 20 000) capped at 24 576. `adaptive`:
/// `<thinking_mode>adaptive</thinking_mode><thinking_effort>E</thinking_effort>` with E =
/// `output_config.effort` when it is `low`, `medium` or `high`, else `high` (the values KRS
/// accepts; `xhigh`/`max` are not known to Kiro).
fn thinking_prefix(req: &MessagesRequest) -> Option<String> {
    match req.thinking_kind()? {
        ThinkingKind::Enabled => {
            let budget = req.thinking_budget().unwrap_or(DEFAULT_THINKING_BUDGET).min(MAX_THINKING_BUDGET);
            Some(format!(
                "<thinking_mode>enabled</thinking_mode><max_thinking_length>{budget}</max_thinking_length>"
            ))
        }
        ThinkingKind::Adaptive => {
            let effort = req.effort().filter(|e| matches!(*e, "low" | "medium" | "high")).unwrap_or("high");
            Some(format!(
                "<thinking_mode>adaptive</thinking_mode><thinking_effort>{effort}</thinking_effort>"
            ))
        }
        ThinkingKind::Disabled | ThinkingKind::Other => None,
    }
}

/// Rule 4: pairs each user turn's tool results with the tool uses of the assistant turn before it.
fn pair_tool_results<'a>(history: &mut [Turn<'a>], current: &mut Turn<'a>) {
    let mut seen_uses: HashSet<&'a str> = HashSet::new();
    let mut orphans_seen: HashSet<&'a str> = HashSet::new();
    let mut pending: Vec<&'a str> = Vec::new();
    for turn in history.iter_mut().chain(std::iter::once(current)) {
        match turn.side {
            Side::Assistant => {
                turn.tool_uses.retain(|u| !u.tool_use_id.is_empty() && seen_uses.insert(u.tool_use_id));
                pending.clear();
                pending.extend(turn.tool_uses.iter().map(|u| u.tool_use_id));
            }
            Side::User => {
                if turn.tool_results.is_empty() && pending.is_empty() {
                    continue;
                }
                let mut answered: HashSet<&'a str> = HashSet::new();
                let results = std::mem::take(&mut turn.tool_results);
                let mut orphan_text = String::new();
                for result in results {
                    let id = result.tool_use_id;
                    if pending.contains(&id) {
                        if answered.insert(id) {
                            turn.tool_results.push(result);
                        }
                    } else if orphans_seen.insert(id) {
                        let status = if result.status == "error" { " (error)" } else { "" };
                        let [KText { text }] = result.content;
                        push_part(
                            &mut orphan_text,
                            &format!("[Tool result for {id}{status}]\n{text}"),
                            "\n\n",
                        );
                    }
                }
                for id in pending.drain(..) {
                    if !answered.contains(id) {
                        turn.tool_results.push(KToolResult::new(
                            id,
                            Cow::Borrowed(MISSING_TOOL_RESULT),
                            true,
                        ));
                    }
                }
                push_part(&mut turn.text, &orphan_text, "\n\n");
            }
        }
    }
}

/// Rule 5 and 6: the tool specs for the current message.
fn tool_specs<'a>(
    req: &'a MessagesRequest,
    max_description: usize,
    history: &[Turn<'a>],
    names: &mut HashMap<String, String>,
) -> Vec<ToolSpec<'a>> {
    let mut declared: HashSet<String> = HashSet::with_capacity(req.tools.len());
    let mut specs = Vec::with_capacity(req.tools.len());
    for tool in &req.tools {
        if tool.is_server_tool() || tool.name.is_empty() || !declared.insert(tool.name.to_lowercase()) {
            continue;
        }
        specs.push(ToolSpec {
            name: kiro_tool_name(&tool.name, names),
            description: tool_description(tool, max_description),
            schema: tool.input_schema.as_ref(),
        });
    }
    for tool_use in history.iter().flat_map(|t| &t.tool_uses) {
        if declared.insert(tool_use.original.to_lowercase()) {
            specs.push(ToolSpec {
                name: tool_use.name.clone(),
                description: Cow::Borrowed(HISTORY_TOOL_DESCRIPTION),
                schema: None,
            });
        }
    }
    specs
}

/// The `agentContinuationId` of a conversation: a UUID derived from the `conversationId`, so it
/// is the same for every turn of one Claude Code session (the Kiro IDE keeps one per chat).
pub fn agent_continuation_id(conversation_id: &str) -> String {
    let hash = Sha256::digest(format!("ccr-agent-continuation/{conversation_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// The description capped at `max` characters (the last three being `...`), or a placeholder
/// naming the tool when empty.
///
/// `input_examples` (Kiro has no such field) are appended as `Input examples:` lines.
fn tool_description(tool: &Tool, max: usize) -> Cow<'_, str> {
    if !tool.input_examples.is_empty() {
        let mut text = tool.description.clone().unwrap_or_default();
        text.push_str("\n\nInput examples:");
        for example in &tool.input_examples {
            text.push_str("\n- ");
            text.push_str(&example.to_string());
        }
        let with = Tool { description: Some(text), input_examples: Vec::new(), ..tool.clone() };
        return Cow::Owned(tool_description(&with, max).into_owned());
    }
    let description = tool.description.as_deref().unwrap_or("");
    if description.trim().is_empty() {
        return Cow::Owned(format!("Tool: {}", tool.name));
    }
    if description.len() <= max || description.char_indices().nth(max).is_none() {
        return Cow::Borrowed(description);
    }
    let keep = max.saturating_sub(3);
    let cut = description.char_indices().nth(keep).map_or(description.len(), |(i, _)| i);
    Cow::Owned(format!("{}...", &description[..cut]))
}

// ---------------------------------------------------------------------------------------------
// Serialisation: written straight from the turns, no intermediate JSON tree.

/// A JSON value written without `null` members or elements.
#[derive(Debug)]
struct NoNulls<'a>(&'a Value);

impl Serialize for NoNulls<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut m = s.serialize_map(None)?;
                for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
                    m.serialize_entry(k, &NoNulls(v))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(None)?;
                for v in items.iter().filter(|v| !v.is_null()) {
                    seq.serialize_element(&NoNulls(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// A tool use's `input`: the object without nulls, `{}` for anything that is not an object.
#[derive(Debug)]
struct ToolInput<'a>(&'a Value);

impl Serialize for ToolInput<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(_) => NoNulls(self.0).serialize(s),
            _ => s.serialize_map(Some(0))?.end(),
        }
    }
}

/// A tool's input schema: nulls removed, `type` (default `object`) and `properties` (default
/// `{}`) always present, a non-array `required` dropped.
struct InputSchema<'a>(Option<&'a Value>);

impl Serialize for InputSchema<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let Some(Value::Object(map)) = self.0 else {
            m.serialize_entry("type", "object")?;
            m.serialize_entry("properties", &EmptyObject)?;
            return m.end();
        };
        if map.get("type").is_none_or(Value::is_null) {
            m.serialize_entry("type", "object")?;
        }
        for (k, v) in map {
            let keep = match k.as_str() {
                "properties" => v.is_object(),
                "required" => v.is_array(),
                _ => !v.is_null(),
            };
            if keep {
                m.serialize_entry(k, &NoNulls(v))?;
            }
        }
        if !map.get("properties").is_some_and(Value::is_object) {
            m.serialize_entry("properties", &EmptyObject)?;
        }
        m.end()
    }
}

struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))?.end()
    }
}

/// `{key: value}`.
struct Single<'k, V>(&'k str, V);

impl<V: Serialize> Serialize for Single<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, &self.1)?;
        m.end()
    }
}

struct StateOut<'s, 'a> {
    conversation_id: &'s str,
    model_id: &'s str,
    history: &'s [Turn<'a>],
    current: &'s Turn<'a>,
    tools: &'s [ToolSpec<'a>],
}

impl Serialize for StateOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("conversationId", self.conversation_id)?;
        m.serialize_entry("agentContinuationId", &agent_continuation_id(self.conversation_id))?;
        m.serialize_entry("agentTaskType", "vibe")?;
        m.serialize_entry("chatTriggerType", "MANUAL")?;
        let current = UserOut { turn: self.current, model_id: self.model_id, tools: self.tools };
        m.serialize_entry("currentMessage", &Single("userInputMessage", current))?;
        if !self.history.is_empty() {
            m.serialize_entry("history", &HistoryOut { turns: self.history, model_id: self.model_id })?;
        }
        m.end()
    }
}

struct HistoryOut<'s, 'a> {
    turns: &'s [Turn<'a>],
    model_id: &'s str,
}

impl Serialize for HistoryOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.turns.len()))?;
        for turn in self.turns {
            match turn.side {
                Side::User => seq.serialize_element(&Single(
                    "userInputMessage",
                    UserOut { turn, model_id: self.model_id, tools: &[] },
                ))?,
                Side::Assistant => {
                    seq.serialize_element(&Single("assistantResponseMessage", AssistantOut(turn)))?
                }
            }
        }
        seq.end()
    }
}

struct UserOut<'s, 'a> {
    turn: &'s Turn<'a>,
    model_id: &'s str,
    tools: &'s [ToolSpec<'a>],
}

impl Serialize for UserOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("content", &self.turn.text)?;
        m.serialize_entry("modelId", self.model_id)?;
        m.serialize_entry("origin", "AI_EDITOR")?;
        if !self.turn.images.is_empty() {
            m.serialize_entry("images", &self.turn.images)?;
        }
        if !self.tools.is_empty() || !self.turn.tool_results.is_empty() {
            m.serialize_entry("userInputMessageContext", &ContextOut { tools: self.tools, turn: self.turn })?;
        }
        m.end()
    }
}

struct ContextOut<'s, 'a> {
    tools: &'s [ToolSpec<'a>],
    turn: &'s Turn<'a>,
}

impl Serialize for ContextOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if !self.tools.is_empty() {
            m.serialize_entry("tools", &ToolsOut(self.tools))?;
        }
        if !self.turn.tool_results.is_empty() {
            m.serialize_entry("toolResults", &self.turn.tool_results)?;
        }
        m.end()
    }
}

struct ToolsOut<'s, 'a>(&'s [ToolSpec<'a>]);

impl Serialize for ToolsOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for tool in self.0 {
            seq.serialize_element(&Single("toolSpecification", SpecOut(tool)))?;
        }
        seq.end()
    }
}

struct SpecOut<'s, 'a>(&'s ToolSpec<'a>);

impl Serialize for SpecOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("name", &self.0.name)?;
        m.serialize_entry("description", &self.0.description)?;
        m.serialize_entry("inputSchema", &Single("json", InputSchema(self.0.schema)))?;
        m.end()
    }
}

struct AssistantOut<'s, 'a>(&'s Turn<'a>);

impl Serialize for AssistantOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("content", &self.0.text)?;
        if !self.0.tool_uses.is_empty() {
            m.serialize_entry("toolUses", &self.0.tool_uses)?;
        }
        m.end()
    }
}

// ---------------------------------------------------------------------------------------------
// The §3.5 validator.

/// Longest tool name Kiro accepts.
pub const KIRO_TOOL_NAME_LIMIT: usize = 64;

/// Checks a full `generateAssistantResponse` body against the rules of protocol notes §3.5 that
/// make Kiro answer `400 Improperly formed request.`; the simulated upstream answers exactly that
/// when this returns `Err`. The error names the rule and the place.
///
/// * rule 1: `conversationState.currentMessage` holds a `userInputMessage` (no assistant);
/// * rule 2: `history` alternates user/assistant, starting with user and ending with assistant;
/// * rule 3: every `content` is a non-empty string (`""` is tolerated only on a user message
///   that carries `toolResults`);
/// * rule 4: every history `toolUses[].toolUseId` is answered by exactly one later `toolResults`
///   entry and every result answers an earlier tool use; no duplicate ids;
/// * rule 5: if any message has tool uses or tool results, the current message declares tools,
///   including every name used in history (case-insensitive);
/// * rule 9: no `null` anywhere; no empty arrays or objects outside tool schemas and tool inputs;
/// * every user message has a non-empty `modelId`; `conversationId` is a non-empty string;
///   tool names are non-empty and at most [`KIRO_TOOL_NAME_LIMIT`] characters.
pub fn check_kiro_body(body: &Value) -> Result<(), String> {
    check_nulls_and_empties(body, false).map_err(|(path, what)| format!("rule 9: {what} at {path}"))?;
    let state = body
        .get("conversationState")
        .and_then(Value::as_object)
        .ok_or("conversationState missing or not an object")?;
    if state.get("conversationId").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err("conversationState.conversationId missing or empty".into());
    }
    let current =
        state.get("currentMessage").and_then(Value::as_object).ok_or("rule 1: currentMessage missing")?;
    if current.contains_key("assistantResponseMessage") {
        return Err("rule 1: currentMessage is an assistant message".into());
    }
    let current_user = current
        .get("userInputMessage")
        .and_then(Value::as_object)
        .ok_or("rule 1: currentMessage.userInputMessage missing")?;

    let empty = Vec::new();
    let history = match state.get("history") {
        None => &empty,
        Some(Value::Array(items)) => items,
        Some(_) => return Err("conversationState.history is not an array".into()),
    };

    // Rule 2, and the per-message checks.
    let mut messages: Vec<(String, Side, &serde_json::Map<String, Value>)> =
        Vec::with_capacity(history.len() + 1);
    for (i, entry) in history.iter().enumerate() {
        let user = entry.get("userInputMessage").and_then(Value::as_object);
        let assistant = entry.get("assistantResponseMessage").and_then(Value::as_object);
        let (side, message) = match (user, assistant) {
            (Some(m), None) => (Side::User, m),
            (None, Some(m)) => (Side::Assistant, m),
            _ => {
                return Err(format!(
                    "rule 2: history[{i}] must hold exactly one of userInputMessage or assistantResponseMessage"
                ));
            }
        };
        let expected = if i % 2 == 0 { Side::User } else { Side::Assistant };
        if side != expected {
            let what = if side == Side::User { "a user" } else { "an assistant" };
            return Err(format!(
                "rule 2: history[{i}] is {what} message; history must alternate starting with user"
            ));
        }
        messages.push((format!("history[{i}]"), side, message));
    }
    if history.len() % 2 == 1 {
        return Err("rule 2: history must end with an assistant message".into());
    }
    messages.push(("currentMessage".to_owned(), Side::User, current_user));

    let mut open_uses: HashSet<&str> = HashSet::new();
    let mut all_uses: HashSet<&str> = HashSet::new();
    let mut all_results: HashSet<&str> = HashSet::new();
    let mut used_names: Vec<&str> = Vec::new();
    let mut any_tool_traffic = false;
    for (place, side, message) in &messages {
        let context = message.get("userInputMessageContext");
        let results = context.and_then(|c| c.get("toolResults")).and_then(Value::as_array);
        let uses = message.get("toolUses").and_then(Value::as_array);
        let content = message
            .get("content")
            .and_then(Value::as_str)
            .ok_or(format!("rule 3: {place}.content missing"))?;
        if content.is_empty() && !(*side == Side::User && results.is_some_and(|r| !r.is_empty())) {
            return Err(format!("rule 3: {place}.content is empty"));
        }
        if *side == Side::User && message.get("modelId").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("{place}.modelId missing or empty"));
        }
        if let Some(tools) = context.and_then(|c| c.get("tools")).and_then(Value::as_array) {
            for (j, tool) in tools.iter().enumerate() {
                check_tool_name(tool.pointer("/toolSpecification/name"), &format!("{place}…tools[{j}]"))?;
            }
        }
        for (j, tool_use) in uses.into_iter().flatten().enumerate() {
            any_tool_traffic = true;
            let id = tool_use.get("toolUseId").and_then(Value::as_str).unwrap_or("");
            if id.is_empty() {
                return Err(format!("rule 4: {place}.toolUses[{j}].toolUseId missing"));
            }
            if !all_uses.insert(id) {
                return Err(format!("rule 4: duplicate toolUseId {id} at {place}.toolUses[{j}]"));
            }
            open_uses.insert(id);
            let name = check_tool_name(tool_use.get("name"), &format!("{place}.toolUses[{j}]"))?;
            used_names.push(name);
        }
        for (j, result) in results.into_iter().flatten().enumerate() {
            any_tool_traffic = true;
            let id = result.get("toolUseId").and_then(Value::as_str).unwrap_or("");
            if !all_results.insert(id) {
                return Err(format!("rule 4: duplicate toolResult for {id} at {place}…toolResults[{j}]"));
            }
            if !open_uses.remove(id) {
                return Err(format!("rule 4: {place}…toolResults[{j}] ({id}) answers no earlier tool use"));
            }
        }
    }
    if let Some(id) = open_uses.iter().next() {
        return Err(format!("rule 4: tool use {id} has no tool result"));
    }

    if any_tool_traffic {
        let tools = current_user
            .get("userInputMessageContext")
            .and_then(|c| c.get("tools"))
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or("rule 5: the conversation uses tools but currentMessage declares none")?;
        let declared: HashSet<String> = tools
            .iter()
            .filter_map(|t| t.pointer("/toolSpecification/name").and_then(Value::as_str))
            .map(str::to_lowercase)
            .collect();
        if let Some(name) = used_names.iter().find(|n| !declared.contains(&n.to_lowercase())) {
            return Err(format!(
                "rule 5: tool {name} is used in history but not declared in currentMessage tools"
            ));
        }
    }
    Ok(())
}

fn check_tool_name<'v>(name: Option<&'v Value>, place: &str) -> Result<&'v str, String> {
    let name = name.and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return Err(format!("{place}: tool name missing"));
    }
    if name.chars().count() > KIRO_TOOL_NAME_LIMIT {
        return Err(format!("{place}: tool name {name} is longer than {KIRO_TOOL_NAME_LIMIT} characters"));
    }
    Ok(name)
}

/// Rule 9 walk. `free` is true inside tool schemas and tool inputs, where empty containers are
/// legitimate JSON Schema / tool arguments. Returns the path and the problem.
fn check_nulls_and_empties(value: &Value, free: bool) -> Result<(), (String, &'static str)> {
    match value {
        Value::Null => Err((String::new(), "null")),
        Value::Array(items) => {
            if items.is_empty() && !free {
                return Err((String::new(), "empty array"));
            }
            for (i, item) in items.iter().enumerate() {
                check_nulls_and_empties(item, free).map_err(|(p, w)| (format!("[{i}]{p}"), w))?;
            }
            Ok(())
        }
        Value::Object(map) => {
            if map.is_empty() && !free {
                return Err((String::new(), "empty object"));
            }
            for (k, v) in map {
                let free = free || matches!(k.as_str(), "inputSchema" | "input" | "json");
                check_nulls_and_empties(v, free).map_err(|(p, w)| (format!(".{k}{p}"), w))?;
            }
            Ok(())
        }
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::types::parse_request;
    use serde_json::json;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../../tests/data/requests/", $name))
        };
    }

    const SESSION: &str = "6d0c4f8e-2b7a-4f3e-9c1d-8a5b3e2f1c0d";
    const LONG_MCP_NAME: &str =
        "mcp__claude_ai_Workspace_Integration__search_shared_drive_documents_by_title_and_owner";

    fn req(v: Value) -> MessagesRequest {
        parse_request(v.to_string().as_bytes()).expect("valid request")
    }

    /// Converts, builds the body, parses it back and runs the §3.5 validator on it.
    fn run_with(r: &MessagesRequest, opts: &ConvertOptions) -> (Converted, Value) {
        let converted = convert(r, opts).expect("converts");
        let body = request_body(&converted, None);
        let v: Value = serde_json::from_slice(&body).expect("body is JSON");
        if let Err(e) = check_kiro_body(&v) {
            panic!("{e}\n{v:#}");
        }
        (converted, v)
    }

    fn run(r: &MessagesRequest) -> (Converted, Value) {
        run_with(r, &ConvertOptions::default())
    }

    fn run_fixture(text: &str) -> (MessagesRequest, Converted, Value) {
        let r = parse_request(text.as_bytes()).expect("fixture parses");
        let (c, v) = run(&r);
        (r, c, v)
    }

    fn history(v: &Value) -> Vec<Value> {
        v["conversationState"]["history"].as_array().cloned().unwrap_or_default()
    }

    fn current(v: &Value) -> &Value {
        &v["conversationState"]["currentMessage"]["userInputMessage"]
    }

    fn tool_names(v: &Value) -> Vec<String> {
        current(v)["userInputMessageContext"]["tools"]
            .as_array()
            .map(|t| {
                t.iter().map(|t| t["toolSpecification"]["name"].as_str().unwrap_or("").to_owned()).collect()
            })
            .unwrap_or_default()
    }

    fn tool_spec<'v>(v: &'v Value, name: &str) -> &'v Value {
        current(v)["userInputMessageContext"]["tools"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["toolSpecification"]["name"] == name))
            .map(|t| &t["toolSpecification"])
            .unwrap_or_else(|| panic!("tool {name} not declared"))
    }

    fn user_text(v: &Value) -> &str {
        v["userInputMessage"]["content"].as_str().expect("user content")
    }

    fn assistant_text(v: &Value) -> &str {
        v["assistantResponseMessage"]["content"].as_str().expect("assistant content")
    }

    // ---- Claude Code request shapes --------------------------------------------------------

    #[test]
    fn main_turn_with_adaptive_thinking_and_trailing_system_message() {
        let (_, c, v) = run_fixture(fixture!("main_adaptive.json"));
        assert_eq!(c.model_id, "claude-opus-4.8");
        assert_eq!(c.conversation_id, SESSION);
        assert_eq!(v["conversationState"]["conversationId"], SESSION);
        assert_eq!(v["conversationState"]["chatTriggerType"], "MANUAL");
        assert!(c.thinking);

        let h = history(&v);
        assert_eq!(h.len(), 2, "only the system pair: {h:#?}");
        let system = user_text(&h[0]);
        assert!(
            system.starts_with(
                "<thinking_mode>adaptive</thinking_mode><thinking_effort>high</thinking_effort>\nx-anthropic-billing-header"
            ),
            "{system}"
        );
        assert!(system.contains(
            "You are Claude Code, Anthropic's official CLI for Claude.\nYou are an interactive agent"
        ));
        assert_eq!(assistant_text(&h[1]), SYSTEM_ACKNOWLEDGEMENT);
        assert_eq!(h[0]["userInputMessage"]["modelId"], "claude-opus-4.8");
        assert_eq!(h[0]["userInputMessage"]["origin"], "AI_EDITOR");

        // The trailing mid-conversation system message joins the current user message.
        let cur = current(&v);
        let text = cur["content"].as_str().expect("content");
        assert!(text.starts_with("<system-reminder>\nAs you answer"), "{text}");
        assert!(
            text.contains("</system-reminder>\n\nsay hello\n\n<system-reminder>\nThe following skills"),
            "{text}"
        );
        assert_eq!(cur["modelId"], "claude-opus-4.8");
        assert_eq!(cur["origin"], "AI_EDITOR");

        let names = tool_names(&v);
        assert_eq!(names[..3], ["Bash", "Read", "WebSearch"]);
        assert_eq!(names.len(), 4);
        assert_eq!(names[3].len(), MAX_TOOL_NAME_LEN);
        assert_eq!(c.tool_names.get(&names[3]).map(String::as_str), Some(LONG_MCP_NAME));
        // The MCP schema had `default: null`, a nullable anyOf and `required: null`.
        let mcp = &tool_spec(&v, &names[3])["inputSchema"]["json"];
        assert_eq!(
            *mcp,
            json!({"type": "object", "properties": {"title": {"type": "string"}, "owner": {"anyOf": [{"type": "string"}, {"type": "null"}]}}})
        );
        let bash = tool_spec(&v, "Bash");
        assert_eq!(bash["description"], "Executes a given bash command and returns its output.");
        assert_eq!(bash["inputSchema"]["json"]["required"], json!(["command"]));
        assert_eq!(bash["inputSchema"]["json"]["additionalProperties"], false);
        assert!(!v.to_string().contains("cache_control"));
    }

    #[test]
    fn tool_loop_with_tool_result() {
        let (_, c, v) = run_fixture(fixture!("tool_loop.json"));
        assert_eq!(c.tool_names.values().collect::<Vec<_>>(), [LONG_MCP_NAME]);
        let h = history(&v);
        assert_eq!(h.len(), 4);
        let first_user = user_text(&h[2]);
        assert!(
            first_user.contains("run echo hello in bash\n\n<system-reminder>\nThe following skills"),
            "{first_user}"
        );
        assert_eq!(
            assistant_text(&h[3]),
            "<thinking>The user wants a shell command run.</thinking>\n\nI'll use a tool."
        );
        assert_eq!(
            h[3]["assistantResponseMessage"]["toolUses"],
            json!([{"toolUseId": "toolu_01A09q90qw90lq917835lq9", "name": "Bash",
                    "input": {"command": "echo hello-from-tool", "description": "Print a greeting"}}])
        );
        let cur = current(&v);
        assert_eq!(cur["content"], TOOL_RESULTS_PROVIDED);
        assert_eq!(
            cur["userInputMessageContext"]["toolResults"],
            json!([{"toolUseId": "toolu_01A09q90qw90lq917835lq9", "content": [{"text": "hello-from-tool"}], "status": "success"}])
        );
        assert!(tool_names(&v).contains(&"Bash".to_owned()));
    }

    #[test]
    fn thinking_budget_is_sent_as_max_thinking_length() {
        let (r, c, v) = run_fixture(fixture!("thinking_budget.json"));
        assert_eq!(r.thinking_budget(), Some(4000));
        assert_eq!(c.model_id, "claude-sonnet-4.5");
        assert!(c.thinking);
        assert!(user_text(&history(&v)[0]).starts_with(
            "<thinking_mode>enabled</thinking_mode><max_thinking_length>4000</max_thinking_length>\n"
        ));
        let text = current(&v)["content"].as_str().expect("content");
        assert!(text.starts_with("<system-reminder>\nThe following deferred tools"), "{text}");
        assert!(text.ends_with("</system-reminder>\n\nsay hello"), "{text}");
    }

    #[test]
    fn haiku_model_with_large_budget_is_capped() {
        let (_, c, v) = run_fixture(fixture!("haiku_model.json"));
        assert_eq!(c.model_id, "claude-haiku-4.5");
        assert!(user_text(&history(&v)[0]).starts_with(&format!(
            "<thinking_mode>enabled</thinking_mode><max_thinking_length>{MAX_THINKING_BUDGET}</max_thinking_length>"
        )));
    }

    #[test]
    fn thinking_disabled_injects_no_tags() {
        let (_, c, v) = run_fixture(fixture!("thinking_disabled.json"));
        assert!(!c.thinking);
        assert!(!v.to_string().contains("thinking_mode"));
        assert!(user_text(&history(&v)[0]).starts_with("x-anthropic-billing-header"));
    }

    #[test]
    fn custom_model_name_maps_to_auto_or_the_rule_model() {
        let (r, c, v) = run_fixture(fixture!("custom_model.json"));
        assert_eq!(c.model_id, "auto");
        assert_eq!(current(&v)["modelId"], "auto");
        let opts = ConvertOptions { model_id: Some("claude-sonnet-4.6"), ..ConvertOptions::default() };
        let (c, v) = run_with(&r, &opts);
        assert_eq!(c.model_id, "claude-sonnet-4.6");
        assert!(history(&v).iter().all(|m| m.get("assistantResponseMessage").is_some()
            || m["userInputMessage"]["modelId"] == "claude-sonnet-4.6"));
    }

    #[test]
    fn background_title_without_tools() {
        let (_, c, v) = run_fixture(fixture!("background_title.json"));
        assert!(!c.thinking);
        assert!(current(&v).get("userInputMessageContext").is_none());
        assert!(current(&v)["content"].as_str().is_some_and(|s| s.starts_with("Generate a concise")));
        assert_eq!(history(&v).len(), 2);
    }

    #[test]
    fn web_search_server_tool_is_not_sent_as_a_spec() {
        let (r, _, v) = run_fixture(fixture!("web_search.json"));
        assert!(r.has_server_tool("web_search"));
        assert!(tool_names(&v).is_empty());
        assert!(current(&v).get("userInputMessageContext").is_none());
        assert!(!v.to_string().contains("web_search_20250305"));
    }

    #[test]
    fn subagent_request() {
        let (_, c, v) = run_fixture(fixture!("subagent_explore.json"));
        assert_eq!(c.model_id, "claude-haiku-4.5");
        assert!(!c.thinking);
        assert_eq!(tool_names(&v), ["Bash", "Read"]);
        let text = current(&v)["content"].as_str().expect("content");
        assert!(text.ends_with("</system-reminder>\n\nList the files in the current directory"), "{text}");
    }

    #[test]
    fn compact_request() {
        let (_, _, v) = run_fixture(fixture!("compact.json"));
        let h = history(&v);
        assert_eq!(h.len(), 4);
        assert_eq!(assistant_text(&h[3]), "Hello! How can I help?");
        let text = current(&v)["content"].as_str().expect("content");
        assert!(
            text.starts_with("write a haiku about routers\n\nYour task is to create a detailed summary"),
            "{text}"
        );
    }

    #[test]
    fn non_streaming_fallback_converts_like_a_main_turn() {
        let (r, _, v) = run_fixture(fixture!("nonstreaming_fallback.json"));
        assert!(!r.stream);
        let (_, _, main) = run_fixture(fixture!("main_adaptive.json"));
        assert_eq!(v, main);
    }

    #[test]
    fn deferred_tools_and_tool_reference() {
        let (_, c, v) = run_fixture(fixture!("deferred_tools.json"));
        assert_eq!(c.model_id, "claude-opus-5.5");
        assert!(
            user_text(&history(&v)[0]).starts_with(
                "<thinking_mode>adaptive</thinking_mode><thinking_effort>medium</thinking_effort>"
            )
        );
        let h = history(&v);
        // The empty thinking block (display omitted) is not replayed; the turn had only a tool use.
        assert_eq!(assistant_text(&h[3]), EMPTY_ASSISTANT);
        assert_eq!(
            current(&v)["userInputMessageContext"]["toolResults"][0]["content"],
            json!([{"text": "[Tool reference: WebFetch]"}])
        );
        assert_eq!(tool_names(&v), ["Bash", "ToolSearch", "WebFetch", "DeferredToolPlaceholder"]);
        assert!(!v.to_string().contains("defer_loading"));
    }

    #[test]
    fn long_context_request() {
        let mut words = String::with_capacity(620_000);
        let mut i = 0u64;
        while words.len() < 600_000 {
            let _ = write!(words, "word{} \"quoted\"\tand\nmore ", i % 977);
            i += 1;
        }
        let mut body: Value = serde_json::from_str(fixture!("main_adaptive.json")).expect("fixture parses");
        body["messages"][0]["content"][1]["text"] = Value::String(words.clone());
        let raw = body.to_string();
        assert!(raw.len() > 600_000);
        let r = parse_request(raw.as_bytes()).expect("parses");
        assert!(r.estimate_input_tokens() > 150_000);
        let (_, v) = run(&r);
        let text = current(&v)["content"].as_str().expect("content");
        assert!(text.contains(&words));
    }

    // ---- Normalisations --------------------------------------------------------------------

    #[test]
    fn trailing_assistant_prefill_moves_into_history() {
        let r = req(json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [
            {"role": "user", "content": "Give me JSON"},
            {"role": "assistant", "content": "{"}
        ]}));
        let (_, v) = run(&r);
        let h = history(&v);
        assert_eq!(h.len(), 2);
        assert_eq!(user_text(&h[0]), "Give me JSON");
        assert_eq!(assistant_text(&h[1]), "{");
        assert_eq!(current(&v)["content"], CONTINUE);
        assert!(v["conversationState"].get("history").is_some());
    }

    #[test]
    fn single_user_message_has_no_history_key() {
        let r = req(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}));
        let (c, v) = run(&r);
        assert!(v["conversationState"].get("history").is_none());
        assert_eq!(current(&v)["content"], "hi");
        assert!(!c.thinking);
        assert!(uuid::Uuid::parse_str(&c.conversation_id).is_ok());
        assert_eq!(v["conversationState"]["conversationId"], c.conversation_id.as_str());
    }

    #[test]
    fn consecutive_same_role_messages_are_merged() {
        let r = req(json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}]},
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
            {"role": "system", "content": "reminder"},
            {"role": "user", "content": "now"}
        ]}));
        let (_, v) = run(&r);
        let h = history(&v);
        assert_eq!(h.len(), 2);
        assert_eq!(user_text(&h[0]), "one\n\ntwo\nthree");
        assert_eq!(assistant_text(&h[1]), "a\n\nb");
        assert_eq!(current(&v)["content"], "reminder\n\nnow");
    }

    #[test]
    fn history_starting_with_assistant_gets_a_user_placeholder() {
        let msgs =
            json!([{"role": "assistant", "content": "I greet first"}, {"role": "user", "content": "ok"}]);
        let (_, v) = run(&req(json!({"model": "m", "max_tokens": 10, "messages": msgs})));
        let h = history(&v);
        assert_eq!(user_text(&h[0]), EMPTY_USER);
        assert_eq!(assistant_text(&h[1]), "I greet first");

        let (_, v) =
            run(&req(json!({"model": "m", "max_tokens": 10, "system": "be nice", "messages": msgs})));
        let h = history(&v);
        assert_eq!(h.len(), 4);
        assert_eq!(user_text(&h[0]), "be nice");
        assert_eq!(assistant_text(&h[1]), SYSTEM_ACKNOWLEDGEMENT);
        assert_eq!(user_text(&h[2]), EMPTY_USER);
        assert_eq!(assistant_text(&h[3]), "I greet first");
    }

    #[test]
    fn only_assistant_or_system_messages() {
        let (_, v) = run(&req(
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "assistant", "content": ""}]}),
        ));
        assert_eq!(current(&v)["content"], CONTINUE);
        assert_eq!(assistant_text(&history(&v)[1]), EMPTY_ASSISTANT);
        let (_, v) = run(&req(
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "sys only"}]}),
        ));
        assert_eq!(current(&v)["content"], "sys only");
    }

    #[test]
    fn thinking_without_system_prompt_gets_its_own_pair() {
        let r = req(json!({"model": "m", "max_tokens": 10, "thinking": {"type": "enabled"},
            "messages": [{"role": "user", "content": "hi"}]}));
        let (c, v) = run(&r);
        assert!(c.thinking);
        let h = history(&v);
        assert_eq!(
            user_text(&h[0]),
            "<thinking_mode>enabled</thinking_mode><max_thinking_length>20000</max_thinking_length>"
        );
        assert_eq!(assistant_text(&h[1]), SYSTEM_ACKNOWLEDGEMENT);

        for (effort, sent) in
            [("low", "low"), ("medium", "medium"), ("high", "high"), ("max", "high"), ("xhigh", "high")]
        {
            let r = req(json!({"model": "m", "max_tokens": 10, "thinking": {"type": "adaptive"},
                "output_config": {"effort": effort}, "messages": [{"role": "user", "content": "hi"}]}));
            let (_, v) = run(&r);
            assert_eq!(
                user_text(&history(&v)[0]),
                format!("<thinking_mode>adaptive</thinking_mode><thinking_effort>{sent}</thinking_effort>")
            );
        }
    }

    #[test]
    fn orphan_tool_result_becomes_text() {
        let r = req(json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": "start"},
            {"role": "assistant", "content": "sure"},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_gone", "content": "stale output", "is_error": true},
                {"type": "text", "text": "continue please"}
            ]}
        ]}));
        let (_, v) = run(&r);
        let cur = current(&v);
        assert!(cur.get("userInputMessageContext").is_none());
        assert_eq!(cur["content"], "continue please\n\n[Tool result for toolu_gone (error)]\nstale output");
    }

    #[test]
    fn unanswered_tool_use_gets_an_error_result() {
        let r = req(json!({"model": "m", "max_tokens": 10, "tools": [], "messages": [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {"file_path": "/a"}},
                {"type": "tool_use", "id": "toolu_b", "name": "Read", "input": {"file_path": "/b"}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "A"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_c", "name": "grep", "input": {}}]},
            {"role": "user", "content": "[Request interrupted by user]"}
        ]}));
        let (_, v) = run(&r);
        let h = history(&v);
        assert_eq!(assistant_text(&h[1]), EMPTY_ASSISTANT);
        assert_eq!(
            h[2]["userInputMessage"]["userInputMessageContext"]["toolResults"],
            json!([
                {"toolUseId": "toolu_a", "content": [{"text": "A"}], "status": "success"},
                {"toolUseId": "toolu_b", "content": [{"text": MISSING_TOOL_RESULT}], "status": "error"}
            ])
        );
        assert_eq!(user_text(&h[2]), TOOL_RESULTS_PROVIDED);
        let cur = current(&v);
        assert_eq!(cur["content"], "[Request interrupted by user]");
        assert_eq!(cur["userInputMessageContext"]["toolResults"][0]["toolUseId"], "toolu_c");
        assert_eq!(cur["userInputMessageContext"]["toolResults"][0]["status"], "error");
        // Neither tool was declared: placeholder specs, one per name.
        assert_eq!(tool_names(&v), ["Read", "grep"]);
        assert_eq!(tool_spec(&v, "grep")["description"], HISTORY_TOOL_DESCRIPTION);
        assert_eq!(tool_spec(&v, "grep")["inputSchema"]["json"], json!({"type": "object", "properties": {}}));
    }

    #[test]
    fn duplicate_tool_results_and_tool_uses_are_dropped() {
        let r = req(
            json!({"model": "m", "max_tokens": 10, "tools": [{"name": "bash", "input_schema": {"type": "object"}}], "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "first"},
                    {"type": "tool_result", "tool_use_id": "t1", "content": "second"}
                ]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}, {"type": "text", "text": "again"}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "late"}]}
            ]}),
        );
        let (_, v) = run(&r);
        let h = history(&v);
        assert_eq!(
            h[2]["userInputMessage"]["userInputMessageContext"]["toolResults"],
            json!([{"toolUseId": "t1", "content": [{"text": "first"}], "status": "success"}])
        );
        assert!(h[3]["assistantResponseMessage"].get("toolUses").is_none());
        assert_eq!(current(&v)["content"], "[Tool result for t1]\nlate");
        // `Bash` in history matches the declared `bash` case-insensitively: no placeholder.
        assert_eq!(tool_names(&v), ["bash"]);
        assert_eq!(tool_spec(&v, "bash")["description"], "Tool: bash");
    }

    /// Found by the `request_converter` fuzz target: an empty `tool_use` id reached Kiro as an
    /// empty `toolUseId`, which it rejects (rule 4).
    #[test]
    fn tool_uses_with_empty_ids_are_dropped_and_their_results_kept_as_text() {
        let r = req(json!({"model": "claude-opus-4-8", "max_tokens": 10, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "running"},
                {"type": "tool_use", "id": "", "name": "名前のツール", "input": 5.0},
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "", "content": "from the nameless call"},
                {"type": "tool_result", "tool_use_id": "t1", "content": "files"}
            ]}
        ]}));
        let (_, v) = run(&r);
        let h = history(&v);
        let uses = &h[1]["assistantResponseMessage"]["toolUses"];
        assert_eq!(uses.as_array().map(Vec::len), Some(1), "{uses}");
        assert_eq!(uses[0]["toolUseId"], "t1");
        let results = &current(&v)["userInputMessageContext"]["toolResults"];
        assert_eq!(
            results,
            &json!([{"toolUseId": "t1", "content": [{"text": "files"}], "status": "success"}])
        );
        assert_eq!(current(&v)["content"], "[Tool result for ]\nfrom the nameless call");
    }

    #[test]
    fn long_tool_names_are_shortened_consistently_and_restorable() {
        let long = "mcp__".to_owned() + &"very_long_server_name_".repeat(4) + "tool";
        let r = req(json!({"model": "m", "max_tokens": 10,
        "tools": [{"name": long, "description": "d", "input_schema": {"type": "object", "properties": {}}}],
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": long, "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
        ]}));
        let (c, v) = run(&r);
        let short = shorten_tool_name(&long).into_owned();
        assert_eq!(short.len(), MAX_TOOL_NAME_LEN);
        assert!(short.starts_with(&long[..SHORT_NAME_PREFIX]));
        assert_eq!(&short[SHORT_NAME_PREFIX..SHORT_NAME_PREFIX + 1], "_");
        assert!(short[SHORT_NAME_PREFIX + 1..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(tool_names(&v), std::slice::from_ref(&short));
        assert_eq!(history(&v)[1]["assistantResponseMessage"]["toolUses"][0]["name"], short.as_str());
        assert_eq!(c.tool_names.len(), 1);
        assert_eq!(c.tool_names.get(&short), Some(&long));

        // Stable, distinct, untouched at the limit, cut at a character boundary.
        assert_eq!(shorten_tool_name(&long), shorten_tool_name(&long));
        assert_ne!(shorten_tool_name(&(long.clone() + "2")), shorten_tool_name(&(long.clone() + "3")));
        let at_limit = "a".repeat(MAX_TOOL_NAME_LEN);
        assert!(matches!(shorten_tool_name(&at_limit), Cow::Borrowed(_)));
        let wide = "é".repeat(40);
        let short = shorten_tool_name(&wide);
        assert!(short.len() <= MAX_TOOL_NAME_LEN);
        assert!(short.starts_with(&"é".repeat(27)));
    }

    #[test]
    fn tool_descriptions_are_capped_and_never_empty() {
        let r = req(
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "tools": [
                {"name": "Long", "description": "é".repeat(50), "input_schema": {"type": "object"}},
                {"name": "Exact", "description": "b".repeat(20)},
                {"name": "Empty", "description": "  "},
                {"name": "Missing"},
                {"name": "", "description": "nameless tools are skipped"},
                {"name": "long", "description": "case-insensitive duplicate is skipped"}
            ]}),
        );
        let opts = ConvertOptions { max_tool_description: 20, ..ConvertOptions::default() };
        let (_, v) = run_with(&r, &opts);
        assert_eq!(tool_names(&v), ["Long", "Exact", "Empty", "Missing"]);
        assert_eq!(tool_spec(&v, "Long")["description"], format!("{}...", "é".repeat(17)));
        assert_eq!(tool_spec(&v, "Exact")["description"], "b".repeat(20));
        assert_eq!(tool_spec(&v, "Empty")["description"], "Tool: Empty");
        assert_eq!(tool_spec(&v, "Missing")["description"], "Tool: Missing");
        assert_eq!(
            tool_spec(&v, "Missing")["inputSchema"]["json"],
            json!({"type": "object", "properties": {}})
        );
    }

    #[test]
    fn schemas_and_inputs_lose_nulls() {
        let r = req(json!({"model": "m", "max_tokens": 10, "tools": [
            {"name": "A", "description": "a", "input_schema": {"properties": null, "required": null, "type": null}},
            {"name": "B", "description": "b", "input_schema": {"type": "object", "required": "x",
                "properties": {"p": {"type": "string", "enum": ["x", null], "default": null}}}},
            {"name": "C", "description": "c", "input_schema": ["not", "an", "object"]}
        ], "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "A", "input": {"keep": 1, "drop": null, "nested": [null, {"z": null}]}},
                {"type": "tool_use", "id": "t2", "name": "B", "input": "not an object"}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1"},
                {"type": "tool_result", "tool_use_id": "t2", "content": []}
            ]}
        ]}));
        let (_, v) = run(&r);
        assert!(!v.to_string().contains("null"));
        assert_eq!(tool_spec(&v, "A")["inputSchema"]["json"], json!({"type": "object", "properties": {}}));
        assert_eq!(
            tool_spec(&v, "B")["inputSchema"]["json"],
            json!({"type": "object", "properties": {"p": {"type": "string", "enum": ["x"]}}})
        );
        assert_eq!(tool_spec(&v, "C")["inputSchema"]["json"], json!({"type": "object", "properties": {}}));
        let uses = &history(&v)[1]["assistantResponseMessage"]["toolUses"];
        assert_eq!(uses[0]["input"], json!({"keep": 1, "nested": [{}]}));
        assert_eq!(uses[1]["input"], json!({}));
        let results = &current(&v)["userInputMessageContext"]["toolResults"];
        assert_eq!(results[0]["content"], json!([{"text": EMPTY_TOOL_RESULT}]));
        assert_eq!(results[1]["content"], json!([{"text": EMPTY_TOOL_RESULT}]));
    }

    #[test]
    fn images_documents_and_rich_tool_results() {
        let r = req(json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": "look"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/shot.png"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "is_error": false, "content": [
                    {"type": "text", "text": "Read the image"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}, "title": "N"}
                ]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "PNGDATA"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "JPGDATA"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "WEBP"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "GIF"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "BMP"}},
                {"type": "image", "source": {"type": "base64", "data": "data:image/png;base64,INLINE"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.invalid/cat.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}, "title": "spec.pdf"},
                {"type": "text", "text": "what is in these?"}
            ]}
        ]}));
        let (_, v) = run(&r);
        let cur = current(&v);
        assert_eq!(
            cur["images"],
            json!([
                {"format": "png", "source": {"bytes": "iVBO"}},
                {"format": "png", "source": {"bytes": "PNGDATA"}},
                {"format": "jpeg", "source": {"bytes": "JPGDATA"}},
                {"format": "webp", "source": {"bytes": "WEBP"}},
                {"format": "gif", "source": {"bytes": "GIF"}},
                {"format": "png", "source": {"bytes": "INLINE"}}
            ])
        );
        assert_eq!(
            cur["content"],
            "[Image: https://example.invalid/cat.png]\n[Document omitted: spec.pdf (application/pdf)]\nwhat is in these?"
        );
        assert_eq!(
            cur["userInputMessageContext"]["toolResults"][0]["content"][0]["text"],
            "Read the image\n[Image: attached to this message as image 1]\nDocument: N\nnotes"
        );
    }

    #[test]
    fn tool_result_images_move_to_the_message_in_history_too_within_limits() {
        let shot = |data: &str| json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}});
        let turn = |id: &str, data: &str| {
            vec![
                json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Read", "input": {}}]}),
                json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": [shot(data)]}]}),
            ]
        };
        let mut messages = vec![json!({"role": "user", "content": "look"})];
        messages.extend(turn("t1", "FIRST"));
        messages.extend(turn("t2", "SECOND"));
        let (_, v) = run(&req(json!({"model": "m", "max_tokens": 10, "messages": messages})));
        let h = history(&v);
        let old = &h
            .iter()
            .find(|m| m["userInputMessage"]["userInputMessageContext"]["toolResults"].is_array())
            .unwrap()["userInputMessage"];
        assert_eq!(old["images"], json!([{"format": "png", "source": {"bytes": "FIRST"}}]));
        assert_eq!(
            old["userInputMessageContext"]["toolResults"][0]["content"][0]["text"],
            "[Image: attached to this message as image 1]"
        );
        assert_eq!(current(&v)["images"], json!([{"format": "png", "source": {"bytes": "SECOND"}}]));

        // Too many: the oldest are left out and their message says so.
        let mut messages = vec![json!({"role": "user", "content": "look"})];
        for i in 0..MAX_IMAGES + 2 {
            messages.extend(turn(&format!("t{i}"), &format!("IMG{i}")));
        }
        let (_, v) = run(&req(json!({"model": "m", "max_tokens": 10, "messages": messages})));
        let sent: usize = history(&v)
            .iter()
            .chain(std::iter::once(&json!({"userInputMessage": current(&v)})))
            .map(|m| m["userInputMessage"]["images"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(sent, MAX_IMAGES);
        assert!(v.to_string().contains("image(s) left out: Kiro takes at most 20 images per request"));

        // Too large: a clear 400.
        let big = "A".repeat(MAX_IMAGE_BYTES / 3 * 4 + 8);
        let mut messages = vec![json!({"role": "user", "content": "look"})];
        messages.extend(turn("t1", &big));
        let err = convert(
            &req(json!({"model": "m", "max_tokens": 10, "messages": messages})),
            &ConvertOptions::default(),
        )
        .expect_err("too large");
        assert_eq!(err.status.as_u16(), 400);
        assert!(err.message.contains("larger than the 5 MB Kiro accepts per image"), "{}", err.message);
    }

    #[test]
    fn request_body_wraps_the_state_and_adds_the_profile_arn() {
        let r = req(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}));
        let c = convert(&r, &ConvertOptions::default()).expect("converts");
        let state: Value = serde_json::from_slice(&c.conversation_state).expect("state is JSON");

        let plain: Value = serde_json::from_slice(&request_body(&c, None)).expect("JSON");
        assert_eq!(plain, json!({"conversationState": state}));
        let empty: Value = serde_json::from_slice(&request_body(&c, Some(""))).expect("JSON");
        assert_eq!(empty, plain);

        let arn = "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK";
        let body = request_body(&c, Some(arn));
        assert!(body.starts_with(b"{\"conversationState\":{"));
        let with: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(with, json!({"conversationState": state, "profileArn": arn}));

        let odd = "arn:\"quoted\"\\back\nline\u{1}é";
        let with: Value = serde_json::from_slice(&request_body(&c, Some(odd))).expect("JSON");
        assert_eq!(with["profileArn"], odd);
    }

    /// Every sequence of up to four messages drawn from awkward shapes converts into a body the
    /// §3.5 validator accepts.
    #[test]
    fn every_small_conversation_passes_the_validator() {
        let kinds = [
            json!({"role": "user", "content": "hello"}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r1"}]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "r2"}]}, {"type": "text", "text": "and"}]}),
            json!({"role": "user", "content": []}),
            json!({"role": "system", "content": "sys"}),
            json!({"role": "assistant", "content": "ok"}),
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}),
            json!({"role": "assistant", "content": [{"type": "text", "text": " "}, {"type": "tool_use", "id": "t2", "name": "Mystery", "input": {}}]}),
            json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "redacted_thinking", "data": "x"}]}),
        ];
        let mut count = 0;
        for len in 1..=4u32 {
            for n in 0..kinds.len().pow(len) {
                let mut messages = Vec::new();
                let mut k = n;
                for _ in 0..len {
                    messages.push(kinds[k % kinds.len()].clone());
                    k /= kinds.len();
                }
                let mut body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": messages});
                if n % 2 == 0 {
                    body["system"] = json!("system prompt");
                    body["tools"] =
                        json!([{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]);
                }
                if n % 3 == 0 {
                    body["thinking"] = json!({"type": "adaptive"});
                }
                let r = req(body);
                let converted = convert(&r, &ConvertOptions::default()).expect("converts");
                let v: Value = serde_json::from_slice(&request_body(&converted, None)).expect("JSON");
                if let Err(e) = check_kiro_body(&v) {
                    panic!("{e}\nrequest: {:#}\nbody: {v:#}", json!(messages));
                }
                count += 1;
            }
        }
        assert_eq!(count, 9 + 81 + 729 + 6561);
    }

    // ---- The validator itself --------------------------------------------------------------

    fn valid_body() -> Value {
        json!({"conversationState": {
            "conversationId": "c1",
            "chatTriggerType": "MANUAL",
            "currentMessage": {"userInputMessage": {
                "content": "", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR",
                "userInputMessageContext": {
                    "tools": [{"toolSpecification": {"name": "Bash", "description": "d", "inputSchema": {"json": {"type": "object", "properties": {}, "required": []}}}}],
                    "toolResults": [{"toolUseId": "t1", "content": [{"text": "ok"}], "status": "success"}]
                }
            }},
            "history": [
                {"userInputMessage": {"content": "go", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"}},
                {"assistantResponseMessage": {"content": " ", "toolUses": [{"toolUseId": "t1", "name": "bash", "input": {}}]}}
            ]
        }})
    }

    fn rejected(mutate: impl FnOnce(&mut Value)) -> String {
        let mut body = valid_body();
        mutate(&mut body);
        check_kiro_body(&body).expect_err("must be rejected")
    }

    #[test]
    fn validator_accepts_the_reference_body() {
        assert_eq!(check_kiro_body(&valid_body()), Ok(()));
    }

    #[test]
    fn validator_rejects_each_rule() {
        let cs = "/conversationState";
        let ptr = |v: &mut Value, p: &str| -> Value { v.pointer(p).cloned().unwrap_or(Value::Null) };
        type Mutation = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("conversationState missing", Box::new(|v| *v = json!({"x": 1}))),
            ("conversationId", Box::new(|v| v["conversationState"]["conversationId"] = json!(""))),
            (
                "rule 1: currentMessage is an assistant",
                Box::new(|v| {
                    v["conversationState"]["currentMessage"]["assistantResponseMessage"] =
                        json!({"content": "x"});
                }),
            ),
            (
                "rule 1: currentMessage.userInputMessage missing",
                Box::new(|v| {
                    v["conversationState"]["currentMessage"] = json!({"other": 1});
                }),
            ),
            (
                "rule 2: history[1] is a user message",
                Box::new(move |v| {
                    let first = ptr(v, &format!("{cs}/history/0"));
                    v["conversationState"]["history"][1] = first;
                }),
            ),
            (
                "rule 2: history must end with an assistant",
                Box::new(move |v| {
                    let first = ptr(v, &format!("{cs}/history/0"));
                    if let Some(h) = v["conversationState"]["history"].as_array_mut() {
                        h.push(first);
                    }
                }),
            ),
            (
                "rule 2: history[0] must hold exactly one",
                Box::new(|v| {
                    v["conversationState"]["history"][0]["assistantResponseMessage"] =
                        json!({"content": "x"});
                }),
            ),
            (
                "rule 3: history[1].content is empty",
                Box::new(|v| {
                    v["conversationState"]["history"][1]["assistantResponseMessage"]["content"] = json!("");
                }),
            ),
            (
                "rule 3: history[0].content is empty",
                Box::new(|v| {
                    v["conversationState"]["history"][0]["userInputMessage"]["content"] = json!("");
                }),
            ),
            (
                "history[0].modelId",
                Box::new(|v| {
                    if let Some(m) = v["conversationState"]["history"][0]["userInputMessage"].as_object_mut()
                    {
                        m.remove("modelId");
                    }
                }),
            ),
            (
                "rule 4: tool use t2 has no tool result",
                Box::new(|v| {
                    if let Some(uses) =
                        v["conversationState"]["history"][1]["assistantResponseMessage"]["toolUses"]
                            .as_array_mut()
                    {
                        uses.push(json!({"toolUseId": "t2", "name": "Bash", "input": {"a": 1}}));
                    }
                }),
            ),
            (
                "rule 4: currentMessage…toolResults[1] (t9) answers no earlier tool use",
                Box::new(|v| {
                    if let Some(r) = v["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]["toolResults"].as_array_mut() {
                    r.push(json!({"toolUseId": "t9", "content": [{"text": "x"}], "status": "success"}));
                }
                }),
            ),
            (
                "rule 4: duplicate toolResult for t1",
                Box::new(|v| {
                    let results = &mut v["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]
                        ["toolResults"];
                    let first = results[0].clone();
                    if let Some(r) = results.as_array_mut() {
                        r.push(first);
                    }
                }),
            ),
            (
                "rule 5: the conversation uses tools but currentMessage declares none",
                Box::new(|v| {
                    if let Some(ctx) = v["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"].as_object_mut() {
                    ctx.remove("tools");
                }
                }),
            ),
            (
                "rule 5: tool Read is used in history",
                Box::new(|v| {
                    v["conversationState"]["history"][1]["assistantResponseMessage"]["toolUses"][0]["name"] =
                        json!("Read");
                }),
            ),
            (
                "is longer than 64 characters",
                Box::new(|v| {
                    v["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]
                        ["tools"][0]["toolSpecification"]["name"] = json!("x".repeat(65));
                }),
            ),
            (
                "rule 9: null at .conversationState.currentMessage.userInputMessage.origin",
                Box::new(|v| {
                    v["conversationState"]["currentMessage"]["userInputMessage"]["origin"] = Value::Null;
                }),
            ),
            (
                "rule 9: null at .conversationState.history[1].assistantResponseMessage.toolUses[0].input.a",
                Box::new(|v| {
                    v["conversationState"]["history"][1]["assistantResponseMessage"]["toolUses"][0]["input"] =
                        json!({"a": null});
                }),
            ),
            (
                "rule 9: empty array at .conversationState.history[1].assistantResponseMessage.toolUses",
                Box::new(|v| {
                    v["conversationState"]["history"][1]["assistantResponseMessage"]["toolUses"] = json!([]);
                }),
            ),
            (
                "rule 9: empty object at .conversationState.currentMessage.userInputMessage.images[0]",
                Box::new(|v| {
                    v["conversationState"]["currentMessage"]["userInputMessage"]["images"] = json!([{}]);
                }),
            ),
        ];
        for (expected, mutate) in cases {
            let err = rejected(mutate);
            assert!(err.contains(expected), "expected {expected:?}, got {err:?}");
        }
    }

    #[test]
    fn validator_accepts_empty_user_content_only_with_tool_results() {
        let mut body = valid_body();
        assert_eq!(check_kiro_body(&body), Ok(()));
        if let Some(ctx) =
            body["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]
                .as_object_mut()
        {
            ctx.remove("toolResults");
        }
        if let Some(state) = body["conversationState"].as_object_mut() {
            state.remove("history");
        }
        assert_eq!(check_kiro_body(&body), Err("rule 3: currentMessage.content is empty".to_owned()));
    }
}

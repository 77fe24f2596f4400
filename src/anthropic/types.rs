//! Anthropic Messages API request types, as Claude Code sends them to `POST /v1/messages`.
//!
//! The types keep what routing and conversion need and nothing more: unknown keys (`temperature`,
//! `context_management`, `cache_control`, `defer_loading`, …) are ignored, unknown content block
//! types become [`ContentBlock::Unknown`], unknown thinking types become [`ThinkingKind::Other`].
//! A body that is not a valid Messages request is rejected by [`parse_request`] with a
//! 400 `invalid_request_error` naming the JSON path of the problem.

use crate::anthropic::ApiError;
use crate::anthropic::text::{self, Text};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;
use std::marker::PhantomData;

/// Tokens counted for one image by [`MessagesRequest::estimate_input_tokens`]: Anthropic's
/// documented cost of a full-size (~1.15 megapixel) image.
pub const IMAGE_TOKEN_ESTIMATE: u64 = 1_600;

/// Bytes of text per estimated token (the usual rule of thumb for English and code).
pub const BYTES_PER_TOKEN: u64 = 4;

/// One `POST /v1/messages` body.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest {
    /// The model name as the client sent it (`claude-opus-4-8`, `my-router-model`, …).
    pub model: String,
    /// The conversation; never empty after [`parse_request`].
    pub messages: Vec<Message>,
    /// Top-level system prompt: a string or an array of text blocks.
    #[serde(default)]
    pub system: Option<Content<SystemBlock>>,
    /// Custom tools and server tools; `null` and absent both mean none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tools: Vec<Tool>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub thinking: Option<Thinking>,
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// `false` when absent: Claude Code's non-streaming fallback simply omits the key.
    #[serde(default, deserialize_with = "null_as_default")]
    pub stream: bool,
    pub max_tokens: u64,
}

/// One entry of `messages`.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Content<ContentBlock>,
}

/// `role` of a message. Claude Code sends `system` messages in the middle of the conversation
/// (beta `mid-conversation-system`) carrying reminders and environment details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    System,
}

/// Content that the API accepts either as a plain string or as an array of typed blocks.
#[derive(Debug, Clone, PartialEq)]
pub enum Content<B> {
    Text(Text),
    Blocks(Vec<B>),
}

impl<B> Content<B> {
    /// The blocks, or an empty slice for string content.
    pub fn blocks(&self) -> &[B] {
        match self {
            Content::Text(_) => &[],
            Content::Blocks(b) => b,
        }
    }
}

impl<'de, B: Deserialize<'de>> Deserialize<'de> for Content<B> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor<B>(PhantomData<B>);

        impl<'de, B: Deserialize<'de>> Visitor<'de> for ContentVisitor<B> {
            type Value = Content<B>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content blocks")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Text::new(v)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(Content::Blocks(blocks))
            }
        }

        deserializer.deserialize_any(ContentVisitor(PhantomData))
    }
}

/// One block of the top-level `system` array. Only the text matters; `cache_control` is dropped
/// and non-text blocks read as empty text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SystemBlock {
    #[serde(default)]
    pub text: Text,
}

/// A content block of a `user`, `assistant` or `system` message. Read by hand, by its `type`
/// ([`crate::anthropic::blocks`]): serde's derive for tagged enums would decode every string of
/// the block into a buffer first.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    Text {
        text: Text,
    },
    Image {
        source: Source,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: Option<Content<ToolResultBlock>>,
        is_error: bool,
    },
    Thinking {
        thinking: Text,
    },
    RedactedThinking,
    Document {
        source: Option<Source>,
        title: Option<String>,
    },
    /// A server tool call (web search) from an earlier answer, replayed by the client.
    ServerToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// The results of an earlier web search: `content` is a list of `web_search_result`s or an
    /// error object.
    WebSearchToolResult {
        tool_use_id: String,
        content: Value,
    },
    /// Any other block type (`search_result`, `code_execution_tool_result`, …).
    Unknown,
}

/// A block inside `tool_result.content` (read by hand, like [`ContentBlock`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ToolResultBlock {
    Text {
        text: Text,
    },
    Image {
        source: Source,
    },
    /// Tool search results (`ToolSearch`) reference deferred tools by name.
    ToolReference {
        tool_name: String,
    },
    Document {
        source: Option<Source>,
        title: Option<String>,
    },
    Unknown,
}

/// The `source` of an image or document block: `base64` (`media_type` + `data`), `url`, `text`
/// (documents: `data` is the text) or `content` (documents: nested blocks).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Source {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub data: Option<Text>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub content: Option<Content<ToolResultBlock>>,
}

/// One entry of `tools`: a custom tool (`name`, `description`, `input_schema`) or a server tool
/// identified by `type` (`web_search_20250305`, …). `defer_loading` and `cache_control` are dropped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Tool {
    /// `None` or `"custom"` for custom tools; the versioned type of a server tool otherwise.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Server tools: how many times the tool may run in one request (`web_search`: `max_uses`).
    #[serde(default)]
    pub max_uses: Option<u64>,
    /// Example inputs (beta `advanced-tool-use`); sent to Kiro inside the description.
    #[serde(default, deserialize_with = "null_as_default")]
    pub input_examples: Vec<Value>,
}

impl Tool {
    /// A tool Anthropic runs itself (web search, code execution, …), as opposed to a custom tool
    /// with a schema that the client executes.
    pub fn is_server_tool(&self) -> bool {
        self.kind.as_deref().is_some_and(|k| k != "custom")
    }
}

/// `tool_choice`: `{type: auto|any|tool|none, name?}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `thinking`: `{type: enabled, budget_tokens}`, `{type: adaptive}` or `{type: disabled}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Thinking {
    #[serde(rename = "type")]
    pub kind: ThinkingKind,
    #[serde(default)]
    pub budget_tokens: Option<u64>,
}

/// `thinking.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThinkingKind {
    Enabled,
    Adaptive,
    Disabled,
    /// A type this proxy does not know yet; treated like `disabled`.
    #[serde(other)]
    Other,
}

/// `output_config`; only `effort` (`low|medium|high|xhigh|max`) is used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OutputConfig {
    #[serde(default)]
    pub effort: Option<String>,
}

/// `metadata`; Claude Code puts a JSON string with `session_id` into `user_id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

/// Deserializes `null` as the type's default.
pub(super) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `tool_result.content`: a string, an array of blocks, or `null`. Tool results carry most of a
/// long conversation (file contents, command output) and are usually strings, so the value is
/// captured raw first: a string is kept escaped as it came ([`Text`]) without being decoded, an
/// array is then read as blocks. An error inside the array names its place from the array on
/// (`[1].text: …`), which [`parse_request`] appends to the path of the result.
pub(super) fn result_content<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Content<ToolResultBlock>>, D::Error> {
    let raw = <&RawValue>::deserialize(d)?.get();
    match raw.as_bytes().first() {
        Some(b'"') => Ok(Some(Content::Text(text::from_quoted_raw(raw)?))),
        Some(b'n') => Ok(None),
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_str(raw);
            let blocks: Vec<ToolResultBlock> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                D::Error::custom(format!("{path}: {}", super::blocks::without_position(e.inner())))
            })?;
            Ok(Some(Content::Blocks(blocks)))
        }
        _ => Err(text::not_a_string(raw, &"a string or an array of content blocks")),
    }
}

/// Parses a Messages request body.
///
/// Errors are 400 `invalid_request_error` whose message starts with the JSON path of the problem
/// (`messages[2].content: invalid type: integer `5`, expected a string or an array of content
/// blocks at line 1 column 80`); syntax errors give line and column; a missing `model`,
/// `messages` or `max_tokens` is named; an empty `messages` array is rejected.
///
/// A body that is fine is read without error bookkeeping: its UTF-8 is checked once, up front
/// (simdutf8: about 4× std's check on a 1 MB Claude Code turn), and the JSON read as a `str` with
/// a plain typed parse. Read from bytes, serde_json checks each string's UTF-8 again on its own,
/// and serde_path_to_error's tracking costs about 15 % of a 1 MB parse. Only when that parse fails
/// is the body read again, tracked, to say where.
pub fn parse_request(body: &[u8]) -> Result<MessagesRequest, ApiError> {
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if object
        && let Ok(text) = simdutf8::basic::from_utf8(body)
        && let Ok(request) = serde_json::from_str::<MessagesRequest>(text)
        && !request.messages.is_empty()
    {
        return Ok(request);
    }
    parse_tracked(body)
}

/// [`parse_request`] of a body held as [`Bytes`]: the texts are slices of it instead of copies,
/// and hold it (and its pooled buffer) until the last of them is dropped. What the server uses.
pub fn parse_request_bytes(body: &Bytes) -> Result<MessagesRequest, ApiError> {
    text::reading(body, parse_request)
}

/// [`parse_request`]'s reading of a body that is not fine: the same parse, tracking where it is so
/// that the error can name the JSON path.
fn parse_tracked(body: &[u8]) -> Result<MessagesRequest, ApiError> {
    // serde would also read a struct from a JSON array; a request body must be an object.
    if let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace())
        && *first != b'{'
        && matches!(first, b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
    {
        return Err(ApiError::invalid_request("invalid request body: expected a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let request: MessagesRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::invalid_request(format!("invalid request body: {inner}"))
        } else if inner.to_string().starts_with(['[', '.']) {
            // A place inside a tool result's blocks (`result_content`) or in a key read before the
            // block's `type` (`blocks`).
            ApiError::invalid_request(format!("{path}{inner}"))
        } else {
            ApiError::invalid_request(format!("{path}: {inner}"))
        }
    })?;
    de.end().map_err(|e| ApiError::invalid_request(format!("invalid request body: {e}")))?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid_request("messages: at least one message is required"));
    }
    Ok(request)
}

impl MessagesRequest {
    /// A cheap estimate of the prompt size in tokens, used for `longcontext` routing.
    ///
    /// Formula: `ceil(text_bytes / 4) + 1600 × images`, where `text_bytes` is the length of the
    /// system prompt, every text / thinking / document text block, tool_use names and inputs,
    /// tool_result text and tool_reference names, and every tool definition (name, description,
    /// and the string, key and scalar content of its input schema; each scalar counts 1 byte).
    /// Texts count as the client sent them, still escaped ([`Text::json_len`]: `\n` is two
    /// bytes), so nothing is decoded or re-serialised: it is one walk over lengths, microseconds
    /// even for a 1 MB body. Byte length over-counts non-Latin scripts a little per character
    /// but they also use more tokens per character, so it stays in range.
    pub fn estimate_input_tokens(&self) -> u64 {
        let mut count = Count::default();
        if let Some(system) = &self.system {
            match system {
                Content::Text(s) => count.bytes += s.json_len(),
                Content::Blocks(blocks) => {
                    count.bytes += blocks.iter().map(|b| b.text.json_len()).sum::<usize>()
                }
            }
        }
        for message in &self.messages {
            match &message.content {
                Content::Text(s) => count.bytes += s.json_len(),
                Content::Blocks(blocks) => blocks.iter().for_each(|b| count.block(b)),
            }
        }
        for tool in &self.tools {
            count.bytes += tool.name.len() + tool.description.as_deref().map_or(0, str::len);
            if let Some(schema) = &tool.input_schema {
                count.bytes += value_text_len(schema);
            }
        }
        (count.bytes as u64).div_ceil(BYTES_PER_TOKEN) + count.images * IMAGE_TOKEN_ESTIMATE
    }

    /// The `thinking.type`, if the key was sent.
    pub fn thinking_kind(&self) -> Option<ThinkingKind> {
        self.thinking.as_ref().map(|t| t.kind)
    }

    /// Whether the client asked for extended thinking: `enabled` (with a budget, or the default
    /// one when the budget is missing) or `adaptive`.
    pub fn thinking_requested(&self) -> bool {
        matches!(self.thinking_kind(), Some(ThinkingKind::Enabled | ThinkingKind::Adaptive))
    }

    /// `thinking.budget_tokens` when thinking is `enabled`.
    pub fn thinking_budget(&self) -> Option<u64> {
        self.thinking.as_ref().filter(|t| t.kind == ThinkingKind::Enabled).and_then(|t| t.budget_tokens)
    }

    /// `output_config.effort` (`low`, `medium`, `high`, `xhigh`, `max`), if sent.
    pub fn effort(&self) -> Option<&str> {
        self.output_config.as_ref().and_then(|c| c.effort.as_deref())
    }

    /// The `type` of every tool that has one (server tools such as `web_search_20250305`).
    pub fn tool_types(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().filter_map(|t| t.kind.as_deref())
    }

    /// Whether a tool's `type` starts with `prefix` (e.g. `"web_search"`).
    pub fn has_server_tool(&self, prefix: &str) -> bool {
        self.tool_types().any(|t| t.starts_with(prefix))
    }

    /// Number of custom (client-executed) tools.
    pub fn custom_tool_count(&self) -> usize {
        self.tools.iter().filter(|t| !t.is_server_tool()).count()
    }

    /// Claude Code's session id from `metadata.user_id`: either a JSON string
    /// `{"device_id":…,"session_id":"<id>",…}` or the legacy `user_<hash>_account_…_session_<uuid>`.
    ///
    /// Only ids made of ASCII letters, digits, `-` and `_` (at most 128) are accepted, since the
    /// id is sent upstream as the `conversationId`; the legacy form must end in a UUID.
    pub fn session_id(&self) -> Option<String> {
        let user_id = self.metadata.as_ref()?.user_id.as_deref()?.trim();
        if user_id.starts_with('{') {
            let value: Value = serde_json::from_str(user_id).ok()?;
            let id = value.get("session_id")?.as_str()?;
            return is_safe_id(id).then(|| id.to_owned());
        }
        let (_, tail) = user_id.rsplit_once("_session_")?;
        uuid::Uuid::parse_str(tail).ok().map(|_| tail.to_owned())
    }
}

/// Accumulator for [`MessagesRequest::estimate_input_tokens`].
#[derive(Default)]
struct Count {
    bytes: usize,
    images: u64,
}

impl Count {
    fn block(&mut self, block: &ContentBlock) {
        match block {
            ContentBlock::Text { text } => self.bytes += text.json_len(),
            ContentBlock::Thinking { thinking } => self.bytes += thinking.json_len(),
            ContentBlock::Image { .. } => self.images += 1,
            ContentBlock::ToolUse { name, input, .. } => self.bytes += name.len() + value_text_len(input),
            ContentBlock::ToolResult { content, .. } => match content {
                Some(Content::Text(s)) => self.bytes += s.json_len(),
                Some(Content::Blocks(blocks)) => blocks.iter().for_each(|b| self.result_block(b)),
                None => {}
            },
            ContentBlock::Document { source, title } => {
                self.bytes += title.as_deref().map_or(0, str::len);
                self.source(source.as_ref());
            }
            ContentBlock::ServerToolUse { input, .. } => self.bytes += value_text_len(input),
            ContentBlock::WebSearchToolResult { content, .. } => self.bytes += value_text_len(content),
            ContentBlock::RedactedThinking | ContentBlock::Unknown => {}
        }
    }

    fn result_block(&mut self, block: &ToolResultBlock) {
        match block {
            ToolResultBlock::Text { text } => self.bytes += text.json_len(),
            ToolResultBlock::Image { .. } => self.images += 1,
            ToolResultBlock::ToolReference { tool_name } => self.bytes += tool_name.len(),
            ToolResultBlock::Document { source, title } => {
                self.bytes += title.as_deref().map_or(0, str::len);
                self.source(source.as_ref());
            }
            ToolResultBlock::Unknown => {}
        }
    }

    fn source(&mut self, source: Option<&Source>) {
        let Some(source) = source else { return };
        match source.kind.as_str() {
            "text" => self.bytes += source.data.as_ref().map_or(0, Text::json_len),
            "content" => {
                if let Some(content) = &source.content {
                    match content {
                        Content::Text(s) => self.bytes += s.json_len(),
                        Content::Blocks(blocks) => blocks.iter().for_each(|b| self.result_block(b)),
                    }
                }
            }
            // A base64 PDF: its text size is unknown; count the encoded size like text.
            _ => self.bytes += source.data.as_ref().map_or(0, Text::json_len),
        }
    }
}

/// Bytes of strings and keys in a JSON value, plus 1 per scalar. No allocation.
fn value_text_len(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(value_text_len).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + value_text_len(v)).sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 1,
    }
}

/// An id safe to forward as an upstream conversation id.
fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn texts_read_from_bytes_are_slices_of_the_body_and_mean_the_same() {
        let body = Bytes::from(
            serde_json::to_vec(&json!({
                "model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "sys\tprompt"}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "caf\u{e9} \"q\"\n"}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
                    {"role": "user", "content": [
                        {"tool_use_id": "t1", "type": "tool_result", "content": "file\nbody"},
                        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "in blocks"}]}
                    ]}
                ]
            }))
            .expect("json"),
        );
        let shared = parse_request_bytes(&body).expect("valid");
        let copied = parse_request(&body).expect("valid");
        assert_eq!(shared.system, copied.system, "the same request either way");
        assert_eq!(format!("{:?}", shared.messages), format!("{:?}", copied.messages));
        let within = |text: &Text| {
            let at = text.raw().as_ptr() as usize;
            let start = body.as_ptr() as usize;
            at >= start && at + text.raw().len() <= start + body.len()
        };
        let mut texts: Vec<&Text> = Vec::new();
        if let Some(Content::Blocks(system)) = &shared.system {
            texts.extend(system.iter().map(|b| &b.text));
        }
        for message in &shared.messages {
            let Content::Blocks(blocks) = &message.content else { continue };
            for block in blocks {
                match block {
                    ContentBlock::Text { text } => texts.push(text),
                    ContentBlock::ToolResult { content: Some(Content::Text(text)), .. } => texts.push(text),
                    ContentBlock::ToolResult { content: Some(Content::Blocks(inner)), .. } => {
                        texts.extend(inner.iter().filter_map(|b| match b {
                            ToolResultBlock::Text { text } => Some(text),
                            _ => None,
                        }))
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(texts.len(), 4, "system, text, and both tool results");
        assert!(texts.iter().all(|t| within(t)), "no text was copied");
        assert_eq!(*texts[1], "caf\u{e9} \"q\"\n");
        let Some(Content::Blocks(system)) = &copied.system else { panic!("system blocks") };
        assert!(!within(&system[0].text), "read from a plain slice, texts are copies");
    }

    #[test]
    fn the_untracked_reading_accepts_and_rejects_exactly_like_the_tracked_one() {
        let cases: &[&[u8]] = &[
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
            br#"  {"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"a\nb"}]}]}"#,
            br#"{"model":"m","max_tokens":5,"messages":[]}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            br#"{"model":"m","max_tokens":5,"messages":"nope"}"#,
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":5}]}"#,
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]} trailing"#,
            br#"["m",5,[{"role":"user","content":"x"}]]"#,
            b"{not json",
            b"",
            b"null",
            b"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"\ud83d"}]}"#,
        ];
        for raw in cases {
            let fast = parse_request(raw);
            let reference = parse_tracked(raw);
            match (fast, reference) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(
                        (a.model, a.max_tokens, a.messages.len()),
                        (b.model, b.max_tokens, b.messages.len())
                    )
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(raw)),
                (a, b) => {
                    panic!("{}: {:?} but tracked {:?}", String::from_utf8_lossy(raw), a.is_ok(), b.is_ok())
                }
            }
        }
        let bad_utf8 = parse_request(cases[11]).expect_err("not UTF-8");
        assert!(bad_utf8.message.contains("invalid unicode code point"), "{}", bad_utf8.message);
    }

    fn parse(v: Value) -> Result<MessagesRequest, ApiError> {
        parse_request(v.to_string().as_bytes())
    }

    fn minimal() -> Value {
        json!({"model": "claude-opus-4-8", "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}]})
    }

    #[test]
    fn parses_claude_code_main_turn_shape() {
        let body = json!({
            "model": "claude-opus-4-8",
            "max_tokens": 64000,
            "stream": true,
            "system": [
                {"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {"type": "text", "text": "say hello", "cache_control": {"type": "ephemeral"}}
                ]},
                {"role": "system", "content": "mid-conversation reminder"}
            ],
            "tools": [
                {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {}}},
                {"name": "DeferredToolPlaceholder", "description": "x", "input_schema": {"type": "object"}, "defer_loading": true}
            ],
            "metadata": {"user_id": "{\"device_id\":\"abc\",\"account_uuid\":\"\",\"session_id\":\"5b1c2e7e-0a8d-4c53-9d0e-6f2a0c1b9e11\"}"},
            "thinking": {"type": "adaptive", "display": "omitted"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "high"},
            "temperature": 1
        });
        let req = parse(body).expect("valid");
        assert_eq!(req.model, "claude-opus-4-8");
        assert!(req.stream);
        assert_eq!(req.max_tokens, 64000);
        assert_eq!(req.messages.len(), 2);
        assert_eq!(req.messages[1].role, Role::System);
        assert_eq!(req.messages[1].content, Content::Text("mid-conversation reminder".into()));
        assert_eq!(req.tools.len(), 2);
        assert_eq!(req.custom_tool_count(), 2);
        assert_eq!(req.thinking_kind(), Some(ThinkingKind::Adaptive));
        assert!(req.thinking_requested());
        assert_eq!(req.thinking_budget(), None);
        assert_eq!(req.effort(), Some("high"));
        assert_eq!(req.session_id().as_deref(), Some("5b1c2e7e-0a8d-4c53-9d0e-6f2a0c1b9e11"));
        match &req.system {
            Some(Content::Blocks(b)) => assert_eq!(b[1].text, "Be brief."),
            other => panic!("unexpected system {other:?}"),
        }
    }

    #[test]
    fn parses_every_block_kind_and_tolerates_unknown_ones() {
        let body = json!({
            "model": "m", "max_tokens": 1,
            "messages": [
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.invalid/a.png"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}, "title": "T"},
                    {"type": "some_future_block", "whatever": [1, 2, {"x": null}]}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/a"}}
                ]},
                {"role": "user", "content": [
                    {"tool_use_id": "toolu_1", "type": "tool_result", "cache_control": {"type": "ephemeral"},
                     "content": [
                        {"type": "text", "text": "line"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BBBB"}},
                        {"type": "tool_reference", "tool_name": "WebFetch"},
                        {"type": "search_result", "source": "s"}
                     ], "is_error": true}
                ]}
            ]
        });
        let req = parse(body).expect("valid");
        let user = req.messages[0].content.blocks();
        assert!(
            matches!(&user[0], ContentBlock::Image { source } if source.kind == "base64" && source.data.as_ref().is_some_and(|d| d == "AAAA"))
        );
        assert!(matches!(&user[1], ContentBlock::Image { source } if source.url.is_some()));
        assert!(matches!(&user[2], ContentBlock::Document { title: Some(t), .. } if t == "T"));
        assert_eq!(user[3], ContentBlock::Unknown);
        let assistant = req.messages[1].content.blocks();
        assert_eq!(assistant[0], ContentBlock::Thinking { thinking: "hmm".into() });
        assert_eq!(assistant[1], ContentBlock::RedactedThinking);
        assert!(matches!(&assistant[2], ContentBlock::ServerToolUse { id, .. } if id == "srvtoolu_1"));
        assert!(matches!(&assistant[3], ContentBlock::ToolUse { id, .. } if id == "toolu_1"));
        match &req.messages[2].content.blocks()[0] {
            ContentBlock::ToolResult { tool_use_id, content: Some(Content::Blocks(b)), is_error } => {
                assert_eq!(tool_use_id, "toolu_1");
                assert!(*is_error);
                assert_eq!(b[2], ToolResultBlock::ToolReference { tool_name: "WebFetch".into() });
                assert_eq!(b[3], ToolResultBlock::Unknown);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn server_tools_and_tool_choice() {
        let mut body = minimal();
        body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}]);
        body["tool_choice"] = json!({"type": "tool", "name": "web_search"});
        let req = parse(body).expect("valid");
        assert!(req.tools[0].is_server_tool());
        assert!(req.has_server_tool("web_search"));
        assert!(!req.has_server_tool("code_execution"));
        assert_eq!(req.tool_types().collect::<Vec<_>>(), ["web_search_20250305"]);
        assert_eq!(req.custom_tool_count(), 0);
        assert_eq!(req.tool_choice.as_ref().map(|c| c.kind.as_str()), Some("tool"));
    }

    #[test]
    fn thinking_variants() {
        let mut body = minimal();
        body["thinking"] = json!({"type": "enabled", "budget_tokens": 4000});
        let req = parse(body.clone()).expect("valid");
        assert!(req.thinking_requested());
        assert_eq!(req.thinking_budget(), Some(4000));

        body["thinking"] = json!({"type": "disabled"});
        let req = parse(body.clone()).expect("valid");
        assert!(!req.thinking_requested());
        assert_eq!(req.thinking_kind(), Some(ThinkingKind::Disabled));

        body["thinking"] = json!({"type": "something_new"});
        let req = parse(body.clone()).expect("valid");
        assert_eq!(req.thinking_kind(), Some(ThinkingKind::Other));
        assert!(!req.thinking_requested());

        let req = parse(minimal()).expect("valid");
        assert_eq!(req.thinking_kind(), None);
        assert!(!req.thinking_requested());
        assert!(!req.stream, "stream defaults to false");
    }

    #[test]
    fn session_id_forms() {
        let with = |uid: &str| {
            let mut body = minimal();
            body["metadata"] = json!({"user_id": uid});
            parse(body).expect("valid").session_id()
        };
        assert_eq!(
            with(
                r#"{"device_id":"d","account_uuid":"","session_id":"0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b"}"#
            )
            .as_deref(),
            Some("0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b")
        );
        assert_eq!(
            with("user_0dede55c_account__session_8bb5523b-ec7c-4540-a9ca-beb6d79f1552").as_deref(),
            Some("8bb5523b-ec7c-4540-a9ca-beb6d79f1552")
        );
        assert_eq!(with("user_abc_session_not-a-uuid"), None);
        assert_eq!(with("user_abc"), None);
        assert_eq!(with(r#"{"session_id": 5}"#), None);
        assert_eq!(with(r#"{"session_id": "bad id with spaces"}"#), None);
        assert_eq!(with(r#"{"session_id": "#), None);
        assert_eq!(parse(minimal()).expect("valid").session_id(), None);
    }

    #[test]
    fn error_names_the_json_path() {
        let body = json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": 5}
        ]});
        let err = parse(body).expect_err("bad content");
        assert_eq!(err.status.as_u16(), 400);
        assert_eq!(err.kind, crate::anthropic::ErrorKind::InvalidRequestError);
        assert!(
            err.message.starts_with(
                "messages[2].content: invalid type: integer `5`, expected a string or an array of content blocks"
            ),
            "{}",
            err.message
        );

        let err =
            parse(json!({"model": "m", "max_tokens": 1, "messages": [{"role": "robot", "content": "x"}]}))
                .expect_err("bad role");
        assert!(err.message.starts_with("messages[0].role: unknown variant `robot`"), "{}", err.message);

        let err =
            parse(json!({"model": "m", "max_tokens": "many", "messages": []})).expect_err("bad max_tokens");
        assert!(err.message.starts_with("max_tokens: invalid type: string"), "{}", err.message);

        let err = parse(json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "ok"}, {"type": "text", "text": 7}
        ]}]}))
        .expect_err("bad block");
        assert!(err.message.starts_with("messages[0].content[1]"), "{}", err.message);
        assert!(err.message.contains("invalid type: integer `7`"), "{}", err.message);
    }

    #[test]
    fn errors_in_keys_before_the_type_and_lone_surrogates_are_named_in_place() {
        let body = |content: &str| {
            format!(r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":[{content}]}}]}}"#)
        };
        let err = parse_request(body(r#"{"text":5,"type":"text"}"#).as_bytes()).expect_err("a number");
        assert!(
            err.message.starts_with("messages[0].content[0].text: invalid type: integer `5`"),
            "{}",
            err.message
        );
        let err = parse_request(
            body(r#"{"content":[{"type":"text","text":5}],"tool_use_id":"t","type":"tool_result"}"#)
                .as_bytes(),
        )
        .expect_err("a number in a result block");
        assert!(
            err.message.starts_with("messages[0].content[0].content[0].text: invalid type"),
            "{}",
            err.message
        );
        let err = parse_request(
            body(r#"{"type":"tool_result","tool_use_id":"t","content":"cut \ud83d"}"#).as_bytes(),
        )
        .expect_err("a lone surrogate");
        // serde_json's own words, as when the string was decoded: "unexpected end of hex escape".
        assert!(err.message.contains("hex escape"), "{}", err.message);
        let err = parse_request(body(r#"{"type":"thinking","thinking":null}"#).as_bytes())
            .expect_err("null thinking");
        assert!(err.message.contains("invalid type: null, expected a string"), "{}", err.message);
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["model", "messages", "max_tokens"] {
            let mut body = minimal();
            body.as_object_mut().expect("object").remove(field);
            let err = parse(body).expect_err("missing field");
            assert!(err.message.contains(&format!("missing field `{field}`")), "{}", err.message);
        }
        let err = parse(json!({"model": "m", "max_tokens": 1, "messages": []})).expect_err("empty");
        assert_eq!(err.message, "messages: at least one message is required");
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let err = parse_request(b"{\"model\": \"m\",\n \"messages\": [}").expect_err("malformed");
        assert!(err.message.contains("line 2 column"), "{}", err.message);
        let err = parse_request(b"").expect_err("empty body");
        assert!(err.message.contains("EOF"), "{}", err.message);
        let err = parse_request(
            br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]} trailing"#,
        )
        .expect_err("trailing");
        assert!(err.message.contains("trailing characters"), "{}", err.message);
        let err = parse_request(b"[1,2]").expect_err("not an object");
        assert_eq!(err.message, "invalid request body: expected a JSON object");
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let deep = format!(
            r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"a","name":"b","input":{}{}}}]}}]}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse_request(deep.as_bytes()).is_err());
        for body in [&b"\xff\xfe"[..], b"null", b"{}", b"{\"messages\":null}", b"\"x\"", b"{\"model\":1e999}"]
        {
            assert!(parse_request(body).is_err());
        }
        // Nulls where the API allows absence.
        let ok = parse(json!({"model": "m", "max_tokens": 1, "stream": null, "tools": null, "system": null,
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": null, "is_error": null}]}]}));
        assert!(ok.is_ok());
    }

    #[test]
    fn estimate_counts_text_tools_and_images() {
        let body = json!({
            "model": "m", "max_tokens": 1,
            "system": "s".repeat(400),
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "u".repeat(800)},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
                ]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r".repeat(400)}]}
            ],
            "tools": [{"name": "Bash", "description": "d".repeat(396), "input_schema": {"type": "object"}}]
        });
        let req = parse(body).expect("valid");
        // 400 + 800 + (4 + 7 + 2) + 400 + (4 + 396 + 4 + 6) = 2023 bytes → 506 tokens, + 1 image.
        assert_eq!(req.estimate_input_tokens(), 506 + IMAGE_TOKEN_ESTIMATE);
    }
}

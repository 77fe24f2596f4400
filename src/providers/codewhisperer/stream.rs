//! Kiro events → Anthropic Messages output, streaming (SSE) and non-streaming (one JSON message).
//!
//! One state machine ([`Translator`]) turns [`KiroEvent`]s into content-block events (start, delta,
//! stop with increasing indices, one block open at a time). Two sinks consume them:
//! [`SseTranslator`] writes each one straight into the response buffer as it happens, and
//! [`MessageAggregator`] builds the content array of a non-streaming answer. Both therefore agree
//! on content, stop reason and usage by construction.
//!
//! Rules (protocol notes §5.5–5.7, pitfalls §8):
//! - text deltas are appended verbatim, never de-duplicated (Kiro sends pure increments);
//! - a text block is opened only when text arrives, so no empty text blocks;
//! - the first `toolUseEvent` of an id closes the open block and opens a `tool_use` block whose
//!   start carries `"input":{}`; fragments become `input_json_delta`; `stop:true` closes it;
//! - text after a tool opens a new text block;
//! - with thinking requested, a leading `<thinking>…</thinking>` in the text becomes a `thinking`
//!   block (see [`Translator::on_text`] for the tag rules); native `reasoningContentEvent`s too;
//! - stop reason: `model_context_window_exceeded` (context ≥ 100 %) > `max_tokens`
//!   (`ContentLengthExceededException`, or an answer that is only thinking) > `tool_use` > `end_turn`.

use super::events::{KiroEvent, parse_frame};
use super::eventstream::FrameDecoder;
use crate::anthropic::sse::{write_event, write_ping};
use crate::anthropic::{ApiError, ErrorKind};
use bytes::BytesMut;
use serde::Serialize;
use std::collections::HashMap;

/// What the translator needs to know about the request.
#[derive(Debug, Clone, Default)]
pub struct ResponseOptions {
    /// The model name the client asked for; echoed in the response.
    pub model: String,
    /// Thinking was requested → parse `<thinking>…</thinking>` out of text into thinking blocks.
    pub thinking: bool,
    /// Local estimate, used until `contextUsageEvent`/`metadataEvent` says better.
    pub input_tokens: u64,
    /// For `contextUsagePercentage` → input tokens (200 000 or 1 000 000).
    pub context_window: u64,
    /// Shortened tool name → original name, to restore names.
    pub tool_names: HashMap<String, String>,
}

/// Why the answer ended, as Anthropic names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    ModelContextWindowExceeded,
    /// Kiro's `CONTENT_FILTERED`.
    Refusal,
    /// Kiro's `PAUSE_TURN`.
    PauseTurn,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::ToolUse => "tool_use",
            StopReason::MaxTokens => "max_tokens",
            StopReason::ModelContextWindowExceeded => "model_context_window_exceeded",
            StopReason::Refusal => "refusal",
            StopReason::PauseTurn => "pause_turn",
        }
    }
}

/// Anthropic's stop reason for a `stopReason` Kiro reported; `None` for the ordinary ends
/// (`END_TURN`, `TOOL_USE`, `STOP_SEQUENCE`) and unknown values, which the answer's own content
/// decides.
pub fn kiro_stop_reason(reason: &str) -> Option<StopReason> {
    match reason.to_ascii_uppercase().as_str() {
        "MAX_TOKENS" | "LENGTH" => Some(StopReason::MaxTokens),
        "MODEL_CONTEXT_WINDOW_EXCEEDED" | "CONTEXT_WINDOW_EXCEEDED" => {
            Some(StopReason::ModelContextWindowExceeded)
        }
        "CONTENT_FILTERED" | "GUARDRAIL_INTERVENED" | "REFUSAL" => Some(StopReason::Refusal),
        "PAUSE_TURN" => Some(StopReason::PauseTurn),
        _ => None,
    }
}

/// Where the input token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// `metadataEvent.tokenUsage` (authoritative).
    Metadata,
    /// `contextUsageEvent` percentage × context window.
    ContextUsage,
    /// The local estimate from the request.
    Estimate,
}

/// Token usage of one answer, for the client and for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cache-read input tokens (metadata only; not included in `input_tokens`).
    pub cache_read: u64,
    /// Cache-write input tokens (metadata only).
    pub cache_write: u64,
    pub input_source: UsageSource,
    /// Whether `output_tokens` came from metadata rather than the character estimate.
    pub output_from_metadata: bool,
}

/// A fresh Anthropic message id: `msg_` + 32 hex digits.
pub fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------------------------------------
// Content-block events: what the state machine emits.

/// The `content_block` of a `content_block_start`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStart<'a> {
    Text { text: &'static str },
    Thinking { thinking: &'static str, signature: &'static str },
    ToolUse { id: &'a str, name: &'a str, input: EmptyObject },
}

/// Serializes as `{}`: a tool block must start with empty input (pitfall §8.5).
#[derive(Debug, Serialize)]
struct EmptyObject {}

/// The `delta` of a `content_block_delta`.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

/// One content-block event.
#[derive(Debug)]
enum BlockEvent<'a> {
    Start { index: usize, block: BlockStart<'a> },
    Delta { index: usize, delta: Delta<'a> },
    Stop { index: usize },
}

/// A consumer of content-block events.
trait Sink {
    fn emit(&mut self, ev: BlockEvent<'_>);
}

// ---------------------------------------------------------------------------------------------
// The state machine.

const THINKING_OPEN: &str = "<thinking>";
const THINKING_CLOSE: &str = "</thinking>";

/// Characters that, right before or after `</thinking>`, mean the model is quoting the tag.
fn is_quote_char(c: char) -> bool {
    matches!(c, '`' | '"' | '\'' | '\\' | '“' | '”' | '‘' | '’' | '«' | '»')
}

/// Where the text scanner is, when thinking was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThinkPhase {
    /// Nothing decided yet: the answer may still begin with `<thinking>`.
    Start,
    /// Inside `<thinking>`; `strip_newline` while the `\n` right after the tag may still come.
    Inside { strip_newline: bool },
    /// Plain text from here on.
    Done,
}

#[derive(Debug)]
enum OpenKind {
    Text,
    Thinking { signature: Option<String> },
    Tool { id: String },
}

#[derive(Debug)]
struct OpenBlock {
    index: usize,
    kind: OpenKind,
}

/// Output size in characters, split by how many characters make a token.
#[derive(Debug, Default, Clone, Copy)]
struct CharCount {
    cjk: u64,
    other: u64,
}

impl CharCount {
    fn add(&mut self, s: &str) {
        if s.is_ascii() {
            self.other += s.len() as u64;
            return;
        }
        for c in s.chars() {
            if is_cjk(c) {
                self.cjk += 1;
            } else {
                self.other += 1;
            }
        }
    }

    /// ≈4 characters per token, CJK ≈1.5 characters per token, rounded up.
    fn tokens(self) -> u64 {
        (self.other * 3 + self.cjk * 8).div_ceil(12)
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F      // CJK symbols and punctuation
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF00..=0xFFEF    // half/full-width forms
        | 0x20000..=0x2FFFF) // CJK extensions B…
}

/// The shared translation state machine. Generic over the sink so both paths are monomorphic.
#[derive(Debug)]
struct Translator {
    opts: ResponseOptions,
    next_index: usize,
    open: Option<OpenBlock>,
    /// Tool ids seen → whether their block is closed (late or repeated frames are dropped).
    tools: HashMap<String, bool>,
    phase: ThinkPhase,
    /// Text held back while a thinking tag may be split across chunks.
    held: String,
    /// The last thinking character emitted (the held text's left neighbour).
    last_thinking_char: Option<char>,
    any_text: bool,
    any_thinking: bool,
    any_tool: bool,
    output_chars: CharCount,
    metadata: Option<(u64, u64, u64, u64)>,
    context_percentage: Option<f64>,
    length_exceeded: bool,
    kiro_stop: Option<StopReason>,
    finished: bool,
}

impl Translator {
    fn new(opts: ResponseOptions) -> Self {
        let phase = if opts.thinking { ThinkPhase::Start } else { ThinkPhase::Done };
        Translator {
            opts,
            next_index: 0,
            open: None,
            tools: HashMap::new(),
            phase,
            held: String::new(),
            last_thinking_char: None,
            any_text: false,
            any_thinking: false,
            any_tool: false,
            output_chars: CharCount::default(),
            metadata: None,
            context_percentage: None,
            length_exceeded: false,
            kiro_stop: None,
            finished: false,
        }
    }

    /// Apply one event. `Err` means the upstream failed the request; the caller reports it.
    fn on_event<S: Sink>(&mut self, ev: KiroEvent, sink: &mut S) -> Result<(), ApiError> {
        match ev {
            KiroEvent::Text(text) => self.on_text(&text, sink),
            KiroEvent::ToolUse { id, name, input, stop } => {
                self.on_tool_use(id, &name, input.as_deref(), stop, sink)
            }
            KiroEvent::Reasoning { text, signature } => self.on_reasoning(&text, signature, sink),
            KiroEvent::ContextUsage { percentage } => self.context_percentage = Some(percentage),
            KiroEvent::Usage { input_tokens, output_tokens, cache_read, cache_write } => {
                self.metadata = Some((input_tokens, output_tokens, cache_read, cache_write));
            }
            KiroEvent::StopReason(reason) => {
                if let Some(stop) = kiro_stop_reason(&reason) {
                    self.kiro_stop = Some(stop);
                }
            }
            KiroEvent::Exception { kind, message } => {
                if kind == "ContentLengthExceededException" {
                    tracing::debug!(%message, "upstream hit its output length limit");
                    self.length_exceeded = true;
                } else {
                    let error_kind = if kind.contains("Throttling") {
                        ErrorKind::RateLimitError
                    } else if kind.contains("ServiceUnavailable") {
                        ErrorKind::OverloadedError
                    } else {
                        ErrorKind::ApiError
                    };
                    return Err(ApiError::new(error_kind, format!("upstream {kind}: {message}")));
                }
            }
            KiroEvent::Error { code, message } => {
                return Err(ApiError::new(ErrorKind::ApiError, format!("upstream error {code}: {message}")));
            }
            KiroEvent::InvalidState { reason, message } => {
                return Err(ApiError::new(
                    ErrorKind::ApiError,
                    format!("upstream invalid state {reason}: {message}"),
                ));
            }
            KiroEvent::Ignored(name) => tracing::trace!(event = %name, "ignored upstream event"),
            // Credits are the balancer's business (the handler reports them on the lease).
            KiroEvent::Metering { .. } => {}
        }
        Ok(())
    }

    /// Text delta. Without thinking it goes straight to a text block. With thinking:
    /// - the answer is in thinking mode only if it *begins* (after whitespace) with `<thinking>`;
    ///   a tag later in the text is the model talking about tags, and stays text;
    /// - one `\n` right after `<thinking>` is dropped;
    /// - `</thinking>` ends thinking when followed by `\n\n` (dropped), at the end of the stream, or
    ///   before a tool use; never when a quote character touches it;
    /// - tags may be split across chunks: the undecidable tail is held back, everything else is
    ///   emitted at once.
    fn on_text<S: Sink>(&mut self, text: &str, sink: &mut S) {
        if text.is_empty() {
            return;
        }
        match self.phase {
            ThinkPhase::Done => self.emit_text(text, sink),
            ThinkPhase::Start => {
                self.held.push_str(text);
                let trimmed = self.held.trim_start();
                if let Some(rest) = trimmed.strip_prefix(THINKING_OPEN) {
                    let rest = rest.to_owned();
                    self.held.clear();
                    self.phase = ThinkPhase::Inside { strip_newline: true };
                    self.on_thinking_text(&rest, sink);
                } else if trimmed.is_empty() || THINKING_OPEN.starts_with(trimmed) {
                    // Still could become `<thinking>`.
                } else {
                    self.phase = ThinkPhase::Done;
                    let held = std::mem::take(&mut self.held);
                    self.emit_text(&held, sink);
                }
            }
            ThinkPhase::Inside { .. } => self.on_thinking_text(text, sink),
        }
    }

    fn on_thinking_text<S: Sink>(&mut self, mut text: &str, sink: &mut S) {
        if let ThinkPhase::Inside { strip_newline: true } = self.phase {
            if text.is_empty() {
                return;
            }
            text = text.strip_prefix('\n').unwrap_or(text);
            self.phase = ThinkPhase::Inside { strip_newline: false };
        }
        self.held.push_str(text);
        match find_thinking_end(&self.held, self.last_thinking_char) {
            EndScan::Found(at) => {
                let held = std::mem::take(&mut self.held);
                self.emit_thinking(&held[..at], sink);
                self.close_open(sink);
                self.phase = ThinkPhase::Done;
                self.emit_text(&held[at + THINKING_CLOSE.len() + 2..], sink);
            }
            EndScan::Undecided(safe) => {
                if safe > 0 {
                    let rest = self.held.split_off(safe);
                    let done = std::mem::replace(&mut self.held, rest);
                    self.emit_thinking(&done, sink);
                }
            }
        }
    }

    /// A boundary (tool use, end of stream, failure): settle any held-back text.
    fn settle_text<S: Sink>(&mut self, sink: &mut S) {
        match self.phase {
            ThinkPhase::Done => {}
            ThinkPhase::Start => {
                self.phase = ThinkPhase::Done;
                // Only whitespace (or a prefix of `<thinking>`) can be held here.
                let held = std::mem::take(&mut self.held);
                if !held.trim().is_empty() {
                    self.emit_text(&held, sink);
                }
            }
            ThinkPhase::Inside { .. } => {
                self.phase = ThinkPhase::Done;
                let held = std::mem::take(&mut self.held);
                // The held tail is a partial tag (just thinking text), or `</thinking>` followed by
                // at most one character, which the boundary accepts unless it is quoted.
                let thinking = match held.find(THINKING_CLOSE) {
                    Some(at)
                        if held[at + THINKING_CLOSE.len()..].trim().is_empty()
                            && !held[..at]
                                .chars()
                                .next_back()
                                .or(self.last_thinking_char)
                                .is_some_and(is_quote_char) =>
                    {
                        &held[..at]
                    }
                    _ => held.as_str(),
                };
                self.emit_thinking(thinking, sink);
                if matches!(self.open, Some(OpenBlock { kind: OpenKind::Thinking { .. }, .. })) {
                    self.close_open(sink);
                }
            }
        }
    }

    fn on_tool_use<S: Sink>(
        &mut self,
        id: String,
        name: &str,
        input: Option<&str>,
        stop: bool,
        sink: &mut S,
    ) {
        match self.tools.get(&id) {
            Some(true) => {
                tracing::warn!(tool_use_id = %id, "dropping a toolUseEvent for a tool that already ended");
                return;
            }
            Some(false) => {}
            None => {
                self.settle_text(sink);
                self.close_open(sink);
                let index = self.next_index;
                self.next_index += 1;
                let name = self.opts.tool_names.get(name).map_or(name, String::as_str);
                sink.emit(BlockEvent::Start {
                    index,
                    block: BlockStart::ToolUse { id: &id, name, input: EmptyObject {} },
                });
                self.output_chars.add(name);
                self.tools.insert(id.clone(), false);
                self.any_tool = true;
                self.open = Some(OpenBlock { index, kind: OpenKind::Tool { id } });
            }
        }
        let Some(OpenBlock { index, .. }) = self.open else { return };
        if let Some(fragment) = input.filter(|f| !f.is_empty()) {
            self.output_chars.add(fragment);
            sink.emit(BlockEvent::Delta { index, delta: Delta::InputJson { partial_json: fragment } });
        }
        if stop {
            self.close_open(sink);
        }
    }

    fn on_reasoning<S: Sink>(&mut self, text: &str, signature: Option<String>, sink: &mut S) {
        self.emit_thinking(text, sink);
        if let Some(sig) = signature.filter(|s| !s.is_empty()) {
            if !matches!(self.open, Some(OpenBlock { kind: OpenKind::Thinking { .. }, .. })) {
                self.open_block(OpenKind::Thinking { signature: None }, sink);
                self.any_thinking = true;
            }
            if let Some(OpenBlock { kind: OpenKind::Thinking { signature }, .. }) = &mut self.open {
                *signature = Some(sig);
            }
        }
    }

    fn emit_text<S: Sink>(&mut self, text: &str, sink: &mut S) {
        if text.is_empty() {
            return;
        }
        let index = match &self.open {
            Some(OpenBlock { index, kind: OpenKind::Text }) => *index,
            _ => self.open_block(OpenKind::Text, sink),
        };
        self.any_text = true;
        self.output_chars.add(text);
        sink.emit(BlockEvent::Delta { index, delta: Delta::Text { text } });
    }

    fn emit_thinking<S: Sink>(&mut self, text: &str, sink: &mut S) {
        if text.is_empty() {
            return;
        }
        let index = match &self.open {
            Some(OpenBlock { index, kind: OpenKind::Thinking { .. } }) => *index,
            _ => self.open_block(OpenKind::Thinking { signature: None }, sink),
        };
        self.any_thinking = true;
        self.last_thinking_char = text.chars().next_back();
        self.output_chars.add(text);
        sink.emit(BlockEvent::Delta { index, delta: Delta::Thinking { thinking: text } });
    }

    /// Close whatever is open and start a text or thinking block; returns its index.
    fn open_block<S: Sink>(&mut self, kind: OpenKind, sink: &mut S) -> usize {
        self.close_open(sink);
        let index = self.next_index;
        self.next_index += 1;
        let block = match kind {
            OpenKind::Thinking { .. } => BlockStart::Thinking { thinking: "", signature: "" },
            _ => BlockStart::Text { text: "" },
        };
        sink.emit(BlockEvent::Start { index, block });
        self.open = Some(OpenBlock { index, kind });
        index
    }

    fn close_open<S: Sink>(&mut self, sink: &mut S) {
        let Some(OpenBlock { index, kind }) = self.open.take() else { return };
        match kind {
            OpenKind::Text => {}
            OpenKind::Thinking { signature } => {
                if let Some(signature) = signature {
                    sink.emit(BlockEvent::Delta { index, delta: Delta::Signature { signature: &signature } });
                }
            }
            OpenKind::Tool { id } => {
                if let Some(closed) = self.tools.get_mut(&id) {
                    *closed = true;
                }
            }
        }
        sink.emit(BlockEvent::Stop { index });
    }

    /// End of the upstream answer: settle held text, close blocks, add the `" "` text block of a
    /// thinking-only answer. Idempotent.
    fn finish<S: Sink>(&mut self, sink: &mut S) {
        if self.finished {
            return;
        }
        self.settle_text(sink);
        self.close_open(sink);
        if self.thinking_only() {
            let index = self.next_index;
            self.next_index += 1;
            sink.emit(BlockEvent::Start { index, block: BlockStart::Text { text: "" } });
            sink.emit(BlockEvent::Delta { index, delta: Delta::Text { text: " " } });
            sink.emit(BlockEvent::Stop { index });
        }
        self.finished = true;
    }

    /// Upstream failure: keep what was produced, close blocks, no filler.
    fn abort<S: Sink>(&mut self, sink: &mut S) {
        if self.finished {
            return;
        }
        self.settle_text(sink);
        self.close_open(sink);
        self.finished = true;
    }

    fn thinking_only(&self) -> bool {
        self.any_thinking && !self.any_text && !self.any_tool
    }

    fn stop_reason(&self) -> StopReason {
        if self.context_percentage.is_some_and(|p| p >= 100.0) {
            StopReason::ModelContextWindowExceeded
        } else if let Some(stop) = self.kiro_stop {
            stop
        } else if self.length_exceeded || self.thinking_only() {
            StopReason::MaxTokens
        } else if self.any_tool {
            StopReason::ToolUse
        } else {
            StopReason::EndTurn
        }
    }

    fn usage(&self) -> Usage {
        let (meta_in, meta_out, cache_read, cache_write) = self.metadata.unwrap_or_default();
        let (input_tokens, input_source) =
            if self.metadata.is_some() && (meta_in > 0 || cache_read + cache_write > 0) {
                (meta_in, UsageSource::Metadata)
            } else if let Some(p) = self.context_percentage.filter(|p| p.is_finite() && *p > 0.0) {
                ((p * self.opts.context_window as f64 / 100.0).round() as u64, UsageSource::ContextUsage)
            } else {
                (self.opts.input_tokens, UsageSource::Estimate)
            };
        let (output_tokens, output_from_metadata) =
            if meta_out > 0 { (meta_out, true) } else { (self.output_chars.tokens().max(1), false) };
        Usage { input_tokens, output_tokens, cache_read, cache_write, input_source, output_from_metadata }
    }
}

/// Result of looking for the end of thinking in the held text.
#[derive(Debug, PartialEq, Eq)]
enum EndScan {
    /// A real `</thinking>` at this byte offset, followed by `\n\n`.
    Found(usize),
    /// No decision yet; the text before this offset is certainly thinking.
    Undecided(usize),
}

/// `prev` is the last character already emitted before `buf`: it decides whether a tag at the very
/// start of `buf` is quoted.
fn find_thinking_end(buf: &str, prev: Option<char>) -> EndScan {
    let mut from = 0;
    while let Some(pos) = buf[from..].find(THINKING_CLOSE) {
        let at = from + pos;
        let after = &buf[at + THINKING_CLOSE.len()..];
        let quoted = buf[..at].chars().next_back().or(prev).is_some_and(is_quote_char)
            || after.chars().next().is_some_and(is_quote_char);
        if !quoted {
            if after.starts_with("\n\n") {
                return EndScan::Found(at);
            }
            if after.is_empty() || after == "\n" {
                return EndScan::Undecided(at);
            }
        }
        // `<` is ASCII, so `at + 1` is a char boundary.
        from = at + 1;
    }
    // Hold back a tail that may be the start of a split `</thinking>`.
    let hold = (1..THINKING_CLOSE.len())
        .rev()
        .find(|&n| {
            buf.len() >= n
                && buf.is_char_boundary(buf.len() - n)
                && THINKING_CLOSE.starts_with(&buf[buf.len() - n..])
        })
        .unwrap_or(0);
    EndScan::Undecided(buf.len() - hold)
}

// ---------------------------------------------------------------------------------------------
// Streaming sink.

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: MessageStartBody<'a>,
}

#[derive(Serialize)]
struct MessageStartBody<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: [(); 0],
    model: &'a str,
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: WireUsage,
}

#[derive(Serialize)]
struct WireUsage {
    input_tokens: u64,
    output_tokens: u64,
    /// Only when Kiro reported token usage (`metadataEvent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_creation_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    fn of(usage: &Usage) -> WireUsage {
        let metadata = usage.input_source == UsageSource::Metadata;
        WireUsage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_creation_input_tokens: metadata.then_some(usage.cache_write),
            cache_read_input_tokens: metadata.then_some(usage.cache_read),
        }
    }
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: WireUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: StopReason,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct BlockStartEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    content_block: BlockStart<'a>,
}

#[derive(Serialize)]
struct BlockDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: Delta<'a>,
}

#[derive(Serialize)]
struct BlockStopEvent {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
}

struct SseSink<'a>(&'a mut BytesMut);

impl Sink for SseSink<'_> {
    fn emit(&mut self, ev: BlockEvent<'_>) {
        match ev {
            BlockEvent::Start { index, block } => write_event(
                self.0,
                "content_block_start",
                &BlockStartEvent { kind: "content_block_start", index, content_block: block },
            ),
            BlockEvent::Delta { index, delta } => write_event(
                self.0,
                "content_block_delta",
                &BlockDeltaEvent { kind: "content_block_delta", index, delta },
            ),
            BlockEvent::Stop { index } => write_event(
                self.0,
                "content_block_stop",
                &BlockStopEvent { kind: "content_block_stop", index },
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SsePhase {
    New,
    Started,
    Done,
}

/// Streaming translator: Kiro events in, Anthropic SSE bytes out, as they arrive.
///
/// Sequence: `message_start`, content blocks, `message_delta`, `message_stop`; or, on failure,
/// the blocks so far closed and one `error` event (no `message_stop`).
#[derive(Debug)]
pub struct SseTranslator {
    core: Translator,
    message_id: String,
    phase: SsePhase,
}

impl SseTranslator {
    pub fn new(opts: ResponseOptions, message_id: String) -> Self {
        SseTranslator { core: Translator::new(opts), message_id, phase: SsePhase::New }
    }

    /// Write `message_start` (once; later calls do nothing).
    pub fn start(&mut self, out: &mut BytesMut) {
        if self.phase != SsePhase::New {
            return;
        }
        self.phase = SsePhase::Started;
        let start = MessageStart {
            kind: "message_start",
            message: MessageStartBody {
                id: &self.message_id,
                kind: "message",
                role: "assistant",
                content: [],
                model: &self.core.opts.model,
                stop_reason: None,
                stop_sequence: None,
                usage: WireUsage {
                    input_tokens: self.core.opts.input_tokens,
                    output_tokens: 1,
                    cache_creation_input_tokens: None,
                    cache_read_input_tokens: None,
                },
            },
        };
        write_event(out, "message_start", &start);
    }

    /// Translate one event. On `Err` the upstream failed the request: the open blocks are closed
    /// and the `error` event is already in `out`; stop reading and send it. Events after the end
    /// are ignored.
    pub fn on_event(&mut self, ev: KiroEvent, out: &mut BytesMut) -> Result<(), ApiError> {
        if self.phase == SsePhase::Done {
            return Ok(());
        }
        self.start(out);
        let result = self.core.on_event(ev, &mut SseSink(out));
        if let Err(err) = &result {
            self.fail(err, out);
        }
        result
    }

    /// Normal end of the upstream answer: close blocks, `message_delta`, `message_stop`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.phase == SsePhase::Done {
            return;
        }
        self.start(out);
        self.core.finish(&mut SseSink(out));
        self.phase = SsePhase::Done;
        let usage = self.core.usage();
        let delta = MessageDelta {
            kind: "message_delta",
            delta: StopDelta { stop_reason: self.core.stop_reason(), stop_sequence: None },
            usage: WireUsage::of(&usage),
        };
        write_event(out, "message_delta", &delta);
        write_event(out, "message_stop", &serde_json::json!({"type": "message_stop"}));
    }

    /// Failure mid-stream: close open blocks, then one `error` event. Does nothing after the end.
    pub fn fail(&mut self, err: &ApiError, out: &mut BytesMut) {
        if self.phase == SsePhase::Done {
            return;
        }
        self.core.abort(&mut SseSink(out));
        self.phase = SsePhase::Done;
        write_event(out, "error", &err.body());
    }

    /// A keep-alive `ping` event.
    pub fn ping(&self, out: &mut BytesMut) {
        write_ping(out);
    }

    /// The stop reason as of now (final after [`finish`](Self::finish)).
    pub fn stop_reason(&self) -> StopReason {
        self.core.stop_reason()
    }

    /// Usage as of now (final after [`finish`](Self::finish)).
    pub fn usage(&self) -> Usage {
        self.core.usage()
    }

    /// Whether `finish` or `fail` already ended the stream.
    pub fn is_done(&self) -> bool {
        self.phase == SsePhase::Done
    }
}

/// The whole streaming path for one upstream body: event-stream bytes in, SSE bytes out.
///
/// Frames are decoded and translated as soon as they are complete; nothing waits for the end.
#[derive(Debug)]
pub struct SseResponse {
    decoder: FrameDecoder,
    translator: SseTranslator,
}

impl SseResponse {
    pub fn new(opts: ResponseOptions, message_id: String) -> Self {
        SseResponse { decoder: FrameDecoder::new(), translator: SseTranslator::new(opts, message_id) }
    }

    /// Write `message_start` (call when upstream answered 200, before the body).
    pub fn start(&mut self, out: &mut BytesMut) {
        self.translator.start(out);
    }

    /// Feed a chunk of the upstream body. On `Err` the error event is already in `out` and the
    /// stream is over (corrupt framing, malformed event or an upstream failure event).
    pub fn on_bytes(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), ApiError> {
        if self.translator.is_done() {
            return Ok(());
        }
        self.decoder.feed(chunk);
        loop {
            let frame = match self.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(err) => {
                    return Err(self.fail_with(format!("upstream event stream is corrupt: {err}"), out));
                }
            };
            let event = match parse_frame(&frame) {
                Ok(event) => event,
                Err(err) => {
                    return Err(self.fail_with(format!("upstream sent a malformed event: {err}"), out));
                }
            };
            self.translator.on_event(event, out)?;
        }
    }

    /// The upstream body ended. A partial frame left over means the stream was cut: error event.
    pub fn on_end(&mut self, out: &mut BytesMut) -> Result<(), ApiError> {
        if self.translator.is_done() {
            return Ok(());
        }
        if self.decoder.buffered_len() > 0 {
            let left = self.decoder.buffered_len();
            return Err(self
                .fail_with(format!("upstream event stream ended inside a frame ({left} bytes left)"), out));
        }
        self.translator.finish(out);
        Ok(())
    }

    /// A read error or timeout on the upstream body.
    pub fn fail(&mut self, err: &ApiError, out: &mut BytesMut) {
        self.translator.fail(err, out);
    }

    pub fn translator(&self) -> &SseTranslator {
        &self.translator
    }

    fn fail_with(&mut self, message: String, out: &mut BytesMut) -> ApiError {
        let err = ApiError::new(ErrorKind::ApiError, message);
        self.translator.fail(&err, out);
        err
    }
}

// ---------------------------------------------------------------------------------------------
// Non-streaming sink.

#[derive(Debug)]
enum AggBlock {
    Text(String),
    Thinking { thinking: String, signature: Option<String> },
    ToolUse { id: String, name: String, input: String },
}

struct AggSink<'a>(&'a mut Vec<AggBlock>);

impl Sink for AggSink<'_> {
    fn emit(&mut self, ev: BlockEvent<'_>) {
        match ev {
            BlockEvent::Start { block, .. } => self.0.push(match block {
                BlockStart::Text { .. } => AggBlock::Text(String::new()),
                BlockStart::Thinking { .. } => {
                    AggBlock::Thinking { thinking: String::new(), signature: None }
                }
                BlockStart::ToolUse { id, name, .. } => {
                    AggBlock::ToolUse { id: id.to_owned(), name: name.to_owned(), input: String::new() }
                }
            }),
            BlockEvent::Delta { index, delta } => match (self.0.get_mut(index), delta) {
                (Some(AggBlock::Text(buf)), Delta::Text { text }) => buf.push_str(text),
                (Some(AggBlock::Thinking { thinking, .. }), Delta::Thinking { thinking: t }) => {
                    thinking.push_str(t)
                }
                (Some(AggBlock::Thinking { signature, .. }), Delta::Signature { signature: s }) => {
                    *signature = Some(s.to_owned())
                }
                (Some(AggBlock::ToolUse { input, .. }), Delta::InputJson { partial_json }) => {
                    input.push_str(partial_json)
                }
                (_, delta) => tracing::error!(index, ?delta, "content delta does not match its block"),
            },
            BlockEvent::Stop { .. } => {}
        }
    }
}

/// Non-streaming translator: collects the whole answer into one Anthropic message.
#[derive(Debug)]
pub struct MessageAggregator {
    core: Translator,
    message_id: String,
    blocks: Vec<AggBlock>,
}

impl MessageAggregator {
    pub fn new(opts: ResponseOptions, message_id: String) -> Self {
        MessageAggregator { core: Translator::new(opts), message_id, blocks: Vec::new() }
    }

    /// Apply one event; `Err` means the upstream failed the request.
    pub fn on_event(&mut self, ev: KiroEvent) -> Result<(), ApiError> {
        self.core.on_event(ev, &mut AggSink(&mut self.blocks))
    }

    /// The stop reason as of now.
    pub fn stop_reason(&self) -> StopReason {
        self.core.stop_reason()
    }

    /// Usage as of now.
    pub fn usage(&self) -> Usage {
        self.core.usage()
    }

    /// The full Anthropic message JSON. Tool input is parsed here; unparsable input (usually an
    /// answer cut by the output limit) becomes `{}`.
    pub fn finish(mut self) -> serde_json::Value {
        self.core.finish(&mut AggSink(&mut self.blocks));
        let usage = self.core.usage();
        let stop_reason = self.core.stop_reason();
        let content: Vec<serde_json::Value> = self
            .blocks
            .into_iter()
            .map(|block| match block {
                AggBlock::Text(text) => serde_json::json!({"type": "text", "text": text}),
                AggBlock::Thinking { thinking, signature: Some(signature) } => {
                    serde_json::json!({"type": "thinking", "thinking": thinking, "signature": signature})
                }
                AggBlock::Thinking { thinking, signature: None } => {
                    serde_json::json!({"type": "thinking", "thinking": thinking})
                }
                AggBlock::ToolUse { id, name, input } => {
                    let input = parse_tool_input(&id, &input);
                    serde_json::json!({"type": "tool_use", "id": id, "name": name, "input": input})
                }
            })
            .collect();
        serde_json::json!({
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": self.core.opts.model,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": WireUsage::of(&usage),
        })
    }
}

fn parse_tool_input(id: &str, input: &str) -> serde_json::Value {
    if input.trim().is_empty() {
        return serde_json::json!({});
    }
    match serde_json::from_str::<serde_json::Value>(input) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        Ok(_) | Err(_) => {
            tracing::warn!(tool_use_id = %id, len = input.len(), "tool input is not a JSON object; using {{}}");
            serde_json::json!({})
        }
    }
}

/// The whole non-streaming path: a complete upstream event-stream body → the Anthropic message.
pub fn aggregate_body(
    opts: ResponseOptions,
    message_id: String,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let mut decoder = FrameDecoder::new();
    decoder.feed(body);
    let mut agg = MessageAggregator::new(opts, message_id);
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => {
                let event = parse_frame(&frame).map_err(|err| {
                    ApiError::new(ErrorKind::ApiError, format!("upstream sent a malformed event: {err}"))
                })?;
                agg.on_event(event)?;
            }
            Ok(None) => break,
            Err(err) => {
                return Err(ApiError::new(
                    ErrorKind::ApiError,
                    format!("upstream event stream is corrupt: {err}"),
                ));
            }
        }
    }
    if decoder.buffered_len() > 0 {
        return Err(ApiError::new(
            ErrorKind::ApiError,
            format!("upstream event stream ended inside a frame ({} bytes left)", decoder.buffered_len()),
        ));
    }
    Ok(agg.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::sse::parse_events;
    use crate::providers::codewhisperer::eventstream::{encode_event, encode_exception};
    use serde_json::{Value, json};

    fn opts() -> ResponseOptions {
        ResponseOptions {
            model: "claude-sonnet-4-5".into(),
            thinking: false,
            input_tokens: 50,
            context_window: 200_000,
            tool_names: HashMap::new(),
        }
    }

    fn thinking_opts() -> ResponseOptions {
        ResponseOptions { thinking: true, ..opts() }
    }

    fn text(s: &str) -> KiroEvent {
        KiroEvent::Text(s.into())
    }

    fn tool(id: &str, name: &str, input: Option<&str>, stop: bool) -> KiroEvent {
        KiroEvent::ToolUse { id: id.into(), name: name.into(), input: input.map(Into::into), stop }
    }

    /// Run a script through the SSE translator; parse the output back into (event, data) pairs.
    fn run_sse(opts: ResponseOptions, script: Vec<KiroEvent>) -> (Vec<(String, Value)>, SseTranslator) {
        let mut t = SseTranslator::new(opts, "msg_test".into());
        let mut out = BytesMut::new();
        t.start(&mut out);
        let mut failed = false;
        for ev in script {
            if t.on_event(ev, &mut out).is_err() {
                failed = true;
                break;
            }
        }
        if !failed {
            t.finish(&mut out);
        }
        (parse_sse(&out), t)
    }

    fn parse_sse(out: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(out).expect("SSE is UTF-8");
        parse_events(text)
            .into_iter()
            .map(|(name, data)| {
                let value: Value = serde_json::from_str(&data).expect("data is JSON");
                if name != "ping" {
                    assert_eq!(value["type"], name.as_str(), "event name matches data.type");
                }
                (name, value)
            })
            .collect()
    }

    /// One line per event, for readable exact-order assertions.
    fn summary(events: &[(String, Value)]) -> Vec<String> {
        events
            .iter()
            .map(|(name, d)| match name.as_str() {
                "content_block_start" => {
                    let b = &d["content_block"];
                    match b["type"].as_str() {
                        Some("tool_use") => format!(
                            "start {} tool_use {} {} {}",
                            d["index"],
                            b["id"].as_str().unwrap(),
                            b["name"].as_str().unwrap(),
                            b["input"]
                        ),
                        Some(ty) => format!("start {} {ty}", d["index"]),
                        None => panic!("block without type: {d}"),
                    }
                }
                "content_block_delta" => {
                    let delta = &d["delta"];
                    let body = match delta["type"].as_str() {
                        Some("text_delta") => delta["text"].as_str(),
                        Some("thinking_delta") => delta["thinking"].as_str(),
                        Some("signature_delta") => delta["signature"].as_str(),
                        Some("input_json_delta") => delta["partial_json"].as_str(),
                        _ => None,
                    }
                    .unwrap_or_else(|| panic!("bad delta {delta}"));
                    format!("{} {} {body}", delta["type"].as_str().unwrap(), d["index"])
                }
                "content_block_stop" => format!("stop {}", d["index"]),
                "message_delta" => format!(
                    "message_delta {} in={} out={}",
                    d["delta"]["stop_reason"].as_str().unwrap(),
                    d["usage"]["input_tokens"],
                    d["usage"]["output_tokens"]
                ),
                "error" => format!(
                    "error {} {}",
                    d["error"]["type"].as_str().unwrap(),
                    d["error"]["message"].as_str().unwrap()
                ),
                other => other.to_owned(),
            })
            .collect()
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn aggregate(opts: ResponseOptions, script: Vec<KiroEvent>) -> Value {
        let mut agg = MessageAggregator::new(opts, "msg_test".into());
        for ev in script {
            agg.on_event(ev).expect("no upstream error");
        }
        agg.finish()
    }

    #[test]
    fn plain_text_golden() {
        let (events, t) =
            run_sse(opts(), vec![text("Hello! I"), text(" see"), KiroEvent::Ignored("meteringEvent".into())]);
        let expected = vec![
            (
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_test","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":50,"output_tokens":1}}}),
            ),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello! I"}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" see"}}),
            ),
            ("content_block_stop", json!({"type":"content_block_stop","index":0})),
            (
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":50,"output_tokens":3}}),
            ),
            ("message_stop", json!({"type":"message_stop"})),
        ];
        let expected: Vec<(String, Value)> = expected.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        assert_eq!(events, expected);
        assert_eq!(t.stop_reason(), StopReason::EndTurn);
        assert!(t.is_done());
    }

    #[test]
    fn repeated_identical_chunks_are_kept() {
        let script = vec![text("6"), text("6"), text("6"), text("20"), text("20")];
        let (events, _) = run_sse(opts(), script.clone());
        let deltas: String = events.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
        assert_eq!(deltas, "6662020");
        assert_eq!(aggregate(opts(), script)["content"], json!([{"type":"text","text":"6662020"}]));
    }

    fn text_tool_text_script() -> Vec<KiroEvent> {
        vec![
            text("Let me check."),
            tool("tooluse_a", "get_weather", None, false),
            tool("tooluse_a", "get_weather", Some("{\"city\":"), false),
            tool("tooluse_a", "get_weather", Some("\"Paris\"}"), false),
            tool("tooluse_a", "get_weather", None, true),
            text("Done."),
        ]
    }

    #[test]
    fn text_tool_text_sequence() {
        let (events, t) = run_sse(opts(), text_tool_text_script());
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 text",
                "text_delta 0 Let me check.",
                "stop 0",
                "start 1 tool_use tooluse_a get_weather {}",
                "input_json_delta 1 {\"city\":",
                "input_json_delta 1 \"Paris\"}",
                "stop 1",
                "start 2 text",
                "text_delta 2 Done.",
                "stop 2",
                "message_delta tool_use in=50 out=12",
                "message_stop",
            ])
        );
        assert_eq!(t.stop_reason(), StopReason::ToolUse);
        let msg = aggregate(opts(), text_tool_text_script());
        assert_eq!(
            msg["content"],
            json!([
                {"type":"text","text":"Let me check."},
                {"type":"tool_use","id":"tooluse_a","name":"get_weather","input":{"city":"Paris"}},
                {"type":"text","text":"Done."},
            ])
        );
        assert_eq!(msg["stop_reason"], "tool_use");
    }

    fn two_tools_script() -> Vec<KiroEvent> {
        vec![
            tool("t1", "Read", None, false),
            tool("t1", "Read", Some("{\"path\":\"a\"}"), false),
            tool("t1", "Read", None, true),
            tool("t2", "Read", Some("{\"path\":"), false),
            tool("t2", "Read", Some("\"b\"}"), false),
            tool("t2", "Read", None, true),
            KiroEvent::ContextUsage { percentage: 10.0 },
        ]
    }

    #[test]
    fn two_tools_get_their_own_blocks() {
        let (events, t) = run_sse(opts(), two_tools_script());
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 tool_use t1 Read {}",
                "input_json_delta 0 {\"path\":\"a\"}",
                "stop 0",
                "start 1 tool_use t2 Read {}",
                "input_json_delta 1 {\"path\":",
                "input_json_delta 1 \"b\"}",
                "stop 1",
                "message_delta tool_use in=20000 out=8",
                "message_stop",
            ])
        );
        assert_eq!(t.usage().input_source, UsageSource::ContextUsage);
        let msg = aggregate(opts(), two_tools_script());
        assert_eq!(msg["content"][0]["input"], json!({"path":"a"}));
        assert_eq!(msg["content"][1]["input"], json!({"path":"b"}));
        assert_eq!(msg["usage"], json!({"input_tokens":20000,"output_tokens":8}));
    }

    #[test]
    fn one_shot_tool_frame_is_handled_once() {
        let one_shot = tool("t9", "Bash", Some("{\"command\":\"ls\"}"), true);
        let (events, _) = run_sse(opts(), vec![one_shot.clone(), one_shot.clone()]);
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 tool_use t9 Bash {}",
                "input_json_delta 0 {\"command\":\"ls\"}",
                "stop 0",
                "message_delta tool_use in=50 out=5",
                "message_stop",
            ])
        );
        let msg = aggregate(opts(), vec![one_shot.clone(), one_shot]);
        assert_eq!(
            msg["content"],
            json!([{"type":"tool_use","id":"t9","name":"Bash","input":{"command":"ls"}}])
        );
    }

    #[test]
    fn tool_names_are_restored() {
        let long = "mcp__server__a_really_long_tool_name_that_was_shortened_for_the_upstream";
        let mut o = opts();
        o.tool_names.insert("mcp__server__a_really_lo_1a2b".into(), long.into());
        let script = vec![tool("t1", "mcp__server__a_really_lo_1a2b", Some("{}"), true)];
        let (events, _) = run_sse(o.clone(), script.clone());
        assert_eq!(events[1].1["content_block"]["name"], long);
        assert_eq!(aggregate(o, script)["content"][0]["name"], long);
    }

    #[test]
    fn tool_without_input_or_with_bad_input() {
        let script = vec![
            tool("t1", "Noop", None, false),
            tool("t1", "Noop", None, true),
            tool("t2", "Write", Some("{\"content\":\"cut off"), false),
        ];
        let (events, _) = run_sse(opts(), script.clone());
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 tool_use t1 Noop {}",
                "stop 0",
                "start 1 tool_use t2 Write {}",
                "input_json_delta 1 {\"content\":\"cut off",
                "stop 1",
                "message_delta tool_use in=50 out=7",
                "message_stop",
            ])
        );
        let msg = aggregate(opts(), script);
        assert_eq!(msg["content"][0]["input"], json!({}));
        assert_eq!(msg["content"][1]["input"], json!({}), "unparsable input becomes {{}}");
    }

    #[test]
    fn thinking_tags_split_across_chunks() {
        let script = vec![
            text("<thin"),
            text("king>"),
            text("\nLet me"),
            text(" think</thi"),
            text("nking>\n"),
            text("\nThe answer"),
            text(" is 4."),
        ];
        let (events, t) = run_sse(thinking_opts(), script.clone());
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 thinking",
                "thinking_delta 0 Let me",
                "thinking_delta 0  think",
                "stop 0",
                "start 1 text",
                "text_delta 1 The answer",
                "text_delta 1  is 4.",
                "stop 1",
                "message_delta end_turn in=50 out=7",
                "message_stop",
            ])
        );
        assert_eq!(t.stop_reason(), StopReason::EndTurn);
        assert_eq!(
            aggregate(thinking_opts(), script)["content"],
            json!([{"type":"thinking","thinking":"Let me think"},{"type":"text","text":"The answer is 4."}])
        );
    }

    #[test]
    fn quoted_end_tag_does_not_end_thinking() {
        let script = vec![
            text("<thinking>\nThe tag `</thinking>`\n\nis quoted, so is '"),
            text("</thinking>\n\n' here.\nDone</thinking>\n\nAnswer"),
        ];
        let msg = aggregate(thinking_opts(), script.clone());
        assert_eq!(
            msg["content"],
            json!([
                {"type":"thinking","thinking":"The tag `</thinking>`\n\nis quoted, so is '</thinking>\n\n' here.\nDone"},
                {"type":"text","text":"Answer"},
            ])
        );
        // Streaming gives the same content.
        let (events, _) = run_sse(thinking_opts(), script);
        let thinking: String = events.iter().filter_map(|(_, d)| d["delta"]["thinking"].as_str()).collect();
        assert_eq!(thinking, msg["content"][0]["thinking"].as_str().unwrap());
    }

    #[test]
    fn end_tag_accepted_before_a_tool_use() {
        let script =
            vec![text("<thinking>plan it</thinking>"), tool("t1", "Bash", Some("{}"), true), text("ok")];
        let (events, _) = run_sse(thinking_opts(), script);
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 thinking",
                "thinking_delta 0 plan it",
                "stop 0",
                "start 1 tool_use t1 Bash {}",
                "input_json_delta 1 {}",
                "stop 1",
                "start 2 text",
                "text_delta 2 ok",
                "stop 2",
                "message_delta tool_use in=50 out=4",
                "message_stop",
            ])
        );
    }

    #[test]
    fn thinking_only_answer_is_max_tokens_with_a_space_text_block() {
        let script = vec![text("<thinking>\nhmm</thinking>")];
        let (events, t) = run_sse(thinking_opts(), script.clone());
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 thinking",
                "thinking_delta 0 hmm",
                "stop 0",
                "start 1 text",
                "text_delta 1  ",
                "stop 1",
                "message_delta max_tokens in=50 out=1",
                "message_stop",
            ])
        );
        assert_eq!(t.stop_reason(), StopReason::MaxTokens);
        let msg = aggregate(thinking_opts(), script);
        assert_eq!(msg["content"], json!([{"type":"thinking","thinking":"hmm"},{"type":"text","text":" "}]));
        assert_eq!(msg["stop_reason"], "max_tokens");
    }

    #[test]
    fn thinking_tags_are_text_when_thinking_is_off_or_not_leading() {
        let script = vec![text("<thinking>x</thinking>\n\ny")];
        assert_eq!(
            aggregate(opts(), script)["content"],
            json!([{"type":"text","text":"<thinking>x</thinking>\n\ny"}])
        );
        let script = vec![text("Use <thinking>"), text(" tags</thinking>\n\n")];
        assert_eq!(
            aggregate(thinking_opts(), script)["content"],
            json!([{"type":"text","text":"Use <thinking> tags</thinking>\n\n"}])
        );
        // Leading whitespace then a partial tag that turns out not to be one.
        let script = vec![text("\n<thi"), text("s is text")];
        assert_eq!(
            aggregate(thinking_opts(), script)["content"],
            json!([{"type":"text","text":"\n<this is text"}])
        );
    }

    #[test]
    fn native_reasoning_becomes_a_thinking_block_with_signature() {
        let script = vec![
            KiroEvent::Reasoning { text: "Step 1".into(), signature: None },
            KiroEvent::Reasoning { text: ", step 2".into(), signature: Some("sig==".into()) },
            text("Result"),
        ];
        let (events, _) = run_sse(thinking_opts(), script.clone());
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 thinking",
                "thinking_delta 0 Step 1",
                "thinking_delta 0 , step 2",
                "signature_delta 0 sig==",
                "stop 0",
                "start 1 text",
                "text_delta 1 Result",
                "stop 1",
                "message_delta end_turn in=50 out=5",
                "message_stop",
            ])
        );
        assert_eq!(events[1].1["content_block"], json!({"type":"thinking","thinking":"","signature":""}));
        assert_eq!(
            aggregate(thinking_opts(), script)["content"],
            json!([{"type":"thinking","thinking":"Step 1, step 2","signature":"sig=="},{"type":"text","text":"Result"}])
        );
    }

    #[test]
    fn content_length_exception_is_max_tokens() {
        let script = vec![
            text("partial"),
            KiroEvent::Exception {
                kind: "ContentLengthExceededException".into(),
                message: "Response exceeded length".into(),
            },
        ];
        let (events, t) = run_sse(opts(), script.clone());
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 text",
                "text_delta 0 partial",
                "stop 0",
                "message_delta max_tokens in=50 out=2",
                "message_stop"
            ])
        );
        assert_eq!(t.stop_reason(), StopReason::MaxTokens);
        assert_eq!(aggregate(opts(), script)["stop_reason"], "max_tokens");
    }

    #[test]
    fn full_context_is_model_context_window_exceeded() {
        let script =
            vec![tool("t1", "Bash", Some("{}"), true), KiroEvent::ContextUsage { percentage: 100.0 }];
        let (events, t) = run_sse(opts(), script.clone());
        assert_eq!(summary(&events)[4], "message_delta model_context_window_exceeded in=200000 out=2");
        assert_eq!(t.stop_reason(), StopReason::ModelContextWindowExceeded);
        let msg = aggregate(opts(), script);
        assert_eq!(msg["stop_reason"], "model_context_window_exceeded");
    }

    #[test]
    fn metadata_usage_wins_over_context_usage_and_estimates() {
        let script = vec![
            text("Hello"),
            KiroEvent::ContextUsage { percentage: 1.0 },
            KiroEvent::Usage { input_tokens: 1234, output_tokens: 56, cache_read: 1000, cache_write: 7 },
        ];
        let (events, t) = run_sse(opts(), script.clone());
        assert_eq!(summary(&events)[4], "message_delta end_turn in=1234 out=56");
        let usage = t.usage();
        assert_eq!((usage.cache_read, usage.cache_write), (1000, 7));
        assert_eq!(usage.input_source, UsageSource::Metadata);
        assert!(usage.output_from_metadata);
        assert_eq!(
            aggregate(opts(), script)["usage"],
            json!({"input_tokens":1234,"output_tokens":56,"cache_creation_input_tokens":7,"cache_read_input_tokens":1000})
        );
    }

    #[test]
    fn kiro_stop_reasons_map_to_anthropic_ones() {
        for (kiro, anthropic) in [
            ("MAX_TOKENS", "max_tokens"),
            ("MODEL_CONTEXT_WINDOW_EXCEEDED", "model_context_window_exceeded"),
            ("CONTENT_FILTERED", "refusal"),
            ("PAUSE_TURN", "pause_turn"),
            ("END_TURN", "end_turn"),
            ("SOMETHING_NEW", "end_turn"),
        ] {
            let script = vec![text("Hi"), KiroEvent::StopReason(kiro.into())];
            assert_eq!(aggregate(opts(), script.clone())["stop_reason"], anthropic, "{kiro}");
            let (events, _) = run_sse(opts(), script);
            assert!(
                summary(&events).iter().any(|l| l.contains(&format!("message_delta {anthropic}"))),
                "{kiro}"
            );
        }
    }

    #[test]
    fn output_tokens_are_estimated_from_emitted_content() {
        // 400 ASCII characters ≈ 100 tokens; 30 CJK characters ≈ 20 tokens.
        let ascii = "abcd".repeat(100);
        assert_eq!(aggregate(opts(), vec![text(&ascii)])["usage"]["output_tokens"], 100);
        let cjk = "你好世界和平".repeat(5);
        assert_eq!(aggregate(opts(), vec![text(&cjk)])["usage"]["output_tokens"], 20);
        let msg = aggregate(opts(), vec![text(&ascii), text(&cjk)]);
        assert_eq!(msg["usage"], json!({"input_tokens":50,"output_tokens":120}));
    }

    #[test]
    fn invalid_state_fails_the_stream_with_an_error_event() {
        let script = vec![
            text("Hi"),
            KiroEvent::InvalidState { reason: "INVALID_TASK_ASSIST_PLAN".into(), message: "bad plan".into() },
            text("never sent"),
        ];
        let (events, t) = run_sse(opts(), script.clone());
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 text",
                "text_delta 0 Hi",
                "stop 0",
                "error api_error upstream invalid state INVALID_TASK_ASSIST_PLAN: bad plan",
            ])
        );
        assert!(t.is_done());
        let mut agg = MessageAggregator::new(opts(), "m".into());
        agg.on_event(text("Hi")).unwrap();
        let err = agg.on_event(script[1].clone()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::ApiError);
        let err = MessageAggregator::new(opts(), "m".into())
            .on_event(KiroEvent::Error { code: "InternalFailure".into(), message: "boom".into() })
            .unwrap_err();
        assert_eq!(err.message, "upstream error InternalFailure: boom");
        let err = MessageAggregator::new(opts(), "m".into())
            .on_event(KiroEvent::Exception { kind: "ThrottlingException".into(), message: "slow".into() })
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimitError);
    }

    #[test]
    fn fail_closes_open_blocks_and_flushes_held_thinking() {
        let mut t = SseTranslator::new(thinking_opts(), "msg_x".into());
        let mut out = BytesMut::new();
        t.start(&mut out);
        t.on_event(text("<thinking>deep </thin"), &mut out).unwrap();
        t.fail(&ApiError::new(ErrorKind::ApiError, "upstream reset"), &mut out);
        t.finish(&mut out); // no effect after fail
        t.fail(&ApiError::new(ErrorKind::ApiError, "again"), &mut out); // no effect either
        assert_eq!(
            summary(&parse_sse(&out)),
            lines(&[
                "message_start",
                "start 0 thinking",
                "thinking_delta 0 deep ",
                "thinking_delta 0 </thin",
                "stop 0",
                "error api_error upstream reset",
            ])
        );
    }

    #[test]
    fn ping_and_message_ids() {
        let t = SseTranslator::new(opts(), new_message_id());
        let mut out = BytesMut::new();
        t.ping(&mut out);
        assert_eq!(&out[..], crate::anthropic::sse::PING.as_bytes());
        let id = new_message_id();
        assert_eq!(id.len(), 36);
        assert!(id.starts_with("msg_") && id[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_message_id());
    }

    // ----- the full path from upstream bytes -----

    fn upstream_body() -> Vec<u8> {
        let mut body = Vec::new();
        for (ty, payload) in [
            ("assistantResponseEvent", r#"{"content":"Hello! I"}"#),
            ("assistantResponseEvent", r#"{"content":" see 你好"}"#),
            (
                "toolUseEvent",
                r#"{"name":"get_weather","toolUseId":"tooluse_abc","input":"{\"city\":","stop":false}"#,
            ),
            (
                "toolUseEvent",
                r#"{"name":"get_weather","toolUseId":"tooluse_abc","input":"\"Oslo\"}","stop":false}"#,
            ),
            ("toolUseEvent", r#"{"name":"get_weather","toolUseId":"tooluse_abc","stop":true}"#),
            ("meteringEvent", r#"{"unit":"credit","unitPlural":"credits","usage":0.17}"#),
            ("contextUsageEvent", r#"{"contextUsagePercentage":2.5}"#),
        ] {
            body.extend_from_slice(&encode_event(ty, payload.as_bytes()));
        }
        body
    }

    fn stream_body(chunks: &[&[u8]]) -> (Vec<(String, Value)>, Result<(), ApiError>) {
        let mut resp = SseResponse::new(opts(), "msg_e2e".into());
        let mut out = BytesMut::new();
        resp.start(&mut out);
        let mut result = Ok(());
        for chunk in chunks {
            result = resp.on_bytes(chunk, &mut out);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = resp.on_end(&mut out);
        }
        (parse_sse(&out), result)
    }

    #[test]
    fn upstream_bytes_to_sse_same_result_whatever_the_chunking() {
        let body = upstream_body();
        let (whole, result) = stream_body(&[&body]);
        result.unwrap();
        assert_eq!(
            summary(&whole),
            lines(&[
                "message_start",
                "start 0 text",
                "text_delta 0 Hello! I",
                "text_delta 0  see 你好",
                "stop 0",
                "start 1 tool_use tooluse_abc get_weather {}",
                "input_json_delta 1 {\"city\":",
                "input_json_delta 1 \"Oslo\"}",
                "stop 1",
                "message_delta tool_use in=5000 out=12",
                "message_stop",
            ])
        );
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(stream_body(&bytes).0, whole);
        let odd: Vec<&[u8]> = body.chunks(7).collect();
        assert_eq!(stream_body(&odd).0, whole);
    }

    #[test]
    fn corrupt_frame_mid_stream_ends_with_an_error_event() {
        let mut body = upstream_body();
        let second_frame_crc = encode_event("assistantResponseEvent", br#"{"content":"Hello! I"}"#).len() + 8;
        body[second_frame_crc] ^= 0xff;
        let (events, result) = stream_body(&[&body]);
        let err = result.unwrap_err();
        assert!(err.message.contains("prelude CRC"), "{}", err.message);
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                "start 0 text",
                "text_delta 0 Hello! I",
                "stop 0",
                &format!("error api_error {}", err.message),
            ])
        );
        assert!(!events.iter().any(|(n, _)| n == "message_stop"));
        let agg = aggregate_body(opts(), "m".into(), &body).unwrap_err();
        assert_eq!(agg.message, err.message);
    }

    #[test]
    fn stream_cut_mid_frame_is_an_error() {
        let body = upstream_body();
        let cut = &body[..body.len() - 3];
        let (events, result) = stream_body(&[cut]);
        assert!(result.unwrap_err().message.contains("ended inside a frame"));
        assert_eq!(events.last().unwrap().0, "error");
        assert!(aggregate_body(opts(), "m".into(), cut).is_err());
    }

    #[test]
    fn malformed_event_json_is_an_error_not_a_panic() {
        let body = encode_event("assistantResponseEvent", b"{\"content\":");
        let (events, result) = stream_body(&[&body]);
        assert!(result.unwrap_err().message.contains("malformed event"));
        assert_eq!(
            summary(&events),
            lines(&[
                "message_start",
                &format!("error api_error {}", events[1].1["error"]["message"].as_str().unwrap())
            ])
        );
    }

    #[test]
    fn aggregate_body_builds_the_full_message() {
        let mut body = upstream_body();
        body.extend_from_slice(&encode_exception(
            "ContentLengthExceededException",
            br#"{"message":"Response exceeded length"}"#,
        ));
        let msg = aggregate_body(opts(), "msg_full".into(), &body).unwrap();
        assert_eq!(
            msg,
            json!({
                "id": "msg_full",
                "type": "message",
                "role": "assistant",
                "content": [
                    {"type":"text","text":"Hello! I see 你好"},
                    {"type":"tool_use","id":"tooluse_abc","name":"get_weather","input":{"city":"Oslo"}},
                ],
                "model": "claude-sonnet-4-5",
                "stop_reason": "max_tokens",
                "stop_sequence": null,
                "usage": {"input_tokens": 5000, "output_tokens": 12},
            })
        );
        // Key order as Anthropic sends it.
        let keys: Vec<&str> = msg.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "type", "role", "content", "model", "stop_reason", "stop_sequence", "usage"]);
    }

    #[test]
    fn thinking_end_scanner_decisions() {
        assert_eq!(find_thinking_end("abc", None), EndScan::Undecided(3));
        assert_eq!(find_thinking_end("abc</thi", None), EndScan::Undecided(3));
        assert_eq!(find_thinking_end("abc</thinking>", None), EndScan::Undecided(3));
        assert_eq!(find_thinking_end("abc</thinking>\n", None), EndScan::Undecided(3));
        assert_eq!(find_thinking_end("abc</thinking>\n\nx", None), EndScan::Found(3));
        assert_eq!(find_thinking_end("abc</thinking>\nx", None), EndScan::Undecided(16));
        assert_eq!(find_thinking_end("`</thinking>`\n\n", None), EndScan::Undecided(15));
        assert_eq!(find_thinking_end("“</thinking>\n\n", None), EndScan::Undecided(16));
        assert_eq!(find_thinking_end("é<", None), EndScan::Undecided(2));
        // A tag at the start of the held text is quoted if the last emitted character was a quote.
        assert_eq!(find_thinking_end("</thinking>\n\n", Some('`')), EndScan::Undecided(13));
        assert_eq!(find_thinking_end("</thinking>\n\n", Some('.')), EndScan::Found(0));
    }
}

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
//!
//! Files: this one holds the state machine; [`thinking`] the `<thinking>` tag scanner, [`sse`] the
//! streaming sink, [`message`] the non-streaming one. The bytes → events half of the pipeline is
//! [`super::decode`]; [`super::answer`] joins the two.

mod message;
mod sse;
#[cfg(test)]
pub(super) mod tests;
mod thinking;

pub use message::MessageAggregator;
pub use sse::SseTranslator;

use super::event::KiroEvent;
use crate::anthropic::{ApiError, ErrorKind};
use serde::Serialize;
use std::collections::HashMap;
use thinking::ThinkPhase;

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

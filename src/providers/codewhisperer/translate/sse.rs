//! The streaming sink: content-block events written straight into the response buffer as
//! Anthropic SSE.

use super::super::event::KiroEvent;
use super::{
    BlockEvent, BlockStart, Delta, ResponseOptions, Sink, StopReason, Translator, Usage, UsageSource,
};
use crate::anthropic::ApiError;
use crate::anthropic::sse::{write_event, write_ping};
use bytes::BytesMut;
use serde::Serialize;

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
pub(super) struct WireUsage {
    input_tokens: u64,
    output_tokens: u64,
    /// Only when Kiro reported token usage (`metadataEvent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_creation_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    pub(super) fn of(usage: &Usage) -> WireUsage {
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

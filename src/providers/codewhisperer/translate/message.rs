//! The non-streaming sink: the whole answer collected into one Anthropic message.

use super::super::event::KiroEvent;
use super::sse::WireUsage;
use super::{BlockEvent, BlockStart, Delta, ResponseOptions, Sink, StopReason, Translator, Usage};
use crate::anthropic::ApiError;

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

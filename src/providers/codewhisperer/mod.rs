//! The Kiro / CodeWhisperer provider, behind a narrow face:
//!
//! * [`prepare`] turns one client request into a [`Prepared`] upstream request, once, whichever
//!   account ends up serving it;
//! * [`CodeWhispererClient::send`] sends it with one account and waits for the first event: an
//!   [`Answer`], or an [`UpstreamError`] that says whether the request may move to another
//!   account ([`UpstreamError::is_provider_fault`]), what the client is told
//!   ([`UpstreamError::to_api_error`]) and what it means for the balancer
//!   ([`UpstreamError::failure_kind`], quota resets included);
//! * [`Answer::into_sse`] streams the answer as Anthropic SSE, [`Answer::collect`] builds one
//!   JSON message.
//!
//! Behind it, request side: [`convert`] (Anthropic request → Kiro `conversationState`, plus the
//! §3.5 validator the simulated upstream uses), `models`, `token`, `client` (HTTP). Response
//! side, one pipeline: `frame` (bytes ↔ AWS event-stream frames) → `event` (a frame → a
//! [`KiroEvent`]) → `decode` (a live body → events, with the idle timeout) → `translate` (events
//! → Anthropic SSE or a JSON message) → `answer` (the two joined). New provider features (usage
//! from `meteringEvent`, MCP web search, model lists) plug in here, not in the HTTP handler.
//!
//! See the protocol notes for the wire format.

mod answer;
pub(crate) mod client;
pub(crate) mod convert;
mod decode;
mod error;
pub(crate) mod event;
pub(crate) mod frame;
pub(crate) mod mcp;
pub mod model_list;
pub(crate) mod models;
pub(crate) mod token;
mod translate;
pub mod websearch;

pub use answer::{Answer, PING_INTERVAL, Report, SseAnswer};
pub use client::{CodeWhispererClient, HttpClients};
pub use convert::Converted;
pub use error::{UpstreamError, UpstreamErrorKind};
pub use event::KiroEvent;
pub use token::TokenStatus;
pub use translate::ResponseOptions;
pub(crate) use translate::{kiro_stop_reason, new_message_id};

use crate::anthropic::ApiError;
use crate::anthropic::types::MessagesRequest;

/// One client request, converted once for every attempt: the Kiro `conversationState` and what
/// the response side needs to answer in the client's terms.
#[derive(Debug, Clone)]
pub struct Prepared {
    converted: Converted,
    response: ResponseOptions,
    stream: bool,
}

impl Prepared {
    /// Whether the client asked for a streaming (SSE) answer.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// The Kiro model id the request goes out with.
    pub fn model_id(&self) -> &str {
        &self.converted.model_id
    }

    pub(crate) fn converted(&self) -> &Converted {
        &self.converted
    }

    pub(crate) fn response_options(&self) -> &ResponseOptions {
        &self.response
    }
}

/// Prepares `req` for the upstream: `estimate` is the request's input token estimate (computed
/// once by the caller, who also classifies with it), `model` the routing rule's model (`None`:
/// mapped from the request's model). Fails only for a request without messages, which parsing
/// already rejects.
pub fn prepare(req: &MessagesRequest, estimate: u64, model: Option<&str>) -> Result<Prepared, ApiError> {
    let options = convert::ConvertOptions {
        model_id: model,
        input_estimate: Some(estimate),
        ..convert::ConvertOptions::default()
    };
    let converted = convert::convert(req, &options)?;
    let response = ResponseOptions {
        model: req.model.clone(),
        thinking: converted.thinking,
        input_tokens: estimate,
        context_window: models::context_window(&converted.model_id),
        tool_names: converted.tool_names.clone(),
    };
    Ok(Prepared { converted, response, stream: req.stream })
}

/// The pieces behind the face that the benches and fuzz targets drive directly (the proxy's own
/// code goes through the face above).
#[doc(hidden)]
pub mod internals {
    pub use super::convert::{ConvertOptions, Converted, check_kiro_body, convert, request_body};
    pub use super::decode::Body;
    pub use super::event::{KiroEvent, parse_frame};
    pub use super::frame::{FrameDecoder, FrameError, encode_event, encode_exception, encode_frame};
    pub use super::translate::{MessageAggregator, ResponseOptions, SseTranslator};
}

//! Kiro events: the typed meaning of one decoded event-stream [`Frame`] (frames come from
//! [`super::frame`]; [`super::decode`] runs both over a live body).
//!
//! Dispatch is by `:message-type` (`event`, `exception`, `error`) and, for events, by
//! `:event-type`. Payloads are the event's members at the top level of the JSON; the wrapped form
//! `{"assistantResponseEvent":{…}}` is accepted too. Unknown events are [`KiroEvent::Ignored`],
//! never errors: the service adds event types over time.

use super::frame::Frame;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// What one frame means to the response translator.
#[derive(Debug, Clone, PartialEq)]
pub enum KiroEvent {
    /// A text delta (`assistantResponseEvent` or `codeEvent` `content`). Incremental: append verbatim.
    Text(String),
    /// A `toolUseEvent` fragment. `input` is a piece of the arguments' JSON text; `stop` ends the call.
    ToolUse { id: String, name: String, input: Option<String>, stop: bool },
    /// Native reasoning (`reasoningContentEvent`).
    Reasoning { text: String, signature: Option<String> },
    /// `contextUsageEvent`: how full the context window is, 0–100 (can exceed 100).
    ContextUsage { percentage: f64 },
    /// `metadataEvent.tokenUsage`, in Anthropic's terms: `input_tokens` is the uncached input
    /// (`uncachedInputTokens`), cache reads and writes are counted apart.
    Usage { input_tokens: u64, output_tokens: u64, cache_read: u64, cache_write: u64 },
    /// `meteringEvent`: the credits this answer cost the account (protocol notes §7.6).
    Metering { credits: f64 },
    /// A `stopReason` Kiro reported (`MAX_TOKENS`, `CONTENT_FILTERED`, …), on
    /// `messageMetadataEvent`, `metadataEvent` or a content-less `assistantResponseEvent`.
    StopReason(String),
    /// An exception frame (`:message-type` = `exception`), e.g. `ContentLengthExceededException`.
    Exception { kind: String, message: String },
    /// An error frame (`:message-type` = `error`).
    Error { code: String, message: String },
    /// `invalidStateEvent`: the service gave up on the request.
    InvalidState { reason: String, message: String },
    /// Anything else (metering, metadata, citations, unknown types), by event type name.
    Ignored(String),
}

/// A frame that claims a known event type but whose payload does not have its shape.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{event} payload is not valid: {source}")]
    Json {
        event: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContentPayload {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopReasonPayload {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUsePayload {
    tool_use_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: Option<serde_json::Value>,
    #[serde(default)]
    stop: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningPayload {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContextUsagePayload {
    context_usage_percentage: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataPayload {
    #[serde(default)]
    token_usage: Option<TokenUsage>,
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Counts are read as floats so that `12.0` does not fail a whole response.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenUsage {
    #[serde(default)]
    uncached_input_tokens: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
    #[serde(default)]
    cache_read_input_tokens: Option<f64>,
    #[serde(default)]
    cache_write_input_tokens: Option<f64>,
}

#[derive(Deserialize)]
struct MeteringPayload {
    #[serde(default)]
    usage: Option<f64>,
}

#[derive(Deserialize)]
struct InvalidStatePayload {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn count(v: Option<f64>) -> u64 {
    // `as` saturates and maps NaN to 0: exactly what a bogus count should become.
    v.unwrap_or(0.0).max(0.0) as u64
}

/// Interpret one frame.
pub fn parse_frame(frame: &Frame) -> Result<KiroEvent, EventError> {
    match frame.message_type().unwrap_or("event") {
        "exception" => {
            let kind = frame.exception_type().unwrap_or("UnknownException").to_owned();
            Ok(KiroEvent::Exception { kind, message: loose_message(&frame.payload) })
        }
        "error" => {
            let code = frame.header(":error-code").unwrap_or("UnknownError").to_owned();
            let message = match frame.header(":error-message") {
                Some(m) if !m.is_empty() => m.to_owned(),
                _ => loose_message(&frame.payload),
            };
            Ok(KiroEvent::Error { code, message })
        }
        "event" => parse_event(frame.event_type().unwrap_or(""), &frame.payload),
        other => Ok(KiroEvent::Ignored(format!("message-type {other}"))),
    }
}

fn parse_event(event: &str, payload: &[u8]) -> Result<KiroEvent, EventError> {
    Ok(match event {
        "assistantResponseEvent" | "codeEvent" => {
            let p = decode::<ContentPayload>(event, payload)?;
            match (p.content, p.stop_reason) {
                (Some(text), _) => KiroEvent::Text(text),
                (None, Some(reason)) => KiroEvent::StopReason(reason),
                (None, None) => KiroEvent::Ignored(event.to_owned()),
            }
        }
        "messageMetadataEvent" => match decode::<StopReasonPayload>(event, payload)?.stop_reason {
            Some(reason) => KiroEvent::StopReason(reason),
            None => KiroEvent::Ignored(event.to_owned()),
        },
        "toolUseEvent" => {
            let p: ToolUsePayload = decode(event, payload)?;
            let input = match p.input {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s),
                // Occasionally the arguments arrive as an object: one complete JSON fragment.
                Some(other) => Some(other.to_string()),
            };
            KiroEvent::ToolUse { id: p.tool_use_id, name: p.name, input, stop: p.stop.unwrap_or(false) }
        }
        "reasoningContentEvent" => {
            let p: ReasoningPayload = decode(event, payload)?;
            KiroEvent::Reasoning { text: p.text.unwrap_or_default(), signature: p.signature }
        }
        "contextUsageEvent" => {
            let p: ContextUsagePayload = decode(event, payload)?;
            KiroEvent::ContextUsage { percentage: p.context_usage_percentage }
        }
        "metadataEvent" => {
            let p = decode::<MetadataPayload>(event, payload)?;
            match (p.token_usage, p.stop_reason) {
                (Some(u), _) => KiroEvent::Usage {
                    input_tokens: count(u.uncached_input_tokens),
                    output_tokens: count(u.output_tokens),
                    cache_read: count(u.cache_read_input_tokens),
                    cache_write: count(u.cache_write_input_tokens),
                },
                (None, Some(reason)) => KiroEvent::StopReason(reason),
                (None, None) => KiroEvent::Ignored(event.to_owned()),
            }
        }
        // Metering never fails an answer: a payload without a usable number is ignored.
        "meteringEvent" => match decode::<MeteringPayload>(event, payload).ok().and_then(|p| p.usage) {
            Some(credits) if credits.is_finite() && credits >= 0.0 => KiroEvent::Metering { credits },
            _ => KiroEvent::Ignored(event.to_owned()),
        },
        "invalidStateEvent" => {
            let p: InvalidStatePayload = decode(event, payload)?;
            KiroEvent::InvalidState {
                reason: p.reason.unwrap_or_default(),
                message: p.message.unwrap_or_default(),
            }
        }
        other => KiroEvent::Ignored(other.to_owned()),
    })
}

/// Deserialize a payload, accepting both `{…members…}` and `{"<event>":{…members…}}`.
fn decode<T: DeserializeOwned>(event: &str, payload: &[u8]) -> Result<T, EventError> {
    let err = |source| EventError::Json { event: event.to_owned(), source };
    if is_wrapped(event, payload) {
        let mut outer: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(payload).map_err(err)?;
        if let Some(inner) = outer.remove(event) {
            return serde_json::from_value(inner).map_err(err);
        }
    }
    serde_json::from_slice(payload).map_err(err)
}

/// Cheap check for the wrapped form: the first key of the object is the event name itself.
fn is_wrapped(event: &str, payload: &[u8]) -> bool {
    let rest = payload.trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b"{") else { return false };
    let rest = rest.trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b"\"") else { return false };
    rest.strip_prefix(event.as_bytes()).is_some_and(|r| r.starts_with(b"\""))
}

/// The `message` (or `Message`) of an exception/error payload, else the payload as text.
fn loose_message(payload: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Msg {
        #[serde(alias = "Message")]
        message: String,
    }
    match serde_json::from_slice::<Msg>(payload) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(payload).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::codewhisperer::frame::{
        FrameDecoder, encode_event, encode_exception, encode_frame,
    };

    fn frame_of(bytes: &[u8]) -> Frame {
        let mut dec = FrameDecoder::new();
        dec.feed(bytes);
        dec.next_frame().expect("valid").expect("complete")
    }

    fn event(event_type: &str, payload: &str) -> KiroEvent {
        parse_frame(&frame_of(&encode_event(event_type, payload.as_bytes()))).expect("parses")
    }

    #[test]
    fn text_from_assistant_response_and_code_events() {
        assert_eq!(
            event("assistantResponseEvent", r#"{"content":"Hello! I"}"#),
            KiroEvent::Text("Hello! I".into())
        );
        assert_eq!(event("codeEvent", r#"{"content":"fn main"}"#), KiroEvent::Text("fn main".into()));
        assert_eq!(
            event("assistantResponseEvent", r#"{"modelId":"x"}"#),
            KiroEvent::Ignored("assistantResponseEvent".into())
        );
    }

    #[test]
    fn wrapped_payload_is_accepted() {
        assert_eq!(
            event("assistantResponseEvent", r#" { "assistantResponseEvent" : {"content":"hi"}}"#),
            KiroEvent::Text("hi".into())
        );
        assert_eq!(
            event("toolUseEvent", r#"{"toolUseEvent":{"toolUseId":"t1","name":"Bash","stop":true}}"#),
            KiroEvent::ToolUse { id: "t1".into(), name: "Bash".into(), input: None, stop: true }
        );
    }

    #[test]
    fn tool_use_fragments_and_object_input() {
        assert_eq!(
            event(
                "toolUseEvent",
                r#"{"name":"get_weather","toolUseId":"tooluse_abc","input":"{\"city\":","stop":false}"#
            ),
            KiroEvent::ToolUse {
                id: "tooluse_abc".into(),
                name: "get_weather".into(),
                input: Some(r#"{"city":"#.into()),
                stop: false
            }
        );
        assert_eq!(
            event(
                "toolUseEvent",
                r#"{"name":"Read","toolUseId":"t2","input":{"path":"/a","n":[1,2]},"stop":true}"#
            ),
            KiroEvent::ToolUse {
                id: "t2".into(),
                name: "Read".into(),
                input: Some(r#"{"path":"/a","n":[1,2]}"#.into()),
                stop: true
            }
        );
        assert_eq!(
            event("toolUseEvent", r#"{"name":"Read","toolUseId":"t2"}"#),
            KiroEvent::ToolUse { id: "t2".into(), name: "Read".into(), input: None, stop: false }
        );
    }

    #[test]
    fn reasoning_context_usage_and_metadata() {
        assert_eq!(
            event("reasoningContentEvent", r#"{"text":"hmm","signature":"sig"}"#),
            KiroEvent::Reasoning { text: "hmm".into(), signature: Some("sig".into()) }
        );
        assert_eq!(
            event("contextUsageEvent", r#"{"contextUsagePercentage":12.5}"#),
            KiroEvent::ContextUsage { percentage: 12.5 }
        );
        assert_eq!(
            event(
                "metadataEvent",
                r#"{"tokenUsage":{"uncachedInputTokens":100,"outputTokens":20,"totalTokens":1120,"cacheReadInputTokens":1000,"cacheWriteInputTokens":5}}"#
            ),
            KiroEvent::Usage { input_tokens: 100, output_tokens: 20, cache_read: 1000, cache_write: 5 }
        );
        assert_eq!(event("metadataEvent", r#"{}"#), KiroEvent::Ignored("metadataEvent".into()));
    }

    #[test]
    fn invalid_state_exception_and_error_frames() {
        assert_eq!(
            event("invalidStateEvent", r#"{"reason":"INVALID_TASK_ASSIST_PLAN","message":"nope"}"#),
            KiroEvent::InvalidState { reason: "INVALID_TASK_ASSIST_PLAN".into(), message: "nope".into() }
        );
        let exc = frame_of(&encode_exception(
            "ContentLengthExceededException",
            br#"{"message":"Response exceeded length"}"#,
        ));
        assert_eq!(
            parse_frame(&exc).unwrap(),
            KiroEvent::Exception {
                kind: "ContentLengthExceededException".into(),
                message: "Response exceeded length".into()
            }
        );
        let err = frame_of(&encode_frame(
            &[(":error-code", "InternalFailure"), (":message-type", "error")],
            b"not json",
        ));
        assert_eq!(
            parse_frame(&err).unwrap(),
            KiroEvent::Error { code: "InternalFailure".into(), message: "not json".into() }
        );
    }

    #[test]
    fn metering_is_read_and_unknown_events_are_ignored() {
        assert_eq!(
            event("meteringEvent", r#"{"unit":"credit","unitPlural":"credits","usage":0.17618616013267}"#),
            KiroEvent::Metering { credits: 0.17618616013267 }
        );
        for bad in [r#"{"usage":"x"}"#, r#"{"usage":-1}"#, "{}", "nope"] {
            assert_eq!(event("meteringEvent", bad), KiroEvent::Ignored("meteringEvent".into()), "{bad}");
        }
        assert_eq!(event("brandNewEvent", "garbage"), KiroEvent::Ignored("brandNewEvent".into()));
        assert_eq!(
            event("messageMetadataEvent", r#"{"conversationId":"c"}"#),
            KiroEvent::Ignored("messageMetadataEvent".into())
        );
        assert_eq!(
            event("messageMetadataEvent", r#"{"conversationId":"c","stopReason":"CONTENT_FILTERED"}"#),
            KiroEvent::StopReason("CONTENT_FILTERED".into())
        );
        assert_eq!(
            event("assistantResponseEvent", r#"{"stopReason":"MAX_TOKENS"}"#),
            KiroEvent::StopReason("MAX_TOKENS".into())
        );
    }

    #[test]
    fn bad_json_in_known_events_is_an_error() {
        for (ty, payload) in [
            ("assistantResponseEvent", "{\"content\":"),
            ("assistantResponseEvent", "{\"content\":5}"),
            ("toolUseEvent", "{\"name\":\"x\"}"),
            ("contextUsageEvent", "[]"),
            ("metadataEvent", "{\"tokenUsage\":\"lots\"}"),
            ("assistantResponseEvent", "{\"assistantResponseEvent\":7}"),
        ] {
            let frame = frame_of(&encode_event(ty, payload.as_bytes()));
            let err = parse_frame(&frame).expect_err(payload);
            assert!(err.to_string().starts_with(ty), "{err}");
        }
    }
}

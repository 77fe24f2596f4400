//! The whole response pipeline from upstream bytes, as the proxy runs it: bytes → [`EventStream`]
//! → translator → SSE chunks or one JSON message.

use super::*;
use crate::providers::codewhisperer::frame::{encode_event, encode_exception};
use crate::providers::codewhisperer::translate::tests::{lines, opts, parse_sse, summary};
use futures_util::StreamExt;
use serde_json::{Value, json};

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

/// The answer to a body arriving in `chunks` (as the HTTP client would hand them over).
async fn answer(chunks: &[&[u8]]) -> Result<Answer, UpstreamError> {
    let chunks: Vec<Result<Bytes, UpstreamError>> =
        chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Answer::from_body(futures_util::stream::iter(chunks).boxed(), opts(), Duration::from_secs(5)).await
}

/// Streams the answer to the end: the SSE events and the outcome reported.
async fn stream_body(chunks: &[&[u8]]) -> (Vec<(String, Value)>, Result<(), UpstreamError>) {
    let mut sse = answer(chunks).await.expect("the first event arrives").into_sse();
    let mut out = Vec::new();
    let mut outcome = None;
    while let Some(chunk) = sse.next_chunk(&mut |_| {}).await {
        out.extend_from_slice(&chunk);
        if let Some(o) = sse.take_outcome() {
            assert!(outcome.replace(o).is_none(), "the outcome is reported once");
        }
    }
    assert!(sse.take_outcome().is_none(), "and only once");
    (parse_sse(&out), outcome.expect("an outcome when the answer ends"))
}

#[tokio::test]
async fn upstream_bytes_to_sse_same_result_whatever_the_chunking() {
    let body = upstream_body();
    let (whole, result) = stream_body(&[&body]).await;
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
    let message_id = |events: &[(String, Value)]| events[0].1["message"]["id"].as_str().unwrap().to_owned();
    let normalise = |mut events: Vec<(String, Value)>| {
        events[0].1["message"]["id"] = json!("msg");
        events
    };
    let (single_bytes, result) = stream_body(&bytes).await;
    result.unwrap();
    assert_ne!(message_id(&single_bytes), message_id(&whole), "every answer has its own id");
    assert_eq!(normalise(single_bytes), normalise(whole.clone()));
    let odd: Vec<&[u8]> = body.chunks(7).collect();
    assert_eq!(normalise(stream_body(&odd).await.0), normalise(whole));
}

#[tokio::test]
async fn corrupt_frame_mid_stream_ends_with_an_error_event() {
    let mut body = upstream_body();
    let second_frame_crc = encode_event("assistantResponseEvent", br#"{"content":"Hello! I"}"#).len() + 8;
    body[second_frame_crc] ^= 0xff;
    let (events, result) = stream_body(&[&body]).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, UpstreamErrorKind::Protocol);
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
    let collected = answer(&[&body]).await.expect("first event").collect(|_| {}).await.unwrap_err();
    assert_eq!(collected, err, "both sinks fail the same way");
}

#[tokio::test]
async fn stream_cut_mid_frame_is_an_error() {
    let body = upstream_body();
    let cut = &body[..body.len() - 3];
    let (events, result) = stream_body(&[cut]).await;
    assert!(result.unwrap_err().message.contains("cut inside a frame"));
    assert_eq!(events.last().unwrap().0, "error");
    assert!(answer(&[cut]).await.expect("first event").collect(|_| {}).await.is_err());
}

#[tokio::test]
async fn malformed_event_json_is_an_error_not_a_panic() {
    // As the first event: the answer fails before its first byte (the request may fail over).
    let bad = encode_event("assistantResponseEvent", b"{\"content\":");
    let err = answer(&[&bad]).await.err().expect("no answer");
    assert_eq!(err.kind, UpstreamErrorKind::Protocol);
    assert!(err.message.contains("bad upstream event"), "{}", err.message);
    // Later: the stream ends with an error event.
    let mut body = encode_event("assistantResponseEvent", br#"{"content":"Hi"}"#).to_vec();
    body.extend_from_slice(&bad);
    let (events, result) = stream_body(&[&body]).await;
    let err = result.unwrap_err();
    assert_eq!(
        summary(&events),
        lines(&[
            "message_start",
            "start 0 text",
            "text_delta 0 Hi",
            "stop 0",
            &format!("error api_error {}", err.message)
        ])
    );
}

#[tokio::test]
async fn an_answer_without_events_is_an_error() {
    let err = answer(&[]).await.err().expect("no answer");
    assert_eq!(err.message, "upstream ended the answer before any event");
}

#[tokio::test]
async fn upstream_exception_mid_stream_counts_as_a_protocol_failure() {
    let mut body = encode_event("assistantResponseEvent", br#"{"content":"Hi"}"#).to_vec();
    body.extend_from_slice(&encode_exception("ThrottlingException", br#"{"message":"slow down"}"#));
    let (events, result) = stream_body(&[&body]).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, UpstreamErrorKind::Protocol);
    assert_eq!(events.last().unwrap().1["error"]["type"], "rate_limit_error");
    let collected = answer(&[&body]).await.expect("first event").collect(|_| {}).await.unwrap_err();
    assert!(collected.message.contains("slow down"), "{}", collected.message);
}

#[tokio::test]
async fn collect_builds_the_full_message() {
    let mut body = upstream_body();
    body.extend_from_slice(&encode_exception(
        "ContentLengthExceededException",
        br#"{"message":"Response exceeded length"}"#,
    ));
    let mut msg = answer(&[&body]).await.expect("first event").collect(|_| {}).await.unwrap();
    let id = msg["id"].as_str().unwrap();
    assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
    msg["id"] = json!("msg_full");
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

#[tokio::test(start_paused = true)]
async fn a_silent_upstream_gets_pings_then_times_out() {
    let first = encode_event("assistantResponseEvent", br#"{"content":"Hi"}"#);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, UpstreamError>>();
    tx.send(Ok(first)).unwrap();
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let idle = PING_INTERVAL * 2 + Duration::from_secs(1);
    let mut sse = Answer::from_body(body.boxed(), opts(), idle).await.expect("first event").into_sse();
    let mut names = Vec::new();
    while let Some(chunk) = sse.next_chunk(&mut |_| {}).await {
        names.extend(parse_sse(&chunk).into_iter().map(|(name, _)| name));
    }
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "ping",
            "ping",
            "content_block_stop",
            "error"
        ]
    );
    let err = sse.take_outcome().expect("ended").unwrap_err();
    assert_eq!(err.kind, UpstreamErrorKind::Timeout);
    drop(tx);
}

#[tokio::test]
async fn metering_is_reported_as_it_arrives_in_both_sinks() {
    let mut body = upstream_body();
    body.extend_from_slice(&encode_event("meteringEvent", br#"{"unit":"credit","usage":0.25}"#));
    let mut seen = Vec::new();
    answer(&[&body]).await.expect("first event").collect(|r| seen.push(r)).await.unwrap();
    // upstream_body carries one meteringEvent of its own (0.17).
    assert_eq!(seen, [Report::Metered { credits: 0.17 }, Report::Metered { credits: 0.25 }]);
    let mut sse = answer(&[&body]).await.expect("first event").into_sse();
    let mut streamed = Vec::new();
    while sse.next_chunk(&mut |r| streamed.push(r)).await.is_some() {}
    assert_eq!(streamed, seen);
}

#[tokio::test]
async fn abort_ends_the_stream_with_the_proxy_error_and_no_upstream_outcome() {
    let body = upstream_body();
    let mut sse = answer(&[&body]).await.expect("first event").into_sse();
    assert!(sse.has_ready_output(), "message_start and the first event are ready");
    let first = sse.next_chunk(&mut |_| {}).await.expect("first chunk");
    sse.abort(&ApiError::new(crate::anthropic::ErrorKind::OverloadedError, "shutting down"));
    let mut out = first.to_vec();
    while let Some(chunk) = sse.next_chunk(&mut |_| {}).await {
        out.extend_from_slice(&chunk);
    }
    let events = parse_sse(&out);
    assert_eq!(events.last().unwrap().0, "error");
    assert_eq!(events.last().unwrap().1["error"]["message"], "shutting down");
    assert!(sse.take_outcome().is_none());
}

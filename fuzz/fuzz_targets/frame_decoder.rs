//! Fuzz target: the production response pipeline, bytes → frames → Kiro events → Anthropic SSE
//! (`Answer::into_sse`) or one JSON message (`Answer::collect`), exactly as the proxy runs it
//! over an upstream body, plus the frame decoder on its own.
//!
//! The first input byte picks how the rest is read: as raw bytes, or as a recipe for well-formed
//! frames (events of every Kiro type with payloads built to reach the event parsers and the
//! `<thinking>` tag splitter), optionally with one byte flipped. The second byte picks the read
//! size the bytes are fed in, the third whether thinking tags are parsed.
//!
//! Properties checked, beyond "no panic":
//! - the SSE output is UTF-8, every `data:` line is JSON, it starts with `message_start`, ends
//!   with `message_stop` or `error`, and closes every block it opened;
//! - the upstream outcome is reported once, and is an error exactly when the SSE ends in `error`;
//! - a decoder error is sticky (the next call returns the same error);
//! - the collected message is a JSON message with a content array, or the answer failed.
#![no_main]

use bytes::Bytes;
use ccr::anthropic::sse::parse_events;
use ccr::providers::codewhisperer::Answer;
use ccr::providers::codewhisperer::internals::{
    Body, FrameDecoder, ResponseOptions, encode_event, encode_exception, encode_frame,
};
use futures_util::StreamExt;
use std::time::Duration;
use libfuzzer_sys::arbitrary::{self, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const EVENT_TYPES: &[&str] = &[
    "assistantResponseEvent",
    "codeEvent",
    "toolUseEvent",
    "reasoningContentEvent",
    "contextUsageEvent",
    "meteringEvent",
    "metadataEvent",
    "invalidStateEvent",
    "citationEvent",
    "followupPromptEvent",
    "messageMetadataEvent",
    "supplementaryWebLinksEvent",
];

const EXCEPTIONS: &[&str] = &[
    "ThrottlingException",
    "ContentLengthExceededException",
    "InternalServerException",
    "ValidationException",
];

/// Text pieces that stress the thinking-tag splitter and UTF-8 handling.
const PIECES: &[&str] = &[
    "<thinking>",
    "</thinking>",
    "<think",
    "ing>",
    "</",
    "thinking>",
    "\n\n",
    "\n",
    "é",
    "😀",
    "日本",
    "<",
    ">",
    "hello ",
    "`<thinking>`",
    "\u{0}",
    "\\",
    "\"",
];

fn text(u: &mut Unstructured) -> arbitrary::Result<String> {
    let mut s = String::new();
    for _ in 0..u.int_in_range(0..=6)? {
        if u.arbitrary::<bool>()? {
            s.push_str(u.choose(PIECES)?);
        } else {
            s.push_str(&u.arbitrary::<String>()?);
        }
    }
    Ok(s)
}

fn payload(u: &mut Unstructured, event: &str) -> arbitrary::Result<Vec<u8>> {
    let value = match (u.int_in_range(0..=9)?, event) {
        (0, _) => return Ok(u.arbitrary::<Vec<u8>>()?),
        (1, _) => json!({ "unexpected": text(u)? }),
        (_, "assistantResponseEvent" | "codeEvent") => json!({ "content": text(u)? }),
        (_, "toolUseEvent") => {
            let ids = ["tooluse_a", "tooluse_b", ""];
            let names = [
                "Bash",
                "Read",
                "mcp__server__a_very_long_tool_name_that_goes_beyond_sixty_four_bytes_x",
                "",
            ];
            let mut v = json!({ "toolUseId": *u.choose(&ids)?, "name": *u.choose(&names)? });
            if u.arbitrary::<bool>()? {
                v["input"] =
                    if u.arbitrary::<bool>()? { json!(text(u)?) } else { json!({"command": text(u)?}) };
            }
            if u.arbitrary::<bool>()? {
                v["stop"] = json!(u.arbitrary::<bool>()?);
            }
            v
        }
        (_, "reasoningContentEvent") => json!({ "text": text(u)?, "signature": text(u)? }),
        (_, "contextUsageEvent") => json!({ "contextUsagePercentage": u.arbitrary::<f32>()? }),
        (_, "metadataEvent") => json!({ "tokenUsage": {
            "uncachedInputTokens": u.arbitrary::<i32>()?, "outputTokens": u.arbitrary::<f32>()?,
            "cacheReadInputTokens": u.arbitrary::<u32>()?, "cacheWriteInputTokens": u.arbitrary::<u16>()? } }),
        (_, "invalidStateEvent") => json!({ "reason": text(u)?, "message": text(u)? }),
        _ => json!({ "message": text(u)?, "reason": text(u)? }),
    };
    Ok(value.to_string().into_bytes())
}

/// Well-formed frames built from the input, optionally with one byte flipped.
fn frames(u: &mut Unstructured) -> arbitrary::Result<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=32)? {
        let frame = match u.int_in_range(0..=11)? {
            0 => {
                let kind = *u.choose(EXCEPTIONS)?;
                encode_exception(kind, &payload(u, kind)?)
            }
            1 => encode_frame(
                &[(":message-type", "error"), (":error-code", "InternalError"), (":error-message", "boom")],
                &payload(u, "error")?,
            ),
            _ => {
                let event = *u.choose(EVENT_TYPES)?;
                encode_event(event, &payload(u, event)?)
            }
        };
        out.extend_from_slice(&frame);
    }
    if u.arbitrary::<bool>()? && !out.is_empty() {
        let i = u.choose_index(out.len())?;
        out[i] ^= u.arbitrary::<u8>()? | 1;
    }
    Ok(out)
}

fn options(thinking: bool) -> ResponseOptions {
    ResponseOptions {
        model: "claude-opus-4-8".into(),
        thinking,
        input_tokens: 100,
        context_window: 200_000,
        tool_names: [("mcp__server__a_very_long_tool_na_0123abcd".to_string(), "mcp__original".to_string())]
            .into_iter()
            .collect(),
    }
}

/// The upstream body as the HTTP client would hand it over: `read` bytes at a time.
fn body(bytes: &[u8], read: usize) -> Body {
    let chunks: Vec<_> = bytes.chunks(read).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(chunks).boxed()
}

async fn answer(bytes: &[u8], read: usize, thinking: bool) -> Option<Answer> {
    // An answer that fails before its first event is an error (the proxy fails over): fine.
    Answer::from_body(body(bytes, read), options(thinking), Duration::from_secs(60)).await.ok()
}

async fn streaming(bytes: &[u8], read: usize, thinking: bool) {
    let Some(answer) = answer(bytes, read, thinking).await else { return };
    let mut sse = answer.into_sse();
    let mut out = Vec::new();
    let mut outcome = None;
    while let Some(chunk) = sse.next_chunk(&mut |_| {}).await {
        out.extend_from_slice(&chunk);
        if let Some(o) = sse.take_outcome() {
            assert!(outcome.replace(o).is_none(), "the outcome is reported once");
        }
    }
    let outcome = outcome.expect("an ended answer has an outcome");
    let text = std::str::from_utf8(&out).expect("SSE output is UTF-8");
    let events = parse_events(text);
    for (name, data) in &events {
        serde_json::from_str::<Value>(data)
            .unwrap_or_else(|e| panic!("{name} data is not JSON ({e}): {data}"));
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    match outcome {
        Ok(()) => assert_eq!(names.last(), Some(&"message_stop"), "{text}"),
        Err(_) => assert_eq!(names.last(), Some(&"error"), "{text}"),
    }
    let opened = names.iter().filter(|n| **n == "content_block_start").count();
    let closed = names.iter().filter(|n| **n == "content_block_stop").count();
    assert_eq!(opened, closed, "{text}");
}

async fn collected(bytes: &[u8], read: usize, thinking: bool) {
    let Some(answer) = answer(bytes, read, thinking).await else { return };
    if let Ok(message) = answer.collect(|_| {}).await {
        assert_eq!(message["type"], "message");
        assert!(message["content"].is_array(), "{message}");
    }
}

/// The frame decoder alone: errors are sticky and leave nothing buffered.
fn frames_only(bytes: &[u8], read: usize) {
    let mut decoder = FrameDecoder::new();
    for piece in bytes.chunks(read) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(decoder.next_frame(), Err(e), "decoder errors are sticky");
                    assert_eq!(decoder.buffered_len(), 0, "a failed decoder holds nothing");
                    return;
                }
            }
        }
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
}

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, read, thinking], rest)) = data.split_first_chunk::<3>() else { return };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        match frames(&mut Unstructured::new(rest)) {
            Ok(bytes) => bytes,
            Err(_) => return,
        }
    };
    let read = if read == 0 { bytes.len().max(1) } else { usize::from(read) };
    let thinking = thinking % 2 == 1;
    frames_only(&bytes, read);
    RUNTIME.with(|rt| {
        rt.block_on(async {
            streaming(&bytes, read, thinking).await;
            collected(&bytes, read, thinking).await;
        })
    });
});

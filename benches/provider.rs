//! Per-operation costs of the CodeWhisperer provider path (design §11): frame decoding (per
//! frame and per MB), request parsing and conversion (a small request and a 1 MB Claude Code
//! session), and Kiro events → Anthropic SSE translation.
//!
//! ```sh
//! cargo bench --bench provider
//! ```

#[path = "support/shapes.rs"]
mod shapes;

use bytes::BytesMut;
use ccr::anthropic::types::parse_request_bytes;
use ccr::providers::codewhisperer::internals::{
    ConvertOptions, FrameDecoder, KiroEvent, MessageAggregator, ResponseOptions, SseTranslator, convert,
    encode_event, parse_frame, request_body,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;

/// The frames of a typical answer: text deltas of a few characters, a tool call in fragments,
/// then metering and context usage. Returns the encoded bytes and the number of frames.
fn answer_frames(text_frames: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut n = 0;
    let mut push = |event: &str, payload: serde_json::Value| {
        out.extend_from_slice(&encode_event(event, payload.to_string().as_bytes()));
        n += 1;
    };
    for i in 0..text_frames {
        push("assistantResponseEvent", json!({"content": format!("chunk {i} of the answer, ")}));
    }
    push("toolUseEvent", json!({"name": "Bash", "toolUseId": "tooluse_1", "input": "{\"command\":"}));
    push("toolUseEvent", json!({"name": "Bash", "toolUseId": "tooluse_1", "input": "\"ls -la\"}"}));
    push("toolUseEvent", json!({"name": "Bash", "toolUseId": "tooluse_1", "stop": true}));
    push("meteringEvent", json!({"unit": "credit", "unitPlural": "credits", "usage": 0.02}));
    push("contextUsageEvent", json!({"contextUsagePercentage": 12.5}));
    (out, n)
}

fn decode_all(bytes: &[u8], read_size: usize) -> usize {
    let mut decoder = FrameDecoder::new();
    let mut events = 0;
    for chunk in bytes.chunks(read_size) {
        decoder.feed(chunk);
        while let Ok(Some(frame)) = decoder.next_frame() {
            if parse_frame(&frame).is_ok() {
                events += 1;
            }
        }
    }
    events
}

fn frame_decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_decoding");
    let one = encode_event("assistantResponseEvent", br#"{"content":"Hello, wor"}"#);
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_text_frame", |b| {
        b.iter(|| {
            let mut decoder = FrameDecoder::new();
            decoder.feed(black_box(&one));
            let frame = decoder.next_frame().ok().flatten().expect("a frame");
            black_box(parse_frame(&frame).ok())
        })
    });
    // About 1 MB of frames, read 16 KiB at a time (a typical socket read).
    let (mb, frames) = answer_frames(22_000);
    group.throughput(Throughput::Bytes(mb.len() as u64));
    group.bench_with_input(BenchmarkId::new("per_mb", format!("{frames}_frames")), &mb, |b, mb| {
        b.iter(|| black_box(decode_all(mb, 16 * 1024)))
    });
    group.finish();
}

fn conversion(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    for (name, body) in [
        ("small", shapes::small_request(true)),
        ("claude_code_1mb", shapes::long_session_request(1_000_000, true)),
    ] {
        // As the server reads it: the body as `Bytes`, which the parsed texts are slices of.
        let raw = bytes::Bytes::from(serde_json::to_vec(&body).expect("json"));
        let req = parse_request_bytes(&raw).expect("valid request");
        let converted = convert(&req, &ConvertOptions::default()).expect("converts");
        group.throughput(Throughput::Bytes(raw.len() as u64));
        // What any serde_json reader of this body costs: one scan that builds nothing.
        group.bench_with_input(BenchmarkId::new("scan", name), &raw, |b, raw| {
            b.iter(|| black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(raw)).ok()))
        });
        group.bench_with_input(BenchmarkId::new("parse", name), &raw, |b, raw| {
            b.iter(|| black_box(parse_request_bytes(black_box(raw)).ok()))
        });
        group.bench_with_input(BenchmarkId::new("convert", name), &req, |b, req| {
            b.iter(|| black_box(convert(black_box(req), &ConvertOptions::default()).ok()))
        });
        group.bench_with_input(BenchmarkId::new("request_body", name), &converted, |b, converted| {
            b.iter(|| {
                black_box(request_body(
                    black_box(converted),
                    Some("arn:aws:codewhisperer:us-east-1:1:profile/X"),
                ))
            })
        });
        group.bench_with_input(BenchmarkId::new("parse_estimate_convert", name), &raw, |b, raw| {
            b.iter(|| {
                let req = parse_request_bytes(black_box(raw)).expect("valid");
                let estimate = req.estimate_input_tokens();
                // As the proxy does: the estimate, computed once, also sizes the conversion.
                let options = ConvertOptions { input_estimate: Some(estimate), ..ConvertOptions::default() };
                let converted = convert(&req, &options).expect("converts");
                black_box((estimate, request_body(&converted, None)))
            })
        });
    }
    group.finish();
}

fn events(text_frames: usize) -> Vec<KiroEvent> {
    let (bytes, _) = answer_frames(text_frames);
    let mut decoder = FrameDecoder::new();
    decoder.feed(&bytes);
    let mut out = Vec::new();
    while let Ok(Some(frame)) = decoder.next_frame() {
        if let Ok(ev) = parse_frame(&frame) {
            out.push(ev);
        }
    }
    out
}

fn options(thinking: bool) -> ResponseOptions {
    ResponseOptions {
        model: "claude-opus-4-8".into(),
        thinking,
        input_tokens: 1200,
        context_window: 200_000,
        tool_names: Default::default(),
    }
}

fn translation(c: &mut Criterion) {
    let mut group = c.benchmark_group("translate");
    let answer = events(200);
    group.throughput(Throughput::Elements(answer.len() as u64));
    for thinking in [false, true] {
        let label = if thinking { "thinking_parser_on" } else { "plain" };
        group.bench_function(BenchmarkId::new("sse_per_answer", label), |b| {
            b.iter_batched(
                || answer.clone(),
                |events| {
                    let mut out = BytesMut::with_capacity(4096);
                    let mut t = SseTranslator::new(options(thinking), "msg_bench".into());
                    t.start(&mut out);
                    for ev in events {
                        let _ = t.on_event(ev, &mut out);
                        // The proxy hands each event's bytes to the socket at once.
                        black_box(out.split());
                    }
                    t.finish(&mut out);
                    black_box(out.len())
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.bench_function("json_message_per_answer", |b| {
        b.iter_batched(
            || answer.clone(),
            |events| {
                let mut m = MessageAggregator::new(options(true), "msg_bench".into());
                for ev in events {
                    let _ = m.on_event(ev);
                }
                black_box(m.finish())
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, frame_decoding, conversion, translation);
criterion_main!(benches);

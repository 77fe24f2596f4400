//! Tests of the translator: scripts of Kiro events → SSE and JSON messages.

use super::thinking::{EndScan, find_thinking_end};
use super::*;
use crate::anthropic::sse::parse_events;
use bytes::BytesMut;
use serde_json::{Value, json};

pub(crate) fn opts() -> ResponseOptions {
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

pub(crate) fn parse_sse(out: &[u8]) -> Vec<(String, Value)> {
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
pub(crate) fn summary(events: &[(String, Value)]) -> Vec<String> {
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

pub(crate) fn lines(v: &[&str]) -> Vec<String> {
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
    assert_eq!(msg["content"], json!([{"type":"tool_use","id":"t9","name":"Bash","input":{"command":"ls"}}]));
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
    let script = vec![text("<thinking>plan it</thinking>"), tool("t1", "Bash", Some("{}"), true), text("ok")];
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
    let script = vec![tool("t1", "Bash", Some("{}"), true), KiroEvent::ContextUsage { percentage: 100.0 }];
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
        assert!(summary(&events).iter().any(|l| l.contains(&format!("message_delta {anthropic}"))), "{kiro}");
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

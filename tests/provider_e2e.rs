//! Issue 3 end to end: Claude Code requests through the real proxy socket to a simulated
//! CodeWhisperer upstream speaking the real event-stream protocol.

mod common;

use ccr::demo::upstream::{ErrorKind, SimCredentials, write_social_token_file};
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn streaming_text_arrives_as_anthropic_sse() {
    let h = start(solo_pool()).await;
    let (status, headers, body) = h.call(&main_turn("say hello", true)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-ccr-category"], "default");
    assert_eq!(headers["x-ccr-provider"], "solo");
    assert_eq!(headers["x-ccr-attempts"], "1");
    let events = sse(&body);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).filter(|e| *e != "ping").collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert_eq!(names[names.len() - 2], "message_delta");
    assert_eq!(events[0].1["message"]["model"], "claude-opus-4-8", "the model the client asked for");
    assert!(sse_text(&body).contains("upstream-0"), "{body}");
    let delta = &events.iter().find(|(e, _)| e == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    // What went upstream: the Kiro shape, with the rule-less mapped model and the session id.
    let sent = h.upstreams[0].last_request().unwrap();
    assert!(sent.header("authorization").unwrap().starts_with("Bearer aoa"));
    let kiro = sent.json().unwrap();
    let state = &kiro["conversationState"];
    assert_eq!(state["conversationId"], "0cf01146-29c8-4564-a7f6-a5a1fde2c575");
    assert_eq!(state["currentMessage"]["userInputMessage"]["modelId"], "claude-opus-4.8");
    assert!(kiro["profileArn"].as_str().unwrap().starts_with("arn:aws:codewhisperer:"));
    h.shutdown().await;
}

#[tokio::test]
async fn non_streaming_answer_is_one_message() {
    let h = start(solo_pool()).await;
    let (status, headers, body) = h.call(&main_turn("say hello", false)).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
    let msg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["model"], "claude-opus-4-8");
    assert_eq!(msg["stop_reason"], "end_turn");
    let text = msg["content"].as_array().unwrap().iter().find(|b| b["type"] == "text").unwrap();
    assert!(text["text"].as_str().unwrap().contains("upstream-0"));
    assert!(msg["usage"]["input_tokens"].as_u64().unwrap() > 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_full_tool_loop() {
    let h = start(solo_pool()).await;
    let (status, _, body) = h.call(&main_turn("run it [sim:tool]", true)).await;
    assert_eq!(status, 200, "{body}");
    let events = sse(&body);
    let start = events
        .iter()
        .find(|(e, d)| e == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .expect("a tool_use block");
    assert_eq!(start.1["content_block"]["input"], json!({}), "tool start carries empty input");
    let tool_id = start.1["content_block"]["id"].as_str().unwrap().to_string();
    let name = start.1["content_block"]["name"].as_str().unwrap().to_string();
    let partial: String = events
        .iter()
        .filter(|(e, d)| e == "content_block_delta" && d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    let input: Value = serde_json::from_str(&partial).expect("fragments join into JSON");
    let stop = events.iter().find(|(e, _)| e == "message_delta").unwrap();
    assert_eq!(stop.1["delta"]["stop_reason"], "tool_use");

    // Second turn: the tool result goes back; the upstream validator must accept the history.
    let mut next = main_turn("run it [sim:tool]", true);
    let messages = next["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": [
        {"type": "text", "text": "I'll run it."},
        {"type": "tool_use", "id": tool_id, "name": name, "input": input}]}));
    messages.push(json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": tool_id, "content": "hello-from-tool", "is_error": false,
         "cache_control": {"type": "ephemeral"}}]}));
    let (status, _, body) = h.call(&next).await;
    assert_eq!(status, 200, "{body}");
    assert!(!sse_text(&body).is_empty());
    let kiro = h.upstreams[0].last_request().unwrap().json().unwrap();
    let results = &kiro["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]
        ["toolResults"];
    assert_eq!(results[0]["toolUseId"], tool_id);
    assert_eq!(results[0]["status"], "success");
    h.shutdown().await;
}

#[tokio::test]
async fn repeated_identical_chunks_are_kept() {
    let h = start(solo_pool()).await;
    let (_, _, body) = h.call(&main_turn("count [sim:repeat]", true)).await;
    assert!(sse_text(&body).contains("666"), "{body}");
    let (_, _, body) = h.call(&main_turn("count [sim:repeat]", false)).await;
    let msg: Value = serde_json::from_str(&body).unwrap();
    assert!(msg["content"].to_string().contains("666"), "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn text_after_a_tool_call_opens_a_new_block() {
    let h = start(solo_pool()).await;
    let (_, _, body) = h.call(&main_turn("go [sim:text-after-tool]", true)).await;
    let kinds: Vec<String> = sse(&body)
        .iter()
        .filter(|(e, _)| e == "content_block_start")
        .map(|(_, d)| d["content_block"]["type"].as_str().unwrap().to_string())
        .collect();
    let tool = kinds.iter().position(|k| k == "tool_use").expect("a tool block");
    assert!(kinds[tool + 1..].iter().any(|k| k == "text"), "{kinds:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn frames_split_inside_utf8_sequences_decode_intact() {
    let h = start(solo_pool()).await;
    let (status, _, body) = h.call(&main_turn("unicode [sim:split-utf8]", true)).await;
    assert_eq!(status, 200);
    let text = sse_text(&body);
    assert!(!text.contains('\u{FFFD}'), "no replacement characters: {text}");
    assert!(!text.is_ascii(), "{text}");
    h.shutdown().await;
}

#[tokio::test]
async fn corrupt_frame_mid_stream_ends_with_a_clean_sse_error() {
    let h = start(solo_pool()).await;
    h.upstreams[0].fail_next(1, ErrorKind::CorruptFrame);
    let (status, _, body) = h.call(&main_turn("hello [sim:long]", true)).await;
    assert_eq!(status, 200, "the stream had started");
    let events = sse(&body);
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error", "{body}");
    assert_eq!(data["type"], "error");
    assert!(data["error"]["message"].as_str().unwrap().contains("corrupt"), "{data}");
    // Every opened block was closed before the error.
    let opened = events.iter().filter(|(e, _)| e == "content_block_start").count();
    let closed = events.iter().filter(|(e, _)| e == "content_block_stop").count();
    assert_eq!(opened, closed);
    h.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_refreshed_and_written_back_private() {
    let h = start(solo_pool()).await;
    let token_path = h.pool.token_path("solo").unwrap().to_path_buf();
    let stale = SimCredentials {
        expires_at: chrono::Utc::now() - chrono::Duration::minutes(5),
        ..h.upstreams[0].issue_credentials(Duration::from_secs(3600))
    };
    write_social_token_file(&token_path, &stale).unwrap();
    let (status, _, body) = h.call(&main_turn("hello", true)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.upstreams[0].stats().refresh_social, 1);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&token_path).unwrap()).unwrap();
    assert_ne!(written["accessToken"], json!(stale.access_token));
    assert_eq!(written["provider"], "Github", "other fields are kept");
    let expires = chrono::DateTime::parse_from_rfc3339(written["expiresAt"].as_str().unwrap()).unwrap();
    assert!(expires > chrono::Utc::now() + chrono::Duration::minutes(30));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn bearer_invalid_refreshes_once_and_succeeds() {
    let h = start(solo_pool()).await;
    h.upstreams[0].expire_access_tokens();
    let (status, _, body) = h.call(&main_turn("hello", true)).await;
    assert_eq!(status, 200, "{body}");
    let stats = h.upstreams[0].stats();
    assert_eq!(stats.refresh_social, 1);
    assert_eq!(stats.auth_rejected, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn validation_400_is_returned_and_never_retried() {
    let h = start(seed_pool()).await;
    for up in &h.upstreams {
        up.set_max_body_bytes(200);
    }
    let (status, headers, body) = h.call(&main_turn("hello", true)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(headers["x-ccr-attempts"], "1");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(err["error"]["message"].as_str().unwrap().starts_with("prompt is too long"));
    let total: u64 = h.upstreams.iter().map(|u| u.stats().generate).sum();
    assert_eq!(total, 1, "a 400 is not retried on the other provider");
    h.shutdown().await;
}

#[tokio::test]
async fn client_errors_are_anthropic_shaped() {
    let h = start(solo_pool()).await;
    let cases = [
        ("{not json", "invalid_request_error"),
        (r#"{"model":"m","max_tokens":5,"messages":"nope"}"#, "invalid_request_error"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, "invalid_request_error"),
        (r#"{"model":"m","max_tokens":5,"messages":[]}"#, "invalid_request_error"),
    ];
    for (raw, kind) in cases {
        let r = h
            .http
            .post(h.url("/v1/messages"))
            .body(raw)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{raw}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind, "{raw}");
    }
    let r = h.http.get(h.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    h.shutdown().await;
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let h = start(solo_pool().merge(json!({"server": {"maxBodyBytes": 1000}}))).await;
    let r = h.post(&main_turn(&"x".repeat(5000), true)).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "request_too_large");
    h.shutdown().await;
}

#[tokio::test]
async fn count_tokens_answers_an_estimate() {
    let h = start(solo_pool()).await;
    let r = h
        .http
        .post(h.url("/v1/messages/count_tokens?beta=true"))
        .json(&main_turn(&"word ".repeat(400), false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() >= 500, "{v}");
    // The count-tokens request shape: no `max_tokens`, no `stream` (as the Anthropic SDKs and
    // Claude Code send it).
    let count = json!({
        "model": "claude-opus-4-8",
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "tools": [{"name": "Read", "description": "read", "input_schema": {"type": "object"}}],
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "messages": [{"role": "user", "content": "word ".repeat(400)}]
    });
    let r = h.http.post(h.url("/v1/messages/count_tokens")).json(&count).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert!(v["input_tokens"].as_u64().unwrap() >= 400, "{v}");
    // Still a request: no messages is the client's error, named like /v1/messages names it.
    let r = h
        .http
        .post(h.url("/v1/messages/count_tokens"))
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(h.upstreams[0].stats().generate, 0, "counting never calls the upstream");
    h.shutdown().await;
}

#[tokio::test]
async fn claude_code_request_kinds_are_all_accepted_upstream() {
    let h = start(solo_pool()).await;
    let kinds = [
        main_turn("say hello", true),
        background_turn("Write a 3-word title"),
        json!({"model":"claude-sonnet-4-5-20250929","max_tokens":32000,"stream":true,
               "thinking":{"type":"enabled","budget_tokens":4000},
               "system":"sys","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}),
        json!({"model":"claude-haiku-4-5-20251001","max_tokens":32000,"stream":true,"temperature":1,
               "thinking":{"type":"disabled"},
               "tools":[{"name":"Read","description":"read","input_schema":{"type":"object","properties":{"p":{"type":"string"}}}}],
               "messages":[{"role":"user","content":"explore"}]}),
        json!({"model":"claude-opus-4-8","max_tokens":64000,"stream":true,"thinking":{"type":"disabled"},
               "tools":[{"type":"web_search_20250305","name":"web_search","max_uses":8}],
               "tool_choice":{"type":"tool","name":"web_search"},
               "messages":[{"role":"user","content":"Perform a web search for the query: rust"}]}),
        json!({"model":"my-router-model","max_tokens":100,"messages":[{"role":"user","content":"hi"},
               {"role":"assistant","content":"prefill"}]}),
    ];
    for body in kinds {
        let (status, _, text) = h.call(&body).await;
        assert_eq!(status, 200, "{body}\n{text}\nrejection: {:?}", h.upstreams[0].last_rejection());
    }
    h.shutdown().await;
}

//! The simulator through its own socket: every endpoint, scenario, fault and knob.

use super::scripted::{sample_input, split_inside_utf8};
use super::*;
use crate::providers::codewhisperer::event::{KiroEvent, parse_frame};
use crate::providers::codewhisperer::frame::encode_event;
use crate::providers::codewhisperer::frame::{Frame, FrameDecoder, FrameError};
use axum::http::header;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

const HOUR: Duration = Duration::from_secs(3600);

async fn start(name: &str) -> SimUpstream {
    match SimUpstream::start(SimOptions { seed: 7, ..SimOptions::named(name) }).await {
        Ok(sim) => sim,
        Err(e) => panic!("sim did not start: {e}"),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("reqwest client")
}

/// A minimal body that passes the §3.5 validator.
fn body(content: &str) -> Value {
    json!({
        "conversationState": {
            "conversationId": "5a1f0c4e-8a51-4a49-9f0a-1f1c2b3d4e5f",
            "chatTriggerType": "MANUAL",
            "currentMessage": {"userInputMessage": {
                "content": content, "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"
            }}
        }
    })
}

fn with_tools(mut body: Value, tools: Value) -> Value {
    body["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"] =
        json!({"tools": tools});
    body
}

fn tool_spec(name: &str, schema: Value) -> Value {
    json!({"toolSpecification": {"name": name, "description": "a tool", "inputSchema": {"json": schema}}})
}

async fn generate(sim: &SimUpstream, token: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/generateAssistantResponse", sim.base_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request reaches the sim")
}

/// All frames of a body, and the decoder's error if one stopped it, and the leftover bytes.
fn decode(bytes: &[u8]) -> (Vec<Frame>, Option<FrameError>, usize) {
    let mut decoder = FrameDecoder::new();
    decoder.feed(bytes);
    let mut frames = Vec::new();
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None, decoder.buffered_len()),
            Err(e) => return (frames, Some(e), decoder.buffered_len()),
        }
    }
}

fn events(frames: &[Frame]) -> Vec<KiroEvent> {
    frames.iter().map(|f| parse_frame(f).expect("frame parses")).collect()
}

fn event_types(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(|f| f.event_type().or(f.exception_type()).unwrap_or("?").to_owned()).collect()
}

fn text_of(events: &[KiroEvent]) -> String {
    events.iter().filter_map(|e| if let KiroEvent::Text(t) = e { Some(t.as_str()) } else { None }).collect()
}

/// Tool calls as (id, name, concatenated input, saw stop).
fn tools_of(events: &[KiroEvent]) -> Vec<(String, String, String, bool)> {
    let mut calls: Vec<(String, String, String, bool)> = Vec::new();
    for e in events {
        if let KiroEvent::ToolUse { id, name, input, stop } = e {
            if calls.last().is_none_or(|c| &c.0 != id) {
                calls.push((id.clone(), name.clone(), String::new(), false));
            }
            let call = calls.last_mut().expect("just pushed");
            call.2.push_str(input.as_deref().unwrap_or(""));
            call.3 |= *stop;
        }
    }
    calls
}

async fn answer(sim: &SimUpstream, token: &str, body: &Value) -> (Vec<Frame>, Vec<KiroEvent>) {
    let response = generate(sim, token, body).await;
    assert_eq!(response.status(), 200, "{:?}", sim.last_rejection());
    let bytes = response.bytes().await.expect("body");
    let (frames, err, left) = decode(&bytes);
    assert!(err.is_none() && left == 0, "clean stream: {err:?}, {left} bytes left");
    let events = events(&frames);
    (frames, events)
}

async fn error_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let value = response.json::<Value>().await.expect("JSON error body");
    (status, value)
}

#[tokio::test]
async fn plain_text_streams_frames_in_order_with_kiro_headers() {
    let sim = start("sim-a").await;
    let creds = sim.issue_credentials(HOUR);
    let response = generate(&sim, &creds.access_token, &body("hello")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/vnd.amazon.eventstream");
    let (frames, err, left) = decode(&response.bytes().await.expect("body"));
    assert!(err.is_none() && left == 0);

    let types = event_types(&frames);
    let n = types.len();
    assert!(n > 4, "several text frames plus trailer: {types:?}");
    assert!(types[..n - 2].iter().all(|t| t == "assistantResponseEvent"), "{types:?}");
    assert_eq!(&types[n - 2..], ["meteringEvent", "contextUsageEvent"]);
    for frame in &frames {
        let names: Vec<&str> = frame.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [":event-type", ":content-type", ":message-type"]);
        assert_eq!(frame.header(":content-type"), Some("application/json"));
        assert_eq!(frame.message_type(), Some("event"));
    }
    let events = events(&frames);
    let text = text_of(&events);
    assert_eq!(text, "Hello from sim-a! This is a simulated Kiro answer, streamed in small pieces.");
    // Chunks split words: the first one is not a whole word.
    assert_eq!(events[0], KiroEvent::Text("Hell".to_owned()));
    assert!(matches!(events[n - 1], KiroEvent::ContextUsage { percentage } if percentage > 0.0));

    let stats = sim.stats();
    assert_eq!((stats.requests, stats.generate, stats.streams_started), (1, 1, 1));
    assert_eq!(stats.streams_completed, 1);
    let recorded = sim.last_request_to(Endpoint::Generate).expect("recorded");
    assert_eq!(recorded.header("authorization"), Some(format!("Bearer {}", creds.access_token).as_str()));
    assert_eq!(
        recorded.json().expect("json")["conversationState"]["currentMessage"]["userInputMessage"]["content"],
        "hello"
    );
}

#[tokio::test]
async fn metadata_event_and_fixed_context_usage_when_configured() {
    let sim = start("sim-a").await;
    sim.set_metadata_event(true);
    sim.set_context_usage(Some(100.0));
    let token = sim.issue_credentials(HOUR).access_token;
    let (frames, events) = answer(&sim, &token, &body("hi")).await;
    let types = event_types(&frames);
    assert_eq!(&types[types.len() - 3..], ["meteringEvent", "contextUsageEvent", "metadataEvent"]);
    assert!(events.contains(&KiroEvent::ContextUsage { percentage: 100.0 }));
    assert!(
        matches!(events.last(), Some(KiroEvent::Usage { input_tokens, output_tokens, .. }) if *input_tokens > 0 && *output_tokens > 0)
    );
}

#[tokio::test]
async fn tool_scenario_sends_three_fragments_then_stop() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    let schema = json!({"type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}}, "required": ["path"]});
    let request = with_tools(body("read it [sim:tool]"), json!([tool_spec("read_file", schema)]));
    let (frames, events) = answer(&sim, &token, &request).await;
    let types = event_types(&frames);
    let first_tool = types.iter().position(|t| t == "toolUseEvent").expect("a tool event");
    assert!(types[..first_tool].iter().all(|t| t == "assistantResponseEvent"));
    assert_eq!(types.iter().filter(|t| *t == "toolUseEvent").count(), 4, "3 fragments + stop");
    assert_eq!(&types[types.len() - 2..], ["meteringEvent", "contextUsageEvent"]);

    let calls = tools_of(&events);
    assert_eq!(calls.len(), 1);
    let (id, name, input, stopped) = &calls[0];
    assert!(id.starts_with("tooluse_") && id.len() == 30, "{id}");
    assert_eq!(name, "read_file");
    assert!(*stopped);
    assert_eq!(serde_json::from_str::<Value>(input).expect("input is JSON"), json!({"path": "sim"}));
    let fragments: Vec<&KiroEvent> =
        events.iter().filter(|e| matches!(e, KiroEvent::ToolUse { input: Some(_), .. })).collect();
    assert_eq!(fragments.len(), 3);
    assert!(matches!(
        events.iter().rfind(|e| matches!(e, KiroEvent::ToolUse { .. })),
        Some(KiroEvent::ToolUse { input: None, stop: true, .. })
    ));
}

#[tokio::test]
async fn two_tools_text_after_tool_and_object_input() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    let tools = json!([
        tool_spec(
            "Bash",
            json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]})
        ),
        tool_spec(
            "Glob",
            json!({"type": "object", "properties": {"pattern": {"type": "string", "enum": ["*.rs"]}}})
        ),
    ]);

    let (_, events) = answer(&sim, &token, &with_tools(body("[sim:two-tools]"), tools.clone())).await;
    let calls = tools_of(&events);
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].0, calls[1].0, "each call has its own id");
    assert_eq!((calls[0].1.as_str(), calls[1].1.as_str()), ("Bash", "Glob"));
    assert_eq!(serde_json::from_str::<Value>(&calls[1].2).expect("json"), json!({"pattern": "*.rs"}));
    assert!(calls.iter().all(|c| c.3));

    let (frames, events) =
        answer(&sim, &token, &with_tools(body("[sim:text-after-tool]"), tools.clone())).await;
    let types = event_types(&frames);
    let last_tool = types.iter().rposition(|t| t == "toolUseEvent").expect("tool");
    assert_eq!(types[last_tool + 1], "assistantResponseEvent", "text follows the tool call");
    assert!(text_of(&events).ends_with("The tool is done; sim-a continues the answer."));

    let (frames, events) = answer(&sim, &token, &with_tools(body("[sim:object-input]"), tools)).await;
    let object_frame = frames.iter().find(|f| f.event_type() == Some("toolUseEvent")).expect("tool frame");
    let payload: Value = serde_json::from_slice(&object_frame.payload).expect("json");
    assert_eq!(payload["input"], json!({"command": "sim"}), "input is an object on the wire");
    assert_eq!(tools_of(&events)[0].2, r#"{"command":"sim"}"#);
}

#[tokio::test]
async fn repeat_thinking_split_utf8_exception_bracket_and_long() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;

    let (_, events) = answer(&sim, &token, &body("[sim:repeat]")).await;
    let texts: Vec<&KiroEvent> = events.iter().filter(|e| matches!(e, KiroEvent::Text(_))).collect();
    assert_eq!(
        texts,
        [&KiroEvent::Text("6".into()), &KiroEvent::Text("6".into()), &KiroEvent::Text("6".into())]
    );

    let (_, events) = answer(&sim, &token, &body("[sim:thinking]")).await;
    let text = text_of(&events);
    assert!(text.starts_with("<thinking>\nThe user wants a simulated answer from sim-a"), "{text}");
    assert!(text.contains("</thinking>\n\nHello from sim-a!"), "{text}");
    assert_eq!(events[0], KiroEvent::Text("<thin".into()), "the start tag is split across frames");

    // Thinking asked for in the prompt, the way proxies inject it: the answer thinks first.
    let (_, events) =
        answer(&sim, &token, &body("<thinking_mode>adaptive</thinking_mode> [sim:repeat]")).await;
    assert!(text_of(&events).starts_with("<thinking>") && text_of(&events).ends_with("</thinking>\n\n666"));

    // Split UTF-8: the frames decode to the full text, and the raw body splits a character
    // across two writes (checked by decoding each frame's bytes: the frames are intact).
    let (_, events) = answer(&sim, &token, &body("[sim:split-utf8]")).await;
    assert_eq!(text_of(&events), "Grüße aus sim-a: 你好，世界！🦀 naïve café ✓");

    let (frames, events) = answer(&sim, &token, &body("[sim:exception]")).await;
    let last = frames.last().expect("frames");
    assert_eq!(last.message_type(), Some("exception"));
    assert_eq!(last.exception_type(), Some("ContentLengthExceededException"));
    assert!(
        matches!(events.last(), Some(KiroEvent::Exception { kind, message }) if kind == "ContentLengthExceededException" && message == "Response exceeded length")
    );
    assert!(!event_types(&frames).contains(&"meteringEvent".to_owned()), "no trailer after an exception");

    let (_, events) = answer(&sim, &token, &body("[sim:bracket]")).await;
    assert!(
        text_of(&events).contains(r#"[Called get_weather with args: {"city":"Paris","unit":"celsius"}]"#)
    );

    let (frames, _) = answer(&sim, &token, &body("[sim:long:50]")).await;
    assert_eq!(frames.iter().filter(|f| f.event_type() == Some("assistantResponseEvent")).count(), 50);
}

#[test]
fn split_utf8_pieces_cut_inside_a_character() {
    let frame = encode_event("assistantResponseEvent", json!({"content": "aé"}).to_string().as_bytes());
    let pieces = split_inside_utf8(vec![frame.clone()]);
    assert_eq!(pieces.len(), 2);
    assert_eq!(pieces[0].last(), Some(&0xC3), "first piece ends with the lead byte of é");
    let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
    assert_eq!(joined, frame.to_vec());
}

#[tokio::test]
async fn tool_results_get_an_acknowledgement() {
    let sim = start("sim-b").await;
    let token = sim.issue_credentials(HOUR).access_token;
    sim.set_scenario(Scenario::Tool);
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let request = json!({
        "conversationState": {
            "conversationId": "c1",
            "chatTriggerType": "MANUAL",
            "history": [
                {"userInputMessage": {"content": "weather?", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"}},
                {"assistantResponseMessage": {"content": "checking", "toolUses": [
                    {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}]}}
            ],
            "currentMessage": {"userInputMessage": {
                "content": "Tool results provided.", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR",
                "userInputMessageContext": {
                    "tools": [tool_spec("get_weather", schema)],
                    "toolResults": [{"toolUseId": "tooluse_1", "content": [{"text": "sunny, 21C"}], "status": "success"}]
                }
            }}
        }
    });
    let (_, events) = answer(&sim, &token, &request).await;
    assert!(tools_of(&events).is_empty(), "no further tool call: the loop ends");
    assert_eq!(
        text_of(&events),
        "Received 1 tool result(s) (tooluse_1). First result: \"sunny, 21C\". All done, answered by sim-b."
    );
}

#[tokio::test]
async fn bad_or_missing_bearer_is_rejected_with_the_kiro_text() {
    let sim = start("sim-a").await;
    let response = generate(&sim, "aoa-not-issued", &body("hi")).await;
    assert_eq!(response.headers()["x-amzn-errortype"], "AccessDeniedException");
    let (status, value) = error_body(response).await;
    assert_eq!(status, 403);
    assert_eq!(value["message"], BEARER_INVALID_MESSAGE);
    assert_eq!(value["__type"], "com.amazon.aws.codewhisperer#AccessDeniedException");

    let response = client()
        .post(format!("{}/generateAssistantResponse", sim.base_url()))
        .json(&body("hi"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 403);

    let creds = sim.issue_credentials(HOUR);
    sim.expire_access_tokens();
    assert_eq!(generate(&sim, &creds.access_token, &body("hi")).await.status(), 403);
    assert_eq!(sim.stats().auth_rejected, 3);
    assert_eq!(sim.stats().streams_started, 0);
}

#[tokio::test]
async fn social_refresh_issues_a_working_token_and_revokes_the_old_one() {
    let sim = start("sim-a").await;
    let creds = sim.issue_credentials(HOUR);
    assert!(creds.access_token.starts_with("aoa") && creds.refresh_token.starts_with("aor"));
    assert!(creds.refresh_token.len() >= 100);
    let response = client()
        .post(format!("{}/refreshToken", sim.base_url()))
        .json(&json!({"refreshToken": creds.refresh_token}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let refreshed: Value = response.json().await.expect("json");
    assert_eq!(refreshed["expiresIn"], 3600);
    assert_eq!(refreshed["profileArn"], creds.profile_arn.as_str());
    let new_access = refreshed["accessToken"].as_str().expect("accessToken").to_owned();
    assert!(
        refreshed["refreshToken"].as_str().is_some_and(|t| t.starts_with("aor") && t != creds.refresh_token)
    );
    assert_ne!(new_access, creds.access_token);

    assert_eq!(generate(&sim, &new_access, &body("hi")).await.status(), 200);
    assert_eq!(generate(&sim, &creds.access_token, &body("hi")).await.status(), 403);
    assert_eq!(sim.stats().refresh_social, 1);
}

#[tokio::test]
async fn idc_refresh_needs_the_client_registration() {
    let sim = start("sim-a").await;
    let idc = sim.issue_idc_credentials(HOUR);
    let url = format!("{}/token", sim.base_url());
    let send = |body: Value| client().post(&url).json(&body).send();

    let ok = send(json!({"clientId": idc.client_id, "clientSecret": idc.client_secret,
        "refreshToken": idc.credentials.refresh_token, "grantType": "refresh_token"}))
    .await
    .expect("sent");
    assert_eq!(ok.status(), 200);
    let value: Value = ok.json().await.expect("json");
    assert_eq!(value["tokenType"], "Bearer");
    assert_eq!(value["expiresIn"], 3600);
    let access = value["accessToken"].as_str().expect("token");
    assert!(sim.is_access_token_valid(access));
    assert!(!sim.is_access_token_valid(&idc.credentials.access_token));

    let wrong_secret = send(json!({"clientId": idc.client_id, "clientSecret": "nope",
        "refreshToken": idc.credentials.refresh_token, "grantType": "refresh_token"}))
    .await
    .expect("sent");
    assert_eq!(
        error_body(wrong_secret).await,
        (401, json!({"error": "invalid_client", "error_description": "Invalid client credentials"}))
    );

    // An IdC refresh token is not accepted by the social endpoint.
    let social = client()
        .post(format!("{}/refreshToken", sim.base_url()))
        .json(&json!({"refreshToken": idc.credentials.refresh_token}))
        .send()
        .await
        .expect("sent");
    assert_eq!(social.status(), 400);
}

#[tokio::test]
async fn unknown_refresh_token_and_failing_refresh_give_invalid_grant() {
    let sim = start("sim-a").await;
    let expected = json!({"error": "invalid_grant", "error_description": "Invalid refresh token provided"});
    let refresh = |token: String| {
        client().post(format!("{}/refreshToken", sim.base_url())).json(&json!({"refreshToken": token})).send()
    };
    let response = refresh("aor-unknown".to_owned()).await.expect("sent");
    assert_eq!(error_body(response).await, (400, expected.clone()));

    let creds = sim.issue_credentials(HOUR);
    sim.set_refresh_fails(true);
    let response = refresh(creds.refresh_token.clone()).await.expect("sent");
    assert_eq!(error_body(response).await, (400, expected));
    assert!(sim.is_access_token_valid(&creds.access_token), "a failed refresh revokes nothing");
    sim.set_refresh_fails(false);
    assert_eq!(refresh(creds.refresh_token).await.expect("sent").status(), 200);
}

#[tokio::test]
async fn invalid_bodies_get_the_generic_400() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    let generic = json!({"message": MALFORMED_MESSAGE, "reason": null, "__type": "com.amazon.aws.codewhisperer#ValidationException"});

    let mut consecutive = body("next");
    consecutive["conversationState"]["history"] = json!([
        {"userInputMessage": {"content": "a", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"}},
        {"assistantResponseMessage": {"content": "b"}},
        {"assistantResponseMessage": {"content": "c"}},
    ]);
    assert_eq!(error_body(generate(&sim, &token, &consecutive).await).await, (400, generic.clone()));
    assert!(sim.last_rejection().is_some_and(|r| r.contains("rule 2")), "{:?}", sim.last_rejection());

    let mut no_model = body("hi");
    no_model["conversationState"]["currentMessage"]["userInputMessage"]
        .as_object_mut()
        .expect("object")
        .remove("modelId");
    assert_eq!(error_body(generate(&sim, &token, &no_model).await).await, (400, generic.clone()));

    let not_json = client()
        .post(format!("{}/generateAssistantResponse", sim.base_url()))
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(error_body(not_json).await, (400, generic));
    assert_eq!(sim.stats().validation_rejected, 3);
}

#[tokio::test]
async fn unknown_model_and_oversized_body_have_their_reasons() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    let mut request = body("hi");
    request["conversationState"]["currentMessage"]["userInputMessage"]["modelId"] =
        json!("claude-imaginary-9");
    let (status, value) = error_body(generate(&sim, &token, &request).await).await;
    assert_eq!((status, value["reason"].as_str()), (400, Some("INVALID_MODEL_ID")));

    for model in
        ["CLAUDE_SONNET_4_20250514_V1_0", "CLAUDE_3_7_SONNET_20250219_V1_0", "claude-opus-4.8", "auto"]
    {
        request["conversationState"]["currentMessage"]["userInputMessage"]["modelId"] = json!(model);
        assert_eq!(generate(&sim, &token, &request).await.status(), 200, "{model}");
    }

    sim.set_max_body_bytes(100);
    let (status, value) = error_body(generate(&sim, &token, &body(&"x".repeat(200))).await).await;
    assert_eq!(status, 400);
    assert_eq!(value["message"], "Input is too long.");
    assert_eq!(value["reason"], "CONTENT_LENGTH_EXCEEDS_THRESHOLD");
}

#[tokio::test]
async fn scripted_failures_come_first_then_success() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    sim.fail_next(1, ErrorKind::Status500);
    sim.fail_next(1, ErrorKind::Throttle429);
    sim.fail_next(1, ErrorKind::Quota402);
    sim.fail_next(1, ErrorKind::Capacity400);
    sim.fail_next(1, ErrorKind::Forbidden403);
    // A health probe does not consume scripted failures.
    assert_eq!(client().get(format!("{}/health", sim.base_url())).send().await.expect("sent").status(), 200);

    let (status, value) = error_body(generate(&sim, &token, &body("hi")).await).await;
    assert_eq!(status, 500);
    assert!(value["message"].as_str().is_some_and(|m| m.starts_with("Encountered unexpectedly high load")));

    let throttled = generate(&sim, &token, &body("hi")).await;
    assert_eq!(throttled.headers()[header::RETRY_AFTER], "2");
    let (status, value) = error_body(throttled).await;
    assert_eq!(
        (status, value["__type"].as_str()),
        (429, Some("com.amazon.aws.codewhisperer#ThrottlingException"))
    );

    let (status, value) = error_body(generate(&sim, &token, &body("hi")).await).await;
    assert_eq!((status, value["reason"].as_str()), (402, Some("MONTHLY_REQUEST_COUNT")));
    let (status, value) = error_body(generate(&sim, &token, &body("hi")).await).await;
    assert_eq!((status, value["reason"].as_str()), (400, Some("INSUFFICIENT_MODEL_CAPACITY")));
    let (status, value) = error_body(generate(&sim, &token, &body("hi")).await).await;
    assert_eq!((status, value["message"].as_str()), (403, Some(BEARER_INVALID_MESSAGE)));

    assert_eq!(sim.pending_scripted_failures(), 0);
    assert_eq!(generate(&sim, &token, &body("hi")).await.status(), 200);
    assert_eq!(sim.stats().faults_injected, 5);
}

#[tokio::test]
async fn random_faults_are_reproducible_from_the_seed() {
    async fn outcomes(seed: u64) -> Vec<u16> {
        let sim = SimUpstream::start(SimOptions { seed, error_rate: 0.5, ..SimOptions::default() })
            .await
            .expect("start");
        let token = sim.issue_credentials(HOUR).access_token;
        let mut out = Vec::new();
        for _ in 0..16 {
            out.push(generate(&sim, &token, &body("hi")).await.status().as_u16());
        }
        out
    }
    let a = outcomes(42).await;
    assert_eq!(a, outcomes(42).await);
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
}

#[tokio::test]
async fn down_refuses_connections_and_up_serves_on_the_same_port() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    let port = sim.addr().port();
    let client = client();
    let health = format!("{}/health", sim.base_url());
    assert_eq!(client.get(&health).send().await.expect("up").status(), 200);

    sim.set_down(true);
    sim.wait_closed().await;
    assert!(sim.is_down());
    let err = client.get(&health).send().await.expect_err("down");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    assert!(TcpStream::connect(sim.addr()).await.is_err(), "connection refused while down");

    sim.set_down(false);
    sim.wait_listening().await;
    assert_eq!(sim.addr().port(), port);
    assert_eq!(client.get(&health).send().await.expect("up again").status(), 200);
    assert_eq!(generate(&sim, &token, &body("hi")).await.status(), 200);
}

#[tokio::test]
async fn going_down_cuts_a_stream_in_flight() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    sim.set_chunk_delay(Duration::from_millis(20));
    let mut response = generate(&sim, &token, &body("[sim:long:1000]")).await;
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.expect("first chunk").expect("some bytes");
    assert!(!first.is_empty());
    assert_eq!(sim.stats().in_flight, 1);
    sim.set_down(true);
    let mut result = Ok(None);
    for _ in 0..1000 {
        result = response.chunk().await;
        if !matches!(result, Ok(Some(_))) {
            break;
        }
    }
    assert!(result.is_err(), "the body ends with an error, not cleanly: {result:?}");
    sim.wait_closed().await;
    let stats = sim.stats();
    assert_eq!((stats.streams_completed, stats.in_flight), (0, 0), "the cut stream was dropped");
}

#[tokio::test]
async fn hang_never_answers_until_the_sim_goes_down() {
    let sim = Arc::new(start("sim-a").await);
    let token = sim.issue_credentials(HOUR).access_token;
    sim.fail_next(1, ErrorKind::Hang);
    let request = tokio::spawn({
        let sim = sim.clone();
        async move {
            client()
                .post(format!("{}/generateAssistantResponse", sim.base_url()))
                .bearer_auth(token)
                .json(&body("hi"))
                .send()
                .await
        }
    });
    while sim.pending_scripted_failures() > 0 {
        tokio::task::yield_now().await;
    }
    assert!(!request.is_finished());
    sim.set_down(true);
    let result = request.await.expect("task");
    assert!(result.is_err(), "no answer, the connection is reset: {result:?}");
    sim.wait_closed().await;
    assert_eq!(sim.stats().in_flight, 0);
}

#[tokio::test]
async fn corrupt_frame_is_rejected_by_the_decoder() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    sim.fail_next(1, ErrorKind::CorruptFrame);
    let bytes = generate(&sim, &token, &body("hi")).await.bytes().await.expect("body");
    let (frames, err, _) = decode(&bytes);
    assert_eq!(frames.len(), 2, "two good frames before the corrupt one");
    assert!(matches!(err, Some(FrameError::MessageCrc { .. })), "{err:?}");
}

#[tokio::test]
async fn cut_stream_ends_mid_frame() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    sim.fail_next(1, ErrorKind::CutStream);
    let response = generate(&sim, &token, &body("hi")).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("the body ends cleanly at the HTTP level");
    let (frames, err, left) = decode(&bytes);
    assert_eq!(frames.len(), 2);
    assert!(err.is_none());
    assert!(left > 0, "a partial frame is left in the decoder");
}

#[tokio::test]
async fn aws_json_target_endpoint() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    let post = |target: &'static str| {
        client()
            .post(format!("{}/", sim.base_url()))
            .bearer_auth(&token)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", target)
            .json(&body("hi"))
            .send()
    };
    let ok = post(GENERATE_TARGET).await.expect("sent");
    assert_eq!(ok.status(), 200);
    assert!(!ok.bytes().await.expect("body").is_empty());
    let wrong = post("CodeWhispererService.GenerateAssistantResponse").await.expect("sent");
    assert_eq!(wrong.status(), 400);
    assert_eq!(wrong.headers()["x-amzn-errortype"], "UnknownOperationException");
}

#[tokio::test]
async fn usage_limits_models_and_health() {
    let sim = start("sim-a").await;
    let token = sim.issue_credentials(HOUR).access_token;
    let client = client();
    answer(&sim, &token, &body("hi")).await;
    answer(&sim, &token, &body("hi")).await;

    let url = format!("{}/getUsageLimits?origin=AI_EDITOR&resourceType=AGENTIC_REQUEST", sim.base_url());
    assert_eq!(client.get(&url).send().await.expect("sent").status(), 403, "bearer required");
    let usage: Value =
        client.get(&url).bearer_auth(&token).send().await.expect("sent").json().await.expect("json");
    assert_eq!(usage["subscriptionInfo"]["subscriptionTitle"], "KIRO PRO");
    let entry = &usage["usageBreakdownList"][0];
    assert_eq!(entry["resourceType"], "AGENTIC_REQUEST");
    assert_eq!(entry["currentUsage"], 2);
    assert_eq!(entry["usageLimit"], 1000);
    assert!(entry["currentUsageWithPrecision"].is_f64() && entry["nextDateReset"].is_f64());
    assert!(usage["daysUntilReset"].as_i64().is_some_and(|d| (0..=31).contains(&d)));
    assert!(usage["nextDateReset"].as_f64().is_some_and(|t| t > 1.7e9));

    let models: Value = client
        .get(format!("{}/ListAvailableModels?origin=AI_EDITOR", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(models["defaultModel"]["modelId"], "auto");
    let ids: Vec<&str> =
        models["models"].as_array().expect("array").iter().filter_map(|m| m["modelId"].as_str()).collect();
    assert!(ids.contains(&"claude-opus-4.8") && ids.contains(&"claude-sonnet-4.5"));
    assert!(models["models"][0]["tokenLimits"]["maxInputTokens"].is_u64());

    let health = client.get(format!("{}/health", sim.base_url())).send().await.expect("sent");
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.expect("json"), json!({"status": "ok"}));

    // Faults reach the usage and health endpoints too (but not refresh).
    sim.set_error_kind(ErrorKind::Status500);
    sim.set_error_rate(1.0);
    assert_eq!(client.get(format!("{}/health", sim.base_url())).send().await.expect("sent").status(), 500);
    assert_eq!(client.get(&url).bearer_auth(&token).send().await.expect("sent").status(), 500);
    let stats = sim.stats();
    assert_eq!((stats.usage_limits, stats.list_models, stats.health), (3, 1, 2));
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let sim = start("sim-a").await;
    let addr = sim.addr();
    assert!(TcpStream::connect(addr).await.is_ok());
    sim.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[test]
fn token_files_have_the_kiro_ide_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = SimCredentials {
        access_token: "aoaAAA".into(),
        refresh_token: format!("aor{}", "B".repeat(120)),
        profile_arn: "arn:aws:codewhisperer:us-east-1:123456789012:profile/ABCDEFGHIJKL".into(),
        expires_at: DateTime::parse_from_rfc3339("2030-01-02T03:04:05.678Z")
            .expect("date")
            .with_timezone(&Utc),
    };
    let path = dir.path().join("sso/cache/kiro-auth-token.json");
    write_social_token_file(&path, &creds).expect("written");
    let value: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    assert_eq!(
        value,
        json!({"accessToken": "aoaAAA", "refreshToken": creds.refresh_token, "expiresAt": "2030-01-02T03:04:05.678Z",
               "profileArn": creds.profile_arn, "authMethod": "social", "provider": "Github"})
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let idc = SimIdcCredentials {
        credentials: creds,
        client_id: "client123".into(),
        client_secret: "secret456".into(),
        client_id_hash: "e87895ae36d9539303a0bcd27feb465a60aeb433".into(),
        client_expires_at: DateTime::parse_from_rfc3339("2030-03-01T00:00:00Z")
            .expect("date")
            .with_timezone(&Utc),
        region: "us-east-1".into(),
    };
    let idc_path = dir.path().join("idc/kiro-auth-token.json");
    let registration = write_idc_token_file(&idc_path, &idc).expect("written");
    assert_eq!(registration, dir.path().join("idc/e87895ae36d9539303a0bcd27feb465a60aeb433.json"));
    let token: Value = serde_json::from_slice(&std::fs::read(&idc_path).expect("read")).expect("json");
    assert_eq!(token["authMethod"], "IdC");
    assert_eq!(token["clientIdHash"], idc.client_id_hash.as_str());
    assert!(token.get("profileArn").is_none());
    let reg: Value = serde_json::from_slice(&std::fs::read(&registration).expect("read")).expect("json");
    assert_eq!(
        reg,
        json!({"clientId": "client123", "clientSecret": "secret456", "expiresAt": "2030-03-01T00:00:00.000Z"})
    );
    let leftovers = std::fs::read_dir(dir.path().join("idc")).expect("dir").count();
    assert_eq!(leftovers, 2, "no temp files left behind");
}

#[test]
fn markers_parse() {
    assert_eq!(Scenario::find_marker("please [sim:two-tools] now", 9), Some(Scenario::TwoTools));
    assert_eq!(Scenario::find_marker("[sim:nope] [sim:long]", 9), Some(Scenario::Long(9)));
    assert_eq!(Scenario::find_marker("[sim:long:12]", 9), Some(Scenario::Long(12)));
    assert_eq!(Scenario::find_marker("[sim:tool", 9), None);
    assert_eq!(Scenario::find_marker("no marker", 9), None);
    for s in Scenario::ALL {
        assert_eq!(Scenario::find_marker(&s.marker(), 1), Some(s), "{s:?}");
    }
}

#[test]
fn sample_input_follows_the_schema() {
    let schema = json!({"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "string", "enum": ["x", "y"]}, "d": {"type": "array"}
    }, "required": ["a", "b", "c", "d", "missing"]});
    assert_eq!(sample_input(Some(&schema)), json!({"a": 1, "b": true, "c": "x", "d": []}));
    assert_eq!(sample_input(Some(&json!({"type": "object"}))), json!({}));
    assert_eq!(sample_input(None), json!({}));
}

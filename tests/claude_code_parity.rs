//! Issue 13 end to end, through the real proxy socket to simulated upstreams: WebSearch over
//! Kiro's MCP endpoint, `/v1/models`, usage from `metadataEvent`, tool-result images, newer
//! request shapes and the request identity fields.

mod common;

use ccr::demo::pool::{Account, SimPool};
use ccr::demo::upstream::{Endpoint, McpFailure, RESULTS_PER_QUERY, SimOptions, SimTier};
use common::*;
use serde_json::{Value, json};

/// Claude Code's WebSearch sub-request: `v197` forces the tool, `v332` leaves `tool_choice` auto.
fn search_request(cli: &str, query: &str, stream: bool) -> Value {
    let (tool_choice, system) = match cli {
        "v197" => (
            json!({"type": "tool", "name": "web_search"}),
            "You are an assistant for performing a web search tool use",
        ),
        _ => (
            json!({"type": "auto"}),
            "You are an assistant for performing a web search tool use. Search the web and answer with the results you found, citing sources.",
        ),
    };
    json!({
        "model": "claude-opus-4-8",
        "messages": [{"role": "user", "content": [{"type": "text", "text": format!("Perform a web search for the query: {query}")}]}],
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": system}
        ],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}],
        "tool_choice": tool_choice,
        "metadata": {"user_id": "{\"device_id\":\"d\",\"session_id\":\"ba0ad3ce-bfa5-4235-bae9-0465cfe6a13a\"}"},
        "max_tokens": 64000,
        "thinking": {"type": "disabled"},
        "output_config": {"effort": "high"},
        "stream": stream
    })
}

/// The content blocks of an answer, streaming (rebuilt from SSE) or JSON.
fn blocks(body: &str, stream: bool) -> (Vec<Value>, Value, String) {
    if !stream {
        let msg: Value = serde_json::from_str(body).unwrap();
        return (
            msg["content"].as_array().unwrap().clone(),
            msg["usage"].clone(),
            msg["stop_reason"].as_str().unwrap_or("").to_owned(),
        );
    }
    let mut out: Vec<Value> = Vec::new();
    let mut usage = Value::Null;
    let mut stop = String::new();
    for (event, data) in sse(body) {
        match event.as_str() {
            "content_block_start" => out.push(data["content_block"].clone()),
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap() as usize;
                match data["delta"]["type"].as_str() {
                    Some("text_delta") => {
                        let t = format!(
                            "{}{}",
                            out[i]["text"].as_str().unwrap(),
                            data["delta"]["text"].as_str().unwrap()
                        );
                        out[i]["text"] = json!(t);
                    }
                    Some("input_json_delta") => {
                        out[i]["input"] =
                            serde_json::from_str(data["delta"]["partial_json"].as_str().unwrap()).unwrap();
                    }
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            "message_delta" => {
                usage = data["usage"].clone();
                stop = data["delta"]["stop_reason"].as_str().unwrap().to_owned();
            }
            "error" => panic!("error event: {data}"),
            _ => {}
        }
    }
    (out, usage, stop)
}

fn types(blocks: &[Value]) -> Vec<&str> {
    blocks.iter().map(|b| b["type"].as_str().unwrap()).collect()
}

fn assert_search_answer(body: &str, stream: bool, query: &str) {
    let (content, usage, stop) = blocks(body, stream);
    assert_eq!(types(&content), ["server_tool_use", "web_search_tool_result", "text"], "{body}");
    let call = &content[0];
    assert!(call["id"].as_str().unwrap().starts_with("srvtoolu_"));
    assert_eq!(call["name"], "web_search");
    assert_eq!(call["input"], json!({"query": query}));
    let result = &content[1];
    assert_eq!(result["tool_use_id"], call["id"]);
    let results = result["content"].as_array().unwrap();
    assert_eq!(results.len(), RESULTS_PER_QUERY);
    assert_eq!(results[0]["type"], "web_search_result");
    assert_eq!(results[0]["title"], format!("Simulated result 1 for {query}"));
    assert!(results[0]["url"].as_str().unwrap().starts_with("https://upstream-0.sim.invalid/"));
    assert!(results[0]["encrypted_content"].as_str().unwrap().starts_with("Snippet 1 from upstream-0"));
    assert_eq!(results[0]["page_age"], "January 15, 2026");
    let text = content[2]["text"].as_str().unwrap();
    assert!(text.starts_with("According to the search results:"), "{text}");
    assert!(
        text.contains(&format!("Simulated result 3 for {query}")),
        "the model's summary names the results: {text}"
    );
    assert_eq!(usage["server_tool_use"]["web_search_requests"], 1);
    assert_eq!(stop, "end_turn");
}

#[tokio::test]
async fn claude_code_web_search_sub_requests_get_real_results_streaming_and_json() {
    let h = start(solo_pool()).await;
    for (cli, stream) in [("v197", true), ("v197", false), ("v332", true), ("v332", false)] {
        let (status, headers, body) = h.call(&search_request(cli, "weather in Paris today", stream)).await;
        assert_eq!(status, 200, "{cli} {stream}: {body}");
        assert_eq!(headers["x-ccr-category"], "search");
        assert_search_answer(&body, stream, "weather in Paris today");
    }
    let up = &h.upstreams[0];
    assert_eq!(up.stats().searches, 4, "one MCP search per sub-request");
    // The MCP call: the IDE's JSON-RPC shape, the account's token and profile.
    let mcp = up.last_request_to(Endpoint::Mcp).unwrap();
    assert!(mcp.header("authorization").unwrap().starts_with("Bearer aoa"));
    assert!(mcp.header("x-amzn-kiro-profile-arn").unwrap().starts_with("arn:aws:codewhisperer:"));
    let rpc = mcp.json().unwrap();
    assert_eq!(rpc["jsonrpc"], "2.0");
    assert_eq!(rpc["method"], "tools/call");
    assert_eq!(
        rpc["params"],
        json!({"name": "web_search", "arguments": {"query": "weather in Paris today"}})
    );
    assert!(rpc["id"].as_str().unwrap().starts_with("web_search_tooluse_"));
    // The model got the results as a tool result of its own web_search tool, not the server tool.
    let kiro = up.last_request_to(Endpoint::Generate).unwrap().json().unwrap();
    assert!(!kiro.to_string().contains("web_search_20250305"));
    let current = &kiro["conversationState"]["currentMessage"]["userInputMessage"];
    let result = &current["userInputMessageContext"]["toolResults"][0]["content"][0]["text"];
    assert!(result.as_str().unwrap().starts_with("Web search results for query: \"weather in Paris today\""));
    h.shutdown().await;
}

#[tokio::test]
async fn the_model_drives_searches_up_to_max_uses() {
    let h = start(solo_pool()).await;
    for stream in [true, false] {
        let before = h.upstreams[0].stats().searches;
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream,
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
            "messages": [{"role": "user", "content": "Please search the web for\nrust release [sim:searches:3]"}]
        });
        let (status, _, text) = h.call(&body).await;
        assert_eq!(status, 200, "{text}");
        let (content, usage, stop) = blocks(&text, stream);
        assert_eq!(
            types(&content),
            [
                "text",
                "server_tool_use",
                "web_search_tool_result",
                "text",
                "server_tool_use",
                "web_search_tool_result",
                "text",
                "server_tool_use",
                "web_search_tool_result",
                "text"
            ],
            "{text}"
        );
        assert_eq!(content[0]["text"], "I'll search the web for that.");
        assert_eq!(content[4]["input"]["query"], "rust release [sim:searches:3] (more 2)");
        assert_eq!(
            content[8]["content"],
            json!({"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"})
        );
        assert_eq!(usage["server_tool_use"]["web_search_requests"], 2);
        assert_eq!(h.upstreams[0].stats().searches - before, 2, "max_uses searches ran, not more");
        assert_eq!(stop, "end_turn");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn an_mcp_failure_is_an_anthropic_error_and_fails_over_before_the_first_byte() {
    let h = start(solo_pool()).await;
    for (failure, stream, needle) in [
        (McpFailure::RpcError, true, "MCP error -32603"),
        (McpFailure::ToolError, false, "rate limit of the search backend"),
        (McpFailure::Status500, true, "upstream answered 500"),
    ] {
        h.upstreams[0].set_mcp_failure(Some(failure));
        {
            let status = 502;
            let (got, _, body) = h.call(&search_request("v197", "anything", stream)).await;
            assert_eq!(got, status, "{failure:?}: {body}");
            let err: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(err["type"], "error");
            assert_eq!(err["error"]["type"], "api_error");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("web search failed"), "{message}");
            assert!(message.contains(needle), "{failure:?}: {message}");
        }
    }
    h.shutdown().await;

    // Two accounts: the search rule's first account fails its search, the second answers.
    let h = start(seed_pool()).await;
    h.upstreams[1].set_mcp_failure(Some(McpFailure::RpcError));
    h.upstreams[0].set_mcp_failure(Some(McpFailure::RpcError));
    let (status, _, _) = h.call(&search_request("v197", "q", false)).await;
    assert_eq!(status, 502, "both fail");
    h.upstreams[0].set_mcp_failure(None);
    let mut answered_by_0 = false;
    for _ in 0..4 {
        let (status, headers, body) = h.call(&search_request("v197", "failover", true)).await;
        assert_eq!(status, 200, "{body}");
        if headers["x-ccr-provider"] == "codewhisperer-primary" {
            answered_by_0 = true;
        }
        assert_search_answer(&body, true, "failover");
    }
    assert!(answered_by_0);
    h.shutdown().await;
}

#[tokio::test]
async fn web_search_next_to_client_tools_keeps_the_client_tools() {
    let h = start(solo_pool()).await;
    for stream in [true, false] {
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream,
            "tools": [
                {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
            ],
            "messages": [{"role": "user", "content": "list the files [sim:tool]"}]
        });
        let (status, _, text) = h.call(&body).await;
        assert_eq!(status, 200, "{text}");
        let (content, usage, stop) = blocks(&text, stream);
        assert_eq!(types(&content), ["text", "tool_use"], "{text}");
        assert_eq!(content[1]["name"], "Bash");
        assert_eq!(content[1]["input"], json!({"command": "sim"}));
        assert_eq!(stop, "tool_use");
        assert_eq!(usage["server_tool_use"]["web_search_requests"], 0);
        // And the conversation continues with the client tool's result.
        let next = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": false,
            "tools": body["tools"],
            "messages": [
                body["messages"][0],
                {"role": "assistant", "content": [content[0], content[1]]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": content[1]["id"], "content": "a.txt"}]}
            ]
        });
        let (status, _, text) = h.call(&next).await;
        assert_eq!(status, 200, "{text}");
        let (content, _, stop) = blocks(&text, false);
        assert!(content[0]["text"].as_str().unwrap().contains("a.txt"), "{text}");
        assert_eq!(stop, "end_turn");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn earlier_search_blocks_in_history_reach_kiro_as_text() {
    let h = start(solo_pool()).await;
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "what is new?"},
            {"role": "assistant", "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "news"}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
                    {"type": "web_search_result", "title": "Big news", "url": "https://n.invalid/1", "encrypted_content": "xyz"}]},
                {"type": "text", "text": "Big news happened."}
            ]},
            {"role": "user", "content": "tell me more"}
        ]
    });
    let (status, _, text) = h.call(&body).await;
    assert_eq!(status, 200, "{text}");
    let kiro = h.upstreams[0].last_request_to(Endpoint::Generate).unwrap().json().unwrap();
    let history = kiro["conversationState"]["history"].to_string();
    assert!(history.contains("[web_search: news]"), "{history}");
    assert!(history.contains("- Big news (https://n.invalid/1)"), "{history}");
    h.shutdown().await;
}

#[tokio::test]
async fn v1_models_lists_the_accounts_models_in_anthropic_form_and_maps_them_back() {
    let pool = SimPool::seed()
        .provider_defaults(json!({"firstByteTimeout": 5000, "idleTimeout": 5000}))
        .account("codewhisperer-primary", Account::new().sim(SimOptions { tier: SimTier::Free, ..sim(0) }))
        .account("codewhisperer-secondary", Account::new().sim(SimOptions { tier: SimTier::Pro, ..sim(1) }));
    let h = start(pool).await;
    let get = |path: &str| {
        let url = h.url(path);
        let http = h.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, list) = get("/v1/models?limit=1000").await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for id in
        ["claude-opus-4-8", "claude-opus-4-6[1m]", "claude-sonnet-4-5", "claude-haiku-4-5", "deepseek-3.2"]
    {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    assert!(!ids.contains(&"auto"));
    assert_eq!(ids[0], "claude-opus-4-8", "newest first");
    let first = &list["data"][0];
    assert_eq!(first["type"], "model");
    assert_eq!(first["display_name"], "Claude Opus 4.8", "built from the id when modelName is the id");
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], "claude-opus-4-8");
    assert_eq!(list["last_id"], *ids.last().unwrap());
    let (_, page) = get("/v1/models?limit=2").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let (_, next) = get(&format!("/v1/models?limit=2&after_id={}", page["last_id"].as_str().unwrap())).await;
    assert_eq!(next["first_id"], ids[2]);

    let (status, one) = get("/v1/models/claude-opus-4-6%5B1m%5D").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], "claude-opus-4-6[1m]");
    let (status, missing) = get("/v1/models/claude-nonexistent-9").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["type"], "not_found_error");
    let lists = h.upstreams[0].stats().list_models + h.upstreams[1].stats().list_models;
    assert_eq!(lists, 2, "one ListAvailableModels per account, then the cache");
    let listed = h.upstreams[0].last_request_to(Endpoint::ListModels).unwrap();
    assert!(listed.query.as_deref().unwrap().contains("origin=AI_EDITOR"));

    // Every listed id sent back as a model reaches Kiro as exactly the id it came from.
    let single = start(solo_pool()).await;
    let (_, list) = {
        let r = single.http.get(single.url("/v1/models?limit=1000")).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let kiro_ids = ["claude-opus-4.6-1m", "claude-sonnet-4.5", "deepseek-3.2", "claude-haiku-4.5"];
    for (anthropic, kiro) in
        ["claude-opus-4-6[1m]", "claude-sonnet-4-5", "deepseek-3.2", "claude-haiku-4-5"].iter().zip(kiro_ids)
    {
        assert!(list["data"].to_string().contains(anthropic), "{anthropic}");
        let mut body = background_turn("hi");
        body["model"] = json!(anthropic);
        let (status, _, text) = single.call(&body).await;
        assert_eq!(status, 200, "{anthropic}: {text}");
        let sent = single.upstreams[0].last_request_to(Endpoint::Generate).unwrap().json().unwrap();
        assert_eq!(
            sent["conversationState"]["currentMessage"]["userInputMessage"]["modelId"], kiro,
            "{anthropic}"
        );
    }
    single.shutdown().await;
    h.shutdown().await;

    // A free account alone lists no Opus.
    let free = start(solo_pool_with(SimOptions { tier: SimTier::Free, ..sim(0) })).await;
    let r = free.http.get(free.url("/v1/models?limit=1000")).send().await.unwrap();
    let list: Value = r.json().await.unwrap();
    assert!(!list["data"].to_string().contains("opus"), "{list}");
    free.shutdown().await;
}

#[tokio::test]
async fn usage_comes_from_metadata_event_with_cache_tokens() {
    let h = start(solo_pool()).await;
    h.upstreams[0].set_metadata_event(true);
    h.upstreams[0].set_cache_tokens(1000, 50);
    let (status, _, body) = h.call(&main_turn("say hello", false)).await;
    assert_eq!(status, 200, "{body}");
    let msg: Value = serde_json::from_str(&body).unwrap();
    let usage = &msg["usage"];
    assert_eq!(usage["cache_read_input_tokens"], 1000);
    assert_eq!(usage["cache_creation_input_tokens"], 50);
    assert!(usage["input_tokens"].as_u64().unwrap() > 0);
    assert!(usage["output_tokens"].as_u64().unwrap() > 0);
    let (_, _, body) = h.call(&main_turn("say hello", true)).await;
    let delta = sse(&body).into_iter().find(|(e, _)| e == "message_delta").unwrap().1;
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 1000);
    assert_eq!(delta["usage"]["cache_creation_input_tokens"], 50);
    // Without metadataEvent: the estimate, and no cache fields.
    h.upstreams[0].set_metadata_event(false);
    let (_, _, body) = h.call(&main_turn("say hello", false)).await;
    let msg: Value = serde_json::from_str(&body).unwrap();
    assert!(msg["usage"].get("cache_read_input_tokens").is_none(), "{msg}");
    h.shutdown().await;
}

#[tokio::test]
async fn newer_request_shapes_are_accepted_and_what_kiro_rejects_never_reaches_it() {
    let h = start(solo_pool()).await;
    let body = json!({
        "model": "claude-opus-4-6[1m]",
        "max_tokens": 32000,
        "stream": true,
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "xhigh", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "some_future_field": {"nested": [1, null, {"x": true}]},
        "tools": [
            {"name": "Lookup", "description": "Look up a word", "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}},
             "input_examples": [{"word": "serendipity"}], "cache_control": {"type": "ephemeral"}},
            {"name": "WebSearch", "description": "Search", "input_schema": {"type": "object"}, "defer_loading": true},
            {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"}
        ],
        "messages": [
            {"role": "user", "content": "find tools"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {"query": "select:WebSearch"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "tool_reference", "tool_name": "WebSearch"}]},
                                         {"type": "text", "text": "now go", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
        ]
    });
    let response = h
        .http
        .post(h.url("/v1/messages?beta=true"))
        .header(
            "anthropic-beta",
            "claude-code-20250219,some-future-beta-2027-01-01,per-turn-control-2026-07-01",
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    assert_eq!(sse(&text).last().unwrap().0, "message_stop", "{text}");
    let sent = h.upstreams[0].last_request_to(Endpoint::Generate).unwrap();
    let raw = String::from_utf8_lossy(&sent.body).into_owned();
    for absent in [
        "context_management",
        "input_examples",
        "defer_loading",
        "some_future_field",
        "cache_control",
        "tool_search_tool_regex",
        "output_config",
        "json_schema",
        "anthropic-beta",
    ] {
        assert!(!raw.contains(absent), "{absent} reached Kiro: {raw}");
    }
    assert!(sent.header("anthropic-beta").is_none());
    let kiro = sent.json().unwrap();
    let current = &kiro["conversationState"]["currentMessage"]["userInputMessage"];
    assert_eq!(current["modelId"], "claude-opus-4.6-1m");
    let tools = current["userInputMessageContext"]["tools"].to_string();
    assert!(tools.contains("Input examples:\\n- {\\\"word\\\":\\\"serendipity\\\"}"), "{tools}");
    assert!(raw.contains("[Tool reference: WebSearch]"));
    assert!(
        raw.contains("<thinking_effort>high</thinking_effort>"),
        "xhigh is sent as the highest effort Kiro knows"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_tool_result_image_reaches_kiro_as_an_image() {
    let h = start(solo_pool()).await;
    let png =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let mut body = main_turn("what is in the screenshot?", false);
    body["messages"] = json!([
        {"role": "user", "content": "read /tmp/shot.png"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_img", "name": "Bash", "input": {"command": "cat shot.png"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_img", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]}]}
    ]);
    let (status, _, text) = h.call(&body).await;
    assert_eq!(status, 200, "{text}");
    let kiro = h.upstreams[0].last_request_to(Endpoint::Generate).unwrap().json().unwrap();
    let current = &kiro["conversationState"]["currentMessage"]["userInputMessage"];
    assert_eq!(current["images"], json!([{"format": "png", "source": {"bytes": png}}]));
    assert_eq!(
        current["userInputMessageContext"]["toolResults"][0]["content"][0]["text"],
        "[Image: attached to this message as image 1]"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn requests_carry_the_kiro_ide_identity_fields() {
    let h = start(solo_pool()).await;
    let mut seen = Vec::new();
    for text in ["first", "second"] {
        let (status, _, body) = h.call(&main_turn(text, false)).await;
        assert_eq!(status, 200, "{body}");
        let sent = h.upstreams[0].last_request_to(Endpoint::Generate).unwrap();
        assert_eq!(sent.header("x-amzn-kiro-agent-mode"), Some("vibe"));
        let state = sent.json().unwrap()["conversationState"].clone();
        assert_eq!(state["agentTaskType"], "vibe");
        assert_eq!(state["chatTriggerType"], "MANUAL");
        assert_eq!(state["conversationId"], "0cf01146-29c8-4564-a7f6-a5a1fde2c575");
        let id = state["agentContinuationId"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        seen.push(id);
    }
    assert_eq!(seen[0], seen[1], "stable per conversation");
    let mut other = main_turn("third", false);
    other["metadata"] = json!({"user_id": "{\"session_id\":\"11111111-2222-4333-8444-555555555555\"}"});
    h.call(&other).await;
    let state =
        h.upstreams[0].last_request_to(Endpoint::Generate).unwrap().json().unwrap()["conversationState"]
            .clone();
    assert_ne!(state["agentContinuationId"].as_str().unwrap(), seen[0]);
    h.shutdown().await;
}

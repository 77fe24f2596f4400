//! Tests of the converter, each converted body run through the §3.5 validator.

use super::*;
use crate::anthropic::types::parse_request;
use serde_json::{Value, json};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../../tests/data/requests/", $name))
    };
}

const SESSION: &str = "6d0c4f8e-2b7a-4f3e-9c1d-8a5b3e2f1c0d";
const LONG_MCP_NAME: &str =
    "mcp__claude_ai_Workspace_Integration__search_shared_drive_documents_by_title_and_owner";

fn req(v: Value) -> MessagesRequest {
    parse_request(v.to_string().as_bytes()).expect("valid request")
}

/// Converts, builds the body, parses it back and runs the §3.5 validator on it.
fn run_with(r: &MessagesRequest, opts: &ConvertOptions) -> (Converted, Value) {
    let converted = convert(r, opts).expect("converts");
    let body = request_body(&converted, None);
    let v: Value = serde_json::from_slice(&body).expect("body is JSON");
    if let Err(e) = check_kiro_body(&v) {
        panic!("{e}\n{v:#}");
    }
    (converted, v)
}

fn run(r: &MessagesRequest) -> (Converted, Value) {
    run_with(r, &ConvertOptions::default())
}

fn run_fixture(text: &str) -> (MessagesRequest, Converted, Value) {
    let r = parse_request(text.as_bytes()).expect("fixture parses");
    let (c, v) = run(&r);
    (r, c, v)
}

fn history(v: &Value) -> Vec<Value> {
    v["conversationState"]["history"].as_array().cloned().unwrap_or_default()
}

fn current(v: &Value) -> &Value {
    &v["conversationState"]["currentMessage"]["userInputMessage"]
}

fn tool_names(v: &Value) -> Vec<String> {
    current(v)["userInputMessageContext"]["tools"]
        .as_array()
        .map(|t| t.iter().map(|t| t["toolSpecification"]["name"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

fn tool_spec<'v>(v: &'v Value, name: &str) -> &'v Value {
    current(v)["userInputMessageContext"]["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["toolSpecification"]["name"] == name))
        .map(|t| &t["toolSpecification"])
        .unwrap_or_else(|| panic!("tool {name} not declared"))
}

fn user_text(v: &Value) -> &str {
    v["userInputMessage"]["content"].as_str().expect("user content")
}

fn assistant_text(v: &Value) -> &str {
    v["assistantResponseMessage"]["content"].as_str().expect("assistant content")
}

// ---- Claude Code request shapes --------------------------------------------------------

#[test]
fn main_turn_with_adaptive_thinking_and_trailing_system_message() {
    let (_, c, v) = run_fixture(fixture!("main_adaptive.json"));
    assert_eq!(c.model_id, "claude-opus-4.8");
    assert_eq!(c.conversation_id, SESSION);
    assert_eq!(v["conversationState"]["conversationId"], SESSION);
    assert_eq!(v["conversationState"]["chatTriggerType"], "MANUAL");
    assert!(c.thinking);

    let h = history(&v);
    assert_eq!(h.len(), 2, "only the system pair: {h:#?}");
    let system = user_text(&h[0]);
    assert!(
        system.starts_with(
            "<thinking_mode>adaptive</thinking_mode><thinking_effort>high</thinking_effort>\nx-anthropic-billing-header"
        ),
        "{system}"
    );
    assert!(
        system.contains(
            "You are Claude Code, Anthropic's official CLI for Claude.\nYou are an interactive agent"
        )
    );
    assert_eq!(assistant_text(&h[1]), SYSTEM_ACKNOWLEDGEMENT);
    assert_eq!(h[0]["userInputMessage"]["modelId"], "claude-opus-4.8");
    assert_eq!(h[0]["userInputMessage"]["origin"], "AI_EDITOR");

    // The trailing mid-conversation system message joins the current user message.
    let cur = current(&v);
    let text = cur["content"].as_str().expect("content");
    assert!(text.starts_with("<system-reminder>\nAs you answer"), "{text}");
    assert!(
        text.contains("</system-reminder>\n\nsay hello\n\n<system-reminder>\nThe following skills"),
        "{text}"
    );
    assert_eq!(cur["modelId"], "claude-opus-4.8");
    assert_eq!(cur["origin"], "AI_EDITOR");

    let names = tool_names(&v);
    assert_eq!(names[..3], ["Bash", "Read", "WebSearch"]);
    assert_eq!(names.len(), 4);
    assert_eq!(names[3].len(), MAX_TOOL_NAME_LEN);
    assert_eq!(c.tool_names.get(&names[3]).map(String::as_str), Some(LONG_MCP_NAME));
    // The MCP schema had `default: null`, a nullable anyOf and `required: null`.
    let mcp = &tool_spec(&v, &names[3])["inputSchema"]["json"];
    assert_eq!(
        *mcp,
        json!({"type": "object", "properties": {"title": {"type": "string"}, "owner": {"anyOf": [{"type": "string"}, {"type": "null"}]}}})
    );
    let bash = tool_spec(&v, "Bash");
    assert_eq!(bash["description"], "Executes a given bash command and returns its output.");
    assert_eq!(bash["inputSchema"]["json"]["required"], json!(["command"]));
    assert_eq!(bash["inputSchema"]["json"]["additionalProperties"], false);
    assert!(!v.to_string().contains("cache_control"));
}

#[test]
fn tool_loop_with_tool_result() {
    let (_, c, v) = run_fixture(fixture!("tool_loop.json"));
    assert_eq!(c.tool_names.values().collect::<Vec<_>>(), [LONG_MCP_NAME]);
    let h = history(&v);
    assert_eq!(h.len(), 4);
    let first_user = user_text(&h[2]);
    assert!(
        first_user.contains("run echo hello in bash\n\n<system-reminder>\nThe following skills"),
        "{first_user}"
    );
    assert_eq!(
        assistant_text(&h[3]),
        "<thinking>The user wants a shell command run.</thinking>\n\nI'll use a tool."
    );
    assert_eq!(
        h[3]["assistantResponseMessage"]["toolUses"],
        json!([{"toolUseId": "toolu_01A09q90qw90lq917835lq9", "name": "Bash",
                "input": {"command": "echo hello-from-tool", "description": "Print a greeting"}}])
    );
    let cur = current(&v);
    assert_eq!(cur["content"], TOOL_RESULTS_PROVIDED);
    assert_eq!(
        cur["userInputMessageContext"]["toolResults"],
        json!([{"toolUseId": "toolu_01A09q90qw90lq917835lq9", "content": [{"text": "hello-from-tool"}], "status": "success"}])
    );
    assert!(tool_names(&v).contains(&"Bash".to_owned()));
}

#[test]
fn thinking_budget_is_sent_as_max_thinking_length() {
    let (r, c, v) = run_fixture(fixture!("thinking_budget.json"));
    assert_eq!(r.thinking_budget(), Some(4000));
    assert_eq!(c.model_id, "claude-sonnet-4.5");
    assert!(c.thinking);
    assert!(user_text(&history(&v)[0]).starts_with(
        "<thinking_mode>enabled</thinking_mode><max_thinking_length>4000</max_thinking_length>\n"
    ));
    let text = current(&v)["content"].as_str().expect("content");
    assert!(text.starts_with("<system-reminder>\nThe following deferred tools"), "{text}");
    assert!(text.ends_with("</system-reminder>\n\nsay hello"), "{text}");
}

#[test]
fn haiku_model_with_large_budget_is_capped() {
    let (_, c, v) = run_fixture(fixture!("haiku_model.json"));
    assert_eq!(c.model_id, "claude-haiku-4.5");
    assert!(user_text(&history(&v)[0]).starts_with(&format!(
        "<thinking_mode>enabled</thinking_mode><max_thinking_length>{MAX_THINKING_BUDGET}</max_thinking_length>"
    )));
}

#[test]
fn thinking_disabled_injects_no_tags() {
    let (_, c, v) = run_fixture(fixture!("thinking_disabled.json"));
    assert!(!c.thinking);
    assert!(!v.to_string().contains("thinking_mode"));
    assert!(user_text(&history(&v)[0]).starts_with("x-anthropic-billing-header"));
}

#[test]
fn custom_model_name_maps_to_auto_or_the_rule_model() {
    let (r, c, v) = run_fixture(fixture!("custom_model.json"));
    assert_eq!(c.model_id, "auto");
    assert_eq!(current(&v)["modelId"], "auto");
    let opts = ConvertOptions { model_id: Some("claude-sonnet-4.6"), ..ConvertOptions::default() };
    let (c, v) = run_with(&r, &opts);
    assert_eq!(c.model_id, "claude-sonnet-4.6");
    assert!(history(&v).iter().all(|m| m.get("assistantResponseMessage").is_some()
        || m["userInputMessage"]["modelId"] == "claude-sonnet-4.6"));
}

#[test]
fn background_title_without_tools() {
    let (_, c, v) = run_fixture(fixture!("background_title.json"));
    assert!(!c.thinking);
    assert!(current(&v).get("userInputMessageContext").is_none());
    assert!(current(&v)["content"].as_str().is_some_and(|s| s.starts_with("Generate a concise")));
    assert_eq!(history(&v).len(), 2);
}

#[test]
fn web_search_server_tool_is_not_sent_as_a_spec() {
    let (r, _, v) = run_fixture(fixture!("web_search.json"));
    assert!(r.has_server_tool("web_search"));
    assert!(tool_names(&v).is_empty());
    assert!(current(&v).get("userInputMessageContext").is_none());
    assert!(!v.to_string().contains("web_search_20250305"));
}

#[test]
fn subagent_request() {
    let (_, c, v) = run_fixture(fixture!("subagent_explore.json"));
    assert_eq!(c.model_id, "claude-haiku-4.5");
    assert!(!c.thinking);
    assert_eq!(tool_names(&v), ["Bash", "Read"]);
    let text = current(&v)["content"].as_str().expect("content");
    assert!(text.ends_with("</system-reminder>\n\nList the files in the current directory"), "{text}");
}

#[test]
fn compact_request() {
    let (_, _, v) = run_fixture(fixture!("compact.json"));
    let h = history(&v);
    assert_eq!(h.len(), 4);
    assert_eq!(assistant_text(&h[3]), "Hello! How can I help?");
    let text = current(&v)["content"].as_str().expect("content");
    assert!(
        text.starts_with("write a haiku about routers\n\nYour task is to create a detailed summary"),
        "{text}"
    );
}

#[test]
fn non_streaming_fallback_converts_like_a_main_turn() {
    let (r, _, v) = run_fixture(fixture!("nonstreaming_fallback.json"));
    assert!(!r.stream);
    let (_, _, main) = run_fixture(fixture!("main_adaptive.json"));
    assert_eq!(v, main);
}

#[test]
fn deferred_tools_and_tool_reference() {
    let (_, c, v) = run_fixture(fixture!("deferred_tools.json"));
    assert_eq!(c.model_id, "claude-opus-5.5");
    assert!(
        user_text(&history(&v)[0])
            .starts_with("<thinking_mode>adaptive</thinking_mode><thinking_effort>medium</thinking_effort>")
    );
    let h = history(&v);
    // The empty thinking block (display omitted) is not replayed; the turn had only a tool use.
    assert_eq!(assistant_text(&h[3]), EMPTY_ASSISTANT);
    assert_eq!(
        current(&v)["userInputMessageContext"]["toolResults"][0]["content"],
        json!([{"text": "[Tool reference: WebFetch]"}])
    );
    assert_eq!(tool_names(&v), ["Bash", "ToolSearch", "WebFetch", "DeferredToolPlaceholder"]);
    assert!(!v.to_string().contains("defer_loading"));
}

#[test]
fn long_context_request() {
    let mut words = String::with_capacity(620_000);
    let mut i = 0u64;
    while words.len() < 600_000 {
        let _ = write!(words, "word{} \"quoted\"\tand\nmore ", i % 977);
        i += 1;
    }
    let mut body: Value = serde_json::from_str(fixture!("main_adaptive.json")).expect("fixture parses");
    body["messages"][0]["content"][1]["text"] = Value::String(words.clone());
    let raw = body.to_string();
    assert!(raw.len() > 600_000);
    let r = parse_request(raw.as_bytes()).expect("parses");
    assert!(r.estimate_input_tokens() > 150_000);
    let (_, v) = run(&r);
    let text = current(&v)["content"].as_str().expect("content");
    assert!(text.contains(&words));
}

// ---- Normalisations --------------------------------------------------------------------

#[test]
fn trailing_assistant_prefill_moves_into_history() {
    let r = req(json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [
        {"role": "user", "content": "Give me JSON"},
        {"role": "assistant", "content": "{"}
    ]}));
    let (_, v) = run(&r);
    let h = history(&v);
    assert_eq!(h.len(), 2);
    assert_eq!(user_text(&h[0]), "Give me JSON");
    assert_eq!(assistant_text(&h[1]), "{");
    assert_eq!(current(&v)["content"], CONTINUE);
    assert!(v["conversationState"].get("history").is_some());
}

#[test]
fn single_user_message_has_no_history_key() {
    let r = req(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}));
    let (c, v) = run(&r);
    assert!(v["conversationState"].get("history").is_none());
    assert_eq!(current(&v)["content"], "hi");
    assert!(!c.thinking);
    assert!(uuid::Uuid::parse_str(&c.conversation_id).is_ok());
    assert_eq!(v["conversationState"]["conversationId"], c.conversation_id.as_str());
}

#[test]
fn consecutive_same_role_messages_are_merged() {
    let r = req(json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}]},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
        {"role": "system", "content": "reminder"},
        {"role": "user", "content": "now"}
    ]}));
    let (_, v) = run(&r);
    let h = history(&v);
    assert_eq!(h.len(), 2);
    assert_eq!(user_text(&h[0]), "one\n\ntwo\nthree");
    assert_eq!(assistant_text(&h[1]), "a\n\nb");
    assert_eq!(current(&v)["content"], "reminder\n\nnow");
}

#[test]
fn history_starting_with_assistant_gets_a_user_placeholder() {
    let msgs = json!([{"role": "assistant", "content": "I greet first"}, {"role": "user", "content": "ok"}]);
    let (_, v) = run(&req(json!({"model": "m", "max_tokens": 10, "messages": msgs})));
    let h = history(&v);
    assert_eq!(user_text(&h[0]), EMPTY_USER);
    assert_eq!(assistant_text(&h[1]), "I greet first");

    let (_, v) = run(&req(json!({"model": "m", "max_tokens": 10, "system": "be nice", "messages": msgs})));
    let h = history(&v);
    assert_eq!(h.len(), 4);
    assert_eq!(user_text(&h[0]), "be nice");
    assert_eq!(assistant_text(&h[1]), SYSTEM_ACKNOWLEDGEMENT);
    assert_eq!(user_text(&h[2]), EMPTY_USER);
    assert_eq!(assistant_text(&h[3]), "I greet first");
}

#[test]
fn only_assistant_or_system_messages() {
    let (_, v) = run(&req(
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "assistant", "content": ""}]}),
    ));
    assert_eq!(current(&v)["content"], CONTINUE);
    assert_eq!(assistant_text(&history(&v)[1]), EMPTY_ASSISTANT);
    let (_, v) = run(&req(
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "sys only"}]}),
    ));
    assert_eq!(current(&v)["content"], "sys only");
}

#[test]
fn thinking_without_system_prompt_gets_its_own_pair() {
    let r = req(json!({"model": "m", "max_tokens": 10, "thinking": {"type": "enabled"},
        "messages": [{"role": "user", "content": "hi"}]}));
    let (c, v) = run(&r);
    assert!(c.thinking);
    let h = history(&v);
    assert_eq!(
        user_text(&h[0]),
        "<thinking_mode>enabled</thinking_mode><max_thinking_length>20000</max_thinking_length>"
    );
    assert_eq!(assistant_text(&h[1]), SYSTEM_ACKNOWLEDGEMENT);

    for (effort, sent) in
        [("low", "low"), ("medium", "medium"), ("high", "high"), ("max", "high"), ("xhigh", "high")]
    {
        let r = req(json!({"model": "m", "max_tokens": 10, "thinking": {"type": "adaptive"},
            "output_config": {"effort": effort}, "messages": [{"role": "user", "content": "hi"}]}));
        let (_, v) = run(&r);
        assert_eq!(
            user_text(&history(&v)[0]),
            format!("<thinking_mode>adaptive</thinking_mode><thinking_effort>{sent}</thinking_effort>")
        );
    }
}

#[test]
fn orphan_tool_result_becomes_text() {
    let r = req(json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "start"},
        {"role": "assistant", "content": "sure"},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_gone", "content": "stale output", "is_error": true},
            {"type": "text", "text": "continue please"}
        ]}
    ]}));
    let (_, v) = run(&r);
    let cur = current(&v);
    assert!(cur.get("userInputMessageContext").is_none());
    assert_eq!(cur["content"], "continue please\n\n[Tool result for toolu_gone (error)]\nstale output");
}

#[test]
fn unanswered_tool_use_gets_an_error_result() {
    let r = req(json!({"model": "m", "max_tokens": 10, "tools": [], "messages": [
        {"role": "user", "content": "read it"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {"file_path": "/a"}},
            {"type": "tool_use", "id": "toolu_b", "name": "Read", "input": {"file_path": "/b"}}
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "A"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_c", "name": "grep", "input": {}}]},
        {"role": "user", "content": "[Request interrupted by user]"}
    ]}));
    let (_, v) = run(&r);
    let h = history(&v);
    assert_eq!(assistant_text(&h[1]), EMPTY_ASSISTANT);
    assert_eq!(
        h[2]["userInputMessage"]["userInputMessageContext"]["toolResults"],
        json!([
            {"toolUseId": "toolu_a", "content": [{"text": "A"}], "status": "success"},
            {"toolUseId": "toolu_b", "content": [{"text": MISSING_TOOL_RESULT}], "status": "error"}
        ])
    );
    assert_eq!(user_text(&h[2]), TOOL_RESULTS_PROVIDED);
    let cur = current(&v);
    assert_eq!(cur["content"], "[Request interrupted by user]");
    assert_eq!(cur["userInputMessageContext"]["toolResults"][0]["toolUseId"], "toolu_c");
    assert_eq!(cur["userInputMessageContext"]["toolResults"][0]["status"], "error");
    // Neither tool was declared: placeholder specs, one per name.
    assert_eq!(tool_names(&v), ["Read", "grep"]);
    assert_eq!(tool_spec(&v, "grep")["description"], HISTORY_TOOL_DESCRIPTION);
    assert_eq!(tool_spec(&v, "grep")["inputSchema"]["json"], json!({"type": "object", "properties": {}}));
}

#[test]
fn duplicate_tool_results_and_tool_uses_are_dropped() {
    let r = req(
        json!({"model": "m", "max_tokens": 10, "tools": [{"name": "bash", "input_schema": {"type": "object"}}], "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "first"},
                {"type": "tool_result", "tool_use_id": "t1", "content": "second"}
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}, {"type": "text", "text": "again"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "late"}]}
        ]}),
    );
    let (_, v) = run(&r);
    let h = history(&v);
    assert_eq!(
        h[2]["userInputMessage"]["userInputMessageContext"]["toolResults"],
        json!([{"toolUseId": "t1", "content": [{"text": "first"}], "status": "success"}])
    );
    assert!(h[3]["assistantResponseMessage"].get("toolUses").is_none());
    assert_eq!(current(&v)["content"], "[Tool result for t1]\nlate");
    // `Bash` in history matches the declared `bash` case-insensitively: no placeholder.
    assert_eq!(tool_names(&v), ["bash"]);
    assert_eq!(tool_spec(&v, "bash")["description"], "Tool: bash");
}

/// Found by the `request_converter` fuzz target: an empty `tool_use` id reached Kiro as an
/// empty `toolUseId`, which it rejects (rule 4).
#[test]
fn tool_uses_with_empty_ids_are_dropped_and_their_results_kept_as_text() {
    let r = req(json!({"model": "claude-opus-4-8", "max_tokens": 10, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "running"},
            {"type": "tool_use", "id": "", "name": "名前のツール", "input": 5.0},
            {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "", "content": "from the nameless call"},
            {"type": "tool_result", "tool_use_id": "t1", "content": "files"}
        ]}
    ]}));
    let (_, v) = run(&r);
    let h = history(&v);
    let uses = &h[1]["assistantResponseMessage"]["toolUses"];
    assert_eq!(uses.as_array().map(Vec::len), Some(1), "{uses}");
    assert_eq!(uses[0]["toolUseId"], "t1");
    let results = &current(&v)["userInputMessageContext"]["toolResults"];
    assert_eq!(results, &json!([{"toolUseId": "t1", "content": [{"text": "files"}], "status": "success"}]));
    assert_eq!(current(&v)["content"], "[Tool result for ]\nfrom the nameless call");
}

#[test]
fn long_tool_names_are_shortened_consistently_and_restorable() {
    let long = "mcp__".to_owned() + &"very_long_server_name_".repeat(4) + "tool";
    let r = req(json!({"model": "m", "max_tokens": 10,
    "tools": [{"name": long, "description": "d", "input_schema": {"type": "object", "properties": {}}}],
    "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": long, "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
    ]}));
    let (c, v) = run(&r);
    let short = shorten_tool_name(&long).into_owned();
    assert_eq!(short.len(), MAX_TOOL_NAME_LEN);
    assert!(short.starts_with(&long[..SHORT_NAME_PREFIX]));
    assert_eq!(&short[SHORT_NAME_PREFIX..SHORT_NAME_PREFIX + 1], "_");
    assert!(short[SHORT_NAME_PREFIX + 1..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(tool_names(&v), std::slice::from_ref(&short));
    assert_eq!(history(&v)[1]["assistantResponseMessage"]["toolUses"][0]["name"], short.as_str());
    assert_eq!(c.tool_names.len(), 1);
    assert_eq!(c.tool_names.get(&short), Some(&long));

    // Stable, distinct, untouched at the limit, cut at a character boundary.
    assert_eq!(shorten_tool_name(&long), shorten_tool_name(&long));
    assert_ne!(shorten_tool_name(&(long.clone() + "2")), shorten_tool_name(&(long.clone() + "3")));
    let at_limit = "a".repeat(MAX_TOOL_NAME_LEN);
    assert!(matches!(shorten_tool_name(&at_limit), Cow::Borrowed(_)));
    let wide = "é".repeat(40);
    let short = shorten_tool_name(&wide);
    assert!(short.len() <= MAX_TOOL_NAME_LEN);
    assert!(short.starts_with(&"é".repeat(27)));
}

#[test]
fn tool_descriptions_are_capped_and_never_empty() {
    let r = req(
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "tools": [
            {"name": "Long", "description": "é".repeat(50), "input_schema": {"type": "object"}},
            {"name": "Exact", "description": "b".repeat(20)},
            {"name": "Empty", "description": "  "},
            {"name": "Missing"},
            {"name": "", "description": "nameless tools are skipped"},
            {"name": "long", "description": "case-insensitive duplicate is skipped"}
        ]}),
    );
    let opts = ConvertOptions { max_tool_description: 20, ..ConvertOptions::default() };
    let (_, v) = run_with(&r, &opts);
    assert_eq!(tool_names(&v), ["Long", "Exact", "Empty", "Missing"]);
    assert_eq!(tool_spec(&v, "Long")["description"], format!("{}...", "é".repeat(17)));
    assert_eq!(tool_spec(&v, "Exact")["description"], "b".repeat(20));
    assert_eq!(tool_spec(&v, "Empty")["description"], "Tool: Empty");
    assert_eq!(tool_spec(&v, "Missing")["description"], "Tool: Missing");
    assert_eq!(tool_spec(&v, "Missing")["inputSchema"]["json"], json!({"type": "object", "properties": {}}));
}

#[test]
fn schemas_and_inputs_lose_nulls() {
    let r = req(json!({"model": "m", "max_tokens": 10, "tools": [
        {"name": "A", "description": "a", "input_schema": {"properties": null, "required": null, "type": null}},
        {"name": "B", "description": "b", "input_schema": {"type": "object", "required": "x",
            "properties": {"p": {"type": "string", "enum": ["x", null], "default": null}}}},
        {"name": "C", "description": "c", "input_schema": ["not", "an", "object"]}
    ], "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "A", "input": {"keep": 1, "drop": null, "nested": [null, {"z": null}]}},
            {"type": "tool_use", "id": "t2", "name": "B", "input": "not an object"}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1"},
            {"type": "tool_result", "tool_use_id": "t2", "content": []}
        ]}
    ]}));
    let (_, v) = run(&r);
    assert!(!v.to_string().contains("null"));
    assert_eq!(tool_spec(&v, "A")["inputSchema"]["json"], json!({"type": "object", "properties": {}}));
    assert_eq!(
        tool_spec(&v, "B")["inputSchema"]["json"],
        json!({"type": "object", "properties": {"p": {"type": "string", "enum": ["x"]}}})
    );
    assert_eq!(tool_spec(&v, "C")["inputSchema"]["json"], json!({"type": "object", "properties": {}}));
    let uses = &history(&v)[1]["assistantResponseMessage"]["toolUses"];
    assert_eq!(uses[0]["input"], json!({"keep": 1, "nested": [{}]}));
    assert_eq!(uses[1]["input"], json!({}));
    let results = &current(&v)["userInputMessageContext"]["toolResults"];
    assert_eq!(results[0]["content"], json!([{"text": EMPTY_TOOL_RESULT}]));
    assert_eq!(results[1]["content"], json!([{"text": EMPTY_TOOL_RESULT}]));
}

#[test]
fn images_documents_and_rich_tool_results() {
    let r = req(json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/shot.png"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "is_error": false, "content": [
                {"type": "text", "text": "Read the image"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}, "title": "N"}
            ]},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "PNGDATA"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "JPGDATA"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "WEBP"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "GIF"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "BMP"}},
            {"type": "image", "source": {"type": "base64", "data": "data:image/png;base64,INLINE"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.invalid/cat.png"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}, "title": "spec.pdf"},
            {"type": "text", "text": "what is in these?"}
        ]}
    ]}));
    let (_, v) = run(&r);
    let cur = current(&v);
    assert_eq!(
        cur["images"],
        json!([
            {"format": "png", "source": {"bytes": "iVBO"}},
            {"format": "png", "source": {"bytes": "PNGDATA"}},
            {"format": "jpeg", "source": {"bytes": "JPGDATA"}},
            {"format": "webp", "source": {"bytes": "WEBP"}},
            {"format": "gif", "source": {"bytes": "GIF"}},
            {"format": "png", "source": {"bytes": "INLINE"}}
        ])
    );
    assert_eq!(
        cur["content"],
        "[Image: https://example.invalid/cat.png]\n[Document omitted: spec.pdf (application/pdf)]\nwhat is in these?"
    );
    assert_eq!(
        cur["userInputMessageContext"]["toolResults"][0]["content"][0]["text"],
        "Read the image\n[Image: attached to this message as image 1]\nDocument: N\nnotes"
    );
}

#[test]
fn tool_result_images_move_to_the_message_in_history_too_within_limits() {
    let shot = |data: &str| json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}});
    let turn = |id: &str, data: &str| {
        vec![
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Read", "input": {}}]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": [shot(data)]}]}),
        ]
    };
    let mut messages = vec![json!({"role": "user", "content": "look"})];
    messages.extend(turn("t1", "FIRST"));
    messages.extend(turn("t2", "SECOND"));
    let (_, v) = run(&req(json!({"model": "m", "max_tokens": 10, "messages": messages})));
    let h = history(&v);
    let old = &h
        .iter()
        .find(|m| m["userInputMessage"]["userInputMessageContext"]["toolResults"].is_array())
        .unwrap()["userInputMessage"];
    assert_eq!(old["images"], json!([{"format": "png", "source": {"bytes": "FIRST"}}]));
    assert_eq!(
        old["userInputMessageContext"]["toolResults"][0]["content"][0]["text"],
        "[Image: attached to this message as image 1]"
    );
    assert_eq!(current(&v)["images"], json!([{"format": "png", "source": {"bytes": "SECOND"}}]));

    // Too many: the oldest are left out and their message says so.
    let mut messages = vec![json!({"role": "user", "content": "look"})];
    for i in 0..MAX_IMAGES + 2 {
        messages.extend(turn(&format!("t{i}"), &format!("IMG{i}")));
    }
    let (_, v) = run(&req(json!({"model": "m", "max_tokens": 10, "messages": messages})));
    let sent: usize = history(&v)
        .iter()
        .chain(std::iter::once(&json!({"userInputMessage": current(&v)})))
        .map(|m| m["userInputMessage"]["images"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(sent, MAX_IMAGES);
    assert!(v.to_string().contains("image(s) left out: Kiro takes at most 20 images per request"));

    // Too large: a clear 400.
    let big = "A".repeat(MAX_IMAGE_BYTES / 3 * 4 + 8);
    let mut messages = vec![json!({"role": "user", "content": "look"})];
    messages.extend(turn("t1", &big));
    let err = convert(
        &req(json!({"model": "m", "max_tokens": 10, "messages": messages})),
        &ConvertOptions::default(),
    )
    .expect_err("too large");
    assert_eq!(err.status.as_u16(), 400);
    assert!(err.message.contains("larger than the 5 MB Kiro accepts per image"), "{}", err.message);
}

#[test]
fn request_body_wraps_the_state_and_adds_the_profile_arn() {
    let r = req(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}));
    let c = convert(&r, &ConvertOptions::default()).expect("converts");
    let state: Value = serde_json::from_slice(&c.conversation_state).expect("state is JSON");

    let plain: Value = serde_json::from_slice(&request_body(&c, None)).expect("JSON");
    assert_eq!(plain, json!({"conversationState": state}));
    let empty: Value = serde_json::from_slice(&request_body(&c, Some(""))).expect("JSON");
    assert_eq!(empty, plain);

    let arn = "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK";
    let body = request_body(&c, Some(arn));
    assert!(body.starts_with(b"{\"conversationState\":{"));
    let with: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(with, json!({"conversationState": state, "profileArn": arn}));

    let odd = "arn:\"quoted\"\\back\nline\u{1}é";
    let with: Value = serde_json::from_slice(&request_body(&c, Some(odd))).expect("JSON");
    assert_eq!(with["profileArn"], odd);
}

/// Every sequence of up to four messages drawn from awkward shapes converts into a body the
/// §3.5 validator accepts.
#[test]
fn every_small_conversation_passes_the_validator() {
    let kinds = [
        json!({"role": "user", "content": "hello"}),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r1"}]}),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "r2"}]}, {"type": "text", "text": "and"}]}),
        json!({"role": "user", "content": []}),
        json!({"role": "system", "content": "sys"}),
        json!({"role": "assistant", "content": "ok"}),
        json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}),
        json!({"role": "assistant", "content": [{"type": "text", "text": " "}, {"type": "tool_use", "id": "t2", "name": "Mystery", "input": {}}]}),
        json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "redacted_thinking", "data": "x"}]}),
    ];
    let mut count = 0;
    for len in 1..=4u32 {
        for n in 0..kinds.len().pow(len) {
            let mut messages = Vec::new();
            let mut k = n;
            for _ in 0..len {
                messages.push(kinds[k % kinds.len()].clone());
                k /= kinds.len();
            }
            let mut body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": messages});
            if n % 2 == 0 {
                body["system"] = json!("system prompt");
                body["tools"] =
                    json!([{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]);
            }
            if n % 3 == 0 {
                body["thinking"] = json!({"type": "adaptive"});
            }
            let r = req(body);
            let converted = convert(&r, &ConvertOptions::default()).expect("converts");
            let v: Value = serde_json::from_slice(&request_body(&converted, None)).expect("JSON");
            if let Err(e) = check_kiro_body(&v) {
                panic!("{e}\nrequest: {:#}\nbody: {v:#}", json!(messages));
            }
            count += 1;
        }
    }
    assert_eq!(count, 9 + 81 + 729 + 6561);
}

// ---- The validator itself --------------------------------------------------------------

fn valid_body() -> Value {
    json!({"conversationState": {
        "conversationId": "c1",
        "chatTriggerType": "MANUAL",
        "currentMessage": {"userInputMessage": {
            "content": "", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR",
            "userInputMessageContext": {
                "tools": [{"toolSpecification": {"name": "Bash", "description": "d", "inputSchema": {"json": {"type": "object", "properties": {}, "required": []}}}}],
                "toolResults": [{"toolUseId": "t1", "content": [{"text": "ok"}], "status": "success"}]
            }
        }},
        "history": [
            {"userInputMessage": {"content": "go", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"}},
            {"assistantResponseMessage": {"content": " ", "toolUses": [{"toolUseId": "t1", "name": "bash", "input": {}}]}}
        ]
    }})
}

fn rejected(mutate: impl FnOnce(&mut Value)) -> String {
    let mut body = valid_body();
    mutate(&mut body);
    check_kiro_body(&body).expect_err("must be rejected")
}

#[test]
fn validator_accepts_the_reference_body() {
    assert_eq!(check_kiro_body(&valid_body()), Ok(()));
}

#[test]
fn validator_rejects_each_rule() {
    let cs = "/conversationState";
    let ptr = |v: &mut Value, p: &str| -> Value { v.pointer(p).cloned().unwrap_or(Value::Null) };
    type Mutation = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("conversationState missing", Box::new(|v| *v = json!({"x": 1}))),
        ("conversationId", Box::new(|v| v["conversationState"]["conversationId"] = json!(""))),
        (
            "rule 1: currentMessage is an assistant",
            Box::new(|v| {
                v["conversationState"]["currentMessage"]["assistantResponseMessage"] =
                    json!({"content": "x"});
            }),
        ),
        (
            "rule 1: currentMessage.userInputMessage missing",
            Box::new(|v| {
                v["conversationState"]["currentMessage"] = json!({"other": 1});
            }),
        ),
        (
            "rule 2: history[1] is a user message",
            Box::new(move |v| {
                let first = ptr(v, &format!("{cs}/history/0"));
                v["conversationState"]["history"][1] = first;
            }),
        ),
        (
            "rule 2: history must end with an assistant",
            Box::new(move |v| {
                let first = ptr(v, &format!("{cs}/history/0"));
                if let Some(h) = v["conversationState"]["history"].as_array_mut() {
                    h.push(first);
                }
            }),
        ),
        (
            "rule 2: history[0] must hold exactly one",
            Box::new(|v| {
                v["conversationState"]["history"][0]["assistantResponseMessage"] = json!({"content": "x"});
            }),
        ),
        (
            "rule 3: history[1].content is empty",
            Box::new(|v| {
                v["conversationState"]["history"][1]["assistantResponseMessage"]["content"] = json!("");
            }),
        ),
        (
            "rule 3: history[0].content is empty",
            Box::new(|v| {
                v["conversationState"]["history"][0]["userInputMessage"]["content"] = json!("");
            }),
        ),
        (
            "history[0].modelId",
            Box::new(|v| {
                if let Some(m) = v["conversationState"]["history"][0]["userInputMessage"].as_object_mut() {
                    m.remove("modelId");
                }
            }),
        ),
        (
            "rule 4: tool use t2 has no tool result",
            Box::new(|v| {
                if let Some(uses) =
                    v["conversationState"]["history"][1]["assistantResponseMessage"]["toolUses"]
                        .as_array_mut()
                {
                    uses.push(json!({"toolUseId": "t2", "name": "Bash", "input": {"a": 1}}));
                }
            }),
        ),
        (
            "rule 4: currentMessage…toolResults[1] (t9) answers no earlier tool use",
            Box::new(|v| {
                if let Some(r) = v["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]["toolResults"].as_array_mut() {
                r.push(json!({"toolUseId": "t9", "content": [{"text": "x"}], "status": "success"}));
            }
            }),
        ),
        (
            "rule 4: duplicate toolResult for t1",
            Box::new(|v| {
                let results = &mut v["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]
                    ["toolResults"];
                let first = results[0].clone();
                if let Some(r) = results.as_array_mut() {
                    r.push(first);
                }
            }),
        ),
        (
            "rule 5: the conversation uses tools but currentMessage declares none",
            Box::new(|v| {
                if let Some(ctx) =
                    v["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]
                        .as_object_mut()
                {
                    ctx.remove("tools");
                }
            }),
        ),
        (
            "rule 5: tool Read is used in history",
            Box::new(|v| {
                v["conversationState"]["history"][1]["assistantResponseMessage"]["toolUses"][0]["name"] =
                    json!("Read");
            }),
        ),
        (
            "is longer than 64 characters",
            Box::new(|v| {
                v["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]["tools"]
                    [0]["toolSpecification"]["name"] = json!("x".repeat(65));
            }),
        ),
        (
            "rule 9: null at .conversationState.currentMessage.userInputMessage.origin",
            Box::new(|v| {
                v["conversationState"]["currentMessage"]["userInputMessage"]["origin"] = Value::Null;
            }),
        ),
        (
            "rule 9: null at .conversationState.history[1].assistantResponseMessage.toolUses[0].input.a",
            Box::new(|v| {
                v["conversationState"]["history"][1]["assistantResponseMessage"]["toolUses"][0]["input"] =
                    json!({"a": null});
            }),
        ),
        (
            "rule 9: empty array at .conversationState.history[1].assistantResponseMessage.toolUses",
            Box::new(|v| {
                v["conversationState"]["history"][1]["assistantResponseMessage"]["toolUses"] = json!([]);
            }),
        ),
        (
            "rule 9: empty object at .conversationState.currentMessage.userInputMessage.images[0]",
            Box::new(|v| {
                v["conversationState"]["currentMessage"]["userInputMessage"]["images"] = json!([{}]);
            }),
        ),
    ];
    for (expected, mutate) in cases {
        let err = rejected(mutate);
        assert!(err.contains(expected), "expected {expected:?}, got {err:?}");
    }
}

#[test]
fn validator_accepts_empty_user_content_only_with_tool_results() {
    let mut body = valid_body();
    assert_eq!(check_kiro_body(&body), Ok(()));
    if let Some(ctx) =
        body["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"]
            .as_object_mut()
    {
        ctx.remove("toolResults");
    }
    if let Some(state) = body["conversationState"].as_object_mut() {
        state.remove("history");
    }
    assert_eq!(check_kiro_body(&body), Err("rule 3: currentMessage.content is empty".to_owned()));
}

/// Texts go to Kiro still escaped as the client wrote them: every kind of escape must arrive
/// meaning the same text (decoded by a JSON parser on the other side).
#[test]
fn escaped_texts_arrive_meaning_what_the_client_sent() {
    let tricky = "tab\there \"quoted\" back\\slash /slash caf\u{e9} \u{1F600} \u{1} \u{1f} line\nend";
    // Written with every escape form JSON allows, not only serde_json's.
    let raw_json =
        r#""tab\there \"quoted\" back\\slash \/slash caf\u00e9 \ud83d\ude00 \u0001 \u001F line\nend""#;
    let decoded: String = serde_json::from_str(raw_json).expect("valid JSON string");
    assert_eq!(decoded, tricky);
    let body = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":10,"system":[{{"type":"text","text":{raw_json}}}],
        "messages":[
          {{"role":"user","content":[{{"type":"text","text":{raw_json}}}]}},
          {{"role":"assistant","content":[{{"type":"thinking","thinking":{raw_json}}},{{"type":"tool_use","id":"t1","name":"Read","input":{{"p":{raw_json}}}}}]}},
          {{"role":"user","content":[{{"tool_use_id":"t1","type":"tool_result","content":{raw_json}}},{{"type":"text","text":{raw_json}}}]}}
        ]}}"#
    );
    let r = parse_request(body.as_bytes()).expect("parses");
    let (_, v) = run(&r);
    let state = &v["conversationState"];
    let current = &state["currentMessage"]["userInputMessage"];
    assert_eq!(current["content"], json!(tricky));
    let results = &current["userInputMessageContext"]["toolResults"];
    assert_eq!(results[0]["content"][0]["text"], json!(tricky));
    let history = state["history"].as_array().expect("history");
    assert!(history[0]["userInputMessage"]["content"].as_str().expect("system turn").ends_with(tricky));
    assert_eq!(history[2]["userInputMessage"]["content"], json!(tricky));
    let assistant = &history[3]["assistantResponseMessage"];
    assert_eq!(assistant["content"], json!(format!("<thinking>{tricky}</thinking>")));
    assert_eq!(assistant["toolUses"][0]["input"]["p"], json!(tricky));
}

/// The fuzzer's raw-body seeds (first byte even: the rest is a request body) go through parse,
/// estimate, conversion and the §3.5 validator in every `cargo test`, not only under the fuzzer.
#[test]
fn the_fuzzers_raw_body_seeds_convert_into_bodies_kiro_accepts() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/request_converter");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("the seeds directory") {
        let bytes = std::fs::read(entry.expect("an entry").path()).expect("a seed");
        let Some((&mode, rest)) = bytes.split_first() else { continue };
        if mode % 2 != 0 {
            continue; // a recipe for the fuzzer's request builder, not a body
        }
        let r = parse_request(rest).expect("a seed body parses");
        assert!(r.estimate_input_tokens() > 0);
        run(&r);
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} raw seeds found");
}

#[test]
fn a_data_url_image_with_an_escaped_media_type_is_kept() {
    let body = r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[
        {"type":"image","source":{"type":"base64","data":"data:image\/png;base64,iVBO\/Rw=="}},
        {"type":"text","text":"what is it?"}]}]}"#;
    let (_, v) = run(&parse_request(body.as_bytes()).expect("parses"));
    let images = &v["conversationState"]["currentMessage"]["userInputMessage"]["images"];
    assert_eq!(images, &json!([{"format": "png", "source": {"bytes": "iVBO/Rw=="}}]));
}

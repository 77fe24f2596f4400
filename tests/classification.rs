//! Each Claude Code request shape lands in the category the table in docs/routing.md gives, checked
//! through the real proxy by its `x-ccr-category` header.

mod common;

use common::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data/requests/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// One sim behind all five rules, so the category is visible without changing the upstream.
fn five_rules(options: ccr::demo::upstream::SimOptions) -> ccr::demo::pool::SimPoolBuilder {
    let rule = json!({"providers": ["solo"]});
    let mut pool = solo_pool_with(options);
    for name in ["default", "background", "thinking", "longcontext", "search"] {
        pool = pool.rule(name, rule.clone());
    }
    pool
}

#[tokio::test]
async fn claude_code_shapes_land_in_the_documented_categories() {
    // The deferred-tools shape asks for `claude-opus-5-5`, newer than the sim's model list.
    let options = ccr::demo::upstream::SimOptions {
        extra_models: vec!["claude-opus-5.5".into()],
        ..ccr::demo::upstream::SimOptions::named("solo")
    };
    let h = start(five_rules(options)).await;
    let mut cases: Vec<(String, Value, &str)> = [
        ("main_adaptive", "default"),
        ("tool_loop", "default"),
        ("compact", "default"),
        ("nonstreaming_fallback", "default"),
        ("custom_model", "default"),
        ("thinking_disabled", "default"),
        ("deferred_tools", "default"),
        ("thinking_budget", "thinking"),
        ("haiku_model", "background"),
        ("subagent_explore", "background"),
        ("background_title", "background"),
        ("web_search", "search"),
    ]
    .into_iter()
    .map(|(name, category)| (name.to_string(), fixture(name), category))
    .collect();

    // Shapes generated here: the small-fast title (no thinking key), a WebFetch summary, and a
    // 100k-word prompt.
    let mut smallfast = fixture("background_title");
    smallfast["model"] = json!("my-small-fast");
    smallfast.as_object_mut().unwrap().remove("thinking");
    cases.push(("title_smallfast".into(), smallfast, "background"));
    cases.push((
        "webfetch_summary".into(),
        json!({"model":"claude-opus-4-8","max_tokens":64000,"stream":true,"thinking":{"type":"disabled"},"tools":[],
               "system":[{"type":"text","text":"You are Claude Code."},{"type":"text","text":"Summarise."}],
               "messages":[{"role":"user","content":[{"type":"text","text":"Web page content: ... Summarise it."}]}]}),
        "background",
    ));
    let mut long = fixture("main_adaptive");
    long["messages"][0]["content"][1]["text"] = json!("lorem ".repeat(100_000));
    cases.push(("longcontext_100k_words".into(), long, "longcontext"));

    for (name, body, expected) in cases {
        let (status, headers, text) = h.call(&body).await;
        assert_eq!(status, 200, "{name}: {text}");
        assert_eq!(headers["x-ccr-category"], expected, "{name}");
    }
    h.shutdown().await;
}

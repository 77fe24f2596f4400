//! Shared harness for end-to-end tests: simulated CodeWhisperer upstreams on 127.0.0.1:0, token
//! files in a temp dir, and a real ccr instance in front of them.
#![allow(dead_code)]

use ccr::anthropic::sse::parse_events;
use ccr::app::{self, ListenOverride, Running};
use ccr::config::{ConfigSource, parse_config};
use ccr::demo::upstream::{SimOptions, SimUpstream, write_social_token_file};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

pub struct Harness {
    pub ccr: Running,
    pub upstreams: Vec<SimUpstream>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub config_path: PathBuf,
}

/// The seed's load-balancing config with each provider pointed at one simulated upstream
/// (`codewhisperer-primary` → upstreams[0], `codewhisperer-secondary` → upstreams[1]).
pub fn seed_config_for(upstreams: &[SimUpstream], dir: &std::path::Path) -> Value {
    let mut config: Value = serde_json::from_str(ccr::config::DEFAULT_CONFIG).unwrap();
    let ids = ["codewhisperer-primary", "codewhisperer-secondary"];
    for (id, up) in ids.iter().zip(upstreams) {
        let token = dir.join(format!("{id}.json"));
        write_social_token_file(&token, &up.issue_credentials(Duration::from_secs(3600))).unwrap();
        let p = &mut config["providers"][*id];
        p["endpoint"] = json!(up.base_url());
        p["authEndpoint"] = json!(up.base_url());
        p["tokenPath"] = json!(token.to_string_lossy());
        p["firstByteTimeout"] = json!(5000);
        p["idleTimeout"] = json!(5000);
    }
    config
}

/// A one-provider config for upstreams[0].
pub fn single_config_for(up: &SimUpstream, dir: &std::path::Path) -> Value {
    let token = dir.join("solo.json");
    write_social_token_file(&token, &up.issue_credentials(Duration::from_secs(3600))).unwrap();
    json!({
        "routing": {"rules": {"default": {"providers": ["solo"]}}},
        "providers": {"solo": {
            "type": "aws", "authMethod": "kiro-token", "tokenPath": token.to_string_lossy(),
            "endpoint": up.base_url(), "authEndpoint": up.base_url(),
            "firstByteTimeout": 5000, "idleTimeout": 5000,
            // No usage poller: these tests count the upstream's calls (refreshes, rejections).
            "usage": {"enabled": false}
        }}
    })
}

/// Start `n` upstreams, build a config from them, and launch ccr on 127.0.0.1:0.
pub async fn start(n: usize, build: impl FnOnce(&[SimUpstream], &std::path::Path) -> Value) -> Harness {
    start_with(
        n,
        |i| SimOptions { chunk_delay: Duration::ZERO, ..SimOptions::named(format!("upstream-{i}")) },
        build,
    )
    .await
}

pub async fn start_with(
    n: usize,
    options: impl Fn(usize) -> SimOptions,
    build: impl FnOnce(&[SimUpstream], &std::path::Path) -> Value,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut upstreams = Vec::new();
    for i in 0..n {
        upstreams.push(SimUpstream::start(options(i)).await.unwrap());
    }
    let config = build(&upstreams, dir.path());
    let config_path = dir.path().join("config.json");
    let text = serde_json::to_string_pretty(&config).unwrap();
    std::fs::write(&config_path, &text).unwrap();
    let parsed = parse_config(&text).expect("test config must be valid");
    let ccr = app::launch(
        parsed,
        ConfigSource::Flag(config_path.clone()),
        ListenOverride { host: Some("127.0.0.1".into()), port: Some(0) },
    )
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Harness { ccr, upstreams, dir, http, config_path }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.ccr.base_url())
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.http.post(self.url("/v1/messages?beta=true")).json(body).send().await.unwrap()
    }

    /// POST and read the whole answer: (status, headers, text).
    pub async fn call(&self, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
        let r = self.post(body).await;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }

    pub async fn shutdown(self) {
        self.ccr.shutdown().await;
        for up in &self.upstreams {
            up.shutdown().await;
        }
    }
}

/// A Claude-Code-shaped main turn: adaptive thinking, a tool, a trailing system message.
pub fn main_turn(text: &str, stream: bool) -> Value {
    json!({
        "model": "claude-opus-4-8",
        "max_tokens": 32000,
        "stream": stream,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "{\"device_id\":\"d\",\"session_id\":\"0cf01146-29c8-4564-a7f6-a5a1fde2c575\"}"},
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."}],
        "tools": [{"name": "Bash", "description": "Run a command",
                   "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>context</system-reminder>"},
                                         {"type": "text", "text": text}]},
            {"role": "system", "content": "mid-conversation system text"}
        ]
    })
}

/// A small background request (title generation): no tools, thinking disabled.
pub fn background_turn(text: &str) -> Value {
    json!({
        "model": "claude-opus-4-8", "max_tokens": 64000, "stream": true,
        "thinking": {"type": "disabled"}, "tools": [],
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]
    })
}

/// The SSE events of a body: (event name, parsed data).
pub fn sse(text: &str) -> Vec<(String, Value)> {
    parse_events(text)
        .into_iter()
        .map(|(e, d)| (e, serde_json::from_str(&d).unwrap_or(Value::Null)))
        .collect()
}

/// The concatenated text deltas of an SSE body.
pub fn sse_text(text: &str) -> String {
    sse(text)
        .iter()
        .filter(|(e, d)| e == "content_block_delta" && d["delta"]["type"] == "text_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

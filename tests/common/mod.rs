//! Shared harness for end-to-end tests: simulated CodeWhisperer upstreams on 127.0.0.1:0, token
//! files in a temp dir, and a real ccr instance in front of them.
#![allow(dead_code)]

use ccr::anthropic::sse::parse_events;
use ccr::app::{self, ListenOverride, Running};
use ccr::config::ConfigSource;
use ccr::demo::pool::{Account, SimPool, SimPoolBuilder};
use ccr::demo::upstream::{SimOptions, SimUpstream};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Harness {
    pub ccr: Running,
    /// `pool.upstreams`, for short test code.
    pub upstreams: Vec<Arc<SimUpstream>>,
    pub pool: SimPool,
    pub http: reqwest::Client,
    pub config_path: PathBuf,
}

/// Options of upstream `i` in these tests: named `upstream-<i>`, frames sent without delay.
pub fn sim(i: usize) -> SimOptions {
    SimOptions { chunk_delay: Duration::ZERO, ..SimOptions::named(format!("upstream-{i}")) }
}

/// Upstream timeouts of the test configs.
fn test_timeouts() -> Value {
    json!({"firstByteTimeout": 5000, "idleTimeout": 5000})
}

/// The seed's load-balancing config with each provider pointed at one simulated upstream
/// (`codewhisperer-primary` → upstreams[0], `codewhisperer-secondary` → upstreams[1]).
pub fn seed_pool() -> SimPoolBuilder {
    SimPool::seed()
        .provider_defaults(test_timeouts())
        .account("codewhisperer-primary", Account::new().sim(sim(0)))
        .account("codewhisperer-secondary", Account::new().sim(sim(1)))
}

/// A one-provider config (`solo`, token file `solo.json`) for upstreams[0].
pub fn solo_pool() -> SimPoolBuilder {
    solo_pool_with(sim(0))
}

/// [`solo_pool`] with these upstream options.
pub fn solo_pool_with(options: SimOptions) -> SimPoolBuilder {
    SimPool::builder()
        // No usage poller: these tests count the upstream's calls (refreshes, rejections).
        .provider_defaults(
            json!({"firstByteTimeout": 5000, "idleTimeout": 5000, "usage": {"enabled": false}}),
        )
        .account("solo", Account::new().sim(options))
        .rule("default", json!({"providers": ["solo"]}))
}

/// Start the pool's upstreams, write its config, and launch ccr on 127.0.0.1:0.
pub async fn start(pool: SimPoolBuilder) -> Harness {
    let pool = pool.start().await.unwrap();
    let parsed = pool.parsed_config().expect("test config must be valid");
    let ccr = app::launch(
        parsed,
        ConfigSource::Flag(pool.config_path.clone()),
        ListenOverride { host: Some("127.0.0.1".into()), port: Some(0) },
    )
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Harness { ccr, upstreams: pool.upstreams.clone(), config_path: pool.config_path.clone(), pool, http }
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
        self.pool.shutdown().await;
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

/// Starts the real `ccr start --port 0 --config <path>` binary and waits (up to 20 s) for its
/// "listening on" line. Returns the child (killed when dropped) and its base address; its log
/// keeps being drained so it never blocks on a full pipe.
pub async fn spawn_ccr(path: &std::path::Path) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ccr"))
        .args(["start", "--port", "0", "--config"])
        .arg(path)
        .env("CCR_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ccr starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let base = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("ccr's log") {
            if let Some(at) = line.find("listening on ") {
                return line[at + "listening on ".len()..].trim().to_string();
            }
        }
        panic!("ccr ended before listening");
    })
    .await
    .expect("ccr listens");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

/// Starts `bin start --config <path>` on a free port with only errors logged (the memory and
/// soak tests measure ccr, not its logging) and waits up to 20 s for `/health` to answer 200.
/// The child is killed when dropped.
pub async fn spawn_ccr_quiet(
    bin: &std::ffi::OsStr,
    path: &std::path::Path,
    http: &reqwest::Client,
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new(bin)
        .args(["start", "--config"])
        .arg(path)
        .args(["--port", &port.to_string()])
        .env("CCR_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ccr binary starts");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..400 {
        if http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ccr did not come up");
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `VmHWM:`); 0 when it cannot be read.
pub fn proc_status_kib(pid: Option<u32>, field: &str) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

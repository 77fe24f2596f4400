//! Stop signals through the real binary: SIGTERM is as graceful as Ctrl-C, the shutdown deadline
//! ends streams with a clean `error` event, a second signal forces the exit. Also the cap on
//! reported config problems (`ccr check`).
#![cfg(unix)]

mod common;

use ccr::demo::pool::{Account, SimPool};
use ccr::demo::upstream::SimOptions;
use common::sse;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::process::{Child, Command};

const GENEROUS: Duration = Duration::from_secs(20);

struct Ccr {
    child: Child,
    base: String,
    pool: SimPool,
}

/// `ccr start` on port 0 against one simulated upstream sending a frame every `chunk_delay`;
/// the address is read from its log.
async fn start(chunk_delay: Duration, server: Value) -> Ccr {
    let pool = SimPool::builder()
        .provider_defaults(json!({"firstByteTimeout": 5000, "idleTimeout": 5000}))
        .account("solo", Account::new().sim(SimOptions { chunk_delay, ..SimOptions::named("slow") }))
        .rule("default", json!({"providers": ["solo"]}))
        .merge(json!({"server": server, "input": {"defaultInstance": false}}))
        .start()
        .await
        .unwrap();
    let path = pool.config_path.clone();
    let (child, base) = common::spawn_ccr(&path).await;
    Ccr { child, base, pool }
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success();
    assert!(ok, "kill -{name}");
}

fn streaming_request(frames: usize) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
           "messages": [{"role": "user", "content": format!("[sim:long:{frames}] go")}]})
}

/// Start a streaming request and return it once its first bytes arrived.
async fn open_stream(base: &str, frames: usize) -> reqwest::Response {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http.post(format!("{base}/v1/messages")).json(&streaming_request(frames)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r
}

async fn rest(mut r: reqwest::Response, first: &mut Vec<u8>) -> String {
    while let Ok(Some(chunk)) = r.chunk().await {
        first.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(first).into_owned()
}

async fn first_chunk(r: &mut reqwest::Response) -> Vec<u8> {
    r.chunk().await.unwrap().expect("a first chunk").to_vec()
}

#[tokio::test]
async fn sigterm_lets_in_flight_streams_finish() {
    let mut ccr = start(Duration::from_millis(40), json!({})).await;
    let mut r = open_stream(&ccr.base, 25).await;
    let mut got = first_chunk(&mut r).await;
    signal(&ccr.child, "TERM");
    let body = tokio::time::timeout(GENEROUS, rest(r, &mut got)).await.expect("the stream ends");
    let events = sse(&body);
    assert_eq!(events.last().map(|(e, _)| e.as_str()), Some("message_stop"), "{body}");
    assert!(!events.iter().any(|(e, _)| e == "error"), "{body}");
    let status = tokio::time::timeout(GENEROUS, ccr.child.wait()).await.expect("ccr exits").unwrap();
    assert!(status.success(), "{status:?}");
    ccr.pool.shutdown().await;
}

#[tokio::test]
async fn the_shutdown_deadline_ends_streams_with_an_error_event() {
    let mut ccr = start(Duration::from_millis(200), json!({"shutdownTimeout": 300})).await;
    let mut r = open_stream(&ccr.base, 1000).await;
    let mut got = first_chunk(&mut r).await;
    signal(&ccr.child, "TERM");
    let body = tokio::time::timeout(GENEROUS, rest(r, &mut got)).await.expect("the stream ends");
    let events = sse(&body);
    let (last, data) = events.last().expect("events");
    assert_eq!(last, "error", "{body}");
    assert_eq!(data["error"]["type"], "overloaded_error");
    assert!(data["error"]["message"].as_str().unwrap().contains("shutting down"), "{body}");
    let status = tokio::time::timeout(GENEROUS, ccr.child.wait()).await.expect("ccr exits").unwrap();
    assert!(status.success(), "{status:?}");
    ccr.pool.shutdown().await;
}

#[tokio::test]
async fn a_second_signal_forces_the_exit() {
    let mut ccr = start(Duration::from_millis(200), json!({"shutdownTimeout": 600_000})).await;
    let mut r = open_stream(&ccr.base, 1000).await;
    let _ = first_chunk(&mut r).await;
    signal(&ccr.child, "INT");
    // Still shutting down gracefully: the stream goes on.
    let _ = r.chunk().await.unwrap().expect("the stream goes on after the first signal");
    assert!(ccr.child.try_wait().unwrap().is_none(), "ccr exited on the first signal");
    signal(&ccr.child, "TERM");
    let status = tokio::time::timeout(GENEROUS, ccr.child.wait()).await.expect("ccr exits at once").unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    ccr.pool.shutdown().await;
}

#[tokio::test]
async fn thousands_of_config_problems_are_reported_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: Value = serde_json::from_str(ccr::config::DEFAULT_CONFIG).unwrap();
    for i in 0..5000 {
        config[format!("unknownKey{i}")] = json!(i);
    }
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ccr"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines[0].ends_with(": 5000 problems"), "{}", lines[0]);
    assert_eq!(lines.len(), 1 + ccr::config::validate::MAX_REPORTED_PROBLEMS + 1, "{stderr}");
    assert_eq!(*lines.last().unwrap(), "  … and 4980 more");
    assert!(stderr.len() < 4096, "{} bytes", stderr.len());
}

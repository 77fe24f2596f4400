//! Fault tests through the real socket (design §12, "faults survived"): a simulated upstream
//! that refuses, resets, hangs, answers 5xx / 429 / 403, sends a corrupt frame or is slow; a
//! token file deleted, corrupted or replaced while ccr runs; a client that goes away mid-stream.
//!
//! Every test checks the same three things: each request ends in a full answer or an
//! Anthropic-shaped error (never a silently truncated one), the affected provider's balancer
//! state says what happened, and every in-flight count returns to zero. Timeouts in the configs
//! are a few hundred milliseconds and every test runs under [`TEST_BOUND`].

mod common;

use ccr::balancer::{BlockReason, BreakerState, ProviderSnapshot};
use ccr::demo::pool::{Account, SimPool, SimPoolBuilder};
use ccr::demo::upstream::{ErrorKind, Scenario, write_social_token_file};
use common::*;
use serde_json::{Value, json};
use std::future::Future;
use std::time::Duration;

/// No fault test may take longer than this.
const TEST_BOUND: Duration = Duration::from_secs(20);

/// Upstream timeouts in the test configs (ms): short, so that hangs end quickly.
const CONNECT_TIMEOUT_MS: u64 = 300;
const FIRST_BYTE_TIMEOUT_MS: u64 = 500;
const IDLE_TIMEOUT_MS: u64 = 400;

/// Runs a test body under [`TEST_BOUND`].
async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_BOUND, test).await.expect("the fault test exceeded its time bound")
}

/// The provider entry of every account in these tests: short timeouts, a slow breaker.
fn provider_json() -> Value {
    json!({
        "connectTimeout": CONNECT_TIMEOUT_MS,
        "firstByteTimeout": FIRST_BYTE_TIMEOUT_MS,
        "idleTimeout": IDLE_TIMEOUT_MS,
        "circuitBreaker": {"failureThreshold": 3, "resetTimeout": 60000, "monitoringPeriod": 60000}
    })
}

fn token_path(h: &Harness, id: &str) -> std::path::PathBuf {
    h.pool.token_path(id).expect("a token file").to_path_buf()
}

/// Providers `a` (upstreams[0]) and `b` (upstreams[1]): every request goes to `a` first and
/// fails over to `b` (`single` with a fallback).
fn pair() -> SimPoolBuilder {
    SimPool::builder()
        .provider_defaults(provider_json())
        .account("a", Account::new().sim(sim(0)))
        .account("b", Account::new().sim(sim(1)))
        .rule(
            "default",
            json!({"providers": ["a", "b"], "loadBalancing": {"strategy": "single", "fallback": "b"}}),
        )
}

/// Provider `a` alone: a fault reaches the client.
fn solo() -> SimPoolBuilder {
    SimPool::builder()
        .provider_defaults(provider_json())
        .account("a", Account::new().sim(sim(0)))
        .rule("default", json!({"providers": ["a"]}))
}

async fn start_pair() -> Harness {
    start(pair()).await
}

/// [`pair`] with a first-byte timeout long enough for a token refresh and a retry on a loaded
/// machine, for the tests that count attempts across a refresh.
async fn start_patient_pair() -> Harness {
    let mut provider = provider_json();
    provider["firstByteTimeout"] = json!(10_000);
    start(pair().provider_defaults(provider)).await
}

async fn start_solo() -> Harness {
    start(solo()).await
}

/// How a request ended, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// A whole answer: `message_stop` for a stream, a `message` object otherwise.
    Complete,
    /// An Anthropic error (as the HTTP answer, or as the stream's last event), with its type.
    Error { status: u16, kind: String, message: String },
}

/// Reads how the request ended, failing the test unless it is a full answer or a well-formed
/// Anthropic error (a stream must close every block it opened before its `error` event).
fn outcome(status: u16, body: &str) -> Outcome {
    if status != 200 {
        let v: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {body}"));
        assert_eq!(v["type"], "error", "{status}: {body}");
        let kind = v["error"]["type"].as_str().unwrap_or_default().to_string();
        let message = v["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(!kind.is_empty() && !message.is_empty(), "{status}: {body}");
        return Outcome::Error { status, kind, message };
    }
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        assert_eq!(v["type"], "message", "{body}");
        assert!(v["stop_reason"].is_string(), "a whole message has a stop reason: {body}");
        return Outcome::Complete;
    }
    let events = sse(body);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).filter(|e| *e != "ping").collect();
    assert_eq!(names.first(), Some(&"message_start"), "{body}");
    let opened = names.iter().filter(|e| **e == "content_block_start").count();
    let closed = names.iter().filter(|e| **e == "content_block_stop").count();
    assert_eq!(opened, closed, "every opened block is closed: {body}");
    match names.last() {
        Some(&"message_stop") => Outcome::Complete,
        Some(&"error") => {
            let (_, data) = events.last().expect("an error event");
            assert_eq!(data["type"], "error", "{body}");
            let kind = data["error"]["type"].as_str().unwrap_or_default().to_string();
            let message = data["error"]["message"].as_str().unwrap_or_default().to_string();
            assert!(!kind.is_empty() && !message.is_empty(), "{body}");
            Outcome::Error { status, kind, message }
        }
        other => panic!("stream neither completed nor failed cleanly (last event {other:?}):\n{body}"),
    }
}

/// POST, read everything, classify. Returns the outcome, the provider that answered and the
/// number of attempts (from the `x-ccr-*` headers).
async fn request(h: &Harness, body: &Value) -> (Outcome, String, String) {
    let (status, headers, text) = h.call(body).await;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (outcome(status, &text), header("x-ccr-provider"), header("x-ccr-attempts"))
}

fn provider(h: &Harness, id: &str) -> ProviderSnapshot {
    h.ccr.runtime.balancer.snapshot().provider(id).cloned().expect("provider in snapshot")
}

fn breaker_failures(p: &ProviderSnapshot) -> u32 {
    p.breaker.as_ref().map_or(0, |b| b.failures)
}

/// Waits until ccr has nothing in flight for any provider and (when `sims` is set) the
/// upstreams have no open chat request: every lease and every upstream body was released.
async fn assert_settled(h: &Harness, sims: bool) {
    for _ in 0..300 {
        let ccr_idle = h.ccr.runtime.balancer.snapshot().providers.iter().all(|p| p.in_flight == 0);
        let sims_idle = !sims || h.upstreams.iter().all(|u| u.stats().in_flight == 0);
        if ccr_idle && sims_idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ccr: Vec<(String, u32)> =
        h.ccr.runtime.balancer.snapshot().providers.iter().map(|p| (p.id.clone(), p.in_flight)).collect();
    let ups: Vec<u64> = h.upstreams.iter().map(|u| u.stats().in_flight).collect();
    panic!("in-flight counts did not return to zero: ccr {ccr:?}, upstreams {ups:?}");
}

fn turn(text: &str, stream: bool) -> Value {
    main_turn(text, stream)
}

#[tokio::test]
async fn refused_connections_fail_over_and_count_against_the_provider() {
    bounded(async {
        let h = start_pair().await;
        h.upstreams[0].set_down(true);
        for stream in [true, false] {
            let (out, provider_id, attempts) = request(&h, &turn("hello", stream)).await;
            assert_eq!(out, Outcome::Complete);
            assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "2"));
        }
        let a = provider(&h, "a");
        assert_eq!(a.counters.failures, 2, "{a:?}");
        assert_eq!(breaker_failures(&a), 2);
        assert!(a.last_error.as_ref().unwrap().message.contains("connection failed"), "{:?}", a.last_error);
        assert_eq!(provider(&h, "b").counters.successes, 2);
        // A third refusal opens a's breaker; from then on requests go straight to b.
        let (out, _, _) = request(&h, &turn("again", true)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!(provider(&h, "a").breaker.unwrap().state, BreakerState::Open);
        let (out, provider_id, attempts) = request(&h, &turn("after", true)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "1"));
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn refused_connections_without_a_fallback_are_an_anthropic_502() {
    bounded(async {
        let h = start_solo().await;
        h.upstreams[0].set_down(true);
        let (out, _, _) = request(&h, &turn("hello", true)).await;
        match out {
            Outcome::Error { status, kind, .. } => assert_eq!((status, kind.as_str()), (502, "api_error")),
            other => panic!("{other:?}"),
        }
        assert_eq!(provider(&h, "a").counters.failures, 1);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_stream_cut_mid_frame_ends_with_an_sse_error() {
    bounded(async {
        let h = start_pair().await;
        h.upstreams[0].fail_next(1, ErrorKind::CutStream);
        let (out, provider_id, _) = request(&h, &turn("tell me [sim:long:30]", true)).await;
        match out {
            Outcome::Error { status, kind, message } => {
                assert_eq!((status, kind.as_str()), (200, "api_error"), "the stream had started");
                assert!(message.contains("cut inside a frame"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(provider_id, "a");
        let a = provider(&h, "a");
        assert_eq!((a.counters.failures, breaker_failures(&a)), (1, 1), "{a:?}");
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_cut_non_streaming_answer_fails_over_before_the_client_sees_it() {
    bounded(async {
        let h = start_pair().await;
        h.upstreams[0].fail_next(1, ErrorKind::CutStream);
        let (out, provider_id, attempts) = request(&h, &turn("tell me [sim:long:30]", false)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "2"));
        assert_eq!(provider(&h, "a").counters.failures, 1);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_upstream_reset_mid_stream_ends_with_an_sse_error() {
    bounded(async {
        let h = start_pair().await;
        h.upstreams[0].set_chunk_delay(Duration::from_millis(20));
        let response = h.post(&turn("long one [sim:long:100]", true)).await;
        assert_eq!(response.status(), 200);
        // The answer is flowing; now the upstream dies and resets every connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.upstreams[0].set_down(true);
        let text = response.text().await.unwrap();
        match outcome(200, &text) {
            Outcome::Error { kind, message, .. } => {
                assert_eq!(kind, "api_error");
                // A reset reads as a broken body, or (if the bytes before it were whole frames
                // and the reset lands between reads) as a stream cut inside a frame.
                assert!(message.contains("broke") || message.contains("cut inside"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let a = provider(&h, "a");
        assert_eq!(a.counters.failures, 1, "{a:?}");
        // The next request fails over to b without the client noticing.
        let (out, provider_id, _) = request(&h, &turn("next", true)).await;
        assert_eq!((out, provider_id.as_str()), (Outcome::Complete, "b"));
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_hang_past_the_first_byte_timeout_fails_over() {
    bounded(async {
        let h = start_pair().await;
        h.upstreams[0].fail_next(1, ErrorKind::Hang);
        let started = std::time::Instant::now();
        let (out, provider_id, attempts) = request(&h, &turn("hello", true)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "2"));
        assert!(started.elapsed() >= Duration::from_millis(FIRST_BYTE_TIMEOUT_MS));
        let a = provider(&h, "a");
        assert_eq!((a.counters.failures, breaker_failures(&a)), (1, 1));
        assert!(a.last_error.unwrap().message.contains("no answer within"));
        // The hung upstream request itself only ends when that upstream is cut; ccr's side is free.
        assert_settled(&h, false).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_hang_without_a_fallback_is_an_anthropic_504() {
    bounded(async {
        let h = start_solo().await;
        h.upstreams[0].fail_next(1, ErrorKind::Hang);
        let (out, _, _) = request(&h, &turn("hello", false)).await;
        match out {
            Outcome::Error { status, kind, .. } => assert_eq!((status, kind.as_str()), (504, "api_error")),
            other => panic!("{other:?}"),
        }
        assert_settled(&h, false).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn silence_mid_stream_past_the_idle_timeout_ends_with_an_sse_error() {
    bounded(async {
        let h = start_solo().await;
        // The first frame leaves at once, the next only after more than the idle timeout.
        h.upstreams[0].set_chunk_delay(Duration::from_millis(IDLE_TIMEOUT_MS * 3));
        let (out, _, _) = request(&h, &turn("slow [sim:long:5]", true)).await;
        match out {
            Outcome::Error { status, message, .. } => {
                assert_eq!(status, 200);
                assert!(message.contains("silent"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let a = provider(&h, "a");
        assert_eq!(a.counters.failures, 1, "{a:?}");
        h.upstreams[0].set_chunk_delay(Duration::ZERO);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn server_errors_fail_over_and_open_the_breaker() {
    bounded(async {
        let h = start_pair().await;
        h.upstreams[0].fail_next(3, ErrorKind::Status500);
        for i in 0..3 {
            let (out, provider_id, attempts) = request(&h, &turn(&format!("turn {i}"), i % 2 == 0)).await;
            assert_eq!(out, Outcome::Complete);
            assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "2"));
        }
        let a = provider(&h, "a");
        assert_eq!(a.counters.failures, 3);
        let breaker = a.breaker.unwrap();
        assert_eq!((breaker.state, breaker.times_opened), (BreakerState::Open, 1));
        assert!(a.blocked.contains(&BlockReason::BreakerOpen));
        assert!(a.last_error.unwrap().message.contains("500"));
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_429_cools_the_provider_down_for_its_retry_after() {
    bounded(async {
        let h = start_pair().await;
        h.upstreams[0].fail_next(1, ErrorKind::Throttle429);
        let (out, provider_id, attempts) = request(&h, &turn("hello", true)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "2"));
        let snap = h.ccr.runtime.balancer.snapshot();
        let a = snap.provider("a").unwrap();
        assert!(a.blocked.contains(&BlockReason::CoolingDown), "{a:?}");
        // The sim sends `Retry-After: 2`.
        let left = a.cooldown_until_ms.unwrap().saturating_sub(snap.uptime_ms);
        assert!((1000..=2000).contains(&left), "cooldown left {left} ms");
        // While a cools down, requests go straight to b.
        let (out, provider_id, attempts) = request(&h, &turn("again", false)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "1"));
        assert_eq!(h.upstreams[0].stats().generate, 1);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_429_without_a_fallback_is_a_rate_limit_error_with_retry_after() {
    bounded(async {
        let h = start_solo().await;
        h.upstreams[0].fail_next(1, ErrorKind::Throttle429);
        let r = h.post(&turn("hello", true)).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        let text = r.text().await.unwrap();
        assert!(matches!(outcome(429, &text), Outcome::Error { ref kind, .. } if kind == "rate_limit_error"));
        // Still cooling down: the next one is refused by ccr itself, also with a Retry-After.
        let r = h.post(&turn("again", true)).await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        let text = r.text().await.unwrap();
        assert!(matches!(outcome(503, &text), Outcome::Error { ref kind, .. } if kind == "overloaded_error"));
        assert_eq!(h.upstreams[0].stats().generate, 1);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_403_refreshes_the_token_once_and_retries() {
    bounded(async {
        let h = start_patient_pair().await;
        h.upstreams[0].fail_next(1, ErrorKind::Forbidden403);
        let (out, provider_id, attempts) = request(&h, &turn("hello", true)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!((provider_id.as_str(), attempts.as_str()), ("a", "1"));
        assert_eq!(h.upstreams[0].stats().refresh_social, 1);
        assert_eq!(provider(&h, "a").counters.failures, 0);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_403_that_survives_the_refresh_fails_over_as_an_auth_failure() {
    bounded(async {
        let h = start_patient_pair().await;
        h.upstreams[0].fail_next(2, ErrorKind::Forbidden403);
        let (out, provider_id, attempts) = request(&h, &turn("hello", false)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "2"));
        assert_eq!(h.upstreams[0].stats().refresh_social, 1, "one refresh, not a storm");
        let a = provider(&h, "a");
        assert_eq!(a.counters.failures, 1);
        assert!(a.last_error.unwrap().message.contains("403"));
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_corrupt_frame_mid_stream_is_a_clean_error_and_a_protocol_failure() {
    bounded(async {
        let h = start_pair().await;
        h.upstreams[0].fail_next(1, ErrorKind::CorruptFrame);
        let (out, provider_id, _) = request(&h, &turn("hello [sim:long:20]", true)).await;
        assert_eq!(provider_id, "a");
        assert!(
            matches!(out, Outcome::Error { status: 200, ref message, .. } if message.contains("corrupt")),
            "{out:?}"
        );
        let a = provider(&h, "a");
        assert_eq!((a.counters.failures, breaker_failures(&a)), (1, 1));
        // Non-streaming: nothing reached the client yet, so the corrupt answer fails over.
        h.upstreams[0].fail_next(1, ErrorKind::CorruptFrame);
        let (out, provider_id, attempts) = request(&h, &turn("hello [sim:long:20]", false)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "2"));
        assert_eq!(provider(&h, "a").counters.failures, 2);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_slow_upstream_within_the_timeouts_gives_full_answers() {
    bounded(async {
        let h = start_solo().await;
        h.upstreams[0].set_latency(Duration::from_millis(FIRST_BYTE_TIMEOUT_MS / 2));
        h.upstreams[0].set_chunk_delay(Duration::from_millis(IDLE_TIMEOUT_MS / 4));
        for stream in [true, false] {
            let (out, _, attempts) = request(&h, &turn("slowly [sim:long:6]", stream)).await;
            assert_eq!((out, attempts.as_str()), (Outcome::Complete, "1"));
        }
        let a = provider(&h, "a");
        assert_eq!((a.counters.successes, a.counters.failures), (2, 0));
        assert!(a.latency.last_ttfb_ms.unwrap() >= (FIRST_BYTE_TIMEOUT_MS / 2) as f64);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_quota_402_fails_over_and_excludes_the_provider() {
    bounded(async {
        let h = start_pair().await;
        h.upstreams[0].fail_next(1, ErrorKind::Quota402);
        let (out, provider_id, _) = request(&h, &turn("hello", true)).await;
        assert_eq!((out, provider_id.as_str()), (Outcome::Complete, "b"));
        let a = provider(&h, "a");
        assert!(a.blocked.contains(&BlockReason::QuotaExhausted), "{a:?}");
        assert_eq!(breaker_failures(&a), 0, "quota is not a breaker failure");
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

fn token_status_error(h: &Harness, id: &str) -> Option<String> {
    h.ccr.runtime.live().clients.get(id).and_then(|c| c.token_status().error)
}

#[tokio::test]
async fn a_token_file_deleted_while_running_fails_over_then_recovers() {
    bounded(async {
        let h = start_pair().await;
        let (out, provider_id, _) = request(&h, &turn("before", true)).await;
        assert_eq!((out, provider_id.as_str()), (Outcome::Complete, "a"));
        let path = token_path(&h, "a");
        let saved = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (out, provider_id, attempts) = request(&h, &turn("deleted", true)).await;
        assert_eq!(out, Outcome::Complete);
        assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "2"));
        let a = provider(&h, "a");
        assert_eq!(a.counters.failures, 1);
        assert!(a.last_error.unwrap().message.contains("not found"));
        assert!(token_status_error(&h, "a").unwrap().contains("not found"));
        assert_eq!(h.upstreams[0].stats().generate, 1, "no request went out without a token");
        // Restored: a serves again.
        std::fs::write(&path, saved).unwrap();
        let (out, provider_id, _) = request(&h, &turn("restored", true)).await;
        assert_eq!((out, provider_id.as_str()), (Outcome::Complete, "a"));
        assert_eq!(token_status_error(&h, "a"), None);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_token_file_deleted_without_a_fallback_is_a_server_side_error_naming_the_account() {
    bounded(async {
        let h = start_solo().await;
        std::fs::remove_file(token_path(&h, "a")).unwrap();
        let (out, _, _) = request(&h, &turn("no token", true)).await;
        match out {
            Outcome::Error { status, kind, message } => {
                // Not 401: clients read that as "your API key is wrong".
                assert_eq!((status, kind.as_str()), (503, "api_error"));
                assert!(
                    message.starts_with(
                        "no ccr account can serve this request: a: no usable token: token file "
                    ),
                    "{message}"
                );
                assert!(message.contains("not found"), "{message}");
                assert!(message.contains("log in with the Kiro IDE"), "{message}");
                assert!(message.contains("`ccr accounts import`"), "{message}");
                assert!(!message.contains("aoa") && !message.contains("aor"), "no token material: {message}");
            }
            other => panic!("{other:?}"),
        }
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

async fn health(h: &Harness) -> (u16, Value) {
    let r = reqwest::get(h.url("/health")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn missing_token_files_are_seen_at_start_and_every_account_is_named() {
    bounded(async {
        // The token files are gone or broken before ccr starts.
        let pool = pair().start().await.unwrap();
        std::fs::remove_file(pool.token_path("a").unwrap()).unwrap();
        std::fs::write(pool.token_path("b").unwrap(), "not json").unwrap();
        let ccr = ccr::app::launch(
            pool.parsed_config().unwrap(),
            ccr::config::ConfigSource::Flag(pool.config_path.clone()),
            ccr::app::ListenOverride { host: Some("127.0.0.1".into()), port: Some(0) },
        )
        .await
        .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let h = Harness {
            ccr,
            upstreams: pool.upstreams.clone(),
            config_path: pool.config_path.clone(),
            pool,
            http,
        };
        // Before any request: both accounts need a login, and /health says nothing can serve.
        let (status, body) = health(&h).await;
        assert_eq!((status, body["status"].as_str()), (503, Some("unavailable")), "{body}");
        let providers: Value = reqwest::get(h.url("/health/providers")).await.unwrap().json().await.unwrap();
        for id in ["a", "b"] {
            let p = &providers["providers"][id];
            assert_eq!(p["status"], "needs_login", "{id}: {p}");
            assert!(p["reason"].as_str().is_some_and(|r| r.contains("fix: log in with the Kiro IDE")), "{p}");
        }
        let (out, _, attempts) = request(&h, &turn("no tokens", false)).await;
        match out {
            Outcome::Error { status, kind, message } => {
                assert_eq!((status, kind.as_str(), attempts.as_str()), (503, "api_error", "2"));
                assert!(message.contains("a: no usable token: token file "), "{message}");
                assert!(message.contains("b: no usable token: token file "), "{message}");
                assert!(message.contains("malformed"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // One account fixed: it serves, and /health is ok again.
        write_social_token_file(
            &token_path(&h, "a"),
            &h.upstreams[0].issue_credentials(Duration::from_secs(3600)),
        )
        .unwrap();
        let (out, provider_id, _) = request(&h, &turn("fixed", false)).await;
        assert_eq!((out, provider_id.as_str()), (Outcome::Complete, "a"));
        assert_eq!(health(&h).await.0, 200);
        assert_eq!(h.upstreams[1].stats().generate, 0, "nothing went out without a token");
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_token_file_corrupted_while_running_fails_over() {
    bounded(async {
        let h = start_pair().await;
        let path = token_path(&h, "a");
        for garbage in ["{\"accessToken\": \"aoa-trunc", "[1, 2, 3]", ""] {
            std::fs::write(&path, garbage).unwrap();
            let (out, provider_id, attempts) = request(&h, &turn("corrupted", false)).await;
            assert_eq!(out, Outcome::Complete, "{garbage:?}");
            assert_eq!((provider_id.as_str(), attempts.as_str()), ("b", "2"), "{garbage:?}");
            assert!(token_status_error(&h, "a").unwrap().contains("malformed"), "{garbage:?}");
        }
        assert_eq!(h.upstreams[0].stats().generate, 0);
        assert_eq!(provider(&h, "a").counters.failures, 3);
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_token_file_replaced_while_running_is_picked_up_without_a_refresh() {
    bounded(async {
        let h = start_solo().await;
        let (out, _, _) = request(&h, &turn("old login", true)).await;
        assert_eq!(out, Outcome::Complete);
        // Log in again elsewhere (Kiro IDE rewrites the file) and revoke the old tokens.
        h.upstreams[0].expire_access_tokens();
        let fresh = h.upstreams[0].issue_credentials(Duration::from_secs(3600));
        let path = token_path(&h, "a");
        let tmp = h.pool.dir().join("a.json.tmp");
        write_social_token_file(&tmp, &fresh).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let (out, _, _) = request(&h, &turn("new login", true)).await;
        assert_eq!(out, Outcome::Complete);
        let sent = h.upstreams[0].last_request().unwrap();
        assert_eq!(sent.header("authorization").unwrap(), format!("Bearer {}", fresh.access_token));
        let stats = h.upstreams[0].stats();
        assert_eq!(
            (stats.refresh_social, stats.auth_rejected),
            (0, 0),
            "the file was re-read, not refreshed"
        );
        assert_settled(&h, true).await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_gone_mid_stream_releases_ccr_and_the_upstream() {
    bounded(async {
        let h = start_solo().await;
        h.upstreams[0].set_chunk_delay(Duration::from_millis(10));
        let mut response = h.post(&turn("a long answer [sim:long:200]", true)).await;
        assert_eq!(response.status(), 200);
        let first = response.chunk().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("message_start"));
        assert_eq!(provider(&h, "a").in_flight, 1);
        drop(response);
        assert_settled(&h, true).await;
        let a = provider(&h, "a");
        assert_eq!(
            (a.counters.successes, a.counters.failures, a.counters.neutral),
            (0, 0, 1),
            "a client that leaves is nobody's failure"
        );
        assert!(
            h.upstreams[0].stats().streams_completed == 0,
            "the upstream stream was abandoned, not drained"
        );
        // The provider serves the next request normally.
        let (out, _, _) = request(&h, &turn("next", true)).await;
        assert_eq!(out, Outcome::Complete);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn mixed_random_faults_under_concurrency_lose_no_request() {
    bounded(async {
        let h = start_pair().await;
        let kinds = [
            ErrorKind::Status500,
            ErrorKind::Throttle429,
            ErrorKind::Forbidden403,
            ErrorKind::CutStream,
            ErrorKind::CorruptFrame,
            ErrorKind::Hang,
        ];
        for up in &h.upstreams {
            up.set_scenario(Scenario::Long(10));
            up.set_chunk_delay(Duration::from_millis(2));
            up.set_error_rate(0.3);
        }
        let h = std::sync::Arc::new(h);
        let mut tasks = Vec::new();
        for (round, kind) in kinds.iter().enumerate() {
            h.upstreams[0].set_error_kind(*kind);
            h.upstreams[1].set_error_kind(kinds[(round + 1) % kinds.len()]);
            for i in 0..8 {
                let h = h.clone();
                tasks.push(tokio::spawn(async move {
                    let body = turn(&format!("mixed {round}/{i}"), i % 2 == 0);
                    let (status, _, text) = h.call(&body).await;
                    outcome(status, &text)
                }));
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let mut complete = 0;
        for t in tasks {
            if t.await.expect("request task") == Outcome::Complete {
                complete += 1;
            }
        }
        assert!(complete > 0, "some requests got through");
        for up in &h.upstreams {
            up.set_error_rate(0.0);
        }
        assert_settled(&h, false).await;
        let h = std::sync::Arc::try_unwrap(h).ok().expect("tasks done");
        h.shutdown().await;
    })
    .await;
}

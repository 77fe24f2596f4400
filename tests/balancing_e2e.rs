//! Issue 4 end to end: two simulated upstreams behind the real proxy, balanced by the seed's
//! rules (with test-sized timers).

mod common;

use ccr::balancer::BreakerState;
use ccr::demo::upstream::{ErrorKind, Scenario};
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// The seed config with timers shrunk so breaker tests finish quickly.
fn fast_seed() -> ccr::demo::pool::SimPoolBuilder {
    seed_pool()
        .provider_defaults(json!({
            "circuitBreaker": {"resetTimeout": 300, "monitoringPeriod": 10000},
            "connectTimeout": 500,
        }))
        .merge(json!({"routing": {"longContextThreshold": 2000}}))
        // These tests send every request from one Claude Code session and measure how requests
        // are spread: conversation affinity (on by default) would keep them all on one account.
        .merge(json!({"routing": {"rules": {
            "default": {"loadBalancing": {"sticky": false}},
            "background": {"loadBalancing": {"sticky": false}},
            "thinking": {"loadBalancing": {"sticky": false}},
            "longcontext": {"loadBalancing": {"sticky": false}},
            "search": {"loadBalancing": {"sticky": false}},
        }}}))
}

async fn provider_of(h: &Harness, body: &Value) -> (u16, String, String) {
    let (status, headers, text) = h.call(body).await;
    let provider = headers.get("x-ccr-provider").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, provider, text)
}

fn tally(list: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for p in list {
        *m.entry(p.clone()).or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn default_rule_splits_exactly_70_30() {
    let h = start(fast_seed()).await;
    let mut picks = Vec::new();
    for i in 0..100 {
        let (status, provider, body) = provider_of(&h, &main_turn(&format!("turn {i}"), true)).await;
        assert_eq!(status, 200, "{body}");
        picks.push(provider);
    }
    for window in picks.chunks(10) {
        let t = tally(window);
        assert_eq!(t["codewhisperer-primary"], 7, "{window:?}");
        assert_eq!(t["codewhisperer-secondary"], 3, "{window:?}");
    }
    assert_eq!(h.upstreams[0].stats().generate, 70);
    assert_eq!(h.upstreams[1].stats().generate, 30);
    h.shutdown().await;
}

#[tokio::test]
async fn primary_down_mid_load_fails_over_opens_breaker_and_recovers_with_one_probe() {
    let h = start(fast_seed()).await;
    h.upstreams[0].set_scenario(Scenario::Long(20));
    h.upstreams[1].set_scenario(Scenario::Long(20));
    h.upstreams[0].set_chunk_delay(Duration::from_millis(2));
    h.upstreams[1].set_chunk_delay(Duration::from_millis(2));

    let h = std::sync::Arc::new(h);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let hc = h.clone();
        tasks.push(tokio::spawn(async move {
            let (status, headers, body) = hc.call(&main_turn(&format!("load {i}"), true)).await;
            (status, headers.get("x-ccr-attempts").map(|v| v.to_str().unwrap().to_string()), body)
        }));
        if i == 15 {
            h.upstreams[0].set_down(true);
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut completed = 0;
    let mut cut_after_start = 0;
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200, "no request that had not started streaming may fail: {body}");
        let events = sse(&body);
        match events.last().map(|(e, _)| e.as_str()) {
            Some("message_stop") => completed += 1,
            Some("error") => cut_after_start += 1,
            other => panic!("answer neither complete nor cleanly failed: {other:?}\n{body}"),
        }
    }
    assert_eq!(completed + cut_after_start, 60);
    let snap = h.ccr.runtime.balancer.snapshot();
    let primary = snap.provider("codewhisperer-primary").unwrap();
    let breaker = primary.breaker.as_ref().unwrap();
    // Opened by the outage; with a 300 ms reset it may already be half-open when we look.
    assert!(breaker.times_opened >= 1, "{primary:?}");
    assert_ne!(breaker.state, BreakerState::Closed, "{primary:?}");

    // Back up: after resetTimeout exactly one probe request goes to the primary and closes it.
    h.upstreams[0].set_down(false);
    h.upstreams[0].wait_listening().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = h.upstreams[0].stats().generate;
    for i in 0..10 {
        let (status, _, body) = h.call(&main_turn(&format!("after {i}"), true)).await;
        assert_eq!(status, 200, "{body}");
    }
    let snap = h.ccr.runtime.balancer.snapshot();
    let primary = snap.provider("codewhisperer-primary").unwrap();
    assert_eq!(primary.breaker.as_ref().unwrap().state, BreakerState::Closed);
    assert!(h.upstreams[0].stats().generate > before, "the primary serves again");
    let h = std::sync::Arc::try_unwrap(h).ok().unwrap();
    h.shutdown().await;
}

/// A search request: the seed routes `search` with `response-time` over [secondary, primary].
fn search_turn(i: usize) -> Value {
    json!({"model":"claude-opus-4-8","max_tokens":1000,"stream":true,"thinking":{"type":"disabled"},
           "tools":[{"type":"web_search_20250305","name":"web_search","max_uses":8}],
           "messages":[{"role":"user","content":format!("Perform a web search for the query: {i}")}]})
}

#[tokio::test]
async fn slow_provider_loses_traffic_under_response_time() {
    let h = start(fast_seed()).await;
    h.upstreams[1].set_latency(Duration::from_millis(400)); // the secondary is first in the search rule
    let mut picks = Vec::new();
    for i in 0..20 {
        let (status, provider, body) = provider_of(&h, &search_turn(i)).await;
        assert_eq!(status, 200, "{body}");
        picks.push(provider);
    }
    let t = tally(&picks);
    assert_eq!(t.get("codewhisperer-secondary"), Some(&1), "only the first (unmeasured) try: {picks:?}");
    assert_eq!(t.get("codewhisperer-primary"), Some(&19));
    h.shutdown().await;
}

/// A thinking request (budgeted thinking): least-connections over [primary, secondary].
fn thinking_turn(i: usize) -> Value {
    let mut body = main_turn(&format!("think {i} [sim:long]"), true);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 4000});
    body
}

#[tokio::test]
async fn least_connections_balances_concurrent_streams() {
    let h = start(fast_seed()).await;
    for up in &h.upstreams {
        up.set_chunk_delay(Duration::from_millis(30));
    }
    let mut open = Vec::new();
    let mut picks = Vec::new();
    for i in 0..6 {
        let r = h.post(&thinking_turn(i)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ccr-category"], "thinking");
        picks.push(r.headers()["x-ccr-provider"].to_str().unwrap().to_string());
        open.push(r); // keep the stream open: it counts as a connection
    }
    let t = tally(&picks);
    assert_eq!(t["codewhisperer-primary"], 3, "{picks:?}");
    assert_eq!(t["codewhisperer-secondary"], 3, "{picks:?}");
    for (i, p) in picks.iter().enumerate() {
        let expected = if i % 2 == 0 { "codewhisperer-primary" } else { "codewhisperer-secondary" };
        assert_eq!(p, expected, "alternates while streams stay open: {picks:?}");
    }
    drop(open);
    h.shutdown().await;
}

#[tokio::test]
async fn single_falls_back_and_returns() {
    let h = start(fast_seed()).await;
    let long = main_turn(&"word ".repeat(3000), true);
    let (status, provider, _) = provider_of(&h, &long).await;
    assert_eq!((status, provider.as_str()), (200, "codewhisperer-primary"));
    h.upstreams[0].set_down(true);
    let (status, headers, body) = h.call(&long).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-ccr-category"], "longcontext");
    assert_eq!(headers["x-ccr-provider"], "codewhisperer-secondary");
    assert_eq!(headers["x-ccr-attempts"], "2");
    h.upstreams[0].set_down(false);
    h.upstreams[0].wait_listening().await;
    let (status, provider, _) = provider_of(&h, &long).await;
    assert_eq!((status, provider.as_str()), (200, "codewhisperer-primary"), "back to the primary");
    h.shutdown().await;
}

#[tokio::test]
async fn all_providers_down_gives_a_clean_503_with_retry_after() {
    let h = start(fast_seed()).await;
    for up in &h.upstreams {
        up.set_down(true);
    }
    let mut last = None;
    for i in 0..12 {
        let r = h.post(&main_turn(&format!("down {i}"), true)).await;
        let status = r.status().as_u16();
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "error", "{body}");
        assert!(status == 502 || status == 503, "{status} {body}");
        last = Some((status, retry, body));
    }
    let (status, retry, body) = last.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(body["error"]["type"], "overloaded_error");
    h.shutdown().await;
}

#[tokio::test]
async fn in_flight_returns_to_zero_after_mixed_load_and_disconnects() {
    let h = start(fast_seed()).await;
    for up in &h.upstreams {
        up.set_scenario(Scenario::Long(30));
        up.set_chunk_delay(Duration::from_millis(2));
    }
    h.upstreams[1].fail_next(5, ErrorKind::Status500);
    let h = std::sync::Arc::new(h);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let body = if i % 3 == 0 {
                background_turn(&format!("title {i}"))
            } else {
                main_turn(&format!("m {i}"), i % 4 != 0)
            };
            let mut r = h.post(&body).await;
            if i % 5 == 0 {
                // The client goes away after the first chunk.
                let _ = r.chunk().await;
                drop(r);
            } else {
                let _ = r.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Disconnects are noticed when the proxy next writes; give the streams a moment to end.
    let mut zero = false;
    for _ in 0..100 {
        let snap = h.ccr.runtime.balancer.snapshot();
        if snap.providers.iter().all(|p| p.in_flight == 0) {
            zero = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        zero,
        "{:?}",
        h.ccr.runtime.balancer.snapshot().providers.iter().map(|p| p.in_flight).collect::<Vec<_>>()
    );
    let h = std::sync::Arc::try_unwrap(h).ok().unwrap();
    h.shutdown().await;
}

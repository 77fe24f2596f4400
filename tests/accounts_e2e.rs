//! Account-aware scheduling through the real proxy against simulated upstreams with accounts:
//! credits shown and kept current by metering, conversation affinity, quota / 429 / suspension
//! states, and the `credits` strategy.

mod common;

use ccr::demo::account::SimAccount;
use ccr::demo::pool::{Account, SimPool, SimPoolBuilder};
use ccr::demo::upstream::ErrorKind;
use common::{Harness, sim, start};
use serde_json::{Value, json};
use std::time::Duration;

/// One account per upstream (`a`, `b`, `c`, …) in one `default` rule with `lb`.
fn pool(n: usize, lb: Value) -> SimPoolBuilder {
    let mut b = SimPool::builder().provider_defaults(
        json!({"firstByteTimeout": 5000, "idleTimeout": 5000, "maxConcurrentRequests": 50}),
    );
    let mut ids = Vec::new();
    for i in 0..n {
        let id = ((b'a' + i as u8) as char).to_string();
        b = b.account(id.clone(), Account::new().sim(sim(i)));
        ids.push(id);
    }
    b.rule("default", json!({"providers": ids, "loadBalancing": lb}))
}

fn turn(text: &str) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": false,
           "messages": [{"role": "user", "content": text}]})
}

/// POST one turn of conversation `session` (header form); returns (status, provider, affinity).
async fn converse(h: &Harness, session: &str, text: &str) -> (u16, String, Option<String>) {
    let r = h
        .http
        .post(h.url("/v1/messages"))
        .header("x-claude-code-session-id", session)
        .json(&turn(text))
        .send()
        .await
        .unwrap();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let out = (r.status().as_u16(), header("x-ccr-provider").unwrap_or_default(), header("x-ccr-affinity"));
    let _ = r.text().await;
    out
}

async fn providers_health(h: &Harness) -> Value {
    h.http.get(h.url("/health/providers")).send().await.unwrap().json().await.unwrap()
}

/// Waits (up to 10 s of real time: the poller runs on real sockets) for `cond` on
/// `/health/providers`.
async fn wait_for(h: &Harness, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let v = providers_health(h).await;
        if cond(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {}", providers_health(h).await);
}

fn usage_known(ids: &'static [&'static str]) -> impl Fn(&Value) -> bool {
    move |v: &Value| ids.iter().all(|id| v["providers"][*id]["usage"]["limit"].is_number())
}

#[tokio::test]
async fn usage_is_shown_and_kept_current_by_metering() {
    let h = start(pool(1, json!({}))).await;
    let mut account = SimAccount::new("KIRO PRO", 1000.0, 10.5);
    account.free_trial = Some((4.5, 500.0));
    account.bonuses = vec![(0.0, 100.0)];
    h.upstreams[0].set_account(Some(account));
    h.ccr.runtime.balancer.apply(ccr::balancer::Command::CheckUsage("a".into())).unwrap();
    let v = wait_for(&h, "usage", |v| v["providers"]["a"]["usage"]["limit"] == json!(1600.0)).await;
    let u = &v["providers"]["a"]["usage"];
    assert_eq!(u["used"], json!(15.0));
    assert_eq!(u["remaining"], json!(1585.0));
    assert_eq!(u["tier"], "KIRO PRO");
    assert!(u["resetAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{u}");
    assert!(u["checkedAt"].is_string());
    let polls = h.upstreams[0].stats().usage_limits;

    for i in 0..3 {
        let (status, provider, _) = converse(&h, "metering-1", &format!("hello {i}")).await;
        assert_eq!((status, provider.as_str()), (200, "a"));
    }
    // No new poll: "used" moved by exactly what the answers' meteringEvents reported.
    let sim_used = h.upstreams[0].account().unwrap().total_used();
    assert!(sim_used > 15.0);
    let v = providers_health(&h).await;
    let shown = v["providers"]["a"]["usage"]["used"].as_f64().unwrap();
    assert!((shown - sim_used).abs() < 1e-6, "shown {shown}, account {sim_used}");
    assert_eq!(h.upstreams[0].stats().usage_limits, polls, "metering, not polling");

    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ccr_account_credits_limit{provider=\"a\"} 1600"), "{metrics}");
    assert!(metrics.contains("ccr_account_credits_used{provider=\"a\"} "));
    assert!(metrics.contains("ccr_account_credits_reset_timestamp_seconds{provider=\"a\"} "));
    assert!(metrics.contains("ccr_sessions_bound{provider=\"a\"} 1"), "{metrics}");
    h.shutdown().await;
}

#[tokio::test]
async fn eight_turns_of_one_conversation_stay_on_one_account() {
    let h = start(pool(3, json!({"strategy": "round-robin"}))).await;
    let mut seen = Vec::new();
    for i in 0..8 {
        let (status, provider, affinity) = converse(&h, "conv-eight", &format!("turn {i}")).await;
        assert_eq!(status, 200);
        seen.push((provider, affinity.unwrap_or_default()));
    }
    let first = seen[0].0.clone();
    assert!(seen.iter().all(|(p, _)| *p == first), "{seen:?}");
    assert_eq!(seen[0].1, "new");
    assert!(seen[1..].iter().all(|(_, a)| a == "kept"), "{seen:?}");
    // Other conversations still rotate.
    let (_, other, _) = converse(&h, "conv-other", "x").await;
    assert_ne!(other, first);
    // No session key: no affinity header.
    let (status, headers, _) = h.call(&turn("anonymous")).await;
    assert_eq!(status, 200);
    assert!(headers.get("x-ccr-affinity").is_none());

    let info: Value = h.http.get(h.url("/sessions/conv-eight")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["provider"], json!(first));
    assert_eq!(info["turns"], 8);
    assert_eq!(info["category"], "background", "a short request without tools, served by the default rule");
    assert!(info["lastSeen"].is_string());
    let missing = h.http.get(h.url("/sessions/never-seen")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");
    h.shutdown().await;
}

#[tokio::test]
async fn thirty_conversations_are_split_by_weight() {
    let h = start(pool(2, json!({"strategy": "weighted-round-robin", "weights": {"a": 2, "b": 1}}))).await;
    let mut by_provider = std::collections::BTreeMap::<String, usize>::new();
    for c in 0..30 {
        let session = format!("conv-{c}");
        let (_, first, _) = converse(&h, &session, "one").await;
        let (_, second, affinity) = converse(&h, &session, "two").await;
        assert_eq!((second.as_str(), affinity.as_deref()), (first.as_str(), Some("kept")));
        *by_provider.entry(first).or_default() += 1;
    }
    assert_eq!(by_provider.get("a"), Some(&20));
    assert_eq!(by_provider.get("b"), Some(&10));
    let v = providers_health(&h).await;
    assert_eq!(
        (v["providers"]["a"]["sessions"].as_u64(), v["providers"]["b"]["sessions"].as_u64()),
        (Some(20), Some(10))
    );
    h.shutdown().await;
}

#[tokio::test]
async fn drain_moves_a_conversation_and_it_stays_moved() {
    let h = start(pool(2, json!({"strategy": "round-robin", "failover": true}))).await;
    let (_, home, _) = converse(&h, "mover", "1").await;
    let admin = |action: &str| h.http.post(h.url(&format!("/admin/providers/{home}/{action}"))).send();
    assert_eq!(admin("drain").await.unwrap().status(), 200);
    let (status, moved_to, affinity) = converse(&h, "mover", "2").await;
    assert_eq!(status, 200);
    assert_ne!(moved_to, home);
    assert_eq!(affinity.as_deref(), Some("moved"));
    assert_eq!(admin("undrain").await.unwrap().status(), 200);
    for i in 3..6 {
        let (_, p, a) = converse(&h, "mover", &i.to_string()).await;
        assert_eq!((p.as_str(), a.as_deref()), (moved_to.as_str(), Some("kept")), "no flapping back");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_402_excludes_the_account_until_its_reported_reset_without_a_client_error() {
    let h = start(pool(2, json!({"strategy": "round-robin", "failover": true}))).await;
    let reset = chrono::Utc::now() + chrono::Duration::days(9);
    let reset = chrono::DateTime::from_timestamp(reset.timestamp(), 0).unwrap();
    for up in &h.upstreams {
        let mut a = SimAccount::new("KIRO PRO", 500.0, 100.0);
        a.reset_at = Some(reset);
        up.set_account(Some(a));
    }
    for id in ["a", "b"] {
        h.ccr.runtime.balancer.apply(ccr::balancer::Command::CheckUsage(id.into())).unwrap();
    }
    wait_for(&h, "usage", |v| {
        ["a", "b"].iter().all(|id| v["providers"][*id]["usage"]["limit"] == json!(500.0))
    })
    .await;
    let (_, home, _) = converse(&h, "quota-conv", "1").await;
    let home_index = if home == "a" { 0 } else { 1 };
    h.upstreams[home_index].update_account(SimAccount::exhaust);

    let (status, served_by, affinity) = converse(&h, "quota-conv", "2").await;
    assert_eq!(status, 200, "the client never sees the 402");
    assert_ne!(served_by, home);
    assert_eq!(affinity.as_deref(), Some("moved"));
    let v = wait_for(&h, "the usage check after the 402", |v| {
        v["providers"][&home]["usage"]["remaining"] == json!(0.0)
    })
    .await;
    let p = &v["providers"][&home];
    assert_eq!(p["status"], "quota_exhausted");
    let want = reset.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(p["usage"]["resetAt"], json!(want));
    assert!(p["reason"].as_str().unwrap().contains("reset"), "{p}");
    // Still out: every new conversation goes to the other account.
    for c in 0..4 {
        let (status, p, _) = converse(&h, &format!("after-{c}"), "x").await;
        assert_eq!((status, p.as_str()), (200, served_by.as_str()));
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_429_fails_over_and_checks_the_accounts_usage() {
    let h = start(pool(2, json!({"strategy": "round-robin", "failover": true}))).await;
    for up in &h.upstreams {
        up.set_account(Some(SimAccount::new("KIRO PRO", 500.0, 1.0)));
    }
    wait_for(&h, "first usage", usage_known(&["a", "b"])).await;
    let before = h.upstreams[0].stats().usage_limits;
    h.upstreams[0].fail_next(1, ErrorKind::Throttle429);
    let (status, provider, _) = converse(&h, "throttled", "hello").await;
    // Round-robin starts at `a`: its 429 fails over to `b`.
    assert_eq!((status, provider.as_str()), (200, "b"));
    for _ in 0..200 {
        if h.upstreams[0].stats().usage_limits > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(h.upstreams[0].stats().usage_limits, before + 1, "one usage check after the 429");
    let v = providers_health(&h).await;
    assert_eq!(v["providers"]["a"]["status"], "cooling_down", "credits left: a plain cooldown");
    h.shutdown().await;
}

#[tokio::test]
async fn a_suspended_account_leaves_rotation_until_the_operator_resets_it() {
    let h = start(pool(2, json!({"strategy": "round-robin", "failover": true}))).await;
    let mut a = SimAccount::new("KIRO PRO", 500.0, 1.0);
    a.suspended = true;
    h.upstreams[0].set_account(Some(a));
    h.upstreams[1].set_account(Some(SimAccount::new("KIRO PRO", 500.0, 1.0)));
    let v = wait_for(&h, "suspension", |v| v["providers"]["a"]["status"] == "suspended").await;
    assert!(v["providers"]["a"]["reason"].as_str().unwrap().contains("temporarily is suspended"), "{v}");
    let refreshes = h.upstreams[0].stats().refresh_social;
    for c in 0..4 {
        let (status, p, _) = converse(&h, &format!("s-{c}"), "x").await;
        assert_eq!((status, p.as_str()), (200, "b"));
    }
    assert_eq!(h.upstreams[0].stats().refresh_social, refreshes, "never a refresh loop");
    h.upstreams[0].update_account(|a| a.suspended = false);
    let reset = h.http.post(h.url("/admin/providers/a/breaker/reset")).send().await.unwrap();
    assert_eq!(reset.status(), 200);
    assert!(reset.text().await.unwrap().contains("suspension cleared"));
    let v = providers_health(&h).await;
    assert_ne!(v["providers"]["a"]["status"], "suspended");
    h.shutdown().await;
}

#[tokio::test]
async fn credits_strategy_splits_conversations_by_remaining_over_days() {
    let h = start(pool(3, json!({"strategy": "credits"}))).await;
    let reset = chrono::Utc::now() + chrono::Duration::hours(20 * 24 + 12);
    // Remaining 3e6, 1e6, 2e6 credits, same reset: 3 : 1 : 2 (a request's few hundredths of a
    // credit do not move these weights).
    for (up, used) in h.upstreams.iter().zip([1e6, 3e6, 2e6]) {
        let mut a = SimAccount::new("KIRO PRO+", 4e6, used);
        a.reset_at = Some(reset);
        up.set_account(Some(a));
    }
    for id in ["a", "b", "c"] {
        h.ccr.runtime.balancer.apply(ccr::balancer::Command::CheckUsage(id.into())).unwrap();
    }
    wait_for(&h, "usage", |v| {
        v["providers"]["b"]["usage"]["remaining"].as_f64() == Some(1e6)
            && v["providers"]["a"]["usage"]["remaining"].as_f64().is_some_and(|r| r > 2.9e6)
            && v["providers"]["c"]["usage"]["remaining"].as_f64() == Some(2e6)
    })
    .await;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for c in 0..60 {
        let (status, p, _) = converse(&h, &format!("credits-{c}"), "x").await;
        assert_eq!(status, 200);
        *counts.entry(p).or_default() += 1;
    }
    assert_eq!(counts.get("a"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("c"), Some(&20), "{counts:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_free_account_is_not_sent_a_model_its_tier_lacks() {
    let h = start(pool(2, json!({"strategy": "round-robin"}))).await;
    h.upstreams[0].set_account(Some(SimAccount::new("KIRO FREE", 50.0, 0.0)));
    h.upstreams[1].set_account(Some(SimAccount::new("KIRO PRO", 1000.0, 0.0)));
    wait_for(&h, "usage", |v| {
        v["providers"]["a"]["usage"]["tier"] == "KIRO FREE"
            && v["providers"]["b"]["usage"]["tier"] == "KIRO PRO"
    })
    .await;
    for c in 0..4 {
        let mut body = turn("deep question");
        body["model"] = json!("claude-opus-4-6");
        let r = h
            .http
            .post(h.url("/v1/messages"))
            .header("x-claude-code-session-id", format!("opus-{c}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ccr-provider"], "b");
    }
    let (_, sonnet_a, _) = converse(&h, "sonnet-1", "x").await;
    let (_, sonnet_b, _) = converse(&h, "sonnet-2", "x").await;
    assert_ne!(sonnet_a, sonnet_b, "other models still use both");
    h.shutdown().await;
}

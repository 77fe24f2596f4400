//! Developers' keys end to end (issue #17): a real ccr on 127.0.0.1:0 in front of simulated
//! upstreams, with `server.keys` in its config. Who gets in (401), who is stopped by which limit
//! (429 budget / rate / concurrency, 403 model) before anything reaches an upstream, and whether
//! `/admin/keys` and `/metrics` agree with the credits the upstream metered.

mod common;

use ccr::demo::account::SimAccount;
use ccr::demo::upstream::SimOptions;
use ccr::keys::sha256_hex;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const OPERATOR: &str = "operator-key-for-tests";
const ALICE: &str = "sk-ccr-alice-0123456789abcdef";
const BOB: &str = "sk-ccr-bob-fedcba9876543210";

/// A one-account pool whose config has the operator key and `keys`; the upstream has a
/// credit account, so it knows exactly what it metered.
async fn start_with_keys(keys: Value, options: SimOptions) -> Harness {
    let h = start(solo_pool_with(options).merge(json!({"server": {"apiKey": OPERATOR, "keys": keys}}))).await;
    h.upstreams[0].set_account(Some(SimAccount::new("KIRO PRO", 1000.0, 0.0)));
    h
}

fn request(text: &str, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

impl Harness {
    async fn call_as(&self, key: Option<&str>, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
        let mut r = self.http.post(self.url("/v1/messages")).json(body);
        if let Some(key) = key {
            r = r.header("x-api-key", key);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }

    async fn admin_keys(&self) -> Value {
        let r = self.http.get(self.url("/admin/keys")).header("x-api-key", OPERATOR).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn metrics(&self) -> String {
        self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    fn upstream_credits(&self) -> f64 {
        self.upstreams[0].account().expect("the sim has an account").total_used()
    }
}

fn error_of(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("an error body: {body}"));
    assert_eq!(v["type"], "error", "{body}");
    (v["error"]["type"].as_str().unwrap().to_owned(), v["error"]["message"].as_str().unwrap().to_owned())
}

fn key_view<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {view}"))
}

/// The value of one sample line of the Prometheus text.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} in\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn missing_and_unknown_keys_get_401_known_keys_and_the_operator_are_served() {
    let h = start_with_keys(
        json!([{"name": "alice", "key": ALICE}, {"name": "bob", "keySha256": sha256_hex(BOB.as_bytes())}]),
        sim(0),
    )
    .await;
    let body = request("hello", false);
    for key in [None, Some("sk-ccr-nobody"), Some("")] {
        let (status, _, text) = h.call_as(key, &body).await;
        assert_eq!(status, 401, "{key:?}: {text}");
        let (kind, message) = error_of(&text);
        assert_eq!(kind, "authentication_error");
        assert_eq!(message, "invalid or missing API key (x-api-key or Authorization: Bearer)");
    }
    assert_eq!(h.upstreams[0].stats().generate, 0, "nothing unauthenticated reached the upstream");
    for key in [ALICE, BOB, OPERATOR] {
        let (status, _, text) = h.call_as(Some(key), &body).await;
        assert_eq!(status, 200, "{text}");
    }
    // Bearer works too, and the model list needs only the key (no limits counted).
    let r = h.http.get(h.url("/v1/models")).bearer_auth(BOB).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let view = h.admin_keys().await;
    assert_eq!(key_view(&view, "alice")["requests"], 1);
    assert_eq!(key_view(&view, "bob")["requests"], 1);
    assert_eq!(key_view(&view, "bob")["hashPrefix"], sha256_hex(BOB.as_bytes())[..8]);
    // Developers' keys do not open the admin API.
    let r = h.http.get(h.url("/admin/keys")).header("x-api-key", ALICE).send().await.unwrap();
    assert_eq!(r.status(), 401);
    h.shutdown().await;
}

#[tokio::test]
async fn a_spent_budget_stops_one_key_before_the_upstream_while_another_is_served() {
    let h = start_with_keys(
        json!([{"name": "alice", "key": ALICE, "monthlyCredits": 0.01},
               {"name": "bob", "key": BOB, "monthlyCredits": 1000}]),
        sim(0),
    )
    .await;
    // A streaming answer: its metering is charged as it arrives.
    let (status, _, text) = h.call_as(Some(ALICE), &request("hello", true)).await;
    assert_eq!(status, 200);
    assert!(sse_text(&text).contains("upstream-0"), "{text}");
    let alice_spent = h.upstream_credits();
    assert!(alice_spent >= 0.01, "one answer costs at least 0.01 credits in the sim: {alice_spent}");
    let calls = h.upstreams[0].stats().generate;

    let (status, headers, text) = h.call_as(Some(ALICE), &request("again", true)).await;
    assert_eq!(status, 429, "{text}");
    let (kind, message) = error_of(&text);
    assert_eq!(kind, "rate_limit_error");
    let now = chrono::Utc::now();
    let reset = ccr::keys::month_end(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        message,
        format!(
            "key alice has used {} of its 0.01 monthly credits (server.keys: monthlyCredits); the budget resets at {reset}",
            ccr::keys::credits_text(alice_spent)
        )
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    let until_reset = (ccr::keys::month_end(now) - now).num_seconds() as u64;
    assert!(retry_after.abs_diff(until_reset) <= 5, "{retry_after} vs {until_reset}");
    assert_eq!(h.upstreams[0].stats().generate, calls, "the refused request never reached the upstream");

    let (status, _, text) = h.call_as(Some(BOB), &request("bob's turn", false)).await;
    assert_eq!(status, 200, "{text}");
    let total = h.upstream_credits();
    let bob_spent = total - alice_spent;

    let view = h.admin_keys().await;
    let (alice, bob) = (key_view(&view, "alice"), key_view(&view, "bob"));
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(alice["creditsThisMonth"].as_f64().unwrap(), alice_spent), "{alice}");
    assert!(close(bob["creditsThisMonth"].as_f64().unwrap(), bob_spent), "{bob}");
    assert_eq!(alice["limited"]["budget"], 1);
    assert_eq!((alice["requests"].as_u64(), bob["requests"].as_u64()), (Some(2), Some(1)));
    assert!(close(alice["byAccount"]["solo"].as_f64().unwrap(), alice_spent), "{alice}");
    assert_eq!(alice["liveRequests"], 0);
    assert_eq!(view["backend"], "memory");
    assert!(!view.to_string().contains(ALICE) && !view.to_string().contains(BOB), "no key in {view}");

    let metrics = h.metrics().await;
    assert!(close(sample(&metrics, r#"ccr_key_credits_used{key="alice"}"#), alice_spent), "{metrics}");
    assert!(close(sample(&metrics, r#"ccr_key_credits_used{key="bob"}"#), bob_spent));
    assert_eq!(sample(&metrics, r#"ccr_key_requests_total{key="alice"}"#), 2.0);
    assert_eq!(sample(&metrics, r#"ccr_key_limited_total{key="alice",reason="budget"}"#), 1.0);
    assert_eq!(sample(&metrics, r#"ccr_key_limited_total{key="bob",reason="budget"}"#), 0.0);
    h.shutdown().await;
}

#[tokio::test]
async fn requests_per_minute_are_limited_with_retry_after() {
    let h = start_with_keys(json!([{"name": "alice", "key": ALICE, "requestsPerMinute": 2}]), sim(0)).await;
    for i in 0..2 {
        let (status, _, text) = h.call_as(Some(ALICE), &request(&format!("turn {i}"), false)).await;
        assert_eq!(status, 200, "{text}");
    }
    let (status, headers, text) = h.call_as(Some(ALICE), &request("one too many", false)).await;
    assert_eq!(status, 429, "{text}");
    let (kind, message) = error_of(&text);
    assert_eq!(kind, "rate_limit_error");
    assert!(
        message.starts_with("key alice is over its limit of 2 requests per minute; retry in "),
        "{message}"
    );
    // One request's worth comes back every 30 s.
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(h.upstreams[0].stats().generate, 2);
    let metrics = h.metrics().await;
    assert_eq!(sample(&metrics, r#"ccr_key_limited_total{key="alice",reason="rate"}"#), 1.0);
    h.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_of_a_key_are_capped_until_the_answer_has_been_sent() {
    let slow = SimOptions { chunk_delay: Duration::from_millis(100), ..sim(0) };
    let h = start_with_keys(
        json!([{"name": "alice", "key": ALICE, "maxConcurrent": 1}, {"name": "bob", "key": BOB}]),
        slow,
    )
    .await;
    // A streaming answer of 40 frames, 100 ms apart: its head is back, its body still coming.
    let mut first = h
        .http
        .post(h.url("/v1/messages"))
        .header("x-api-key", ALICE)
        .json(&request("[sim:long:40] go", true))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    first.chunk().await.unwrap().expect("the first bytes");
    assert_eq!(key_view(&h.admin_keys().await, "alice")["liveRequests"], 1);

    let (status, headers, text) = h.call_as(Some(ALICE), &request("meanwhile", false)).await;
    assert_eq!(status, 429, "{text}");
    let (kind, message) = error_of(&text);
    assert_eq!(kind, "rate_limit_error");
    assert_eq!(
        message,
        "key alice already has 1 requests in flight, its limit (maxConcurrent); retry when one ends"
    );
    assert_eq!(headers["retry-after"], "1");
    // Another developer is not held up.
    let (status, _, _) = h.call_as(Some(BOB), &request("bob", false)).await;
    assert_eq!(status, 200);

    while first.chunk().await.unwrap().is_some() {}
    // The slot comes back once the last byte has gone out.
    let mut live = Value::Null;
    for _ in 0..200 {
        live = key_view(&h.admin_keys().await, "alice")["liveRequests"].clone();
        if live == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(live, 0);
    let (status, _, text) = h.call_as(Some(ALICE), &request("now", false)).await;
    assert_eq!(status, 200, "{text}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_model_outside_the_keys_list_is_refused_with_403() {
    let h = start_with_keys(
        json!([{"name": "alice", "key": ALICE, "models": ["claude-sonnet-4-5", "claude-haiku-*"]}]),
        sim(0),
    )
    .await;
    let mut body = request("hello", false);
    for model in ["claude-sonnet-4-5-20250929", "claude-haiku-4-5"] {
        body["model"] = json!(model);
        let (status, _, text) = h.call_as(Some(ALICE), &body).await;
        assert_eq!(status, 200, "{model}: {text}");
    }
    body["model"] = json!("claude-opus-4-6");
    let (status, _, text) = h.call_as(Some(ALICE), &body).await;
    assert_eq!(status, 403, "{text}");
    let (kind, message) = error_of(&text);
    assert_eq!(kind, "permission_error");
    assert_eq!(
        message,
        "key alice may not use model claude-opus-4-6 (allowed: claude-sonnet-4-5, claude-haiku-*)"
    );
    assert_eq!(h.upstreams[0].stats().generate, 2);
    let metrics = h.metrics().await;
    assert_eq!(sample(&metrics, r#"ccr_key_limited_total{key="alice",reason="model"}"#), 1.0);
    h.shutdown().await;
}

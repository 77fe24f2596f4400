//! Developers' keys on the shared state backend: two ccr instances on one Redis enforce one
//! budget and one rate limit between them, and the month's credits survive a restart.
//! CI runs these with `cargo test -- --ignored` (it installs `redis-server`).
#![cfg(unix)]

mod common;

use ccr::app::{self, ListenOverride, Running};
use ccr::config::ConfigSource;
use ccr::demo::pool::SimPool;
use ccr::demo::redis::RedisServer;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const ALICE: &str = "sk-ccr-alice-shared-budget-0001";
const BOB: &str = "sk-ccr-bob-shared-budget-00002";
const CAROL: &str = "sk-ccr-carol-shared-rate-000003";

async fn instance(pool: &SimPool) -> Running {
    let ccr = app::launch(
        pool.parsed_config().expect("valid config"),
        ConfigSource::Flag(pool.config_path.clone()),
        ListenOverride { host: Some("127.0.0.1".into()), port: Some(0) },
    )
    .await
    .unwrap();
    // Wait for the link's first ping (until then an instance counts in memory).
    let link = ccr.runtime.state.redis().expect("the redis backend").clone();
    for _ in 0..500 {
        if link.is_connected() {
            return ccr;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ccr never connected to Redis");
}

async fn call(http: &reqwest::Client, ccr: &Running, key: &str, text: &str) -> (u16, String) {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": true,
                      "messages": [{"role": "user", "content": text}]});
    let r = http
        .post(format!("{}/v1/messages", ccr.base_url()))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The credits Redis holds for `name` this month.
fn redis_credits(redis: &RedisServer, name: &str) -> f64 {
    let month = ccr::keys::month_of(chrono::Utc::now());
    let reply = redis.command(&format!("GET ccr:keys:credits:{name}:{month}")).unwrap();
    // A bulk string reply: `$<len>\r\n<value>\r\n`, or `$-1` when absent.
    reply.lines().nth(1).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

async fn until_charged(redis: &RedisServer, name: &str) -> f64 {
    for _ in 0..500 {
        let v = redis_credits(redis, name);
        if v > 0.0 {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no credits for {name} in Redis");
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn two_instances_share_one_budget_and_one_rate_and_a_restart_keeps_the_month() {
    let redis = RedisServer::start().expect("redis-server on PATH");
    let pool = solo_pool()
        .merge(json!({
            "state": {"backend": "redis", "url": redis.url(), "timeout": 500},
            "server": {"keys": [
                {"name": "alice", "key": ALICE, "monthlyCredits": 0.01},
                {"name": "bob", "key": BOB},
                {"name": "carol", "key": CAROL, "requestsPerMinute": 2}
            ]}
        }))
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let a = instance(&pool).await;
    let b = instance(&pool).await;

    // Alice spends her budget through A …
    let (status, text) = call(&http, &a, ALICE, "hello").await;
    assert_eq!(status, 200, "{text}");
    let spent = until_charged(&redis, "alice").await;
    assert!(spent >= 0.01, "{spent}");
    // … and B refuses her, before its upstream, while it serves Bob.
    let calls = pool.upstreams[0].stats().generate;
    let (status, text) = call(&http, &b, ALICE, "via the other instance").await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("key alice has used") && text.contains("of its 0.01 monthly credits"), "{text}");
    assert_eq!(pool.upstreams[0].stats().generate, calls);
    let (status, _) = call(&http, &b, BOB, "bob").await;
    assert_eq!(status, 200);

    // B's /admin/keys shows what A spent: the credits are pool-wide.
    let view: Value =
        http.get(format!("{}/admin/keys", b.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(view["backend"], "redis");
    let alice = view["keys"].as_array().unwrap().iter().find(|k| k["name"] == "alice").unwrap();
    assert!((alice["creditsThisMonth"].as_f64().unwrap() - spent).abs() < 1e-9, "{view}");

    // Two requests per minute for Carol, across both instances.
    assert_eq!(call(&http, &a, CAROL, "one").await.0, 200);
    assert_eq!(call(&http, &b, CAROL, "two").await.0, 200);
    let (status, text) = call(&http, &a, CAROL, "three").await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("key carol is over its limit of 2 requests per minute"), "{text}");

    // A restart forgets nothing: a fresh instance still refuses Alice.
    b.shutdown().await;
    let c = instance(&pool).await;
    let (status, text) = call(&http, &c, ALICE, "after a restart").await;
    assert_eq!(status, 429, "{text}");
    a.shutdown().await;
    c.shutdown().await;
    pool.shutdown().await;
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn without_redis_each_instance_counts_for_itself_and_keeps_serving() {
    let mut redis = RedisServer::start().expect("redis-server on PATH");
    let pool = solo_pool()
        .merge(json!({
            "state": {"backend": "redis", "url": redis.url(), "timeout": 500},
            "server": {"keys": [{"name": "alice", "key": ALICE, "requestsPerMinute": 1}]}
        }))
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let a = instance(&pool).await;
    redis.stop();
    // Redis gone: no request fails because of it; the limit holds per instance.
    let (status, text) = call(&http, &a, ALICE, "one").await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = call(&http, &a, ALICE, "two").await;
    assert_eq!(status, 429, "{text}");
    a.shutdown().await;
    pool.shutdown().await;
}

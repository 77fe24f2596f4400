//! Two ccr instances sharing one account pool through a real `redis-server` (issue #16): each test
//! starts its own Redis on a unix socket in a temp dir, simulated upstreams on 127.0.0.1:0 and two
//! in-process instances on 127.0.0.1:0 with the same config and `"state": {"backend": "redis"}`.
//!
//! Run with `cargo test --test shared_state -- --ignored` (needs `redis-server` on PATH).

mod common;

use ccr::app::{self, ListenOverride, Running};
use ccr::config::{Config, ConfigSource};
use ccr::demo::pool::{Account, SimPool, SimPoolBuilder};
use ccr::demo::redis::RedisServer;
use ccr::demo::upstream::{ErrorKind, SimOptions};
use common::{main_turn, sim};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Two instances in front of one pool, sharing `redis`.
struct Two {
    a: Running,
    b: Running,
    pool: SimPool,
    http: reqwest::Client,
}

/// A pool of two accounts `a` and `b` (round-robin, failover, no usage polls).
fn pair_pool(options: [SimOptions; 2]) -> SimPoolBuilder {
    let [oa, ob] = options;
    SimPool::builder()
        .provider_defaults(
            json!({"firstByteTimeout": 5000, "idleTimeout": 5000, "usage": {"enabled": false}}),
        )
        .account("a", Account::new().sim(oa))
        .account("b", Account::new().sim(ob))
        .rule(
            "default",
            json!({"providers": ["a", "b"], "loadBalancing": {"strategy": "round-robin", "failover": true}}),
        )
}

/// The state section every instance of a test uses.
fn state(redis: &RedisServer) -> Value {
    // A generous request-path timeout: CI machines are slow and the tests check sharing, not speed.
    json!({"state": {"backend": "redis", "url": redis.url(), "keyPrefix": "t:", "timeout": 500, "leaseTtl": 1000}})
}

async fn launch(config: Config, pool: &SimPool) -> Running {
    app::launch(
        config,
        ConfigSource::Flag(pool.config_path.clone()),
        ListenOverride { host: Some("127.0.0.1".into()), port: Some(0) },
    )
    .await
    .expect("launch")
}

/// Starts the pool and two instances; `tweak_b` may change the second instance's config.
async fn two(
    builder: SimPoolBuilder,
    redis: &RedisServer,
    tweak_b: impl FnOnce(&mut Config, &SimPool),
) -> Two {
    let pool = builder.merge(state(redis)).start().await.expect("pool");
    let config = pool.parsed_config().expect("valid config");
    let mut config_b = config.clone();
    tweak_b(&mut config_b, &pool);
    let a = launch(config, &pool).await;
    let b = launch(config_b, &pool).await;
    let two = Two { a, b, pool, http: reqwest::Client::builder().no_proxy().build().unwrap() };
    two.wait_connected(true).await;
    two
}

fn redis() -> RedisServer {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ccr=info").try_init();
    RedisServer::start().expect("redis-server must be installed for these tests")
}

impl Two {
    async fn post(
        &self,
        via: &Running,
        body: &Value,
        session: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = self.http.post(format!("{}/v1/messages", via.base_url())).json(body);
        if let Some(s) = session {
            req = req.header("x-claude-code-session-id", s);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap_or_default())
    }

    /// `GET {path}` on `via`, read as JSON.
    async fn get(&self, via: &Running, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", via.base_url())).send().await.expect(path);
        r.json().await.expect("json")
    }

    async fn health(&self, via: &Running) -> Value {
        self.get(via, "/health").await
    }

    /// Waits until both instances report `state.connected == up` on `/health`.
    async fn wait_connected(&self, up: bool) {
        for _ in 0..200 {
            let (ha, hb) = (self.health(&self.a).await, self.health(&self.b).await);
            if ha["state"]["connected"] == json!(up) && hb["state"]["connected"] == json!(up) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instances did not report connected: {up}");
    }

    async fn shutdown(self) {
        self.a.shutdown().await;
        self.b.shutdown().await;
        self.pool.shutdown().await;
    }
}

fn provider(headers: &reqwest::header::HeaderMap) -> String {
    headers.get("x-ccr-provider").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// A main turn outside any conversation (no session key): placed by the strategy alone.
fn lone_turn(text: &str) -> Value {
    let mut body = main_turn(text, false);
    body.as_object_mut().unwrap().remove("metadata");
    body
}

fn quick() -> [SimOptions; 2] {
    [sim(0), sim(1)]
}

/// Conversations placed through one instance are served by the same account through the other,
/// although the two instances' round-robin turns point the other way.
async fn check_bindings_cross_instances(two: &Two, tag: &str) {
    // Shift A's rotation by one so that without sharing every conversation would land elsewhere
    // on B.
    let (status, _, body) = two.post(&two.a, &lone_turn("warm up"), None).await;
    assert_eq!(status, 200, "{body}");
    for i in 0..4 {
        let session = format!("{tag}-session-{i}");
        let (status, headers, body) = two.post(&two.a, &main_turn("first turn", false), Some(&session)).await;
        assert_eq!(status, 200, "{body}");
        let bound = provider(&headers);
        for turn in 0..2 {
            let (status, headers, body) =
                two.post(&two.b, &main_turn("next turn", false), Some(&session)).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(provider(&headers), bound, "session {session} turn {turn} through B");
            assert_eq!(headers["x-ccr-affinity"], "kept");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_conversation_stays_on_its_account_across_instances() {
    let redis = redis();
    let two = two(pair_pool(quick()), &redis, |_, _| {}).await;
    check_bindings_cross_instances(&two, "bind").await;
    let status = two.get(&two.b, "/status").await;
    assert_eq!(status["state"]["backend"], "redis");
    assert!(status["state"]["poolWide"].as_array().is_some_and(|l| !l.is_empty()), "{}", status["state"]);
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_429_seen_by_one_instance_cools_the_account_for_both() {
    let redis = redis();
    let slow_retry = SimOptions { retry_after: Duration::from_secs(60), ..sim(0) };
    let two = two(pair_pool([slow_retry, sim(1)]), &redis, |_, _| {}).await;
    let up_a = two.pool.upstream("a").unwrap().clone();
    up_a.fail_next(1, ErrorKind::Throttle429);
    // Through A until account `a` has answered its 429 (the request fails over to `b`).
    for _ in 0..4 {
        let (status, _, body) = two.post(&two.a, &lone_turn("hi"), None).await;
        assert_eq!(status, 200, "{body}");
        if up_a.pending_scripted_failures() == 0 {
            break;
        }
    }
    assert_eq!(up_a.pending_scripted_failures(), 0, "account a answered 429");
    // The cooldown reaches Redis (published without blocking the request).
    for _ in 0..100 {
        if redis.command("EXISTS t:cool:a").unwrap().contains(":1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(redis.command("EXISTS t:cool:a").unwrap().contains(":1"), "cooldown published");
    let served_by_a = up_a.stats().generate;
    for _ in 0..6 {
        let (status, headers, body) = two.post(&two.b, &lone_turn("hi"), None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(provider(&headers), "b", "B keeps off the account A saw throttled");
    }
    assert_eq!(up_a.stats().generate, served_by_a, "no request reached account a through B");
    // And B's operator view says why.
    let health = providers_health(&two, &two.b).await;
    assert_eq!(health["providers"]["a"]["blocked"], json!(["cooling_down"]), "{}", health["providers"]["a"]);
    // The operator's reset through B ends the cooldown for the pool, A's own one included.
    two.b.runtime.balancer.apply(ccr::balancer::Command::ResetBreaker("a".into())).unwrap();
    wait_providers(&two, &two.a, "the reset on A", |v| v["providers"]["a"]["blocked"] == json!([])).await;
    let mut reached = false;
    for _ in 0..4 {
        let (status, headers, body) = two.post(&two.a, &lone_turn("hi"), None).await;
        assert_eq!(status, 200, "{body}");
        reached |= provider(&headers) == "a";
    }
    assert!(reached, "A sends to `a` again");
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn max_concurrent_requests_holds_across_instances() {
    let redis = redis();
    let slow = SimOptions { latency: Duration::from_millis(300), ..sim(0) };
    let builder = SimPool::builder()
        .provider_defaults(
            json!({"firstByteTimeout": 5000, "idleTimeout": 5000, "usage": {"enabled": false}}),
        )
        .account("solo", Account::new().sim(slow).provider(json!({"maxConcurrentRequests": 2})))
        .rule("default", json!({"providers": ["solo"]}));
    let two = Arc::new(two(builder, &redis, |_, _| {}).await);
    let upstream = two.pool.upstream("solo").unwrap().clone();
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (upstream, peak, done) = (upstream.clone(), peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(upstream.stats().in_flight, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for i in 0..4 {
        let two = two.clone();
        tasks.push(tokio::spawn(async move {
            let via = if i % 2 == 0 { &two.a } else { &two.b };
            two.post(via, &main_turn("stream please", true), None).await
        }));
    }
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    assert_eq!(upstream.stats().generate, 4);
    let peak = peak.load(Ordering::Relaxed);
    assert!((1..=2).contains(&peak), "at most 2 at once across both instances (saw {peak})");
    Arc::into_inner(two).expect("tasks done").shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_crashed_instances_leases_expire() {
    let redis = redis();
    let builder = SimPool::builder()
        .provider_defaults(
            json!({"firstByteTimeout": 5000, "idleTimeout": 5000, "usage": {"enabled": false}}),
        )
        .account("solo", Account::new().sim(sim(0)).provider(json!({"maxConcurrentRequests": 1})))
        .rule("default", json!({"providers": ["solo"]}));
    let two = two(builder, &redis, |_, _| {}).await;
    // A third instance took the only slot and died: its lease is in Redis and nobody renews it.
    let reply = redis.command("TIME").unwrap();
    let parts: Vec<u64> = reply.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let now_ms = parts[0] * 1000 + parts[1] / 1000;
    let expiry_ms = now_ms + 1000;
    let added = redis.command(&format!("ZADD t:lease:solo {expiry_ms} crashed:1")).unwrap();
    assert!(added.contains(":1"), "{added}");
    // The account is full for the pool until that lease expires: the request waits in A's queue
    // (2 s) and is served once the dead lease has run out.
    let started = std::time::Instant::now();
    let (status, _, body) = two.post(&two.a, &main_turn("hi", false), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "waited for the dead lease ({:?})",
        started.elapsed()
    );
    for via in [&two.a, &two.b] {
        let (status, _, body) = two.post(via, &main_turn("hi", false), None).await;
        assert_eq!(status, 200, "{body}");
    }
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_revoked_token_is_refreshed_once_for_the_pool() {
    let redis = redis();
    let builder = SimPool::builder()
        .provider_defaults(
            json!({"firstByteTimeout": 5000, "idleTimeout": 5000, "usage": {"enabled": false}}),
        )
        .account("solo", Account::new().sim(sim(0)))
        .rule("default", json!({"providers": ["solo"]}));
    // Instance B reads its own copy of the token file (as on another machine).
    let two = two(builder, &redis, |config, pool| {
        let original = pool.token_path("solo").unwrap();
        let copy = pool.dir().join("solo-copy.json");
        std::fs::copy(original, &copy).unwrap();
        config.providers.get_mut("solo").unwrap().token_path = copy.display().to_string();
    })
    .await;
    let upstream = two.pool.upstream("solo").unwrap().clone();
    let file_a = two.pool.token_path("solo").unwrap().to_path_buf();
    let file_b = two.pool.dir().join("solo-copy.json");
    let (before_a, before_b) = (std::fs::read(&file_a).unwrap(), std::fs::read(&file_b).unwrap());
    upstream.expire_access_tokens();
    let body = main_turn("hi", false);
    let (ra, rb) = tokio::join!(two.post(&two.a, &body, None), two.post(&two.b, &body, None));
    assert_eq!(ra.0, 200, "{}", ra.2);
    assert_eq!(rb.0, 200, "{}", rb.2);
    assert_eq!(upstream.stats().refresh_social, 1, "one refresh for the pool");
    let rewritten =
        [std::fs::read(&file_a).unwrap() != before_a, std::fs::read(&file_b).unwrap() != before_b];
    assert_eq!(
        rewritten.iter().filter(|r| **r).count(),
        1,
        "only the refresher writes its file: {rewritten:?}"
    );
    // Both keep using the new token: no further refresh.
    for via in [&two.a, &two.b] {
        let (status, _, body) = two.post(via, &main_turn("again", false), None).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(upstream.stats().refresh_social, 1);
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn redis_down_loses_no_request_and_sharing_resumes_when_it_is_back() {
    let mut redis = redis();
    let two = two(pair_pool(quick()), &redis, |_, _| {}).await;
    check_bindings_cross_instances(&two, "before").await;

    redis.stop();
    for i in 0..10 {
        let via = if i % 2 == 0 { &two.a } else { &two.b };
        let (status, _, body) = two.post(via, &main_turn("while redis is down", i % 3 == 0), None).await;
        assert_eq!(status, 200, "request {i} with Redis down: {body}");
    }
    two.wait_connected(false).await;
    let health = two.health(&two.a).await;
    assert_eq!(health["state"]["backend"], "redis");
    assert!(health["state"]["since"].is_string(), "{}", health["state"]);

    redis.restart().expect("restart");
    two.wait_connected(true).await;
    check_bindings_cross_instances(&two, "after").await;
    two.shutdown().await;
}

/// Without any Redis (the URL points at a socket nothing listens on) an instance with the Redis
/// backend serves exactly as alone and says so: runs with `cargo test`, no redis-server needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis+unix://{}", dir.path().join("nobody.sock").display());
    let pool = pair_pool(quick())
        .merge(json!({"state": {"backend": "redis", "url": url, "keyPrefix": "t:"}}))
        .start()
        .await
        .expect("pool");
    let instance = launch(pool.parsed_config().expect("valid"), &pool).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for i in 0..6 {
        let mut req =
            http.post(format!("{}/v1/messages", instance.base_url())).json(&main_turn("hi", i % 2 == 0));
        if i % 3 == 0 {
            req = req.header("x-claude-code-session-id", "lonely-session");
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        let body = r.text().await.unwrap();
        assert!(body.contains("message_stop") || body.contains("\"stop_reason\""), "a full answer: {body}");
    }
    let health: Value =
        http.get(format!("{}/health", instance.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["state"]["backend"], "redis");
    assert_eq!(health["state"]["connected"], false);
    instance.shutdown().await;
    pool.shutdown().await;
}

async fn providers_health(two: &Two, via: &Running) -> Value {
    two.get(via, "/health/providers").await
}

/// Polls `/health/providers` of `via` (up to 10 s) until `cond` holds.
async fn wait_providers(two: &Two, via: &Running, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let v = providers_health(two, via).await;
        if cond(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {}", providers_health(two, via).await);
}

/// A usage poll by one instance is the pool's: the other shows it without polling, and every
/// instance's metered credits raise the credits used both show. The model lists one instance
/// fetched serve the other's `/v1/models`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn usage_and_model_lists_are_the_pools() {
    let redis = redis();
    let builder = SimPool::builder()
        .provider_defaults(json!({"firstByteTimeout": 5000, "idleTimeout": 5000,
            "usage": {"enabled": true, "refreshInterval": 600000}}))
        .account("solo", Account::new().sim(sim(0)))
        .rule("default", json!({"providers": ["solo"]}));
    let two = two(builder, &redis, |_, _| {}).await;
    let upstream = two.pool.upstream("solo").unwrap().clone();
    // Both instances poll once at start (nothing is in the pool yet).
    for via in [&two.a, &two.b] {
        wait_providers(&two, via, "the start poll", |v| v["providers"]["solo"]["usage"]["limit"].is_number())
            .await;
    }
    upstream.set_account(Some(ccr::demo::account::SimAccount::new("KIRO PRO", 1234.0, 100.0)));
    let polls = upstream.stats().usage_limits;
    // A checks the account; B shows A's report without asking the account itself.
    two.a.runtime.balancer.apply(ccr::balancer::Command::CheckUsage("solo".into())).unwrap();
    let v = wait_providers(&two, &two.b, "A's poll on B", |v| {
        v["providers"]["solo"]["usage"]["limit"] == json!(1234.0)
    })
    .await;
    assert_eq!(v["providers"]["solo"]["usage"]["used"], json!(100.0));
    assert_eq!(v["providers"]["solo"]["usage"]["tier"], "KIRO PRO");
    assert_eq!(upstream.stats().usage_limits, polls + 1, "one poll, by A");
    // Answers through A are metered; B's credits used follow.
    for i in 0..3 {
        let (status, _, body) = two.post(&two.a, &main_turn(&format!("hello {i}"), false), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let sim_used = upstream.account().unwrap().total_used();
    assert!(sim_used > 100.0, "the answers cost credits");
    let close = |v: &Value| {
        v["providers"]["solo"]["usage"]["used"].as_f64().is_some_and(|u| (u - sim_used).abs() < 1e-6)
    };
    wait_providers(&two, &two.b, "A's metering on B", close).await;
    assert!(close(&providers_health(&two, &two.a).await), "A counts its own metering once");
    assert_eq!(upstream.stats().usage_limits, polls + 1, "metering, not polling");
    let status = two.get(&two.b, "/status").await;
    let pool_wide = status["state"]["poolWide"].to_string();
    assert!(pool_wide.contains("providers[].usage") && pool_wide.contains("model lists"), "{pool_wide}");

    // Model lists: fetched by A, read from the pool by B.
    let models_a = two.get(&two.a, "/v1/models").await;
    assert_eq!(upstream.stats().list_models, 1);
    // The list reaches Redis in the background.
    for _ in 0..100 {
        if redis.command("EXISTS t:models:solo").unwrap().contains(":1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let models_b = two.get(&two.b, "/v1/models").await;
    assert_eq!(models_b, models_a);
    assert!(models_b["data"].as_array().is_some_and(|d| !d.is_empty()), "{models_b}");
    assert_eq!(upstream.stats().list_models, 1, "B did not ask the account");
    two.shutdown().await;
}

/// An account failing on both instances at once opens both instances' breakers; after the open
/// interval exactly one request reaches it across both instances (the pool's half-open probe),
/// and its success closes the breaker for both, without another request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn the_half_open_probe_is_one_for_the_pool() {
    let redis = redis();
    let reset_ms = 1500;
    let builder = SimPool::builder()
        .provider_defaults(json!({"firstByteTimeout": 5000, "idleTimeout": 5000, "usage": {"enabled": false}}))
        .account(
            "a",
            Account::new().sim(sim(0)).provider(
                json!({"circuitBreaker": {"failureThreshold": 1, "resetTimeout": reset_ms, "monitoringPeriod": 60000}}),
            ),
        )
        .account("b", Account::new().sim(sim(1)))
        .rule(
            "default",
            json!({"providers": ["a", "b"], "loadBalancing": {"strategy": "round-robin", "failover": true}}),
        );
    let two = Arc::new(two(builder, &redis, |_, _| {}).await);
    let up_a = two.pool.upstream("a").unwrap().clone();
    // `a` fails slowly: the first request through each instance reaches it before either has
    // seen the other's failure, so both instances open their own breaker (every request fails
    // over to `b`).
    up_a.set_error_kind(ErrorKind::Status500);
    up_a.set_error_rate(1.0);
    up_a.set_latency(Duration::from_millis(500));
    let (fail_a, fail_b) = (lone_turn("fail through A"), lone_turn("fail through B"));
    let (ra, rb) = tokio::join!(two.post(&two.a, &fail_a, None), two.post(&two.b, &fail_b, None));
    assert_eq!((ra.0, rb.0), (200, 200), "{} {}", ra.2, rb.2);
    assert_eq!(up_a.stats().generate, 2, "both reached `a`");
    let breaker = |v: &Value| {
        v["providers"].as_array().and_then(|l| l.iter().find(|p| p["id"] == "a")).unwrap()["breaker"]["state"]
            .clone()
    };
    for via in [&two.a, &two.b] {
        let status = two.get(via, "/status").await;
        assert_eq!(breaker(&status), "OPEN", "{}'s own breaker", via.base_url());
    }
    let before = up_a.stats().generate;
    // `a` works again but answers slowly, so that every request of the burst below arrives
    // while the probe is still in flight.
    up_a.set_error_rate(0.0);
    up_a.set_latency(Duration::from_millis(2500));
    // Past the open interval (the pool's key holds when the probe may go).
    tokio::time::sleep(Duration::from_millis(reset_ms + 300)).await;
    let mut burst = Vec::new();
    for i in 0..8 {
        let two = two.clone();
        burst.push(tokio::spawn(async move {
            let via = if i % 2 == 0 { &two.a } else { &two.b };
            two.post(via, &lone_turn(&format!("burst {i}")), None).await
        }));
    }
    let mut served_by_a = 0;
    for t in burst {
        let (status, headers, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        served_by_a += usize::from(provider(&headers) == "a");
    }
    assert_eq!(up_a.stats().generate - before, 1, "one probe reached `a` for the pool");
    assert_eq!(served_by_a, 1, "the probe's answer");
    // The probe succeeded: both instances' breakers close, without another request.
    for via in [&two.a, &two.b] {
        let mut state = Value::Null;
        for _ in 0..200 {
            let status = two.get(via, "/status").await;
            state = breaker(&status);
            if state == "CLOSED" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(state, "CLOSED", "{}'s own breaker", via.base_url());
    }
    assert_eq!(up_a.stats().generate - before, 1, "closed by the one probe");
    assert!(redis.command("EXISTS t:open:a").unwrap().contains(":0"), "closed for the pool");
    // And `a` serves again through both instances.
    up_a.set_latency(Duration::ZERO);
    for via in [&two.a, &two.b] {
        let mut reached = false;
        for i in 0..6 {
            let (status, headers, body) = two.post(via, &lone_turn(&format!("after {i}")), None).await;
            assert_eq!(status, 200, "{body}");
            if provider(&headers) == "a" {
                reached = true;
                break;
            }
        }
        assert!(reached, "{} sends to `a` again", via.base_url());
    }
    Arc::into_inner(two).expect("tasks done").shutdown().await;
}

/// `ccr demo --instances 2`: two instances in front of one simulated pool share its state; an
/// account drained through the first shows as drained on the second (its status says the pool
/// saw it), and undraining through the second clears it for the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn the_demo_with_two_instances_shares_one_pool() {
    use ccr::balancer::Command;
    use ccr::demo::run::{DEMO_PROVIDERS, Demo, DemoOptions};
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ccr=info").try_init();
    let demo = Demo::start(DemoOptions {
        listen: ListenOverride { host: Some("127.0.0.1".into()), port: Some(0) },
        seed: 5,
        workers: 2,
        instances: 2,
        redis: None,
    })
    .await
    .expect("demo starts with a private redis-server");
    let urls = demo.base_urls();
    assert_eq!(urls.len(), 2);
    assert_ne!(urls[0], urls[1]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let status_of = |url: String| {
        let http = http.clone();
        async move {
            let v: Value = http.get(format!("{url}/status")).send().await.unwrap().json().await.unwrap();
            v
        }
    };
    let primary = DEMO_PROVIDERS[0];
    let provider_in = |v: &Value| {
        v["providers"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["id"] == primary).cloned())
            .unwrap_or_default()
    };
    // Both connected, then the operator drains the primary through the first instance.
    for url in &urls {
        let mut ok = false;
        for _ in 0..200 {
            if status_of(url.clone()).await["state"]["connected"] == json!(true) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "{url} connected");
    }
    demo.running.runtime.balancer.apply(Command::Drain(primary.into())).unwrap();
    let mut seen = Value::Null;
    for _ in 0..200 {
        seen = provider_in(&status_of(urls[1].clone()).await);
        if seen["status"] == "draining" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen["status"], "draining", "{seen}");
    assert!(seen["statusReason"].as_str().is_some_and(|r| r.contains("another instance")), "{seen}");
    // Undrained through the second: the first uses it again.
    demo.others[0].runtime.balancer.apply(Command::Undrain(primary.into())).unwrap();
    for _ in 0..200 {
        seen = provider_in(&status_of(urls[0].clone()).await);
        if seen["status"] != "draining" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(seen["status"], "draining", "{seen}");
    demo.shutdown().await;
}

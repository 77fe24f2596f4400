//! Two real `ccr start` processes sharing one account pool through a real `redis-server` (issue
//! #16): simulated upstreams and the Redis are started by the test, each process is the binary
//! on port 0 (its address read from its log), and everything is stopped at the end of each test.
//!
//! Run with `cargo test --test shared_processes -- --ignored` (needs `redis-server` on PATH).
#![cfg(unix)]

mod common;

use ccr::demo::pool::{Account, SimPool, SimPoolBuilder};
use ccr::demo::redis::RedisServer;
use ccr::demo::upstream::SimOptions;
use common::{main_turn, sim};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::process::Child;

const GENEROUS: Duration = Duration::from_secs(20);

/// One `ccr start` process.
struct Proc {
    child: Child,
    base: String,
}

impl Proc {
    /// `ccr start --port 0 --config path`; waits until it listens.
    async fn start(path: &std::path::Path) -> Proc {
        let (child, base) = common::spawn_ccr(path).await;
        Proc { child, base }
    }

    /// SIGTERM, then waits for the exit (killed if it takes too long).
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        if tokio::time::timeout(GENEROUS, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

struct Setup {
    redis: RedisServer,
    pool: SimPool,
    a: Proc,
    b: Proc,
    http: reqwest::Client,
}

/// The Redis, the pool (with the shared state section) and two processes on its config file,
/// both connected to Redis.
async fn setup(builder: SimPoolBuilder) -> Setup {
    let redis = RedisServer::start().expect("redis-server must be installed for these tests");
    let pool = builder
        .merge(json!({
            "state": {"backend": "redis", "url": redis.url(), "keyPrefix": "p:", "timeout": 500, "leaseTtl": 1000},
            "input": {"defaultInstance": false},
        }))
        .start()
        .await
        .expect("pool");
    let a = Proc::start(&pool.config_path).await;
    let b = Proc::start(&pool.config_path).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let setup = Setup { redis, pool, a, b, http };
    for via in [&setup.a, &setup.b] {
        let mut connected = false;
        for _ in 0..400 {
            let health: Value = setup.get_json(via, "/health").await;
            if health["state"]["connected"] == json!(true) {
                connected = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(connected, "{} connected to Redis", via.base);
    }
    setup
}

impl Setup {
    async fn get_json(&self, via: &Proc, path: &str) -> Value {
        self.http.get(format!("{}{path}", via.base)).send().await.expect("get").json().await.expect("json")
    }

    async fn post(&self, via: &Proc, body: &Value, session: Option<&str>) -> (u16, String, String) {
        let mut req = self.http.post(format!("{}/v1/messages", via.base)).json(body);
        if let Some(s) = session {
            req = req.header("x-claude-code-session-id", s);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let provider =
            r.headers().get("x-ccr-provider").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        (status, provider, r.text().await.unwrap_or_default())
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
        self.pool.shutdown().await;
        drop(self.redis);
    }
}

fn lone_turn(text: &str) -> Value {
    let mut body = main_turn(text, false);
    body.as_object_mut().unwrap().remove("metadata");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_conversation_bound_through_one_process_is_served_by_the_same_account_through_the_other() {
    let builder = SimPool::builder()
        .provider_defaults(
            json!({"firstByteTimeout": 5000, "idleTimeout": 5000, "usage": {"enabled": false}}),
        )
        .account("a", Account::new().sim(sim(0)))
        .account("b", Account::new().sim(sim(1)))
        .rule(
            "default",
            json!({"providers": ["a", "b"], "loadBalancing": {"strategy": "round-robin", "failover": true}}),
        );
    let s = setup(builder).await;
    // Shift A's rotation by one, so that without sharing B would place each conversation on the
    // other account.
    let (status, _, body) = s.post(&s.a, &lone_turn("warm up"), None).await;
    assert_eq!(status, 200, "{body}");
    let mut bound_to = Vec::new();
    for i in 0..4 {
        let session = format!("process-session-{i}");
        let (status, bound, body) = s.post(&s.a, &main_turn("first turn", false), Some(&session)).await;
        assert_eq!(status, 200, "{body}");
        for turn in 0..2 {
            let (status, provider, body) = s.post(&s.b, &main_turn("next turn", false), Some(&session)).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(provider, bound, "{session} turn {turn} through process B");
        }
        bound_to.push(bound);
    }
    assert!(bound_to.contains(&"a".to_owned()) && bound_to.contains(&"b".to_owned()), "{bound_to:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_process_killed_mid_stream_gives_its_lease_back_within_lease_ttl() {
    let slow = SimOptions { chunk_delay: Duration::from_millis(50), ..sim(0) };
    let builder = SimPool::builder()
        .provider_defaults(
            json!({"firstByteTimeout": 5000, "idleTimeout": 5000, "usage": {"enabled": false}}),
        )
        .account("solo", Account::new().sim(slow).provider(json!({"maxConcurrentRequests": 1})))
        .rule("default", json!({"providers": ["solo"]}));
    let mut s = setup(builder).await;
    let upstream = s.pool.upstream("solo").unwrap().clone();
    // A takes the account's only slot with a stream of 20 s.
    let stream = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "[sim:long:400] go"}]});
    let mut open = s.http.post(format!("{}/v1/messages", s.a.base)).json(&stream).send().await.unwrap();
    assert_eq!(open.status(), 200);
    assert!(open.chunk().await.unwrap().is_some(), "the stream has started");
    assert!(s.redis.command("ZCARD p:lease:solo").unwrap().contains(":1"), "A's lease is in Redis");
    // While A lives, B cannot use the account: it waits in its queue, then answers 529.
    let (status, _, body) = s.post(&s.b, &main_turn("blocked", false), None).await;
    assert_eq!(status, 529, "the pool's cap holds across processes: {body}");
    let before = upstream.stats().generate;

    // A dies without a word: nobody renews its lease, which expires after leaseTtl (1 s).
    s.a.child.start_kill().expect("SIGKILL");
    let killed_at = std::time::Instant::now();
    let mut served = None;
    while killed_at.elapsed() < GENEROUS {
        let (status, _, body) = s.post(&s.b, &main_turn("after the crash", false), None).await;
        if status == 200 {
            served = Some(killed_at.elapsed());
            break;
        }
        assert_eq!(status, 529, "only capacity may refuse it: {body}");
    }
    let waited = served.expect("B is served once A's lease expired");
    assert_eq!(upstream.stats().generate, before + 1, "B's request reached the account once");
    drop(open);
    eprintln!("served through B {} ms after the kill", waited.as_millis());
    s.stop().await;
}

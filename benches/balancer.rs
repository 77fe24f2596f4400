//! Per-operation costs of routing (design §11): provider selection per strategy (pick + lease
//! end, the two lock sections every request pays), and classification, including the token
//! estimate of a 1 MB Claude Code request. `shared_pick` compares one pick with the state in
//! memory and with the state shared through a local `redis-server` (docs/shared-state.md; the
//! Redis row is skipped when `redis-server` is not installed).
//!
//! ```sh
//! cargo bench --bench balancer
//! cargo bench --bench balancer -- shared_pick
//! ```

#[path = "support/shapes.rs"]
mod shapes;

use ccr::anthropic::types::parse_request;
use ccr::balancer::{Balancer, Placement};
use ccr::classify::{Thresholds, classify};
use ccr::config::parse_config;
use ccr::runtime::balancer_spec;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// One rule per strategy over `n` providers (the category names only label the rules).
fn config(n: usize) -> Value {
    let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let mut providers = serde_json::Map::new();
    for (i, id) in ids.iter().enumerate() {
        providers.insert(
            id.clone(),
            json!({"type": "aws", "tokenPath": format!("/tmp/ccr-bench-{id}.json"),
                   "weight": 1 + i as u64 * 10, "maxConcurrentRequests": 1000,
                   "circuitBreaker": {"failureThreshold": 5, "resetTimeout": 60000, "monitoringPeriod": 60000}}),
        );
    }
    let rule = |strategy: &str| {
        let mut lb = json!({"strategy": strategy, "failover": true});
        if strategy == "single" {
            lb["fallback"] = json!(ids[1]);
        }
        json!({"providers": ids, "loadBalancing": lb})
    };
    json!({
        "routing": {"rules": {
            "default": rule("round-robin"),
            "background": rule("weighted-round-robin"),
            "thinking": rule("least-connections"),
            "search": rule("response-time"),
            "longcontext": rule("single"),
        }},
        "providers": providers
    })
}

fn balancer(n: usize) -> Arc<Balancer> {
    let config = parse_config(&config(n).to_string()).expect("bench config is valid");
    Balancer::new(balancer_spec(&config))
}

fn selection(c: &mut Criterion) {
    let mut group = c.benchmark_group("select");
    for n in [2, 10] {
        let b = balancer(n);
        for (category, strategy) in [
            ("default", "round_robin"),
            ("background", "weighted_round_robin"),
            ("thinking", "least_connections"),
            ("search", "response_time"),
            ("longcontext", "single"),
        ] {
            group.bench_function(BenchmarkId::new(strategy, format!("{n}_providers")), |bench| {
                bench.iter(|| {
                    // Never waits: every provider has room, so the future is ready at once.
                    let lease = b
                        .select(black_box(category), &[])
                        .now_or_never()
                        .expect("select is immediate when there is capacity")
                        .expect("a provider");
                    lease.success(Duration::from_millis(20));
                })
            });
        }
        // Failover: the second attempt of a request excludes the first provider.
        let excluded = vec!["p0".to_string()];
        group.bench_function(
            BenchmarkId::new("round_robin_excluding_one", format!("{n}_providers")),
            |bench| {
                bench.iter(|| {
                    let lease = b
                        .select("default", black_box(&excluded))
                        .now_or_never()
                        .expect("ready")
                        .expect("a provider");
                    lease.success(Duration::from_millis(20));
                })
            },
        );
    }
    group.finish();
}

fn classification(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    let thresholds = Thresholds::default();
    for (name, body) in [
        ("small", shapes::small_request(true)),
        ("claude_code_1mb", shapes::long_session_request(1_000_000, true)),
    ] {
        let raw = serde_json::to_vec(&body).expect("json");
        let req = parse_request(&raw).expect("valid request");
        group.bench_function(BenchmarkId::new("estimate_tokens", name), |b| {
            b.iter(|| black_box(black_box(&req).estimate_input_tokens()))
        });
        let estimate = req.estimate_input_tokens();
        group.bench_function(BenchmarkId::new("classify", name), |b| {
            b.iter(|| black_box(classify(black_box(&req), estimate, thresholds)))
        });
        group.bench_function(BenchmarkId::new("estimate_and_classify", name), |b| {
            b.iter(|| {
                let estimate = black_box(&req).estimate_input_tokens();
                black_box(classify(&req, estimate, thresholds))
            })
        });
    }
    group.finish();
}

/// Selection with conversation affinity: 10 accounts, 10 000 conversations already bound, each
/// iteration one more turn of one of them (kept on its account; the binding lookup, LRU touch and
/// rebind are the extra cost over a plain pick).
fn affinity(c: &mut Criterion) {
    let mut group = c.benchmark_group("select_affinity");
    let b = balancer(10);
    let sessions: Vec<String> = (0..10_000).map(|i| format!("session-{i:05}")).collect();
    for s in &sessions {
        let place = Placement { session: Some(s), model: None };
        let lease =
            b.select_for("background", &[], place).now_or_never().expect("ready").expect("a provider");
        lease.success(Duration::from_millis(20));
    }
    let mut i = 0usize;
    group.bench_function(
        BenchmarkId::new("weighted_round_robin_kept", "10_providers_10000_sessions"),
        |bench| {
            bench.iter(|| {
                i = (i + 7919) % sessions.len();
                let place = Placement { session: Some(&sessions[i]), model: None };
                let lease = b
                    .select_for(black_box("background"), &[], place)
                    .now_or_never()
                    .expect("select is immediate when there is capacity")
                    .expect("a provider");
                lease.success(Duration::from_millis(20));
            })
        },
    );
    group.finish();
}

/// One sticky pick + lease end (a conversation turn) with the state in memory and shared through
/// a local `redis-server` on a unix socket: the Redis row is the one scripted round trip a pick
/// pays (binding, shared exclusions, pool-wide lease) plus the lease's release.
fn shared_pick(c: &mut Criterion) {
    use ccr::config::StateSettings;
    use ccr::demo::redis::RedisServer;
    use ccr::state::SharedState;

    let mut group = c.benchmark_group("shared_pick");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let sessions: Vec<String> = (0..1000).map(|i| format!("session-{i:04}")).collect();
    let redis = if RedisServer::available() { RedisServer::start().ok() } else { None };
    let mut backends = vec![("memory", balancer(10), None)];
    if let Some(server) = &redis {
        let settings = StateSettings {
            backend: "redis".into(),
            url: Some(server.url()),
            key_prefix: "bench:".into(),
            timeout: 1000,
            lease_ttl: 30_000,
        };
        let state = SharedState::from_settings(&settings);
        let b = balancer(10);
        state.attach_balancer(&b);
        let link = state.redis().expect("redis backend").clone();
        assert!(rt.block_on(link.ping()), "redis-server answers");
        backends.push(("redis", b, Some(state)));
    } else {
        eprintln!("shared_pick: redis-server not found; only the memory row runs");
    }
    for (name, b, _state) in &backends {
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("sticky_turn", name), |bench| {
            bench.iter(|| {
                i = (i + 7) % sessions.len();
                let place = Placement { session: Some(&sessions[i]), model: None };
                rt.block_on(async {
                    let lease = b.select_for(black_box("background"), &[], place).await.expect("a provider");
                    lease.success(Duration::from_millis(20));
                    // Let the spawned release reach Redis, as it does in a running instance.
                    tokio::task::yield_now().await;
                })
            })
        });
    }
    group.finish();
    drop(redis);
}

criterion_group!(benches, selection, affinity, classification, shared_pick);
criterion_main!(benches);

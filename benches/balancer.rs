//! Per-operation costs of routing (design §11): provider selection per strategy (pick + lease
//! end, the two lock sections every request pays), and classification, including the token
//! estimate of a 1 MB Claude Code request.
//!
//! ```sh
//! cargo bench --bench balancer
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

criterion_group!(benches, selection, affinity, classification);
criterion_main!(benches);

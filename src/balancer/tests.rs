//! Tests of the balancer as a whole, through its public API, on paused tokio time.

use super::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, advance};

fn provider(id: &str, weight: u32, max_concurrent: u32) -> ProviderSpec {
    ProviderSpec {
        id: id.to_owned(),
        weight,
        max_concurrent,
        breaker: None,
        health: None,
        latency_window: 10,
        usage: None,
    }
}

fn with_breaker(mut p: ProviderSpec, threshold: u32, reset_secs: u64) -> ProviderSpec {
    p.breaker = Some(BreakerParams {
        failure_threshold: threshold,
        monitoring_period: Duration::from_secs(10),
        reset_timeout: Duration::from_secs(reset_secs),
    });
    p
}

fn with_health(mut p: ProviderSpec, retries: u32) -> ProviderSpec {
    p.health =
        Some(HealthParams { interval: Duration::from_secs(10), timeout: Duration::from_secs(1), retries });
    p
}

fn rule(category: &str, strategy: StrategyKind, providers: &[&str]) -> RuleSpec {
    RuleSpec {
        category: category.to_owned(),
        strategy,
        providers: providers.iter().map(|s| (*s).to_owned()).collect(),
        weights: HashMap::new(),
        failover: true,
        health_check: false,
        fallback: None,
        sticky: true,
        sticky_ttl: DEFAULT_STICKY_TTL,
    }
}

fn spec(providers: Vec<ProviderSpec>, rules: Vec<RuleSpec>) -> BalancerSpec {
    BalancerSpec { providers, rules, ..BalancerSpec::default() }
}

/// Selects for `category`, ends the lease with a success, returns the provider id.
async fn pick(b: &Arc<Balancer>, category: &str) -> String {
    let lease = b.select(category, &[]).await.expect("a provider");
    let id = lease.id().to_owned();
    lease.success(Duration::from_millis(10));
    id
}

async fn picks(b: &Arc<Balancer>, category: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(pick(b, category).await);
    }
    out
}

fn ids(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

fn in_flight(b: &Balancer, id: &str) -> u32 {
    b.snapshot().provider(id).expect("provider").in_flight
}

// --- strategies, golden sequences through select ---

#[tokio::test(start_paused = true)]
async fn weighted_seventy_thirty_exact_in_every_window_of_ten() {
    let mut r = rule("default", StrategyKind::WeightedRoundRobin, &["primary", "secondary"]);
    r.weights = HashMap::from([("primary".to_owned(), 70), ("secondary".to_owned(), 30)]);
    // Provider weights differ from the rule's: the rule's must win.
    let b = Balancer::new(spec(vec![provider("primary", 1, 10), provider("secondary", 1, 8)], vec![r]));
    let seq = picks(&b, "default", 100).await;
    for window in seq.windows(10) {
        assert_eq!(window.iter().filter(|p| *p == "primary").count(), 7, "{window:?}");
        assert_eq!(window.iter().filter(|p| *p == "secondary").count(), 3, "{window:?}");
    }
    let snap = b.snapshot();
    let r = snap.rule("default").expect("rule");
    assert_eq!(r.providers[0].picks, 70);
    assert_eq!(r.providers[1].picks, 30);
    assert_eq!(r.providers[0].weight, 70);
    assert_eq!(snap.provider("primary").expect("p").counters.requests, 70);
}

#[tokio::test(start_paused = true)]
async fn weighted_five_one_one_golden() {
    let b = Balancer::new(spec(
        vec![provider("a", 5, 0), provider("b", 1, 0), provider("c", 1, 0)],
        vec![rule("default", StrategyKind::WeightedRoundRobin, &["a", "b", "c"])],
    ));
    assert_eq!(
        picks(&b, "default", 14).await,
        ids(&["a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"])
    );
}

#[tokio::test(start_paused = true)]
async fn round_robin_in_order_skipping_ineligible() {
    let b = Balancer::new(spec(
        vec![provider("a", 1, 0), provider("b", 1, 0), provider("c", 1, 0)],
        vec![rule("background", StrategyKind::RoundRobin, &["a", "b", "c"])],
    ));
    assert_eq!(picks(&b, "background", 4).await, ids(&["a", "b", "c", "a"]));
    b.apply(Command::Drain("c".into())).expect("drain");
    assert_eq!(picks(&b, "background", 4).await, ids(&["b", "a", "b", "a"]));
    b.apply(Command::Undrain("c".into())).expect("undrain");
    assert_eq!(picks(&b, "background", 3).await, ids(&["b", "c", "a"]));
}

#[tokio::test(start_paused = true)]
async fn least_connections_with_held_leases() {
    let b = Balancer::new(spec(
        vec![provider("a", 1, 0), provider("b", 1, 0), provider("c", 2, 0)],
        vec![rule("thinking", StrategyKind::LeastConnections, &["a", "b", "c"])],
    ));
    let mut held = Vec::new();
    for expected in ["c", "a", "b", "c"] {
        let lease = b.select("thinking", &[]).await.expect("lease");
        assert_eq!(lease.id(), expected);
        held.push(lease);
    }
    // a: 1, b: 1, c: 2 in flight. Release a's lease: a has fewest.
    let a = held.remove(1);
    assert_eq!(a.id(), "a");
    a.success(Duration::from_millis(5));
    let lease = b.select("thinking", &[]).await.expect("lease");
    assert_eq!(lease.id(), "a");
    held.push(lease);
    // a: 1, b: 1, c: 2 again; a third tie at 1 goes to the first in order.
    let lease = b.select("thinking", &[]).await.expect("lease");
    assert_eq!(lease.id(), "a");
    held.push(lease);
    assert_eq!(in_flight(&b, "a"), 2);
    drop(held);
    assert_eq!(in_flight(&b, "a"), 0);
    assert_eq!(in_flight(&b, "c"), 0);
}

#[tokio::test(start_paused = true)]
async fn response_time_moves_away_from_a_slow_provider_and_back_after_decay() {
    let b = Balancer::new(spec(
        vec![provider("a", 1, 0), provider("b", 1, 0)],
        vec![rule("search", StrategyKind::ResponseTime, &["a", "b"])],
    ));
    let ttfb = |id: &str| if id == "a" { Duration::from_millis(200) } else { Duration::from_millis(300) };

    // Both unmeasured (equal default cost): a first, by order.
    let mut first = b.select("search", &[]).await.expect("lease");
    assert_eq!(first.id(), "a");
    first.first_byte(ttfb("a"));
    // a: 200 × (1 in flight + 1) = 400 > b's default 250: b is tried.
    let mut second = b.select("search", &[]).await.expect("lease");
    assert_eq!(second.id(), "b");
    second.first_byte(ttfb("b"));
    first.success(Duration::from_secs(1));
    second.success(Duration::from_secs(1));

    // Sequential traffic: a (200) beats b (300).
    assert_eq!(picks(&b, "search", 3).await, ids(&["a", "a", "a"]));

    // a turns slow once: the peak takes effect at once.
    let mut slow = b.select("search", &[]).await.expect("lease");
    assert_eq!(slow.id(), "a");
    slow.first_byte(Duration::from_millis(3000));
    slow.success(Duration::from_secs(4));
    let snap = b.snapshot();
    assert_eq!(snap.provider("a").expect("a").latency.ewma_ms, 3000.0);

    // One request per second. a's estimate is stale after τ = 10 s and then decays toward the
    // default 250: 250 + 2750·exp(−(t−10)/10) < 300 first at t = 51 s.
    let mut when_back = None;
    for second in 1..=60u64 {
        advance(Duration::from_secs(1)).await;
        let mut lease = b.select("search", &[]).await.expect("lease");
        let id = lease.id().to_owned();
        lease.first_byte(ttfb(&id));
        lease.success(Duration::from_secs(1));
        if id == "a" {
            when_back = Some(second);
            break;
        }
    }
    assert_eq!(when_back, Some(51));
}

#[tokio::test(start_paused = true)]
async fn single_uses_fallback_then_returns() {
    let mut r = rule("longcontext", StrategyKind::Single, &["a", "c"]);
    r.fallback = Some("b".into());
    r.failover = false;
    let b = Balancer::new(spec(vec![provider("a", 1, 0), provider("b", 1, 0), provider("c", 1, 0)], vec![r]));
    assert_eq!(b.rule_provider_count("longcontext"), 2);
    assert!(b.rule_failover("longcontext"));
    assert_eq!(picks(&b, "longcontext", 2).await, ids(&["a", "a"]));
    b.apply(Command::Drain("a".into())).expect("drain");
    assert_eq!(picks(&b, "longcontext", 2).await, ids(&["b", "b"]));
    // With the fallback out too, nothing else is used (c is listed but never picked).
    b.apply(Command::Drain("b".into())).expect("drain");
    assert_eq!(
        b.select("longcontext", &[]).await.err(),
        Some(SelectError::Unavailable { retry_after: None })
    );
    b.apply(Command::Undrain("a".into())).expect("undrain");
    assert_eq!(picks(&b, "longcontext", 2).await, ids(&["a", "a"]));
    // Failover within single: a already tried, so the fallback.
    b.apply(Command::Undrain("b".into())).expect("undrain");
    let lease = b.select("longcontext", &ids(&["a"])).await.expect("fallback");
    assert_eq!(lease.id(), "b");
    assert_eq!(lease.attempt(), 2);
    drop(lease);
    assert_eq!(
        b.select("longcontext", &ids(&["a", "b"])).await.err(),
        Some(SelectError::NoCandidates { category: "longcontext".into() })
    );
}

// --- routing ---

#[tokio::test(start_paused = true)]
async fn unknown_category_uses_default_rule_and_no_default_is_an_error() {
    let b = Balancer::new(spec(
        vec![provider("a", 1, 0), provider("b", 1, 0)],
        vec![rule("default", StrategyKind::RoundRobin, &["a", "b"]), {
            let mut s = rule("search", StrategyKind::Single, &["b"]);
            s.failover = false;
            s
        }],
    ));
    let lease = b.select("thinking", &[]).await.expect("default rule");
    assert_eq!(lease.rule(), "default");
    assert_eq!(lease.category(), "thinking");
    assert_eq!(lease.attempt(), 1);
    drop(lease);
    assert_eq!(b.rule_provider_count("thinking"), 2);
    assert!(b.rule_failover("thinking"));
    assert!(!b.rule_failover("search"), "single without fallback and without failover");
    assert_eq!(b.rule_strategy("search"), Some(StrategyKind::Single));
    assert_eq!(b.rule_provider_count("search"), 1);
    assert_eq!((b.max_attempts("thinking"), b.max_attempts("search")), (2, 1));
    assert_eq!(b.rule_category("thinking").as_deref(), Some("default"));
    let counters = b.snapshot().provider("a").expect("a").by_category.get("thinking").copied();
    assert_eq!(counters, Some(Counters { requests: 1, successes: 0, failures: 0, neutral: 1 }));

    let b =
        Balancer::new(spec(vec![provider("a", 1, 0)], vec![rule("search", StrategyKind::Single, &["a"])]));
    assert_eq!(b.select("thinking", &[]).await.err(), Some(SelectError::NoRule("thinking".into())));
    assert_eq!(b.rule_provider_count("thinking"), 0);
    assert!(!b.rule_failover("thinking"));
}

#[tokio::test(start_paused = true)]
async fn excluded_providers_are_skipped() {
    let b = Balancer::new(spec(
        vec![provider("a", 1, 0), provider("b", 1, 0)],
        vec![rule("default", StrategyKind::RoundRobin, &["a", "b"])],
    ));
    for _ in 0..3 {
        let lease = b.select("default", &ids(&["a"])).await.expect("b");
        assert_eq!(lease.id(), "b");
    }
    assert_eq!(
        b.select("default", &ids(&["b", "a"])).await.err(),
        Some(SelectError::NoCandidates { category: "default".into() })
    );
}

// --- breaker through select ---

#[tokio::test(start_paused = true)]
async fn breaker_opens_and_half_open_admits_one_probe() {
    let b = Balancer::new(spec(
        vec![with_breaker(provider("a", 1, 0), 2, 30), provider("b", 1, 0)],
        vec![rule("default", StrategyKind::RoundRobin, &["a", "b"])],
    ));
    let lease = b.select("default", &[]).await.expect("a");
    assert_eq!(lease.id(), "a");
    lease.failure(FailureKind::Connect, "connection refused");
    assert_eq!(pick(&b, "default").await, "b");
    let lease = b.select("default", &[]).await.expect("a");
    assert_eq!(lease.id(), "a");
    lease.failure(FailureKind::Status5xx(502), "bad gateway");

    let snap = b.snapshot();
    let br = snap.provider("a").expect("a").breaker.clone().expect("breaker");
    assert_eq!(br.state, BreakerState::Open);
    assert_eq!(br.failures, 2);
    assert_eq!(br.opened_at_ms, Some(0));
    assert_eq!(br.next_probe_ms, Some(30_000));
    assert_eq!(snap.provider("a").expect("a").blocked, vec![BlockReason::BreakerOpen]);
    assert_eq!(
        snap.provider("a").expect("a").last_error.as_ref().map(|e| e.message.as_str()),
        Some("upstream status 502: bad gateway")
    );

    assert_eq!(picks(&b, "default", 3).await, ids(&["b", "b", "b"]));
    advance(Duration::from_secs(29)).await;
    assert_eq!(pick(&b, "default").await, "b");
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        b.snapshot().provider("a").expect("a").breaker.as_ref().map(|b| b.state),
        Some(BreakerState::HalfOpen)
    );

    // Exactly one probe.
    let mut probe = b.select("default", &[]).await.expect("probe");
    assert_eq!(probe.id(), "a");
    assert!(probe.is_probe());
    assert_eq!(picks(&b, "default", 3).await, ids(&["b", "b", "b"]));
    assert!(b.snapshot().provider("a").expect("a").breaker.as_ref().is_some_and(|b| b.probe_in_flight));

    // Decided at the first frame, while the stream is still running.
    probe.first_byte(Duration::from_millis(120));
    let br = b.snapshot().provider("a").expect("a").breaker.clone().expect("breaker");
    assert_eq!(br.state, BreakerState::Closed);
    assert_eq!(br.failures, 0);
    assert_eq!(br.opened_at_ms, None);
    assert_eq!(picks(&b, "default", 2).await, ids(&["a", "b"]));
    probe.success(Duration::from_secs(60));
    assert_eq!(in_flight(&b, "a"), 0);
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_with_a_fresh_timer() {
    let b = Balancer::new(spec(
        vec![with_breaker(provider("a", 1, 0), 1, 30), provider("b", 1, 0)],
        vec![rule("default", StrategyKind::RoundRobin, &["a", "b"])],
    ));
    b.select("default", &[]).await.expect("a").failure(FailureKind::Timeout, "no first byte");
    advance(Duration::from_secs(30)).await;
    // The round-robin cursor points at b now; exclude it to reach a's probe.
    let probe = b.select("default", &ids(&["b"])).await.expect("probe");
    assert_eq!(probe.id(), "a");
    assert!(probe.is_probe());
    advance(Duration::from_secs(5)).await;
    probe.failure(FailureKind::Connect, "reset");
    let br = b.snapshot().provider("a").expect("a").breaker.clone().expect("breaker");
    assert_eq!(br.state, BreakerState::Open);
    assert_eq!(br.opened_at_ms, Some(35_000));
    assert_eq!(br.next_probe_ms, Some(65_000));
    assert_eq!(br.times_opened, 2);
    advance(Duration::from_secs(29)).await;
    assert_eq!(picks(&b, "default", 2).await, ids(&["b", "b"]));
    advance(Duration::from_secs(1)).await;
    let probe = b.select("default", &[]).await.expect("probe");
    assert_eq!(probe.id(), "a");
    assert!(probe.is_probe());
}

#[tokio::test(start_paused = true)]
async fn probe_dropped_by_client_frees_the_slot() {
    let b = Balancer::new(spec(
        vec![with_breaker(provider("a", 1, 0), 1, 30)],
        vec![rule("default", StrategyKind::Single, &["a"])],
    ));
    b.select("default", &[]).await.expect("a").failure(FailureKind::Auth, "403 after refresh");
    advance(Duration::from_secs(30)).await;
    let probe = b.select("default", &[]).await.expect("probe");
    assert_eq!(
        b.select("default", &[]).await.err(),
        Some(SelectError::AllOpen { retry_after: HALF_OPEN_RETRY })
    );
    drop(probe); // client went away before the first frame: no decision
    let probe = b.select("default", &[]).await.expect("second probe");
    assert!(probe.is_probe());
    probe.success(Duration::from_millis(900));
    assert_eq!(
        b.snapshot().provider("a").expect("a").breaker.as_ref().map(|b| b.state),
        Some(BreakerState::Closed)
    );
}

#[tokio::test(start_paused = true)]
async fn all_breakers_open_gives_all_open_with_retry_after() {
    let b = Balancer::new(spec(
        vec![with_breaker(provider("a", 1, 0), 1, 30), with_breaker(provider("b", 1, 0), 1, 45)],
        vec![rule("default", StrategyKind::RoundRobin, &["a", "b"])],
    ));
    b.select("default", &[]).await.expect("a").failure(FailureKind::Connect, "refused");
    advance(Duration::from_secs(2)).await;
    b.select("default", &[]).await.expect("b").failure(FailureKind::Connect, "refused");
    assert_eq!(
        b.select("default", &[]).await.err(),
        Some(SelectError::AllOpen { retry_after: Duration::from_secs(28) })
    );
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        b.select("default", &[]).await.err(),
        Some(SelectError::AllOpen { retry_after: Duration::from_secs(18) })
    );
    assert_eq!(b.next_timed_change(), Some(b.started() + Duration::from_secs(30)));
    advance(Duration::from_secs(18)).await;
    let probe = b.select("default", &[]).await.expect("a probes");
    assert_eq!(probe.id(), "a");
}

// --- 429 cooldown and quota ---

#[tokio::test(start_paused = true)]
async fn rate_limit_cools_the_provider_down() {
    let b = Balancer::new(spec(
        vec![with_breaker(provider("a", 1, 0), 5, 30), provider("b", 1, 0)],
        vec![rule("default", StrategyKind::RoundRobin, &["a", "b"])],
    ));
    let lease = b.select("default", &[]).await.expect("a");
    lease.failure(FailureKind::RateLimited { retry_after: Some(Duration::from_secs(10)) }, "429");
    let snap = b.snapshot();
    let a = snap.provider("a").expect("a");
    assert_eq!(a.cooldown_until_ms, Some(10_000));
    assert_eq!(a.blocked, vec![BlockReason::CoolingDown]);
    assert_eq!(a.breaker.as_ref().map(|b| b.failures), Some(1), "a 429 counts against the breaker");
    assert_eq!(picks(&b, "default", 3).await, ids(&["b", "b", "b"]));
    advance(Duration::from_secs(9)).await;
    assert_eq!(pick(&b, "default").await, "b");
    advance(Duration::from_secs(1)).await;
    assert_eq!(picks(&b, "default", 2).await, ids(&["a", "b"]));
    assert_eq!(b.snapshot().provider("a").expect("a").cooldown_until_ms, None);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_cooldown_is_clamped_and_defaulted() {
    let b =
        Balancer::new(spec(vec![provider("a", 1, 0)], vec![rule("default", StrategyKind::Single, &["a"])]));
    let cases = [
        (None, 5_000),
        (Some(Duration::from_millis(10)), 1_000),
        (Some(Duration::from_secs(3600)), 300_000),
        (Some(Duration::from_secs(42)), 42_000),
    ];
    for (retry_after, expected_ms) in cases {
        b.apply(Command::ResetBreaker("a".into())).expect("reset");
        let now_ms = b.snapshot().uptime_ms;
        b.select("default", &[]).await.expect("a").failure(FailureKind::RateLimited { retry_after }, "429");
        assert_eq!(b.snapshot().provider("a").expect("a").cooldown_until_ms, Some(now_ms + expected_ms));
        assert_eq!(
            b.select("default", &[]).await.err(),
            Some(SelectError::Unavailable { retry_after: Some(Duration::from_millis(expected_ms)) })
        );
        advance(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn quota_exhausted_provider_is_out_until_reset() {
    let b = Balancer::new(spec(
        vec![with_breaker(provider("a", 1, 0), 1, 30), provider("b", 1, 0)],
        vec![rule("default", StrategyKind::RoundRobin, &["a", "b"])],
    ));
    let until = Instant::now() + Duration::from_secs(120);
    b.select("default", &[])
        .await
        .expect("a")
        .failure(FailureKind::QuotaExhausted { until: Some(until) }, "MONTHLY_REQUEST_COUNT");
    let snap = b.snapshot();
    let a = snap.provider("a").expect("a");
    assert_eq!(a.quota_exhausted_until_ms, Some(120_000));
    assert_eq!(a.blocked, vec![BlockReason::QuotaExhausted]);
    assert_eq!(a.breaker.as_ref().map(|b| (b.state, b.failures)), Some((BreakerState::Closed, 0)));
    assert_eq!(a.counters.failures, 1);
    assert_eq!(picks(&b, "default", 3).await, ids(&["b", "b", "b"]));
    advance(Duration::from_secs(120)).await;
    assert_eq!(picks(&b, "default", 2).await, ids(&["a", "b"]));

    // Without a reset time: the default backoff.
    b.select("default", &[]).await.expect("a").failure(FailureKind::QuotaExhausted { until: None }, "quota");
    let a_until = b.snapshot().provider("a").expect("a").quota_exhausted_until_ms;
    assert_eq!(a_until, Some(120_000 + DEFAULT_QUOTA_BACKOFF.as_millis() as u64));
}

#[tokio::test(start_paused = true)]
async fn mixed_exclusions_give_unavailable_with_the_soonest_return() {
    let b = Balancer::new(spec(
        vec![provider("a", 1, 0), provider("b", 1, 0)],
        vec![rule("default", StrategyKind::RoundRobin, &["a", "b"])],
    ));
    b.apply(Command::Drain("a".into())).expect("drain");
    b.select("default", &[])
        .await
        .expect("b")
        .failure(FailureKind::RateLimited { retry_after: Some(Duration::from_secs(7)) }, "429");
    assert_eq!(
        b.select("default", &[]).await.err(),
        Some(SelectError::Unavailable { retry_after: Some(Duration::from_secs(7)) })
    );
    b.apply(Command::Drain("b".into())).expect("drain");
    assert_eq!(b.select("default", &[]).await.err(), Some(SelectError::Unavailable { retry_after: None }));
}

// --- capacity ---

#[tokio::test(start_paused = true)]
async fn capacity_queue_waits_for_a_release_then_overloads() {
    let mut s = spec(vec![provider("a", 1, 1)], vec![rule("default", StrategyKind::RoundRobin, &["a"])]);
    s.queue_timeout = Duration::from_secs(2);
    s.max_queue = 1;
    let b = Balancer::new(s);
    let held = b.select("default", &[]).await.expect("a");

    // A waiter gets the slot when the holder finishes.
    let waiter = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.select("default", &[]).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(b.snapshot().queue.waiting, 1);
    // The queue holds one: another request is refused at once.
    assert_eq!(
        b.select("default", &[]).await.err(),
        Some(SelectError::Overloaded { waited: Duration::ZERO })
    );
    held.success(Duration::from_secs(1));
    let lease = waiter.await.expect("task").expect("lease after release");
    assert_eq!(lease.queued(), Duration::from_secs(1));
    assert_eq!(b.snapshot().queue.waiting, 0);

    // Nobody releases: Overloaded after the queue timeout, exactly.
    let started = Instant::now();
    assert_eq!(
        b.select("default", &[]).await.err(),
        Some(SelectError::Overloaded { waited: Duration::from_secs(2) })
    );
    assert_eq!(Instant::now() - started, Duration::from_secs(2));
    assert_eq!(b.snapshot().queue.waiting, 0);
    drop(lease);
    assert_eq!(in_flight(&b, "a"), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiter_gives_its_queue_place_back() {
    let b =
        Balancer::new(spec(vec![provider("a", 1, 1)], vec![rule("default", StrategyKind::Single, &["a"])]));
    let _held = b.select("default", &[]).await.expect("a");
    let r = tokio::time::timeout(Duration::from_millis(500), b.select("default", &[])).await;
    assert!(r.is_err(), "still waiting when cancelled");
    assert_eq!(b.snapshot().queue.waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn capacity_prefers_a_free_provider_and_zero_timeout_overloads_at_once() {
    let mut s = spec(
        vec![provider("a", 1, 1), provider("b", 1, 2)],
        vec![rule("default", StrategyKind::RoundRobin, &["a", "b"])],
    );
    s.queue_timeout = Duration::ZERO;
    let b = Balancer::new(s);
    let l1 = b.select("default", &[]).await.expect("a");
    let l2 = b.select("default", &[]).await.expect("b");
    let l3 = b.select("default", &[]).await.expect("b again: a is full");
    assert_eq!((l1.id(), l2.id(), l3.id()), ("a", "b", "b"));
    let snap = b.snapshot();
    assert_eq!(snap.provider("a").expect("a").blocked, vec![BlockReason::AtCapacity]);
    assert_eq!(
        b.select("default", &[]).await.err(),
        Some(SelectError::Overloaded { waited: Duration::ZERO })
    );
}

// --- health checks ---

#[tokio::test(start_paused = true)]
async fn health_only_exclusion_uses_providers_anyway() {
    let mut r = rule("default", StrategyKind::RoundRobin, &["a", "b"]);
    r.health_check = true;
    let mut plain = rule("background", StrategyKind::RoundRobin, &["a", "b"]);
    plain.health_check = false;
    let b = Balancer::new(spec(
        vec![with_health(provider("a", 1, 0), 2), with_health(provider("b", 1, 0), 2)],
        vec![r, plain],
    ));

    b.record_probe("a", Err("probe failed".into()));
    assert_eq!(b.snapshot().provider("a").expect("a").health.status, HealthStatus::Unknown);
    b.record_probe("a", Err("probe failed".into()));
    let snap = b.snapshot();
    let a = snap.provider("a").expect("a");
    assert_eq!(a.health.status, HealthStatus::Unhealthy);
    assert_eq!(a.health.consecutive_failures, 2);
    assert_eq!(a.blocked, vec![BlockReason::Unhealthy]);
    assert_eq!(picks(&b, "default", 3).await, ids(&["b", "b", "b"]));
    // A rule without health checks ignores the status.
    assert_eq!(picks(&b, "background", 2).await, ids(&["a", "b"]));

    b.record_probe("b", Err("probe failed".into()));
    b.record_probe("b", Err("probe failed".into()));
    let lease = b.select("default", &[]).await.expect("used anyway");
    assert!(lease.health_override());
    let first = lease.id().to_owned();
    drop(lease);
    let lease = b.select("default", &[]).await.expect("used anyway");
    assert!(lease.health_override());
    assert_ne!(lease.id(), first, "round-robin continues over the unhealthy ones");
    drop(lease);

    b.record_probe("a", Ok(Duration::from_millis(40)));
    let snap = b.snapshot();
    let a = snap.provider("a").expect("a");
    assert_eq!(a.health.status, HealthStatus::Healthy);
    assert_eq!(a.health.consecutive_failures, 0);
    assert_eq!(a.health.last_latency_ms, Some(40.0));
    assert_eq!(a.latency.samples.last().map(|s| (s.ms, s.source)), Some((40.0, SampleSource::Probe)));
    // The estimate comes from a's one completed request (10 ms); the probe's 40 ms leaves it alone.
    assert_eq!(a.latency.ewma_ms, 10.0);
    assert_eq!(a.latency.last_ttfb_ms, Some(10.0));
    let lease = b.select("default", &[]).await.expect("a");
    assert_eq!(lease.id(), "a");
    assert!(!lease.health_override());
}

#[tokio::test(start_paused = true)]
async fn capacity_wait_is_preferred_over_an_unhealthy_provider() {
    let mut r = rule("default", StrategyKind::RoundRobin, &["a", "b"]);
    r.health_check = true;
    let b = Balancer::new(spec(vec![with_health(provider("a", 1, 0), 1), provider("b", 1, 1)], vec![r]));
    b.record_probe("a", Err("down".into()));
    let held = b.select("default", &[]).await.expect("b");
    assert_eq!(held.id(), "b");
    let waiter = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.select("default", &[]).await.map(|l| l.id().to_owned()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(held);
    assert_eq!(waiter.await.expect("task"), Ok("b".to_owned()));
}

// --- leases and counters ---

#[tokio::test(start_paused = true)]
async fn in_flight_returns_to_zero_after_every_outcome() {
    let b = Balancer::new(spec(
        vec![with_breaker(provider("a", 1, 0), 100, 30)],
        vec![rule("default", StrategyKind::Single, &["a"])],
    ));
    let mut leases = Vec::new();
    for _ in 0..8 {
        leases.push(b.select("default", &[]).await.expect("a"));
    }
    assert_eq!(in_flight(&b, "a"), 8);
    let mut it = leases.into_iter();
    let mut next = || it.next().expect("lease");
    next().success(Duration::from_millis(100));
    next().failure(FailureKind::Status5xx(500), "internal");
    next().neutral();
    drop(next());
    let mut l = next();
    l.first_byte(Duration::from_millis(50));
    drop(l); // client went away mid-stream
    let mut l = next();
    l.first_byte(Duration::from_millis(60));
    l.failure(FailureKind::Protocol, "corrupt frame");
    let l = next();
    l.failure(FailureKind::RateLimited { retry_after: None }, "429");
    let mut l = next();
    l.first_byte(Duration::from_millis(70));
    l.first_byte(Duration::from_millis(9000)); // ignored
    l.success(Duration::from_secs(3));
    assert_eq!(in_flight(&b, "a"), 0);

    let snap = b.snapshot();
    let a = snap.provider("a").expect("a");
    assert_eq!(a.counters, Counters { requests: 8, successes: 2, failures: 3, neutral: 3 });
    assert_eq!(a.by_category.get("default").copied(), Some(a.counters));
    assert_eq!(a.breaker.as_ref().map(|b| b.failures), Some(3));
    let ttfbs: Vec<f64> = a.latency.samples.iter().map(|s| s.ms).collect();
    assert_eq!(ttfbs, vec![100.0, 50.0, 60.0, 70.0]);
    assert_eq!(a.latency.last_ttfb_ms, Some(70.0));
}

#[tokio::test(start_paused = true)]
async fn latency_history_is_bounded_by_the_window() {
    let mut p = provider("a", 1, 0);
    p.latency_window = 3;
    let b = Balancer::new(spec(vec![p], vec![rule("default", StrategyKind::Single, &["a"])]));
    for ms in [10, 20, 30, 40, 50] {
        let mut l = b.select("default", &[]).await.expect("a");
        l.first_byte(Duration::from_millis(ms));
        l.success(Duration::from_millis(ms * 2));
        advance(Duration::from_secs(1)).await;
    }
    let snap = b.snapshot();
    let s: Vec<(u64, f64)> =
        snap.provider("a").expect("a").latency.samples.iter().map(|s| (s.at_ms, s.ms)).collect();
    assert_eq!(s, vec![(2_000, 30.0), (3_000, 40.0), (4_000, 50.0)]);
}

#[tokio::test(start_paused = true)]
async fn timeout_without_first_byte_feeds_the_latency_estimate() {
    let b =
        Balancer::new(spec(vec![provider("a", 1, 0)], vec![rule("default", StrategyKind::Single, &["a"])]));
    let l = b.select("default", &[]).await.expect("a");
    advance(Duration::from_secs(30)).await;
    l.failure(FailureKind::Timeout, "no first byte in 30 s");
    let snap = b.snapshot();
    let a = snap.provider("a").expect("a");
    assert_eq!(a.latency.ewma_ms, 30_000.0);
    assert_eq!(
        a.last_error.as_ref().map(|e| (e.at_ms, e.message.as_str())),
        Some((30_000, "timeout: no first byte in 30 s"))
    );
}

#[tokio::test(start_paused = true)]
async fn change_counter_moves_on_every_state_change() {
    let b =
        Balancer::new(spec(vec![provider("a", 1, 0)], vec![rule("default", StrategyKind::Single, &["a"])]));
    let mut rx = b.subscribe_changes();
    let v0 = *rx.borrow_and_update();
    let mut l = b.select("default", &[]).await.expect("a");
    assert!(rx.has_changed().expect("open"));
    let v1 = *rx.borrow_and_update();
    l.first_byte(Duration::from_millis(10));
    let v2 = *rx.borrow_and_update();
    l.success(Duration::from_millis(20));
    let v3 = *rx.borrow_and_update();
    b.record_probe("a", Ok(Duration::from_millis(5)));
    let v4 = *rx.borrow_and_update();
    assert!(v0 < v1 && v1 < v2 && v2 < v3 && v3 < v4, "{v0} {v1} {v2} {v3} {v4}");
    assert_eq!(b.snapshot().version, v4);
}

// --- commands ---

#[tokio::test(start_paused = true)]
async fn every_command_changes_the_snapshot() {
    let mut default = rule("default", StrategyKind::WeightedRoundRobin, &["a", "b"]);
    default.weights = HashMap::from([("a".to_owned(), 70), ("b".to_owned(), 30)]);
    let b = Balancer::new(spec(
        vec![with_health(with_breaker(provider("a", 7, 0), 1, 30), 3), provider("b", 3, 0)],
        vec![default, rule("background", StrategyKind::RoundRobin, &["b"])],
    ));
    let mut version = b.snapshot().version;
    fn step(b: &Arc<Balancer>, version: &mut u64, cmd: Command) -> BalancerSnapshot {
        let msg = b.apply(cmd).expect("command accepted");
        assert!(!msg.is_empty());
        let snap = b.snapshot();
        assert!(snap.version > *version, "version moves");
        *version = snap.version;
        snap
    }

    // Provider-level weight: all rules without their own override; the rule's configured weight loses.
    let snap = step(&b, &mut version, Command::SetWeight { provider: "a".into(), rule: None, weight: 50 });
    assert_eq!(snap.provider("a").expect("a").weight_override, Some(50));
    assert_eq!(snap.rule("default").expect("r").providers[0].weight, 50);
    // Rule-level weight beats the provider override.
    let snap = step(
        &b,
        &mut version,
        Command::SetWeight { provider: "a".into(), rule: Some("default".into()), weight: 20 },
    );
    let rp = &snap.rule("default").expect("r").providers[0];
    assert_eq!((rp.weight, rp.weight_override, rp.configured_weight), (20, Some(20), Some(70)));
    // Setting the weight it would have anyway removes the override.
    let snap = step(
        &b,
        &mut version,
        Command::SetWeight { provider: "a".into(), rule: Some("default".into()), weight: 50 },
    );
    assert_eq!(snap.rule("default").expect("r").providers[0].weight_override, None);
    let snap = step(&b, &mut version, Command::SetWeight { provider: "a".into(), rule: None, weight: 7 });
    assert_eq!(snap.provider("a").expect("a").weight_override, None);
    assert_eq!(snap.rule("default").expect("r").providers[0].weight, 70);

    let snap = step(&b, &mut version, Command::Drain("a".into()));
    assert!(snap.provider("a").expect("a").drained);
    assert_eq!(snap.provider("a").expect("a").blocked, vec![BlockReason::Drained]);
    let snap = step(&b, &mut version, Command::Undrain("a".into()));
    assert!(!snap.provider("a").expect("a").drained);
    assert!(snap.provider("a").expect("a").is_available());

    b.select("default", &[]).await.expect("a").failure(FailureKind::RateLimited { retry_after: None }, "429");
    let snap = b.snapshot();
    let a = snap.provider("a").expect("a");
    assert_eq!(a.breaker.as_ref().map(|b| b.state), Some(BreakerState::Open));
    assert!(a.cooldown_until_ms.is_some());
    version = snap.version;
    let snap = step(&b, &mut version, Command::ResetBreaker("a".into()));
    let a = snap.provider("a").expect("a");
    assert_eq!(a.breaker.as_ref().map(|b| (b.state, b.failures)), Some((BreakerState::Closed, 0)));
    assert_eq!(a.cooldown_until_ms, None);
    assert!(a.is_available());

    advance(Duration::from_secs(3)).await;
    let snap = step(&b, &mut version, Command::CheckNow("a".into()));
    assert_eq!(snap.provider("a").expect("a").health.next_check_ms, Some(3_000));

    // Refusals.
    assert_eq!(b.apply(Command::Drain("zz".into())), Err(CommandError::UnknownProvider("zz".into())));
    assert_eq!(
        b.apply(Command::SetWeight { provider: "a".into(), rule: Some("nope".into()), weight: 1 }),
        Err(CommandError::UnknownRule("nope".into()))
    );
    assert_eq!(
        b.apply(Command::SetWeight { provider: "a".into(), rule: Some("background".into()), weight: 1 }),
        Err(CommandError::NotInRule { provider: "a".into(), rule: "background".into() })
    );
    assert_eq!(b.apply(Command::CheckNow("b".into())), Err(CommandError::NoHealthCheck("b".into())));
    // Weight 0 is fine while another provider of the rule keeps a weight...
    step(
        &b,
        &mut version,
        Command::SetWeight { provider: "a".into(), rule: Some("default".into()), weight: 0 },
    );
    // ...but not when it leaves a rule with every weight 0 (as the config validator refuses).
    let zero = CommandError::AllZero { rule: "default".into() };
    assert_eq!(
        b.apply(Command::SetWeight { provider: "b".into(), rule: Some("default".into()), weight: 0 }),
        Err(zero.clone())
    );
    // Provider-wide: `background` (b alone) would be left with nothing.
    step(
        &b,
        &mut version,
        Command::SetWeight { provider: "a".into(), rule: Some("default".into()), weight: 5 },
    );
    let background = CommandError::AllZero { rule: "background".into() };
    assert_eq!(b.apply(Command::SetWeight { provider: "b".into(), rule: None, weight: 0 }), Err(background));
    assert_eq!(b.snapshot().rule("default").expect("r").providers[1].weight, 30, "nothing changed");
}

#[tokio::test(start_paused = true)]
async fn run_time_weight_changes_the_pick_ratio() {
    let b = Balancer::new(spec(
        vec![provider("a", 1, 0), provider("b", 1, 0)],
        vec![rule("default", StrategyKind::WeightedRoundRobin, &["a", "b"])],
    ));
    assert_eq!(picks(&b, "default", 4).await, ids(&["a", "b", "a", "b"]));
    b.apply(Command::SetWeight { provider: "a".into(), rule: None, weight: 3 }).expect("set");
    let seq = picks(&b, "default", 40).await;
    assert_eq!(seq.iter().filter(|p| *p == "a").count(), 30);
    for window in seq[4..].windows(4) {
        assert_eq!(window.iter().filter(|p| *p == "a").count(), 3, "{window:?}");
    }
}

// --- hot reload ---

#[tokio::test(start_paused = true)]
async fn reconfigure_keeps_live_state() {
    let spec1 = spec(
        vec![with_breaker(provider("a", 70, 0), 1, 30), provider("b", 30, 0)],
        vec![
            rule("default", StrategyKind::WeightedRoundRobin, &["a", "b"]),
            rule("background", StrategyKind::RoundRobin, &["a", "b"]),
        ],
    );
    let b = Balancer::new(spec1);
    let held = b.select("background", &[]).await.expect("a");
    assert_eq!(held.id(), "a");
    let mut m = b.select("default", &ids(&["b"])).await.expect("a");
    m.first_byte(Duration::from_millis(800));
    m.success(Duration::from_secs(2));
    b.apply(Command::SetWeight { provider: "b".into(), rule: None, weight: 50 }).expect("w");
    b.apply(Command::SetWeight { provider: "a".into(), rule: Some("default".into()), weight: 10 })
        .expect("w");
    b.apply(Command::SetWeight { provider: "a".into(), rule: None, weight: 60 }).expect("w");
    b.apply(Command::Drain("b".into())).expect("drain");
    b.select("background", &ids(&["b"])).await.expect("a").failure(FailureKind::Connect, "refused");
    let before = b.snapshot();

    // b's configured weight changes, c is added, background goes, default gains c.
    let spec2 = spec(
        vec![with_breaker(provider("a", 70, 0), 1, 30), provider("b", 40, 0), provider("c", 5, 0)],
        vec![rule("default", StrategyKind::WeightedRoundRobin, &["a", "b", "c"])],
    );
    b.reconfigure(spec2);
    let after = b.snapshot();
    let (a0, a1) = (before.provider("a").expect("a"), after.provider("a").expect("a"));
    assert_eq!(a1.in_flight, 1);
    assert_eq!(a1.latency, a0.latency);
    assert_eq!(a1.breaker.as_ref().map(|b| b.state), Some(BreakerState::Open));
    assert_eq!(a1.counters, a0.counters);
    assert_eq!(a1.weight_override, Some(60), "a's configured weight did not change");
    let b1 = after.provider("b").expect("b");
    assert!(b1.drained);
    assert_eq!(b1.weight_override, None, "b's configured weight changed: override dropped");
    assert_eq!(after.provider("c").expect("c").counters, Counters::default());
    assert!(after.rule("background").is_none());
    let d = after.rule("default").expect("default");
    assert_eq!(d.providers[0].weight_override, Some(10), "rule override kept");
    assert_eq!(d.providers[0].picks, before.rule("default").expect("d").providers[0].picks);
    assert_eq!(d.providers.len(), 3);
    assert_eq!(b.rule_provider_count("background"), 3, "background now falls back to default");
    drop(held);
    assert_eq!(in_flight(&b, "a"), 0);
}

#[tokio::test(start_paused = true)]
async fn lease_from_a_removed_provider_does_not_touch_its_successor() {
    let one = || spec(vec![provider("a", 1, 0)], vec![rule("default", StrategyKind::Single, &["a"])]);
    let b = Balancer::new(one());
    let old = b.select("default", &[]).await.expect("a");
    b.reconfigure(spec(vec![provider("x", 1, 0)], vec![rule("default", StrategyKind::Single, &["x"])]));
    assert!(b.snapshot().provider("a").is_none());
    b.reconfigure(one());
    assert_eq!(in_flight(&b, "a"), 0);
    let new = b.select("default", &[]).await.expect("a");
    assert_eq!(in_flight(&b, "a"), 1);
    old.failure(FailureKind::Connect, "stale");
    let snap = b.snapshot();
    assert_eq!(snap.provider("a").expect("a").in_flight, 1);
    assert_eq!(snap.provider("a").expect("a").counters.failures, 0);
    drop(new);
    assert_eq!(in_flight(&b, "a"), 0);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_wakes_a_waiter_when_capacity_grows() {
    let cap = |max| spec(vec![provider("a", 1, max)], vec![rule("default", StrategyKind::Single, &["a"])]);
    let b = Balancer::new(cap(1));
    let _held = b.select("default", &[]).await.expect("a");
    let waiter = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.select("default", &[]).await.map(|l| l.queued()) })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.reconfigure(cap(2));
    assert_eq!(waiter.await.expect("task"), Ok(Duration::from_millis(700)));
}

// --- health loop ---

mod health_loop {
    use super::*;
    use futures_util::FutureExt;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::sync::{mpsc, watch};

    type Script = Arc<Mutex<VecDeque<Result<Duration, String>>>>;

    /// A probe that answers from a script (then `Ok(50 ms)`) and reports each call.
    fn scripted(
        results: Vec<Result<Duration, String>>,
    ) -> (ProbeFn, Script, mpsc::UnboundedReceiver<(String, Instant)>) {
        let script: Script = Arc::new(Mutex::new(results.into()));
        let (tx, rx) = mpsc::unbounded_channel();
        let s = Arc::clone(&script);
        let probe: ProbeFn = Arc::new(move |id: String| {
            let _ = tx.send((id, Instant::now()));
            let r = s.lock().expect("script").pop_front().unwrap_or(Ok(Duration::from_millis(50)));
            async move { r }.boxed()
        });
        (probe, script, rx)
    }

    fn health_spec(ids: &[&str], interval_secs: u64, retries: u32) -> BalancerSpec {
        let providers = ids
            .iter()
            .map(|id| {
                let mut p = provider(id, 1, 0);
                p.health = Some(HealthParams {
                    interval: Duration::from_secs(interval_secs),
                    timeout: Duration::from_secs(2),
                    retries,
                });
                p
            })
            .collect();
        spec(providers, vec![rule("default", StrategyKind::RoundRobin, ids)])
    }

    /// Lets the loop record the result of the probe that just ran.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_after_retries_and_healthy_after_one_success() {
        let b = Balancer::new(health_spec(&["a"], 10, 3));
        let (probe, _script, mut calls) = scripted(vec![
            Err("e1".into()),
            Err("e2".into()),
            Err("e3".into()),
            Ok(Duration::from_millis(30)),
        ]);
        let (stop, shutdown) = watch::channel(false);
        let handle = spawn_health_loop(Arc::clone(&b), probe, shutdown, Some(7));
        let start = Instant::now();

        let mut times = Vec::new();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let (id, at) = calls.recv().await.expect("probe call");
            assert_eq!(id, "a");
            times.push(at);
            settle().await;
            let snap = b.snapshot();
            let h = &snap.provider("a").expect("a").health;
            statuses.push((h.status, h.consecutive_failures));
            let next = h.next_check_ms.expect("next check scheduled");
            let gap = next - h.last_check_ms.expect("checked");
            assert!((9_000..=11_000).contains(&gap), "jittered interval {gap} ms");
        }
        assert_eq!(
            statuses,
            vec![
                (HealthStatus::Unknown, 1),
                (HealthStatus::Unknown, 2),
                (HealthStatus::Unhealthy, 3),
                (HealthStatus::Healthy, 0)
            ]
        );
        assert!(times[0] - start <= Duration::from_secs(1), "first probe within 10 % of the interval");
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_secs(9) && gap <= Duration::from_secs(11), "{gap:?}");
        }
        let snap = b.snapshot();
        assert_eq!(snap.provider("a").expect("a").health.last_latency_ms, Some(30.0));
        stop.send(true).expect("loop alive");
        handle.await.expect("loop ends cleanly");
    }

    #[tokio::test(start_paused = true)]
    async fn same_seed_gives_the_same_schedule() {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let b = Balancer::new(health_spec(&["a"], 30, 1));
            let (probe, _s, mut calls) = scripted(vec![]);
            let (stop, shutdown) = watch::channel(false);
            let handle = spawn_health_loop(Arc::clone(&b), probe, shutdown, Some(42));
            let start = Instant::now();
            let mut offsets = Vec::new();
            for _ in 0..3 {
                offsets.push(calls.recv().await.expect("call").1 - start);
            }
            stop.send(true).expect("alive");
            handle.await.expect("ends");
            runs.push(offsets);
        }
        assert_eq!(runs[0], runs[1]);
    }

    #[tokio::test(start_paused = true)]
    async fn check_now_triggers_a_probe_at_once() {
        let b = Balancer::new(health_spec(&["a"], 30, 1));
        let (probe, _s, mut calls) = scripted(vec![]);
        let (_stop, shutdown) = watch::channel(false);
        let handle = spawn_health_loop(Arc::clone(&b), probe, shutdown, Some(1));
        calls.recv().await.expect("first probe");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let asked = Instant::now();
        b.apply(Command::CheckNow("a".into())).expect("check now");
        let (id, at) = calls.recv().await.expect("probe on demand");
        assert_eq!(id, "a");
        assert_eq!(at, asked);
        handle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn probe_timeout_counts_as_failure() {
        let b = Balancer::new(health_spec(&["a"], 10, 1));
        let (tx, mut calls) = mpsc::unbounded_channel();
        let probe: ProbeFn = Arc::new(move |id: String| {
            let _ = tx.send(id);
            std::future::pending::<Result<Duration, String>>().boxed()
        });
        let (stop, shutdown) = watch::channel(false);
        let handle = spawn_health_loop(Arc::clone(&b), probe, shutdown, Some(3));
        calls.recv().await.expect("probe");
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        let snap = b.snapshot();
        let h = &snap.provider("a").expect("a").health;
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert_eq!(h.last_error.as_deref(), Some("health check timed out after 2000 ms"));
        assert_eq!(h.last_check_ms, Some(snap.uptime_ms - 1));
        assert!(Instant::now() - started >= Duration::from_secs(2));
        stop.send(true).expect("alive");
        handle.await.expect("ends");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_task_promptly_even_mid_probe() {
        let b = Balancer::new(health_spec(&["a", "b"], 10, 1));
        let probe: ProbeFn =
            Arc::new(|_id: String| std::future::pending::<Result<Duration, String>>().boxed());
        let (stop, shutdown) = watch::channel(false);
        let handle = spawn_health_loop(Arc::clone(&b), probe, shutdown, Some(9));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let asked = Instant::now();
        stop.send(true).expect("alive");
        handle.await.expect("ends");
        assert_eq!(Instant::now(), asked, "no time passes between the signal and the end");

        // Dropping the sender ends it too.
        let b = Balancer::new(health_spec(&["a"], 10, 1));
        let (probe, _s, _calls) = scripted(vec![]);
        let (stop, shutdown) = watch::channel(false);
        let handle = spawn_health_loop(b, probe, shutdown, None);
        drop(stop);
        handle.await.expect("ends");
    }

    #[tokio::test(start_paused = true)]
    async fn follows_reconfigure() {
        let b = Balancer::new(health_spec(&["a"], 10, 1));
        let (probe, _s, mut calls) = scripted(vec![]);
        let (stop, shutdown) = watch::channel(false);
        let handle = spawn_health_loop(Arc::clone(&b), probe, shutdown, Some(5));
        assert_eq!(calls.recv().await.expect("a").0, "a");
        b.reconfigure(health_spec(&["b"], 10, 1));
        let (id, _) = calls.recv().await.expect("b probed");
        assert_eq!(id, "b");
        // Only b from now on.
        for _ in 0..3 {
            assert_eq!(calls.recv().await.expect("probe").0, "b");
        }
        stop.send(true).expect("alive");
        handle.await.expect("ends");
    }

    #[tokio::test(start_paused = true)]
    async fn affinity_keeps_then_forgets_after_the_sticky_ttl() {
        let mut r = rule("default", StrategyKind::RoundRobin, &["a", "b"]);
        r.sticky_ttl = Duration::from_secs(600);
        let b = Balancer::new(spec(vec![provider("a", 1, 0), provider("b", 1, 0)], vec![r]));
        let place = Placement { session: Some("s1"), model: None };
        let first = b.select_for("default", &[], place).await.expect("pick");
        assert_eq!((first.id(), first.affinity()), ("a", Some(Affinity::New)));
        first.success(Duration::from_millis(5));
        // Another conversation takes the next round-robin slot.
        let other =
            b.select_for("default", &[], Placement { session: Some("s2"), model: None }).await.expect("pick");
        assert_eq!(other.id(), "b");
        other.success(Duration::from_millis(5));
        advance(Duration::from_secs(599)).await;
        let kept = b.select_for("default", &[], place).await.expect("pick");
        assert_eq!((kept.id(), kept.affinity()), ("a", Some(Affinity::Kept)));
        kept.success(Duration::from_millis(5));
        assert_eq!(b.snapshot().provider("a").map(|p| p.sessions), Some(1));
        // Idle for the whole TTL: evicted (paused time, no wall clock), placed afresh.
        advance(Duration::from_secs(600)).await;
        assert_eq!(b.snapshot().provider("a").map(|p| p.sessions), Some(0));
        assert!(b.session("s1").is_none(), "evicted");
        let fresh = b.select_for("default", &[], place).await.expect("pick");
        assert_eq!(fresh.affinity(), Some(Affinity::New));
        // Without a session key, no affinity at all.
        let plain = b.select("default", &[]).await.expect("pick");
        assert_eq!(plain.affinity(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bound_provider_at_capacity_is_waited_for_then_left() {
        let b = Balancer::new(spec(
            vec![provider("a", 1, 1), provider("b", 1, 0)],
            vec![rule("default", StrategyKind::RoundRobin, &["a", "b"])],
        ));
        let place = Placement { session: Some("s"), model: None };
        let held = b.select_for("default", &[], place).await.expect("pick");
        assert_eq!(held.id(), "a");
        // a is at its cap: the next turn waits for it and gets it when it frees up.
        let b2 = Arc::clone(&b);
        let waiter = tokio::spawn(async move {
            let lease = b2.select_for("default", &[], place).await.expect("pick");
            (lease.id().to_owned(), lease.affinity())
        });
        advance(Duration::from_millis(500)).await;
        held.success(Duration::from_millis(5));
        assert_eq!(waiter.await.expect("joined"), ("a".to_owned(), Some(Affinity::Kept)));
        // Held past the queue timeout: the conversation moves to b.
        let held = b.select_for("default", &[], place).await.expect("pick");
        let moved = b.select_for("default", &[], place).await.expect("moves after the queue timeout");
        assert_eq!((moved.id(), moved.affinity()), ("b", Some(Affinity::Moved)));
        drop(held);
    }
}

#[tokio::test(start_paused = true)]
async fn the_pools_usage_replaces_an_older_poll_and_adds_more_metering() {
    use crate::usage::UsageReport;
    let mut p = provider("a", 1, 0);
    p.usage = Some(UsageParams { refresh_interval: Duration::from_secs(300), reserve: 0.0 });
    let b = Balancer::new(spec(vec![p], vec![rule("default", StrategyKind::RoundRobin, &["a"])]));
    let report =
        |used: f64| UsageReport { used, limit: 100.0, reset_at: None, tier: Some("KIRO PRO".into()) };
    let used = |b: &Balancer| b.snapshot().providers[0].usage.as_ref().map(|u| (u.used, u.metered));
    b.record_usage("a", Ok(report(10.0)));
    let mine = b.snapshot().providers[0].usage.clone().unwrap().checked_at;
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(mine.timestamp_millis() + ms).unwrap();
    // An older poll by another instance: ignored.
    b.set_pool_usage("a", shared::PoolUsage { report: report(5.0), checked_at: at(-1000), metered: 50.0 });
    assert_eq!(used(&b), Some((10.0, 0.0)));
    // The same poll with credits other instances metered since: counted.
    b.set_pool_usage("a", shared::PoolUsage { report: report(10.0), checked_at: at(0), metered: 2.5 });
    assert_eq!(used(&b), Some((12.5, 2.5)));
    // Our own metering not yet in the pool's count is not taken back.
    b.record_metering("a", 1.0);
    b.set_pool_usage("a", shared::PoolUsage { report: report(10.0), checked_at: at(0), metered: 3.0 });
    assert_eq!(used(&b), Some((13.5, 3.5)));
    // A newer poll replaces everything; used up, it excludes the account here too.
    b.set_pool_usage("a", shared::PoolUsage { report: report(100.0), checked_at: at(1000), metered: 0.0 });
    assert_eq!(used(&b), Some((100.0, 0.0)));
    assert!(b.snapshot().providers[0].blocked.contains(&BlockReason::QuotaExhausted));
    // Memory backend: the poller never skips a poll.
    assert_eq!(b.pool_usage_fresh_for("a"), None);
}

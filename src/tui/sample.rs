//! Fixed dashboard states, for the whole-screen snapshot tests, the screenshots and the render
//! benchmark: plain data with no clock in it, so the same code draws the same screen every time.

use super::app::App;
use super::command::Feedback;
use super::logs::{LogLine, LogPane};
use crate::balancer::{
    BlockReason, BreakerSnapshot, BreakerState, Counters, ErrorSnapshot, HealthSnapshot, HealthStatus,
    LatencySample, LatencySnapshot, ProviderSnapshot, QueueSnapshot, RuleProviderSnapshot, RuleSnapshot,
    SampleSource, StrategyKind,
};
use crate::snapshot::{
    LatencyHistogram, ProviderView, ReloadInfo, RuleView, Snapshot, TokenStatus, provider_status,
};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::Level;

/// Which state to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Three healthy accounts taking traffic; the operator raised one weight.
    Normal,
    /// The third account's upstream refuses connections: health checks fail, its breaker is open,
    /// traffic goes to the other two.
    ProviderDown,
}

/// The balancer's clock "now" in every sample: 1 h 02 min 03 s after start.
pub const UPTIME_MS: u64 = 3_723_000;

fn taken_at() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_750_000_000, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// The account ids of the three-provider samples.
pub const IDS: [&str; 3] = ["kiro-work", "kiro-personal", "kiro-spare"];

/// A snapshot of three accounts and five rules in the given state.
pub fn snapshot(scenario: Scenario) -> Snapshot {
    snapshot_at(scenario, 1)
}

/// The same state with every pick counter lower: feed it before [`snapshot`] so that "recent
/// picks" have something to show.
pub fn earlier_snapshot(scenario: Scenario) -> Snapshot {
    snapshot_at(scenario, 0)
}

fn snapshot_at(scenario: Scenario, step: u64) -> Snapshot {
    let down = scenario == Scenario::ProviderDown;
    let providers = vec![
        provider(0, IDS[0], 3, None, 2, 10, false, step),
        provider(1, IDS[1], 1, Some(2), 1, 8, false, step),
        provider(2, IDS[2], 1, None, 0, 8, down, step),
    ];
    // Picks per provider for the default rule: the down one stops being picked.
    let picks =
        |i: usize, base: u64, per_step: u64| base + step * per_step * [3, 2, if down { 0 } else { 1 }][i];
    let candidates =
        |ids: &[usize], weights: &[u32], base: u64, per_step: u64| -> Vec<RuleProviderSnapshot> {
            ids.iter()
                .zip(weights)
                .map(|(&i, &w)| RuleProviderSnapshot {
                    id: IDS[i].into(),
                    weight: w,
                    configured_weight: None,
                    weight_override: None,
                    picks: picks(i, base, per_step),
                })
                .collect()
        };
    let rule = |category: &str, strategy, providers, fallback: Option<&str>, model: &str| RuleView {
        core: RuleSnapshot {
            category: category.into(),
            strategy,
            providers,
            failover: true,
            health_check: true,
            fallback: fallback.map(Into::into),
        },
        model: Some(model.into()),
    };
    let sonnet4 = "CLAUDE_SONNET_4_20250514_V1_0";
    let rules = vec![
        rule(
            "default",
            StrategyKind::WeightedRoundRobin,
            candidates(&[0, 1, 2], &[3, 2, 1], 900, 2),
            None,
            sonnet4,
        ),
        rule(
            "background",
            StrategyKind::RoundRobin,
            candidates(&[2, 1], &[1, 2], 310, 1),
            None,
            "CLAUDE_3_7_SONNET_20250219_V1_0",
        ),
        rule("thinking", StrategyKind::LeastConnections, candidates(&[0, 1], &[3, 2], 120, 1), None, sonnet4),
        rule("longcontext", StrategyKind::Single, candidates(&[0, 1], &[3, 2], 14, 0), Some(IDS[1]), sonnet4),
        rule("search", StrategyKind::ResponseTime, candidates(&[0, 1, 2], &[3, 2, 1], 40, 1), None, sonnet4),
    ];
    snapshot_of(providers, rules, if down { 1.4 } else { 2.3 })
}

/// A snapshot of `n` healthy accounts (`kiro-01` …) under one weighted rule: the render benchmark's
/// input.
pub fn many_providers(n: usize) -> Snapshot {
    let ids: Vec<String> = (1..=n).map(|i| format!("kiro-{i:02}")).collect();
    let providers = ids
        .iter()
        .enumerate()
        .map(|(i, id)| provider(i, id, 1 + (i as u32 % 3), None, i as u32 % 4, 10, i == n / 2, 1))
        .collect();
    let rule = RuleView {
        core: RuleSnapshot {
            category: "default".into(),
            strategy: StrategyKind::WeightedRoundRobin,
            providers: ids
                .iter()
                .enumerate()
                .map(|(i, id)| RuleProviderSnapshot {
                    id: id.clone(),
                    weight: 1 + (i as u32 % 3),
                    configured_weight: None,
                    weight_override: None,
                    picks: 100 * i as u64,
                })
                .collect(),
            failover: true,
            health_check: true,
            fallback: None,
        },
        model: Some("CLAUDE_SONNET_4_20250514_V1_0".into()),
    };
    snapshot_of(providers, vec![rule], 8.5)
}

fn snapshot_of(providers: Vec<ProviderSnapshot>, rules: Vec<RuleView>, rate: f64) -> Snapshot {
    let taken_at = taken_at();
    let views = providers
        .into_iter()
        .map(|core| {
            let (status, status_reason) = provider_status(&core, UPTIME_MS);
            ProviderView {
                name: core.id.clone(),
                status,
                status_reason,
                available: core.blocked.iter().all(|r| *r == BlockReason::AtCapacity),
                effective_weight: core.weight_override.unwrap_or(core.weight),
                latency_p50_ms: None,
                latency_p95_ms: None,
                ttfb_histogram: LatencyHistogram::default(),
                token: TokenStatus::default(),
                core,
            }
        })
        .collect();
    Snapshot {
        seq: 42,
        state: Default::default(),
        balancer_version: 1234,
        taken_at,
        now_ms: UPTIME_MS,
        clock_origin_unix_ms: 1_750_000_000_000 - UPTIME_MS,
        started_at: taken_at - TimeDelta::milliseconds(UPTIME_MS as i64),
        uptime_ms: UPTIME_MS,
        listen: Some("127.0.0.1:3456".into()),
        config_name: Some("CodeWhisperer Load Balancing".into()),
        config_path: "~/.config/ccr/config.json".into(),
        reload: ReloadInfo {
            at: taken_at - TimeDelta::seconds(312),
            ok: true,
            message: "reloaded ~/.config/ccr/config.json".into(),
        },
        api_key_required: false,
        requests_total: 1385,
        requests_per_sec: rate,
        queue: QueueSnapshot { waiting: 0, max_queue: 100, timeout_ms: 30_000 },
        providers: views,
        rules,
        keys: sample_keys(taken_at),
    }
}

/// Three developers sharing the pool: one near her budget, one busy, one idle.
fn sample_keys(taken_at: DateTime<Utc>) -> crate::keys::KeysView {
    use crate::keys::{KeyLimitsView, KeyView, KeysView};
    use std::collections::BTreeMap;
    let key = |name: &str,
               hash: &str,
               budget: Option<f64>,
               rpm,
               credits: f64,
               live,
               requests,
               limited: &[(&str, u64)]| {
        KeyView {
            name: name.into(),
            hash_prefix: hash.into(),
            limits: KeyLimitsView {
                monthly_credits: budget,
                requests_per_minute: rpm,
                max_concurrent: Some(8),
                models: None,
            },
            requests,
            limited: limited.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect(),
            credits_this_month: credits,
            last_seen: Some(taken_at - TimeDelta::seconds(i64::from(live == 0) * 840 + 2)),
            live_requests: live,
            by_account: BTreeMap::new(),
            by_category: BTreeMap::new(),
        }
    };
    KeysView {
        backend: "memory".into(),
        month: "2025-06".into(),
        resets_at: Some(taken_at),
        keys: vec![
            key("alice", "3f9c2a1e", Some(300.0), Some(60), 287.4, 2, 912, &[]),
            key("bob", "a04d77b2", Some(500.0), Some(120), 131.25, 3, 433, &[("rate", 4)]),
            key("ci-bot", "5e1b09cd", None, Some(30), 12.5, 0, 40, &[]),
        ],
    }
}

/// One account. `down`: its upstream refuses connections (unhealthy, breaker open).
#[allow(clippy::too_many_arguments)]
fn provider(
    index: usize,
    id: &str,
    weight: u32,
    weight_override: Option<u32>,
    in_flight: u32,
    max_concurrent: u32,
    down: bool,
    step: u64,
) -> ProviderSnapshot {
    let seed = index as u64;
    // A repeatable wiggle around a per-account base latency; the down account's last samples are
    // timeouts-turned-probes.
    let base = 700.0 + 250.0 * index as f64;
    let samples: Vec<LatencySample> = (0..60u64)
        .map(|k| {
            let wiggle = ((k * 37 + seed * 53) % 23) as f64 * 35.0;
            let spike = if (k + seed) % 17 == 0 { 900.0 } else { 0.0 };
            LatencySample {
                at_ms: UPTIME_MS - (60 - k) * 4_000,
                ms: base + wiggle + spike,
                source: if k % 10 == 9 { SampleSource::Probe } else { SampleSource::Request },
            }
        })
        .take(if down { 40 } else { 60 })
        .collect();
    let requests = 400 + 230 * (2 - seed.min(2)) + step * 5;
    let failures = if down { 9 } else { seed };
    ProviderSnapshot {
        id: id.into(),
        weight,
        weight_override,
        max_concurrent,
        in_flight: if down { 0 } else { in_flight },
        drained: false,
        cooldown_until_ms: None,
        quota_exhausted_until_ms: None,
        blocked: if down { vec![BlockReason::BreakerOpen, BlockReason::Unhealthy] } else { vec![] },
        health: HealthSnapshot {
            enabled: true,
            status: if down { HealthStatus::Unhealthy } else { HealthStatus::Healthy },
            consecutive_failures: if down { 3 } else { 0 },
            retries: 3,
            last_check_ms: Some(UPTIME_MS - 4_000),
            next_check_ms: Some(UPTIME_MS + 26_000),
            last_latency_ms: Some(base),
            last_error: down.then(|| "connect: connection refused (127.0.0.1:41237)".into()),
        },
        breaker: Some(BreakerSnapshot {
            state: if down { BreakerState::Open } else { BreakerState::Closed },
            failures: if down { 5 } else { 0 },
            failure_threshold: 5,
            monitoring_period_ms: 60_000,
            reset_timeout_ms: 60_000,
            opened_at_ms: down.then_some(UPTIME_MS - 18_000),
            next_probe_ms: down.then_some(UPTIME_MS + 42_000),
            probe_in_flight: false,
            times_opened: u64::from(down),
            open_reason: down.then(|| "5 failures in 60s (threshold 5)".into()),
        }),
        latency: LatencySnapshot {
            ewma_ms: base + 120.0,
            measured: true,
            last_ttfb_ms: samples.iter().rev().find(|s| s.source == SampleSource::Request).map(|s| s.ms),
            samples,
        },
        counters: Counters { requests, successes: requests - failures, failures, neutral: 0 },
        by_category: Default::default(),
        last_error: if down {
            Some(ErrorSnapshot {
                at_ms: UPTIME_MS - 4_000,
                message: "connect: connection refused (127.0.0.1:41237)".into(),
            })
        } else if seed == 1 {
            Some(ErrorSnapshot {
                at_ms: UPTIME_MS - 600_000,
                message: "upstream 503 Service Unavailable".into(),
            })
        } else {
            None
        },
        usage: Some(sample_usage(seed)),
        usage_error: None,
        sessions: if down { 0 } else { 7 - 3 * (seed as usize % 3) },
        suspended: None,
        needs_login: None,
    }
}

/// Credits of the sample accounts: a roomy PRO+, a PRO half used, a FREE one nearly empty.
fn sample_usage(seed: u64) -> crate::balancer::UsageSnapshot {
    let (tier, limit, used) = match seed % 3 {
        0 => ("KIRO PRO+", 2000.0, 412.5),
        1 => ("KIRO PRO", 1000.0, 521.25),
        _ => ("KIRO FREE", 50.0, 46.0),
    };
    let checked_at = taken_at() - TimeDelta::seconds(140);
    crate::balancer::UsageSnapshot {
        used,
        limit,
        remaining: limit - used,
        reset_at: Some(taken_at() + TimeDelta::hours(12 * 24 + 5)),
        tier: Some(tier.to_owned()),
        checked_at,
        metered: 1.25,
    }
}

/// Log lines that go with a scenario.
pub fn log_lines(scenario: Scenario) -> Vec<LogLine> {
    let mut lines = vec![
        LogLine::new(Level::INFO, "ccr::tui", "config: ~/.config/ccr/config.json (the user config)"),
        LogLine::new(Level::INFO, "ccr::tui", "listening on http://127.0.0.1:3456"),
        LogLine::new(Level::INFO, "ccr::runtime", "reloaded ~/.config/ccr/config.json"),
        LogLine::new(Level::INFO, "ccr::balancer", "kiro-personal: weight 1 -> 2 (all rules)"),
    ];
    if scenario == Scenario::ProviderDown {
        lines.extend([
            LogLine::new(
                Level::WARN,
                "ccr::server::messages",
                "kiro-spare: connect: connection refused; failing over",
            ),
            LogLine::new(
                Level::WARN,
                "ccr::balancer",
                "kiro-spare: health check failed 3 times in a row: unhealthy",
            ),
            LogLine::new(Level::ERROR, "ccr::balancer", "kiro-spare: circuit breaker OPEN after 5 failures"),
        ]);
    }
    lines
}

/// A dashboard showing `scenario` with its log lines, as after a few snapshots; its commands go
/// to a channel nobody reads (the returned receiver, kept so that sends succeed).
pub fn app(scenario: Scenario) -> (App, mpsc::Receiver<super::command::UiCommand>) {
    let (tx, rx) = mpsc::channel(super::command::COMMAND_QUEUE);
    let mut app =
        App::new(Arc::new(earlier_snapshot(scenario)), tx).with_log_pane(LogPane::Fixed(log_lines(scenario)));
    app.on_snapshot(Arc::new(snapshot(scenario)));
    if scenario == Scenario::ProviderDown {
        // The operator selected the broken account and asked for a health check.
        app.apply(super::keymap::Action::SelectLast);
        app.on_feedback(Feedback::done("kiro-spare: health check requested"));
    }
    (app, rx)
}

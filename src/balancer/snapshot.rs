//! A plain-data copy of the balancer's state, for the dashboard, the monitoring endpoints and the
//! status printer. Everything is owned and serde-serialisable; instants are milliseconds since the
//! balancer started (compare with [`BalancerSnapshot::uptime_ms`], or add to
//! [`BalancerSnapshot::started_at_unix_ms`] for wall-clock time).

use super::breaker::BreakerState;
use super::spec::StrategyKind;
use super::state::State;
use super::util::ms_since;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// Health as seen by active checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// No check has run yet (or checks are off): treated as healthy.
    Unknown,
    /// The last check passed.
    Healthy,
    /// `retries` consecutive checks failed.
    Unhealthy,
}

impl HealthStatus {
    /// `unknown`, `healthy` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// Why a provider cannot take a request right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReason {
    /// The operator drained it (forced failover).
    Drained,
    /// A 429 put it in cooldown.
    CoolingDown,
    /// Its monthly quota is used up.
    QuotaExhausted,
    /// Its breaker is open, or half-open with the probe out.
    BreakerOpen,
    /// Active checks mark it unhealthy (skipped only by rules with health checks).
    Unhealthy,
    /// In flight at `max_concurrent`.
    AtCapacity,
    /// The upstream suspended the account.
    Suspended,
    /// The account's login is dead.
    NeedsLogin,
}

/// Request counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Requests sent to the provider (picks).
    pub requests: u64,
    /// Requests that ended in success.
    pub successes: u64,
    /// Requests that failed for the provider's reasons.
    pub failures: u64,
    /// Requests that ended without counting either way (400s, client went away).
    pub neutral: u64,
}

/// Where a latency sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleSource {
    /// Time to first byte of a real request.
    Request,
    /// An active health-check probe.
    Probe,
}

/// One latency sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySample {
    /// When it was taken.
    pub at_ms: u64,
    /// The latency, in ms.
    pub ms: f64,
    /// Request or probe.
    pub source: SampleSource,
}

/// Latency of one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySnapshot {
    /// The peak-EWMA of time to first byte now, in ms (the default when unmeasured).
    pub ewma_ms: f64,
    /// Whether any request sample has been seen.
    pub measured: bool,
    /// The last request's time to first byte, in ms.
    pub last_ttfb_ms: Option<f64>,
    /// Recent samples, oldest first (at most the provider's latency window).
    pub samples: Vec<LatencySample>,
}

/// Active-check health of one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthSnapshot {
    /// Whether active checks are configured.
    pub enabled: bool,
    /// Current status.
    pub status: HealthStatus,
    /// Failed probes in a row.
    pub consecutive_failures: u32,
    /// Failed probes in a row that make it unhealthy.
    pub retries: u32,
    /// When the last probe finished.
    pub last_check_ms: Option<u64>,
    /// When the next probe is due.
    pub next_check_ms: Option<u64>,
    /// The last successful probe's latency, in ms.
    pub last_latency_ms: Option<f64>,
    /// The last failed probe's error, cleared by a success.
    pub last_error: Option<String>,
}

/// Circuit breaker of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerSnapshot {
    /// CLOSED / OPEN / HALF_OPEN.
    pub state: BreakerState,
    /// Failures within the monitoring period.
    pub failures: u32,
    /// Failures that open it.
    pub failure_threshold: u32,
    /// Monitoring period, in ms.
    pub monitoring_period_ms: u64,
    /// Reset timeout, in ms.
    pub reset_timeout_ms: u64,
    /// When it last opened (while open or half-open).
    pub opened_at_ms: Option<u64>,
    /// When the next probe is admitted (none while closed or while a probe is out).
    pub next_probe_ms: Option<u64>,
    /// Whether the half-open probe is out.
    pub probe_in_flight: bool,
    /// How often it has opened.
    pub times_opened: u64,
    /// What opened it, while open or half-open (`3 failures in 10s (threshold 3)`).
    #[serde(default)]
    pub open_reason: Option<String>,
}

/// The last error of a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorSnapshot {
    /// When it happened.
    pub at_ms: u64,
    /// What happened (never contains tokens: callers pass upstream error summaries).
    pub message: String,
}

/// Everything about one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSnapshot {
    /// Provider id.
    pub id: String,
    /// Configured weight.
    pub weight: u32,
    /// Operator's run-time weight for all rules, if set.
    pub weight_override: Option<u32>,
    /// In-flight cap (0 = none).
    pub max_concurrent: u32,
    /// Requests in flight.
    pub in_flight: u32,
    /// Drained by the operator.
    pub drained: bool,
    /// End of a 429 cooldown.
    pub cooldown_until_ms: Option<u64>,
    /// End of a quota exclusion.
    pub quota_exhausted_until_ms: Option<u64>,
    /// Why it cannot take a request now; empty when it can.
    pub blocked: Vec<BlockReason>,
    /// Active checks.
    pub health: HealthSnapshot,
    /// Breaker, if configured.
    pub breaker: Option<BreakerSnapshot>,
    /// Latency estimate and history.
    pub latency: LatencySnapshot,
    /// Counters over all categories.
    pub counters: Counters,
    /// Counters per category.
    pub by_category: BTreeMap<String, Counters>,
    /// The last failure (request or probe).
    pub last_error: Option<ErrorSnapshot>,
    /// Credits, when usage checks are on and one has answered.
    pub usage: Option<super::account::UsageSnapshot>,
    /// Why the last usage check failed.
    pub usage_error: Option<String>,
    /// Conversations bound to it.
    pub sessions: usize,
    /// Why the upstream suspended it (out of rotation until the operator resets it).
    pub suspended: Option<String>,
    /// Why it needs a new login.
    pub needs_login: Option<String>,
}

impl ProviderSnapshot {
    /// Whether it can take a request now (health checks counted).
    pub fn is_available(&self) -> bool {
        self.blocked.is_empty()
    }
}

/// One provider as a rule sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleProviderSnapshot {
    /// Provider id.
    pub id: String,
    /// The weight in force for this rule.
    pub weight: u32,
    /// The rule's configured weight for it, if any.
    pub configured_weight: Option<u32>,
    /// Operator's run-time weight for this rule only, if set.
    pub weight_override: Option<u32>,
    /// Times this rule picked it.
    pub picks: u64,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSnapshot {
    /// Category.
    pub category: String,
    /// Strategy.
    pub strategy: StrategyKind,
    /// Candidates in order (for `single`: the first provider and the fallback).
    pub providers: Vec<RuleProviderSnapshot>,
    /// Failover enabled.
    pub failover: bool,
    /// Health checks respected.
    pub health_check: bool,
    /// Fallback of `single`.
    pub fallback: Option<String>,
}

/// Waiters for capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSnapshot {
    /// Requests waiting now.
    pub waiting: usize,
    /// Most that may wait.
    pub max_queue: usize,
    /// Longest wait, in ms.
    pub timeout_ms: u64,
}

/// The whole balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BalancerSnapshot {
    /// The change counter at the time of the snapshot.
    pub version: u64,
    /// Time since the balancer started, in ms: "now" for every `_ms` field.
    pub uptime_ms: u64,
    /// Wall-clock start, in ms since the Unix epoch (for display only).
    pub started_at_unix_ms: u64,
    /// Capacity queue.
    pub queue: QueueSnapshot,
    /// Providers in config order.
    pub providers: Vec<ProviderSnapshot>,
    /// Rules in config order.
    pub rules: Vec<RuleSnapshot>,
}

impl BalancerSnapshot {
    /// The provider with this id.
    pub fn provider(&self, id: &str) -> Option<&ProviderSnapshot> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// The rule for exactly this category.
    pub fn rule(&self, category: &str) -> Option<&RuleSnapshot> {
        self.rules.iter().find(|r| r.category == category)
    }
}

/// Builds a snapshot (applying due time-driven transitions on the way).
pub(crate) fn build(
    state: &mut State,
    now: Instant,
    started: Instant,
    started_at_unix_ms: u64,
    version: u64,
) -> BalancerSnapshot {
    let ms = |t: Instant| ms_since(started, t);
    let dur_ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    state.sessions.sweep(now);
    let providers = state
        .providers
        .iter_mut()
        .map(|p| {
            let blocks = p.blocks(now);
            let breaker = p.breaker.as_ref().map(|b| BreakerSnapshot {
                state: b.current_state(),
                failures: b.failure_count(),
                failure_threshold: b.params().failure_threshold,
                monitoring_period_ms: dur_ms(b.params().monitoring_period),
                reset_timeout_ms: dur_ms(b.params().reset_timeout),
                opened_at_ms: b.opened_at().map(ms),
                next_probe_ms: b.next_probe_at(now).map(ms),
                probe_in_flight: b.probe_in_flight(),
                times_opened: b.times_opened(),
                open_reason: b.open_reason().map(str::to_owned),
            });
            ProviderSnapshot {
                id: p.spec.id.clone(),
                weight: p.spec.weight,
                weight_override: p.weight_override,
                max_concurrent: p.spec.max_concurrent,
                in_flight: p.in_flight,
                drained: p.drained,
                cooldown_until_ms: p.cooldown_until.map(ms),
                quota_exhausted_until_ms: p.quota_until.map(ms),
                blocked: blocks.reasons(),
                health: HealthSnapshot {
                    enabled: p.spec.health.is_some(),
                    status: p.health.status,
                    consecutive_failures: p.health.consecutive_failures,
                    retries: p.spec.health.map_or(0, |h| h.retries.max(1)),
                    last_check_ms: p.health.last_check.map(ms),
                    next_check_ms: p.health.next_check.map(ms),
                    last_latency_ms: p.health.last_latency.map(super::ewma::duration_ms),
                    last_error: p.health.last_error.clone(),
                },
                breaker,
                latency: LatencySnapshot {
                    ewma_ms: p.ewma.value_ms(now),
                    measured: p.ewma.is_measured(),
                    last_ttfb_ms: p.ewma.last_sample_ms(),
                    samples: p
                        .samples
                        .iter()
                        .map(|s| LatencySample {
                            at_ms: ms(s.at),
                            ms: super::ewma::duration_ms(s.latency),
                            source: s.source,
                        })
                        .collect(),
                },
                counters: p.totals,
                by_category: p.by_category.clone(),
                last_error: p
                    .last_error
                    .as_ref()
                    .map(|(at, message)| ErrorSnapshot { at_ms: ms(*at), message: message.clone() }),
                usage: p.account.snapshot(),
                usage_error: p.account.usage_error.clone(),
                sessions: state.sessions.bound_count(&p.spec.id),
                suspended: p.account.suspended.clone(),
                needs_login: p.account.needs_login.clone(),
            }
        })
        .collect();
    let rules = state
        .rules
        .iter()
        .map(|r| RuleSnapshot {
            category: r.spec.category.clone(),
            strategy: r.spec.strategy,
            providers: r
                .candidates
                .iter()
                .enumerate()
                .map(|(i, id)| RuleProviderSnapshot {
                    id: id.clone(),
                    weight: state.provider(id).map_or(0, |p| r.weight(p)),
                    configured_weight: r.spec.weights.get(id).copied(),
                    weight_override: r.overrides.get(id).copied(),
                    picks: r.picks.get(i).copied().unwrap_or(0),
                })
                .collect(),
            failover: r.spec.failover,
            health_check: r.spec.health_check,
            fallback: r.spec.fallback.clone(),
        })
        .collect();
    BalancerSnapshot {
        version,
        uptime_ms: ms(now),
        started_at_unix_ms,
        queue: QueueSnapshot {
            waiting: state.waiting,
            max_queue: state.spec.max_queue,
            timeout_ms: dur_ms(state.spec.queue_timeout),
        },
        providers,
        rules,
    }
}

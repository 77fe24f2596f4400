//! The balancer's input: providers, rules and queue limits, already validated and mapped from the
//! JSON config by the caller. Nothing here knows the config's field names or file format.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// How a rule picks among its eligible providers (design §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// The next eligible provider in list order.
    RoundRobin,
    /// Smooth weighted round-robin (nginx): every window of Σweights picks holds each provider
    /// exactly `weight` times, interleaved.
    WeightedRoundRobin,
    /// Fewest in-flight requests; ties by weight (higher first), then list order.
    LeastConnections,
    /// Lowest peak-EWMA time to first byte × (in-flight + 1).
    ResponseTime,
    /// The first provider; when it is not eligible, the rule's `fallback`; nothing else.
    Single,
    /// Weight ∝ remaining credits ÷ days until the account's reset (see [`super::credits`]).
    Credits,
}

impl StrategyKind {
    /// The config spelling (`weighted-round-robin`), also used in snapshots and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round-robin",
            StrategyKind::WeightedRoundRobin => "weighted-round-robin",
            StrategyKind::LeastConnections => "least-connections",
            StrategyKind::ResponseTime => "response-time",
            StrategyKind::Single => "single",
            StrategyKind::Credits => "credits",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Circuit-breaker parameters of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerParams {
    /// Failures within `monitoring_period` that open the breaker (0 is treated as 1).
    pub failure_threshold: u32,
    /// Length of the sliding window in which failures are counted.
    pub monitoring_period: Duration,
    /// How long the breaker stays open before it lets one probe request through.
    pub reset_timeout: Duration,
}

/// Active health-check parameters of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthParams {
    /// Time between probes (jittered by ±10 %; at least [`crate::balancer::MIN_HEALTH_INTERVAL`]).
    pub interval: Duration,
    /// A probe that takes longer than this fails.
    pub timeout: Duration,
    /// Consecutive failed probes before the provider is marked unhealthy (0 is treated as 1).
    pub retries: u32,
}

/// One provider (one Kiro account) as the balancer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    /// Unique id, as used in rules and commands.
    pub id: String,
    /// Default weight, used where a rule gives none.
    pub weight: u32,
    /// In-flight cap; 0 means no cap.
    pub max_concurrent: u32,
    /// Circuit breaker, if enabled.
    pub breaker: Option<BreakerParams>,
    /// Active health checks, if enabled.
    pub health: Option<HealthParams>,
    /// Samples of latency history kept for the dashboard.
    pub latency_window: usize,
    /// Usage polling and reserve, when enabled.
    pub usage: Option<super::account::UsageParams>,
}

/// One routing rule: a category's ordered providers and how to pick among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// The routing category (`default`, `background`, …).
    pub category: String,
    /// How to pick.
    pub strategy: StrategyKind,
    /// Ordered provider ids. Unknown ids and duplicates are ignored (the config layer rejects them).
    pub providers: Vec<String>,
    /// Per-rule weights, overriding the providers' own.
    pub weights: HashMap<String, u32>,
    /// Whether a failed request may be retried on another provider of this rule.
    pub failover: bool,
    /// Whether providers marked unhealthy by active checks are skipped.
    pub health_check: bool,
    /// For `single`: the provider used when the first is not eligible.
    pub fallback: Option<String>,
    /// Keep a conversation on the account that served it (conversation affinity).
    pub sticky: bool,
    /// A conversation idle this long is placed afresh.
    pub sticky_ttl: Duration,
}

/// Everything the balancer needs: providers, rules and the capacity queue.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerSpec {
    /// All providers, in display order.
    pub providers: Vec<ProviderSpec>,
    /// All rules, in display order.
    pub rules: Vec<RuleSpec>,
    /// Longest a request waits for capacity when every candidate is at its cap.
    pub queue_timeout: Duration,
    /// Most requests that may wait for capacity at once; more are refused at once.
    pub max_queue: usize,
    /// Decay time constant τ of the peak-EWMA of time to first byte: a sample's weight falls
    /// to 1/e after τ.
    pub latency_decay: Duration,
    /// Time to first byte assumed for a provider with no samples, and the value an idle
    /// provider's estimate decays back to, so that it is tried (again).
    pub default_ttfb: Duration,
    /// Most conversations remembered for affinity (least recently seen evicted first).
    pub max_sessions: usize,
}

/// Default of [`BalancerSpec::queue_timeout`].
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default of [`BalancerSpec::max_queue`].
pub const DEFAULT_MAX_QUEUE: usize = 64;
/// Default of [`BalancerSpec::latency_decay`] (τ = 10 s, as in linkerd / tower).
pub const DEFAULT_LATENCY_DECAY: Duration = Duration::from_secs(10);
/// Default of [`BalancerSpec::default_ttfb`]: optimistic, so unmeasured providers are tried
/// first, but not zero, so a burst does not all land on one unmeasured provider.
pub const DEFAULT_TTFB: Duration = Duration::from_millis(250);

impl Default for BalancerSpec {
    fn default() -> Self {
        BalancerSpec {
            providers: Vec::new(),
            rules: Vec::new(),
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            max_queue: DEFAULT_MAX_QUEUE,
            latency_decay: DEFAULT_LATENCY_DECAY,
            default_ttfb: DEFAULT_TTFB,
            max_sessions: super::affinity::DEFAULT_MAX_SESSIONS,
        }
    }
}

impl RuleSpec {
    /// The provider ids this rule may pick, in order: for `single`, the first provider and the
    /// fallback; otherwise the provider list. Duplicates are dropped.
    pub fn candidates(&self) -> Vec<String> {
        let raw: Vec<&String> = match self.strategy {
            StrategyKind::Single => self.providers.iter().take(1).chain(self.fallback.iter()).collect(),
            _ => self.providers.iter().collect(),
        };
        let mut out: Vec<String> = Vec::with_capacity(raw.len());
        for id in raw {
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
        out
    }
}

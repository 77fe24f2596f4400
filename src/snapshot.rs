//! The operator's view of a running instance: one plain-data [`Snapshot`] combining the balancer's
//! state with what only the running instance knows (listen address, config file and last reload,
//! request rate, token status, each rule's model).
//!
//! This module is a pure view: [`SnapshotBuilder::build`] turns [`Inputs`] (state gathered by
//! the running instance) into a [`Snapshot`]; it knows nothing of the instance, the HTTP server or
//! the dashboard. The running instance ([`crate::runtime`]) publishes the snapshots on a
//! `tokio::sync::watch` channel; the dashboard, the status printer and the monitoring endpoints
//! read `Arc<Snapshot>` copies and never lock core state (style habit 1).
//!
//! Instants inside the balancer's part (every `*_ms` field of [`ProviderSnapshot`] and
//! [`RuleSnapshot`]) are milliseconds on the balancer's clock; [`Snapshot::now_ms`] is "now" on that
//! clock and [`Snapshot::wall_clock`] turns one into a date.

use crate::balancer::{
    BalancerSnapshot, BlockReason, BreakerState, HealthStatus, ProviderSnapshot, QueueSnapshot, RuleSnapshot,
    SampleSource,
};
use crate::config::Config;
pub use crate::providers::codewhisperer::token::TokenStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Where a running instance serves its whole snapshot as JSON (what `ccr status` reads).
pub const STATUS_PATH: &str = "/status";

/// The request rate is the average over this much recent history: long enough to smooth a burst
/// of one Claude Code turn, short enough to show a stop within seconds.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Upper bounds (seconds) of the time-to-first-byte histogram buckets. Kiro answers typically
/// start after 1–10 s; the tail up to the default 120 s first-byte timeout matters for alerts.
pub const TTFB_BUCKETS_SECONDS: [f64; 12] =
    [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

/// One word for a provider's condition, the most severe first: what an operator reads first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    /// Taking traffic; nothing known to be wrong.
    Healthy,
    /// Taking traffic; active checks are on but none has finished yet.
    Unknown,
    /// Active checks failed `retries` times in a row.
    Unhealthy,
    /// Taken out of rotation by the operator.
    Draining,
    /// Its token file is missing or unusable, or its login is dead (the refresh was refused):
    /// only the user can fix it.
    NeedsLogin,
    /// Answered 429; out of rotation until the cooldown ends.
    CoolingDown,
    /// Its monthly quota is used up.
    QuotaExhausted,
    /// Its circuit breaker is open or half-open.
    CircuitOpen,
    /// The upstream suspended the account: out until the operator resets it.
    Suspended,
}

impl ProviderStatus {
    /// All statuses, for exhaustive metrics labels.
    pub const ALL: [ProviderStatus; 9] = [
        ProviderStatus::Healthy,
        ProviderStatus::Unknown,
        ProviderStatus::Unhealthy,
        ProviderStatus::Draining,
        ProviderStatus::NeedsLogin,
        ProviderStatus::CoolingDown,
        ProviderStatus::QuotaExhausted,
        ProviderStatus::CircuitOpen,
        ProviderStatus::Suspended,
    ];

    /// The one name of the state, everywhere: JSON, metrics labels, the `ccr status` table, the
    /// dashboard and the README.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderStatus::Healthy => "healthy",
            ProviderStatus::Unknown => "unknown",
            ProviderStatus::Unhealthy => "unhealthy",
            ProviderStatus::Draining => "draining",
            ProviderStatus::NeedsLogin => "needs_login",
            ProviderStatus::CoolingDown => "cooling_down",
            ProviderStatus::QuotaExhausted => "quota_exhausted",
            ProviderStatus::CircuitOpen => "circuit_open",
            ProviderStatus::Suspended => "suspended",
        }
    }
}

/// The outcome of the last config load or reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadInfo {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Whether the file was accepted (false: the previous config stayed live).
    pub ok: bool,
    /// What happened; for a rejected file, every problem found.
    pub message: String,
}

/// A cumulative histogram of request time to first byte, in seconds, for Prometheus.
///
/// Fed from the balancer's latency window each time a snapshot is built (at most ten times a
/// second plus monitoring requests): a provider that takes more samples than its window holds
/// between two builds (over ~1000 requests/s with the default window) loses the excess.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyHistogram {
    /// Cumulative counts, one per bound in [`TTFB_BUCKETS_SECONDS`] (samples ≤ that bound).
    pub buckets: Vec<u64>,
    /// All samples (the `+Inf` bucket).
    pub count: u64,
    /// Sum of all samples, seconds.
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    fn new() -> Self {
        LatencyHistogram { buckets: vec![0; TTFB_BUCKETS_SECONDS.len()], count: 0, sum_seconds: 0.0 }
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, bucket) in TTFB_BUCKETS_SECONDS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

/// Everything about one provider: the balancer's state plus the runtime's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderView {
    /// The balancer's view: counters, breaker, health, latency, in-flight, weights, last error.
    #[serde(flatten)]
    pub core: ProviderSnapshot,
    /// Display name (`name` in the config, else the id).
    pub name: String,
    /// The one-word condition.
    pub status: ProviderStatus,
    /// Why the status is not `healthy`, in words (`"rate limited (429); back in 12s"`).
    pub status_reason: Option<String>,
    /// Whether it can take a request now (being at its in-flight cap does not count against it).
    pub available: bool,
    /// The weight in force outside rule-level overrides: the operator's override, else the
    /// configured weight.
    pub effective_weight: u32,
    /// Median of the recent request latencies, ms.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile of the recent request latencies, ms.
    pub latency_p95_ms: Option<f64>,
    /// Time to first byte since start, for Prometheus.
    pub ttfb_histogram: LatencyHistogram,
    /// The account's token.
    pub token: TokenStatus,
}

/// One routing rule: the balancer's view plus its model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    /// Strategy, candidates with weights and picks, failover, health checks, fallback.
    #[serde(flatten)]
    pub core: RuleSnapshot,
    /// The Kiro model id the rule sends, if it names one.
    pub model: Option<String>,
}

/// Everything an operator needs about a running instance, as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Build counter: higher is newer.
    pub seq: u64,
    /// Where the pool's shared state lives, and whether it is reachable.
    #[serde(default)]
    pub state: crate::state::StateStatus,
    /// The balancer's change counter at the time.
    pub balancer_version: u64,
    /// When it was built.
    pub taken_at: DateTime<Utc>,
    /// "Now" on the balancer's clock, ms: compare every `*_ms` instant with it.
    pub now_ms: u64,
    /// The balancer's clock origin, ms since the Unix epoch.
    pub clock_origin_unix_ms: u64,
    /// When the instance started.
    pub started_at: DateTime<Utc>,
    /// How long it has run, ms.
    pub uptime_ms: u64,
    /// Where it listens.
    pub listen: Option<String>,
    /// The config's `name`.
    pub config_name: Option<String>,
    /// The config file (or "built-in default").
    pub config_path: String,
    /// The last load or reload of the config.
    pub reload: ReloadInfo,
    /// Whether `/v1/*` and `/admin/*` require `server.apiKey`.
    pub api_key_required: bool,
    /// Client requests received since start.
    pub requests_total: u64,
    /// Client requests per second over the last [`RATE_WINDOW`].
    pub requests_per_sec: f64,
    /// Requests waiting for capacity.
    pub queue: QueueSnapshot,
    /// Providers in config order.
    pub providers: Vec<ProviderView>,
    /// Rules in config order.
    pub rules: Vec<RuleView>,
    /// Developers' keys (`server.keys`): limits and usage, names only.
    #[serde(default)]
    pub keys: crate::keys::KeysView,
}

impl Snapshot {
    /// A snapshot of nothing, before the first build.
    pub fn empty() -> Snapshot {
        Snapshot {
            seq: 0,
            state: Default::default(),
            balancer_version: 0,
            taken_at: DateTime::<Utc>::UNIX_EPOCH,
            now_ms: 0,
            clock_origin_unix_ms: 0,
            started_at: DateTime::<Utc>::UNIX_EPOCH,
            uptime_ms: 0,
            listen: None,
            config_name: None,
            config_path: String::new(),
            reload: ReloadInfo { at: DateTime::<Utc>::UNIX_EPOCH, ok: true, message: String::new() },
            api_key_required: false,
            requests_total: 0,
            requests_per_sec: 0.0,
            queue: QueueSnapshot { waiting: 0, max_queue: 0, timeout_ms: 0 },
            providers: Vec::new(),
            rules: Vec::new(),
            keys: crate::keys::KeysView::default(),
        }
    }

    /// The provider with this id.
    pub fn provider(&self, id: &str) -> Option<&ProviderView> {
        self.providers.iter().find(|p| p.core.id == id)
    }

    /// The rule for exactly this category.
    pub fn rule(&self, category: &str) -> Option<&RuleView> {
        self.rules.iter().find(|r| r.core.category == category)
    }

    /// Whether some provider can take a request now: what `GET /health` answers.
    pub fn any_available(&self) -> bool {
        self.providers.iter().any(|p| p.available)
    }

    /// The wall-clock time of a balancer instant (`*_ms` field).
    pub fn wall_clock(&self, at_ms: u64) -> DateTime<Utc> {
        let unix_ms = self.clock_origin_unix_ms.saturating_add(at_ms);
        DateTime::<Utc>::from_timestamp_millis(i64::try_from(unix_ms).unwrap_or(i64::MAX))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// Milliseconds from now until a balancer instant (0 when it has passed).
    pub fn ms_until(&self, at_ms: u64) -> u64 {
        at_ms.saturating_sub(self.now_ms)
    }
}

/// `1.5s`, `12s`, `2m05s`, `1h03m`: a short duration for tables and reasons.
pub fn format_duration_ms(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 if ms < 1000 => format!("{ms}ms"),
        0..10 => format!("{}.{}s", secs, (ms % 1000) / 100),
        10..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// The condition of a provider and why, from the balancer's view.
pub fn provider_status(p: &ProviderSnapshot, now_ms: u64) -> (ProviderStatus, Option<String>) {
    let until = |at: u64| format_duration_ms(at.saturating_sub(now_ms));
    if p.drained {
        let finishing =
            if p.in_flight > 0 { format!("; {} in flight finishing", p.in_flight) } else { String::new() };
        return (
            ProviderStatus::Draining,
            Some(format!("drained by the operator: new requests go elsewhere{finishing}")),
        );
    }
    if let Some(reason) = &p.suspended {
        return (
            ProviderStatus::Suspended,
            Some(format!("suspended by the upstream ({reason}); reset it once the account is cleared")),
        );
    }
    if let Some(reason) = &p.needs_login {
        return (
            ProviderStatus::NeedsLogin,
            Some(format!("the login is no longer valid; log in again ({reason})")),
        );
    }
    if let Some(at) = p.quota_exhausted_until_ms {
        let reset = p.usage.as_ref().and_then(|u| u.reset_at).map_or_else(String::new, |t| {
            format!(" (reset {})", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        });
        return (
            ProviderStatus::QuotaExhausted,
            Some(format!("credits used up; back in {}{reset}", until(at))),
        );
    }
    if let Some(at) = p.cooldown_until_ms {
        return (ProviderStatus::CoolingDown, Some(format!("rate limited (429); back in {}", until(at))));
    }
    if let Some(b) = &p.breaker {
        match b.state {
            BreakerState::Open => {
                let next =
                    b.next_probe_ms.map_or_else(String::new, |at| format!("; next probe in {}", until(at)));
                let why = b.open_reason.as_deref().unwrap_or("failures");
                return (
                    ProviderStatus::CircuitOpen,
                    Some(format!("circuit breaker OPEN after {why}{next}")),
                );
            }
            BreakerState::HalfOpen => {
                let what = if b.probe_in_flight {
                    "a probe request is in flight"
                } else {
                    "the next request is the probe"
                };
                return (ProviderStatus::CircuitOpen, Some(format!("circuit breaker HALF_OPEN: {what}")));
            }
            BreakerState::Closed => {}
        }
    }
    if let Some(status) = pool_status(p) {
        return status;
    }
    match p.health.status {
        HealthStatus::Unhealthy => {
            let error = p.health.last_error.as_deref().unwrap_or("no detail");
            (
                ProviderStatus::Unhealthy,
                Some(format!("{} health checks failed in a row: {error}", p.health.consecutive_failures)),
            )
        }
        HealthStatus::Unknown if p.health.enabled => {
            (ProviderStatus::Unknown, Some("no health check has finished yet".to_owned()))
        }
        _ => (ProviderStatus::Healthy, None),
    }
}

/// A block this instance did not see itself: another instance of a shared pool did (Redis
/// backend, docs/shared-state.md). Every local reason was checked before.
fn pool_status(p: &ProviderSnapshot) -> Option<(ProviderStatus, Option<String>)> {
    const ELSEWHERE: &str = "seen by another instance of the pool";
    let has = |r: BlockReason| p.blocked.contains(&r);
    let (status, what) = if has(BlockReason::Drained) {
        (ProviderStatus::Draining, "drained by the operator")
    } else if has(BlockReason::Suspended) {
        (ProviderStatus::Suspended, "suspended by the upstream")
    } else if has(BlockReason::NeedsLogin) {
        (ProviderStatus::NeedsLogin, "the login is no longer valid")
    } else if has(BlockReason::QuotaExhausted) {
        (ProviderStatus::QuotaExhausted, "credits used up")
    } else if has(BlockReason::CoolingDown) {
        (ProviderStatus::CoolingDown, "rate limited (429)")
    } else if has(BlockReason::BreakerOpen) {
        (ProviderStatus::CircuitOpen, "circuit breaker OPEN; one probe for the pool")
    } else {
        return None;
    };
    Some((status, Some(format!("{what}: {ELSEWHERE}"))))
}

/// The `pct` percentile (0–100, nearest rank) of the request latencies in the window.
fn percentile(p: &ProviderSnapshot, pct: f64) -> Option<f64> {
    let mut v: Vec<f64> = p
        .latency
        .samples
        .iter()
        .filter(|s| s.source == SampleSource::Request && s.ms.is_finite())
        .map(|s| s.ms)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    // Nearest rank: ceil(pct/100 · n), 1-based. The product is small and non-negative.
    let rank = (pct / 100.0 * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

/// Per-provider histogram state: the histogram and the newest sample already counted.
#[derive(Debug, Default)]
struct HistogramFeed {
    histogram: Option<LatencyHistogram>,
    /// (at_ms, ordinal among samples with that at_ms) of the newest counted sample.
    last: Option<(u64, usize)>,
}

impl HistogramFeed {
    /// Count the request samples newer than the last counted one.
    fn ingest(&mut self, p: &ProviderSnapshot) -> LatencyHistogram {
        let histogram = self.histogram.get_or_insert_with(LatencyHistogram::new);
        let mut prev_at = None;
        let mut ordinal = 0usize;
        for s in &p.latency.samples {
            ordinal = if prev_at == Some(s.at_ms) { ordinal + 1 } else { 0 };
            prev_at = Some(s.at_ms);
            let key = (s.at_ms, ordinal);
            if self.last.is_some_and(|last| key <= last) {
                continue;
            }
            self.last = Some(key);
            if s.source == SampleSource::Request && s.ms.is_finite() && s.ms >= 0.0 {
                histogram.observe(s.ms / 1000.0);
            }
        }
        histogram.clone()
    }
}

/// Recent (time, total) readings of the request counter.
#[derive(Debug, Default)]
struct RateWindow {
    readings: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// Record a reading and return the rate over the window.
    fn rate(&mut self, now: Instant, total: u64) -> f64 {
        if self
            .readings
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= Duration::from_millis(200))
        {
            self.readings.push_back((now, total));
        }
        // Keep one reading at or beyond the window's start, so the span covers the whole window.
        while self.readings.len() > 2
            && self.readings.get(1).is_some_and(|(t, _)| now.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            self.readings.pop_front();
        }
        let Some(&(t0, n0)) = self.readings.front() else { return 0.0 };
        let span = now.saturating_duration_since(t0).as_secs_f64();
        if span < 0.5 {
            return 0.0;
        }
        total.saturating_sub(n0) as f64 / span
    }
}

/// What building a snapshot remembers between builds: the build counter, the request-rate
/// readings and each provider's histogram progress. The running instance owns one (its
/// publisher); everything else a snapshot shows comes in as [`Inputs`].
#[derive(Debug, Default)]
pub(crate) struct SnapshotBuilder {
    seq: AtomicU64,
    rate: Mutex<RateWindow>,
    histograms: Mutex<HashMap<String, HistogramFeed>>,
}

/// The state a snapshot is a view of, gathered by the running instance at one moment.
pub(crate) struct Inputs<'a> {
    /// The balancer's state.
    pub balancer: BalancerSnapshot,
    /// The shared-state backend's status.
    pub state: crate::state::StateStatus,
    /// The config in force.
    pub config: &'a Config,
    /// Each provider's token status, by provider id.
    pub token: &'a dyn Fn(&str) -> Option<TokenStatus>,
    /// The last load or reload of the config.
    pub reload: ReloadInfo,
    /// When the instance started.
    pub started_at: DateTime<Utc>,
    /// Where it listens.
    pub listen: Option<SocketAddr>,
    /// The config file's label (or "built-in default").
    pub config_path: String,
    /// Client requests received since start.
    pub requests_total: u64,
    /// Now, on tokio's clock (for the request rate).
    pub now: Instant,
    /// The developers' keys.
    pub keys: crate::keys::KeysView,
}

impl SnapshotBuilder {
    /// Build a snapshot of `inputs`.
    pub(crate) fn build(&self, inputs: Inputs<'_>) -> Snapshot {
        let Inputs {
            balancer,
            state,
            config,
            token,
            reload,
            started_at,
            listen,
            config_path,
            requests_total,
            now,
            keys,
        } = inputs;
        let requests_per_sec = self.rate.lock().unwrap_or_else(|e| e.into_inner()).rate(now, requests_total);
        let histograms: Vec<LatencyHistogram> = {
            let mut feeds = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
            feeds.retain(|id, _| balancer.provider(id).is_some());
            balancer.providers.iter().map(|p| feeds.entry(p.id.clone()).or_default().ingest(p)).collect()
        };
        let now_ms = balancer.uptime_ms;
        let providers = balancer
            .providers
            .into_iter()
            .zip(histograms)
            .map(|(core, ttfb_histogram)| {
                let token = token(&core.id).unwrap_or_default();
                let (status, status_reason) = match &token.error {
                    Some(error) if token.needs_login && !core.drained => (
                        ProviderStatus::NeedsLogin,
                        Some(format!("{error}; fix: {}", crate::firstrun::fix_hint(&core.id))),
                    ),
                    _ => provider_status(&core, now_ms),
                };
                let name = config
                    .providers
                    .get(&core.id)
                    .map_or_else(|| core.id.clone(), |p| p.display_name(&core.id).to_owned());
                ProviderView {
                    name,
                    status,
                    status_reason,
                    available: status != ProviderStatus::NeedsLogin
                        && core.blocked.iter().all(|r| *r == BlockReason::AtCapacity),
                    effective_weight: core.weight_override.unwrap_or(core.weight),
                    latency_p50_ms: percentile(&core, 50.0),
                    latency_p95_ms: percentile(&core, 95.0),
                    ttfb_histogram,
                    token,
                    core,
                }
            })
            .collect();
        let rules = balancer
            .rules
            .into_iter()
            .map(|core| {
                let model = config.routing.rules.get(&core.category).and_then(|r| r.model.clone());
                RuleView { core, model }
            })
            .collect();
        Snapshot {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            state,
            balancer_version: balancer.version,
            taken_at: Utc::now(),
            now_ms,
            clock_origin_unix_ms: balancer.started_at_unix_ms,
            started_at,
            uptime_ms: now_ms,
            listen: listen.map(|a| a.to_string()),
            config_name: config.name.clone(),
            config_path,
            reload,
            api_key_required: config.server.api_key.is_some(),
            requests_total,
            requests_per_sec,
            queue: balancer.queue,
            providers,
            rules,
            keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::{Counters, HealthSnapshot, LatencySample, LatencySnapshot};

    fn provider(samples: &[(u64, f64, SampleSource)]) -> ProviderSnapshot {
        ProviderSnapshot {
            id: "p".into(),
            weight: 1,
            weight_override: None,
            max_concurrent: 0,
            in_flight: 0,
            drained: false,
            cooldown_until_ms: None,
            quota_exhausted_until_ms: None,
            blocked: vec![],
            health: HealthSnapshot {
                enabled: false,
                status: HealthStatus::Unknown,
                consecutive_failures: 0,
                retries: 0,
                last_check_ms: None,
                next_check_ms: None,
                last_latency_ms: None,
                last_error: None,
            },
            breaker: None,
            latency: LatencySnapshot {
                ewma_ms: 0.0,
                measured: false,
                last_ttfb_ms: None,
                samples: samples
                    .iter()
                    .map(|&(at_ms, ms, source)| LatencySample { at_ms, ms, source })
                    .collect(),
            },
            counters: Counters::default(),
            by_category: Default::default(),
            last_error: None,
            usage: None,
            usage_error: None,
            sessions: 0,
            suspended: None,
            needs_login: None,
        }
    }

    #[test]
    fn percentiles_use_request_samples_only() {
        let p = provider(&[
            (1, 100.0, SampleSource::Request),
            (2, 5000.0, SampleSource::Probe),
            (3, 300.0, SampleSource::Request),
            (4, 200.0, SampleSource::Request),
        ]);
        assert_eq!(percentile(&p, 50.0), Some(200.0));
        assert_eq!(percentile(&p, 95.0), Some(300.0));
        assert_eq!(percentile(&provider(&[]), 50.0), None);
    }

    #[test]
    fn histogram_counts_each_sample_once() {
        let mut feed = HistogramFeed::default();
        let first = provider(&[(10, 150.0, SampleSource::Request), (10, 4000.0, SampleSource::Request)]);
        let h = feed.ingest(&first);
        assert_eq!(h.count, 2);
        // The same window again, then a window that slid by one and gained two (one a probe).
        assert_eq!(feed.ingest(&first).count, 2);
        let later = provider(&[
            (10, 4000.0, SampleSource::Request),
            (12, 700.0, SampleSource::Probe),
            (12, 90.0, SampleSource::Request),
        ]);
        let h = feed.ingest(&later);
        assert_eq!(h.count, 3);
        assert!((h.sum_seconds - 4.24).abs() < 1e-9);
        // ≤ 0.1 s: the 90 ms sample; ≤ 0.25 s: also 150 ms; ≤ 5 s: all three.
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 2);
        assert_eq!(h.buckets[6], 3);
        assert!(h.buckets.windows(2).all(|w| w[0] <= w[1]));
    }

    #[tokio::test(start_paused = true)]
    async fn request_rate_over_the_window() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        assert_eq!(w.rate(t0, 0), 0.0);
        for i in 1..=20u64 {
            // 5 requests per second for 20 s.
            assert!(w.rate(t0 + Duration::from_secs(i), i * 5) > 0.0);
        }
        let r = w.rate(t0 + Duration::from_secs(20), 100);
        assert!((r - 5.0).abs() < 1e-9, "{r}");
        // Traffic stops: the rate falls to zero once the window has passed.
        let r = w.rate(t0 + Duration::from_secs(31), 100);
        assert!(r < 0.5, "{r}");
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(format_duration_ms(250), "250ms");
        assert_eq!(format_duration_ms(1500), "1.5s");
        assert_eq!(format_duration_ms(12_000), "12s");
        assert_eq!(format_duration_ms(125_000), "2m05s");
        assert_eq!(format_duration_ms(3_780_000), "1h03m");
    }
}

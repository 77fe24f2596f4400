//! The config file's schema: the seed's format plus documented extensions.
//!
//! Field names are the JSON names (camelCase). Durations are milliseconds, as in the seed.
//! Every struct denies unknown fields as a backstop; the friendlier "did you mean" check runs
//! first over the raw JSON (see [`super::validate`]), using the key lists next to each struct.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A routing category, in classification order (see `classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Default,
    Background,
    Thinking,
    Longcontext,
    Search,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Default,
        Category::Background,
        Category::Thinking,
        Category::Longcontext,
        Category::Search,
    ];
    pub const NAMES: [&'static str; 5] = ["default", "background", "thinking", "longcontext", "search"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(name: &str) -> Option<Category> {
        Self::NAMES.iter().position(|n| *n == name).map(|i| Self::ALL[i])
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A load-balancing strategy name as written in `loadBalancing.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    ResponseTime,
    Single,
    /// Weight ∝ remaining credits ÷ days to reset (account-aware scheduling).
    Credits,
}

impl Strategy {
    pub const NAMES: [&'static str; 6] =
        ["round-robin", "weighted-round-robin", "least-connections", "response-time", "single", "credits"];
    const ALL: [Strategy; 6] = [
        Strategy::RoundRobin,
        Strategy::WeightedRoundRobin,
        Strategy::LeastConnections,
        Strategy::ResponseTime,
        Strategy::Single,
        Strategy::Credits,
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(name: &str) -> Option<Strategy> {
        Self::NAMES.iter().position(|n| *n == name).map(|i| Self::ALL[i])
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Shown in the dashboard header and by `ccr check`.
    #[serde(default)]
    pub name: Option<String>,
    /// Free text, shown by `ccr check`.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input: Input,
    #[serde(default)]
    pub output: Output,
    pub routing: Routing,
    pub providers: IndexMap<String, Provider>,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub monitoring: Monitoring,
    /// Where the pool's shared state lives (see `state`): this process, or Redis.
    #[serde(default)]
    pub state: StateSettings,
}

pub(crate) const CONFIG_KEYS: &[&str] =
    &["name", "description", "input", "output", "routing", "providers", "server", "monitoring", "state"];

/// `input`: what the proxy accepts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    /// Only `"anthropic"` (the Messages API) is spoken.
    #[serde(default = "anthropic")]
    pub format: String,
    /// When true, `ccr start` prints the environment lines that point Claude Code at this
    /// instance, and `ccr status` without `--url` talks to this instance's address.
    #[serde(default = "yes")]
    pub default_instance: bool,
}
pub(crate) const INPUT_KEYS: &[&str] = &["format", "defaultInstance"];

impl Default for Input {
    fn default() -> Self {
        Input { format: anthropic(), default_instance: true }
    }
}

/// `output`: what the proxy answers in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Output {
    /// Only `"anthropic"` (Messages API JSON and SSE).
    #[serde(default = "anthropic")]
    pub format: String,
}
pub(crate) const OUTPUT_KEYS: &[&str] = &["format"];

impl Default for Output {
    fn default() -> Self {
        Output { format: anthropic() }
    }
}

/// `routing`: categories → rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Routing {
    /// `"load-balancing"` (default): each rule balances over its providers with its own strategy.
    /// `"fixed"`: no balancing; every category goes to its rule's first provider (Use Case 2's
    /// model separation), falling back to the rule's `fallback` when one is set.
    #[serde(default = "load_balancing")]
    pub strategy: String,
    pub rules: IndexMap<String, Rule>,
    /// Estimated input tokens above which a request is `longcontext`.
    #[serde(default = "default_long_context")]
    pub long_context_threshold: i64,
    /// A request without tools or thinking and with fewer estimated input tokens than this is
    /// `background` (titles, page summaries).
    #[serde(default = "default_background_max")]
    pub background_max_tokens: i64,
}
pub(crate) const ROUTING_KEYS: &[&str] =
    &["strategy", "rules", "longContextThreshold", "backgroundMaxTokens"];

pub const ROUTING_STRATEGIES: [&str; 2] = ["load-balancing", "fixed"];

/// `routing.rules.<category>`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Provider ids, in priority order.
    pub providers: Vec<String>,
    /// Kiro `modelId` sent verbatim; absent → mapped from the requested Anthropic model.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub load_balancing: LoadBalancing,
}
pub(crate) const RULE_KEYS: &[&str] = &["providers", "model", "loadBalancing"];

/// `routing.rules.<category>.loadBalancing`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancing {
    /// Parsed and checked in validation so a typo gets a suggestion.
    #[serde(default = "round_robin")]
    pub strategy: String,
    /// Per-rule weights by provider id; absent ids use the provider's `weight`.
    #[serde(default)]
    pub weights: IndexMap<String, i64>,
    /// Retry a failed request (before its first byte) on the next eligible provider.
    #[serde(default)]
    pub failover: bool,
    /// Skip providers that active health checks mark unhealthy.
    #[serde(default)]
    pub health_check: bool,
    /// With `single`: the provider used when the first is not eligible.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Keep a conversation (Claude Code session) on the account that served it.
    #[serde(default = "yes")]
    pub sticky: bool,
    /// A conversation idle this long (ms) is placed afresh.
    #[serde(default = "default_sticky_ttl")]
    pub sticky_ttl: i64,
}
pub(crate) const LOAD_BALANCING_KEYS: &[&str] =
    &["strategy", "weights", "failover", "healthCheck", "fallback", "sticky", "stickyTtl"];

fn default_sticky_ttl() -> i64 {
    3_600_000
}

impl Default for LoadBalancing {
    fn default() -> Self {
        LoadBalancing {
            strategy: round_robin(),
            weights: IndexMap::new(),
            failover: false,
            health_check: false,
            fallback: None,
            sticky: true,
            sticky_ttl: default_sticky_ttl(),
        }
    }
}

/// `providers.<id>`: one Kiro / CodeWhisperer account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provider {
    /// `"aws"` (the seed's name) or `"codewhisperer"`.
    #[serde(rename = "type", default = "aws")]
    pub kind: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// `"kiro-token"`: a Kiro IDE token file at `tokenPath`.
    #[serde(default = "kiro_token")]
    pub auth_method: String,
    /// The token file; `~` is expanded.
    #[serde(default = "default_token_path")]
    pub token_path: String,
    #[serde(default = "one")]
    pub weight: i64,
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: i64,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    #[serde(default)]
    pub metrics: Metrics,
    /// API base URL; `/generateAssistantResponse` is appended. Default `https://q.{region}.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Token refresh base URL. Default `https://prod.{region}.auth.desktop.kiro.dev` (social
    /// logins; IdC logins refresh at `https://oidc.{region}.amazonaws.com`).
    #[serde(default)]
    pub auth_endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// TCP + TLS connect timeout, ms.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: i64,
    /// Longest wait for the first event of an answer, ms; past it the request fails over.
    #[serde(default = "default_first_byte_timeout")]
    pub first_byte_timeout: i64,
    /// Longest silence between two events of a streaming answer, ms.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: i64,
    /// Credits polling (`getUsageLimits`) and the reserve kept unused.
    #[serde(default)]
    pub usage: UsageConfig,
}

/// `providers.<id>.usage`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageConfig {
    /// Poll the account's `getUsageLimits` and count metered credits.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Time between polls, ms (jittered by ±10 %).
    #[serde(default = "default_usage_refresh")]
    pub refresh_interval: i64,
    /// Credits to keep unused: at or below this the account is skipped while another can serve.
    #[serde(default)]
    pub reserve: f64,
}
pub(crate) const USAGE_KEYS: &[&str] = &["enabled", "refreshInterval", "reserve"];

fn default_usage_refresh() -> i64 {
    300_000
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig { enabled: true, refresh_interval: default_usage_refresh(), reserve: 0.0 }
    }
}
pub(crate) const PROVIDER_KEYS: &[&str] = &[
    "type",
    "name",
    "authMethod",
    "tokenPath",
    "weight",
    "maxConcurrentRequests",
    "healthCheck",
    "circuitBreaker",
    "metrics",
    "endpoint",
    "authEndpoint",
    "region",
    "connectTimeout",
    "firstByteTimeout",
    "idleTimeout",
    "usage",
];

pub const PROVIDER_TYPES: [&str; 2] = ["aws", "codewhisperer"];
pub const AUTH_METHODS: [&str; 1] = ["kiro-token"];

impl Provider {
    pub fn display_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(id)
    }

    /// The API base URL, defaults filled in, without a trailing slash.
    pub fn api_base(&self) -> String {
        match &self.endpoint {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://q.{}.amazonaws.com", self.region),
        }
    }

    /// The social refresh base URL, defaults filled in, without a trailing slash.
    pub fn auth_base(&self) -> String {
        match &self.auth_endpoint {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://prod.{}.auth.desktop.kiro.dev", self.region),
        }
    }

    /// Whether this account talks to the real Kiro API (no `endpoint`, or an `amazonaws.com` one).
    pub fn is_real_kiro_api(&self) -> bool {
        let Some(url) = &self.endpoint else { return true };
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let host = rest.split(['/', ':', '?']).next().unwrap_or("").to_ascii_lowercase();
        host == "amazonaws.com" || host.ends_with(".amazonaws.com")
    }

    /// The path the health probe `GET`s, or `None` for the authenticated `getUsageLimits` probe.
    /// On the real Kiro API a configured path is not used: Kiro serves no `/health`, so probing
    /// it would mark every working account unhealthy. (Example configs written for
    /// claude-code-router carry `"endpoint": "/health"`; they load unchanged and work.)
    pub fn health_probe_path(&self) -> Option<&str> {
        let path = self.active_health_check()?.endpoint.as_deref()?;
        (!self.is_real_kiro_api()).then_some(path)
    }

    /// Health-check settings when checks are on (`healthCheck` present and enabled).
    pub fn active_health_check(&self) -> Option<&HealthCheck> {
        self.health_check.as_ref().filter(|h| h.enabled)
    }

    /// Breaker settings when the breaker is on. Absent `circuitBreaker` means on with defaults:
    /// a provider that fails repeatedly should stop taking traffic unless the user says otherwise.
    pub fn active_breaker(&self) -> Option<CircuitBreaker> {
        match &self.circuit_breaker {
            Some(b) if b.enabled => Some(b.clone()),
            Some(_) => None,
            None => Some(CircuitBreaker::default()),
        }
    }
}

/// `providers.<id>.healthCheck`: active probing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// ms between probes (jittered ±10 %).
    #[serde(default = "default_hc_interval")]
    pub interval: i64,
    /// ms a probe may take; must be shorter than `interval`.
    #[serde(default = "default_hc_timeout")]
    pub timeout: i64,
    /// Consecutive failed probes before the provider is marked unhealthy.
    #[serde(default = "default_hc_retries")]
    pub retries: i64,
    /// A path under the provider's `endpoint` to `GET` (2xx = healthy). Absent: the
    /// authenticated `getUsageLimits` probe.
    #[serde(default)]
    pub endpoint: Option<String>,
}
pub(crate) const HEALTH_CHECK_KEYS: &[&str] = &["enabled", "interval", "timeout", "retries", "endpoint"];

impl HealthCheck {
    pub fn interval(&self) -> Duration {
        ms(self.interval)
    }
    pub fn timeout(&self) -> Duration {
        ms(self.timeout)
    }
}

/// `providers.<id>.circuitBreaker`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Failures within `monitoringPeriod` that open the breaker.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: i64,
    /// ms the breaker stays open before one probe request is let through.
    #[serde(default = "default_reset_timeout")]
    pub reset_timeout: i64,
    /// ms window in which failures are counted.
    #[serde(default = "default_monitoring_period")]
    pub monitoring_period: i64,
}
pub(crate) const CIRCUIT_BREAKER_KEYS: &[&str] =
    &["enabled", "failureThreshold", "resetTimeout", "monitoringPeriod"];

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            enabled: true,
            failure_threshold: default_failure_threshold(),
            reset_timeout: default_reset_timeout(),
            monitoring_period: default_monitoring_period(),
        }
    }
}

/// `providers.<id>.metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// Record latency history and Prometheus histograms for this provider.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Recent latency samples kept for the dashboard chart and percentiles.
    #[serde(default = "default_window")]
    pub response_time_window: i64,
}
pub(crate) const METRICS_KEYS: &[&str] = &["enabled", "responseTimeWindow"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics { enabled: true, response_time_window: default_window() }
    }
}

/// `server`: where the proxy listens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: i64,
    /// When set, `/v1/*` and `/admin/*` require it (`x-api-key` or `Authorization: Bearer`).
    /// Required for a non-loopback `host`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Developers' keys with their limits (see [`super::keys`]); when any is set, `/v1/*` needs
    /// one of them (or the operator's `apiKey`).
    #[serde(default)]
    pub keys: Vec<super::keys::KeyEntry>,
    /// Largest accepted request body, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: i64,
    /// Browser origins (`scheme://host[:port]`) allowed besides loopback ones: see
    /// `server::guard`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// `Host` names allowed besides loopback ones when no `apiKey` is set.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Most open client connections; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: i64,
    /// ms a client may take to send a whole request head.
    #[serde(default = "default_request_head_timeout")]
    pub request_head_timeout: i64,
    /// ms of silence allowed while a request body is being received.
    #[serde(default = "default_body_idle_timeout")]
    pub body_idle_timeout: i64,
    /// ms in-flight answers get to finish after a stop signal; then streams end with an error
    /// event and the process exits.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: i64,
}
pub(crate) const SERVER_KEYS: &[&str] = &[
    "host",
    "port",
    "apiKey",
    "keys",
    "maxBodyBytes",
    "allowedOrigins",
    "allowedHosts",
    "maxConnections",
    "requestHeadTimeout",
    "bodyIdleTimeout",
    "shutdownTimeout",
];

impl Default for Server {
    fn default() -> Self {
        Server {
            host: default_host(),
            port: default_port(),
            api_key: None,
            keys: Vec::new(),
            max_body_bytes: default_max_body(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_connections: default_max_connections(),
            request_head_timeout: default_request_head_timeout(),
            body_idle_timeout: default_body_idle_timeout(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

/// `monitoring`: the JSON / Prometheus endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Monitoring {
    /// Serve the monitoring endpoints at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Path of the Prometheus endpoint.
    #[serde(default = "default_metrics_endpoint")]
    pub metrics_endpoint: String,
    /// Path of the overall health endpoint; `<path>/providers` is the per-provider one.
    #[serde(default = "default_health_endpoint")]
    pub health_endpoint: String,
    /// Serve `GET /dashboard/load-balancing` (the seed's dashboard JSON).
    #[serde(default = "yes")]
    pub dashboard_enabled: bool,
}
pub(crate) const MONITORING_KEYS: &[&str] =
    &["enabled", "metricsEndpoint", "healthEndpoint", "dashboardEnabled"];

impl Default for Monitoring {
    fn default() -> Self {
        Monitoring {
            enabled: true,
            metrics_endpoint: default_metrics_endpoint(),
            health_endpoint: default_health_endpoint(),
            dashboard_enabled: true,
        }
    }
}

/// `state`: where breakers, cooldowns, leases, bindings, usage and tokens live. `memory` (the
/// default) keeps them in this process; `redis` shares them with every instance using the same
/// Redis and key prefix (docs/shared-state.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateSettings {
    /// `memory` or `redis`.
    #[serde(default = "memory")]
    pub backend: String,
    /// `redis://[user:password@]host:port/db`, `rediss://…` (TLS) or `redis+unix:///path`.
    /// Required for `redis`. Its password is never shown.
    #[serde(default)]
    pub url: Option<String>,
    /// Prepended to every key, so several pools can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// ms a request may wait for Redis on its pick before it goes on with local state.
    #[serde(default = "default_state_timeout")]
    pub timeout: i64,
    /// ms a concurrency lease lives without renewal: the time after which a crashed instance's
    /// leases stop counting.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: i64,
}
pub(crate) const STATE_KEYS: &[&str] = &["backend", "url", "keyPrefix", "timeout", "leaseTtl"];
pub(crate) const STATE_BACKENDS: [&str; 2] = ["memory", "redis"];

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            backend: memory(),
            url: None,
            key_prefix: default_key_prefix(),
            timeout: default_state_timeout(),
            lease_ttl: default_lease_ttl(),
        }
    }
}

impl StateSettings {
    /// Whether the state is shared through Redis.
    pub fn is_redis(&self) -> bool {
        self.backend == "redis"
    }

    /// The URL for display: its password (if any) shown as `***`.
    pub fn shown_url(&self) -> Option<String> {
        self.url.as_deref().map(redact_url)
    }
}

/// `url` with its password (if any) replaced by `***`. Unparsable text is not shown at all.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// Milliseconds from the config (validated non-negative) as a `Duration`.
pub fn ms(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

pub const DEFAULT_PORT: u16 = 3456;
pub const DEFAULT_TOKEN_PATH: &str = "~/.aws/sso/cache/kiro-auth-token.json";

fn memory() -> String {
    "memory".into()
}
fn default_key_prefix() -> String {
    "ccr:".into()
}
fn default_state_timeout() -> i64 {
    5
}
fn default_lease_ttl() -> i64 {
    30_000
}
fn anthropic() -> String {
    "anthropic".into()
}
fn yes() -> bool {
    true
}
fn one() -> i64 {
    1
}
fn aws() -> String {
    "aws".into()
}
fn kiro_token() -> String {
    "kiro-token".into()
}
fn load_balancing() -> String {
    "load-balancing".into()
}
fn round_robin() -> String {
    "round-robin".into()
}
fn default_token_path() -> String {
    DEFAULT_TOKEN_PATH.into()
}
fn default_long_context() -> i64 {
    60_000
}
fn default_background_max() -> i64 {
    16_000
}
fn default_max_concurrent() -> i64 {
    16
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_connect_timeout() -> i64 {
    10_000
}
fn default_first_byte_timeout() -> i64 {
    120_000
}
fn default_idle_timeout() -> i64 {
    300_000
}
fn default_hc_interval() -> i64 {
    30_000
}
fn default_hc_timeout() -> i64 {
    5_000
}
fn default_hc_retries() -> i64 {
    3
}
fn default_failure_threshold() -> i64 {
    5
}
fn default_reset_timeout() -> i64 {
    60_000
}
fn default_monitoring_period() -> i64 {
    60_000
}
fn default_window() -> i64 {
    100
}
fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> i64 {
    i64::from(DEFAULT_PORT)
}
fn default_max_body() -> i64 {
    32 * 1024 * 1024
}
fn default_max_connections() -> i64 {
    1024
}
fn default_request_head_timeout() -> i64 {
    30_000
}
fn default_body_idle_timeout() -> i64 {
    30_000
}
fn default_shutdown_timeout() -> i64 {
    30_000
}
fn default_metrics_endpoint() -> String {
    "/metrics".into()
}
fn default_health_endpoint() -> String {
    "/health".into()
}

//! Monitoring endpoints (design §9): health, load-balancing and breaker metrics as JSON, the seed's
//! dashboard JSON, Prometheus text, and the whole [`Snapshot`] for `ccr status`.
//!
//! Every answer is built from a snapshot taken when the request arrives, so it shows the effect
//! of an admin call made just before; the shapes are pure functions of the [`Snapshot`], tested
//! without a server. None of these endpoints needs the API key: they carry no secrets (token
//! values never enter a snapshot) and load balancers and scrapers must reach them.
//!
//! Paths come from the config's `monitoring` block when the router is built (at start): the
//! health endpoint and `<health>/providers`, the Prometheus endpoint, and the dashboard JSON
//! (only with `dashboardEnabled`). `monitoring.enabled: false` serves none of them.

use crate::balancer::{BreakerState, Counters, HealthStatus};
use crate::runtime::Runtime;
pub(super) use crate::snapshot::STATUS_PATH;
use crate::snapshot::{ProviderStatus, ProviderView, Snapshot, TTFB_BUCKETS_SECONDS};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

/// Where the seed's per-rule and per-provider statistics live.
pub(super) const LOAD_BALANCING_PATH: &str = "/metrics/load-balancing";
/// Where breaker states live.
pub(super) const CIRCUIT_BREAKERS_PATH: &str = "/metrics/circuit-breakers";
/// The seed's dashboard JSON.
pub(super) const DASHBOARD_PATH: &str = "/dashboard/load-balancing";

/// The content type of the Prometheus text exposition format.
pub(super) const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET` endpoints: health, metrics, dashboard JSON, status.
pub(super) fn router(rt: &Arc<Runtime>) -> Router<Arc<Runtime>> {
    let config = rt.config();
    let m = &config.monitoring;
    let mut routes = Routes::default();
    if !m.enabled {
        return routes.router;
    }
    let health = m.health_endpoint.trim_end_matches('/');
    routes.add(health, get(health_handler));
    routes.add(&format!("{health}/providers"), get(providers_handler));
    routes.add(LOAD_BALANCING_PATH, get(load_balancing_handler));
    routes.add(CIRCUIT_BREAKERS_PATH, get(circuit_breakers_handler));
    if m.dashboard_enabled {
        routes.add(DASHBOARD_PATH, get(dashboard_handler));
    }
    routes.add(&m.metrics_endpoint, get(prometheus_handler));
    routes.add(STATUS_PATH, get(status_handler));
    routes.router
}

/// The router under construction and the paths taken, so that a configured path that collides
/// with another endpoint is skipped with a warning instead of panicking in axum.
#[derive(Default)]
struct Routes {
    router: Router<Arc<Runtime>>,
    taken: BTreeSet<String>,
}

impl Routes {
    fn add(&mut self, path: &str, handler: MethodRouter<Arc<Runtime>>) {
        let usable = path.starts_with('/') && !path.contains(['{', '}', '*']);
        if !usable || !self.taken.insert(path.to_owned()) {
            tracing::warn!(
                "monitoring endpoint {path:?} collides with another endpoint or is not a plain path: not served"
            );
            return;
        }
        self.router = std::mem::take(&mut self.router).route(path, handler);
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn health_handler(State(rt): State<Arc<Runtime>>) -> Response {
    let s = rt.snapshot_now();
    let status = if s.any_available() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, health_json(&s))
}

async fn providers_handler(State(rt): State<Arc<Runtime>>) -> Response {
    json_response(StatusCode::OK, providers_health_json(&rt.snapshot_now()))
}

async fn load_balancing_handler(State(rt): State<Arc<Runtime>>) -> Response {
    json_response(StatusCode::OK, load_balancing_json(&rt.snapshot_now()))
}

async fn circuit_breakers_handler(State(rt): State<Arc<Runtime>>) -> Response {
    json_response(StatusCode::OK, circuit_breakers_json(&rt.snapshot_now()))
}

async fn dashboard_handler(State(rt): State<Arc<Runtime>>) -> Response {
    json_response(StatusCode::OK, dashboard_json(&rt.snapshot_now()))
}

async fn status_handler(State(rt): State<Arc<Runtime>>) -> Response {
    axum::Json(rt.snapshot_now()).into_response()
}

async fn prometheus_handler(State(rt): State<Arc<Runtime>>) -> Response {
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], prometheus_text(&rt.snapshot_now())).into_response()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A balancer instant as an RFC 3339 date, or null.
fn at(s: &Snapshot, ms: Option<u64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(rfc3339(s.wall_clock(ms))))
}

/// Rounded to 0.1 ms: enough for people, stable for diffs.
fn round_ms(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

fn reload_json(s: &Snapshot) -> Value {
    json!({ "ok": s.reload.ok, "at": rfc3339(s.reload.at), "message": s.reload.message })
}

fn counters_json(c: &Counters) -> Value {
    json!({ "requests": c.requests, "successes": c.successes, "failures": c.failures, "neutral": c.neutral })
}

fn breaker_state(p: &ProviderView) -> &'static str {
    p.core.breaker.as_ref().map_or("DISABLED", |b| b.state.as_str())
}

/// `GET /health`: `"ok"` (200) while some provider can take a request, else `"unavailable"` (503).
pub(super) fn health_json(s: &Snapshot) -> Value {
    let available = s.providers.iter().filter(|p| p.available).count();
    json!({
        "status": if available > 0 { "ok" } else { "unavailable" },
        "providers": { "total": s.providers.len(), "available": available },
        "uptimeMs": s.uptime_ms,
        "config": reload_json(s),
        "state": s.state,
    })
}

/// `GET /health/providers`: per provider status and why, active-check results, last error, token.
pub(super) fn providers_health_json(s: &Snapshot) -> Value {
    let providers: Map<String, Value> = s
        .providers
        .iter()
        .map(|p| {
            let h = &p.core.health;
            let value = json!({
                "name": p.name,
                "status": p.status.as_str(),
                "reason": p.status_reason,
                "available": p.available,
                "blocked": p.core.blocked,
                "drained": p.core.drained,
                "healthCheck": {
                    "enabled": h.enabled,
                    "status": h.status.as_str(),
                    "consecutiveFailures": h.consecutive_failures,
                    "retries": h.retries,
                    "lastCheck": at(s, h.last_check_ms),
                    "nextCheck": at(s, h.next_check_ms),
                    "lastLatencyMs": h.last_latency_ms.map(round_ms),
                    "lastError": h.last_error,
                },
                "lastError": p.core.last_error.as_ref().map(|e| json!({
                    "at": rfc3339(s.wall_clock(e.at_ms)),
                    "message": e.message,
                })),
                "usage": p.core.usage.as_ref().map(|u| json!({
                    "used": u.used,
                    "limit": u.limit,
                    "remaining": u.remaining,
                    "resetAt": u.reset_at.map(rfc3339),
                    "tier": u.tier,
                    "checkedAt": rfc3339(u.checked_at),
                })),
                "usageError": p.core.usage_error,
                "sessions": p.core.sessions,
                "token": {
                    "expiresAt": p.token.expires_at.map(rfc3339),
                    "lastRefresh": p.token.last_refresh.map(rfc3339),
                    "error": p.token.error,
                },
            });
            (p.core.id.clone(), value)
        })
        .collect();
    json!({
        "status": if s.any_available() { "ok" } else { "unavailable" },
        "checkedAt": rfc3339(s.taken_at),
        "config": { "path": s.config_path, "name": s.config_name, "reload": reload_json(s) },
        "providers": providers,
    })
}

/// `GET /metrics/load-balancing`: per rule strategy, candidates, weights and picks; per provider
/// counters (overall and by category), in-flight, weights and latency.
pub(super) fn load_balancing_json(s: &Snapshot) -> Value {
    let rules: Map<String, Value> = s
        .rules
        .iter()
        .map(|r| {
            let providers: Vec<Value> = r
                .core
                .providers
                .iter()
                .map(|p| {
                    json!({
                        "id": p.id,
                        "weight": p.weight,
                        "configuredWeight": p.configured_weight,
                        "weightOverride": p.weight_override,
                        "picks": p.picks,
                    })
                })
                .collect();
            let value = json!({
                "strategy": r.core.strategy.as_str(),
                "model": r.model,
                "failover": r.core.failover,
                "healthCheck": r.core.health_check,
                "fallback": r.core.fallback,
                "providers": providers,
            });
            (r.core.category.clone(), value)
        })
        .collect();
    let providers: Map<String, Value> = s
        .providers
        .iter()
        .map(|p| {
            let c = &p.core;
            let by_category: Map<String, Value> =
                c.by_category.iter().map(|(k, v)| (k.clone(), counters_json(v))).collect();
            let value = json!({
                "status": p.status.as_str(),
                "requests": c.counters.requests,
                "successes": c.counters.successes,
                "failures": c.counters.failures,
                "neutral": c.counters.neutral,
                "inFlight": c.in_flight,
                "maxConcurrent": c.max_concurrent,
                "weight": p.effective_weight,
                "configuredWeight": c.weight,
                "weightOverride": c.weight_override,
                "ewmaMs": round_ms(c.latency.ewma_ms),
                "measured": c.latency.measured,
                "lastTtfbMs": c.latency.last_ttfb_ms.map(round_ms),
                "p50Ms": p.latency_p50_ms.map(round_ms),
                "p95Ms": p.latency_p95_ms.map(round_ms),
                "byCategory": by_category,
            });
            (c.id.clone(), value)
        })
        .collect();
    json!({
        "uptimeMs": s.uptime_ms,
        "requestsTotal": s.requests_total,
        "requestsPerSecond": (s.requests_per_sec * 100.0).round() / 100.0,
        "queue": { "waiting": s.queue.waiting, "maxQueue": s.queue.max_queue, "timeoutMs": s.queue.timeout_ms },
        "rules": rules,
        "providers": providers,
    })
}

/// `GET /metrics/circuit-breakers`: per provider breaker state, failures, thresholds, timing.
pub(super) fn circuit_breakers_json(s: &Snapshot) -> Value {
    let providers: Map<String, Value> = s
        .providers
        .iter()
        .map(|p| {
            let value = match &p.core.breaker {
                None => json!({ "enabled": false, "state": "DISABLED" }),
                Some(b) => json!({
                    "enabled": true,
                    "state": b.state.as_str(),
                    "failures": b.failures,
                    "failureThreshold": b.failure_threshold,
                    "monitoringPeriodMs": b.monitoring_period_ms,
                    "resetTimeoutMs": b.reset_timeout_ms,
                    "openedAt": at(s, b.opened_at_ms),
                    "nextProbeAt": at(s, b.next_probe_ms),
                    "nextProbeInMs": b.next_probe_ms.map(|t| s.ms_until(t)),
                    "probeInFlight": b.probe_in_flight,
                    "timesOpened": b.times_opened,
                }),
            };
            (p.core.id.clone(), value)
        })
        .collect();
    json!({ "providers": providers })
}

/// `GET /dashboard/load-balancing`: the seed's shape, exactly.
pub(super) fn dashboard_json(s: &Snapshot) -> Value {
    let providers: Map<String, Value> = s
        .providers
        .iter()
        .map(|p| {
            let value = json!({
                "status": p.status.as_str(),
                "connections": p.core.in_flight,
                "responseTime": p.core.latency.ewma_ms.round() as u64,
                "circuitBreakerState": breaker_state(p),
                "weight": p.effective_weight,
                "requestCount": p.core.counters.requests,
            });
            (p.core.id.clone(), value)
        })
        .collect();
    let strategies: Map<String, Value> =
        s.rules.iter().map(|r| (r.core.category.clone(), json!(r.core.strategy.as_str()))).collect();
    json!({ "providers": providers, "strategies": strategies })
}

/// Builds Prometheus text: each family's HELP and TYPE, then its samples.
struct Prometheus {
    out: String,
}

impl Prometheus {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", prometheus_number(value));
    }

    /// One family with one sample per provider.
    fn per_provider(
        &mut self,
        s: &Snapshot,
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&ProviderView) -> Option<f64>,
    ) {
        self.family(name, kind, help);
        for p in &s.providers {
            if let Some(v) = value(p) {
                self.sample(name, &[("provider", &p.core.id)], v);
            }
        }
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn prometheus_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// `GET /metrics`: the Prometheus text exposition format (version 0.0.4), names prefixed `ccr_`,
/// times in seconds, counters ending in `_total`.
pub(super) fn prometheus_text(s: &Snapshot) -> String {
    let mut m = Prometheus { out: String::with_capacity(8 * 1024) };

    m.family("ccr_uptime_seconds", "gauge", "Time since the instance started.");
    m.sample("ccr_uptime_seconds", &[], s.uptime_ms as f64 / 1000.0);
    m.family("ccr_client_requests_total", "counter", "Client requests received on /v1/messages.");
    m.sample("ccr_client_requests_total", &[], s.requests_total as f64);
    m.family("ccr_config_last_reload_ok", "gauge", "1 if the last config load or reload was accepted.");
    m.sample("ccr_config_last_reload_ok", &[], flag(s.reload.ok));
    m.family("ccr_queue_waiting", "gauge", "Requests waiting for a provider below its concurrency cap.");
    m.sample("ccr_queue_waiting", &[], s.queue.waiting as f64);

    m.family(
        "ccr_upstream_requests_total",
        "counter",
        "Finished upstream attempts by provider, request category and outcome (success, failure, neutral).",
    );
    for p in &s.providers {
        for (category, c) in &p.core.by_category {
            for (outcome, n) in [("success", c.successes), ("failure", c.failures), ("neutral", c.neutral)] {
                m.sample(
                    "ccr_upstream_requests_total",
                    &[("provider", &p.core.id), ("category", category), ("outcome", outcome)],
                    n as f64,
                );
            }
        }
    }

    m.family(
        "ccr_upstream_ttfb_seconds",
        "histogram",
        "Upstream time to first byte (whole request time when no byte came first).",
    );
    for p in &s.providers {
        let h = &p.ttfb_histogram;
        let id = p.core.id.as_str();
        for (bound, count) in TTFB_BUCKETS_SECONDS.iter().zip(&h.buckets) {
            let le = prometheus_number(*bound);
            m.sample("ccr_upstream_ttfb_seconds_bucket", &[("provider", id), ("le", &le)], *count as f64);
        }
        m.sample("ccr_upstream_ttfb_seconds_bucket", &[("provider", id), ("le", "+Inf")], h.count as f64);
        m.sample("ccr_upstream_ttfb_seconds_sum", &[("provider", id)], h.sum_seconds);
        m.sample("ccr_upstream_ttfb_seconds_count", &[("provider", id)], h.count as f64);
    }

    m.per_provider(
        s,
        "ccr_account_credits_used",
        "gauge",
        "Credits used this month (last report + metered).",
        |p| p.core.usage.as_ref().map(|u| u.used),
    );
    m.per_provider(
        s,
        "ccr_account_credits_limit",
        "gauge",
        "Credits this month (base + free trial + bonuses).",
        |p| p.core.usage.as_ref().map(|u| u.limit),
    );
    m.per_provider(
        s,
        "ccr_account_credits_reset_timestamp_seconds",
        "gauge",
        "When the account's credits reset, Unix seconds.",
        |p| p.core.usage.as_ref().and_then(|u| u.reset_at).map(|t| t.timestamp() as f64),
    );
    m.per_provider(s, "ccr_sessions_bound", "gauge", "Conversations bound to the account.", |p| {
        Some(p.core.sessions as f64)
    });
    m.per_provider(s, "ccr_provider_in_flight", "gauge", "Upstream requests in flight.", |p| {
        Some(f64::from(p.core.in_flight))
    });
    m.per_provider(s, "ccr_provider_max_concurrent", "gauge", "In-flight cap (0: none).", |p| {
        Some(f64::from(p.core.max_concurrent))
    });
    m.per_provider(s, "ccr_provider_available", "gauge", "1 if the provider can take a request now.", |p| {
        Some(flag(p.available))
    });
    m.family("ccr_provider_status", "gauge", "1 for the provider's current status, 0 for the others.");
    for p in &s.providers {
        for status in ProviderStatus::ALL {
            m.sample(
                "ccr_provider_status",
                &[("provider", &p.core.id), ("status", status.as_str())],
                flag(p.status == status),
            );
        }
    }
    m.per_provider(
        s,
        "ccr_provider_weight",
        "gauge",
        "Weight in force outside rule-level overrides (run-time override, else configured).",
        |p| Some(f64::from(p.effective_weight)),
    );
    m.per_provider(s, "ccr_provider_configured_weight", "gauge", "Weight from the config file.", |p| {
        Some(f64::from(p.core.weight))
    });
    m.per_provider(
        s,
        "ccr_provider_latency_ewma_seconds",
        "gauge",
        "Peak-EWMA of time to first byte used by the response-time strategy.",
        |p| Some(p.core.latency.ewma_ms / 1000.0),
    );
    m.per_provider(
        s,
        "ccr_token_expiry_timestamp_seconds",
        "gauge",
        "When the provider's access token expires, Unix time.",
        |p| p.token.expires_at.map(|t| t.timestamp_millis() as f64 / 1000.0),
    );

    m.family("ccr_rule_weight", "gauge", "Weight a routing rule gives each of its providers now.");
    for r in &s.rules {
        for p in &r.core.providers {
            m.sample(
                "ccr_rule_weight",
                &[("rule", &r.core.category), ("provider", &p.id)],
                f64::from(p.weight),
            );
        }
    }
    m.family("ccr_rule_picks_total", "counter", "Times a routing rule picked each provider.");
    for r in &s.rules {
        for p in &r.core.providers {
            m.sample(
                "ccr_rule_picks_total",
                &[("rule", &r.core.category), ("provider", &p.id)],
                p.picks as f64,
            );
        }
    }

    m.family(
        "ccr_circuit_breaker_state",
        "gauge",
        "1 for the breaker's current state (closed, open, half_open), 0 for the others.",
    );
    for p in &s.providers {
        if let Some(b) = &p.core.breaker {
            for (state, label) in [
                (BreakerState::Closed, "closed"),
                (BreakerState::Open, "open"),
                (BreakerState::HalfOpen, "half_open"),
            ] {
                m.sample(
                    "ccr_circuit_breaker_state",
                    &[("provider", &p.core.id), ("state", label)],
                    flag(b.state == state),
                );
            }
        }
    }
    m.per_provider(
        s,
        "ccr_circuit_breaker_failures",
        "gauge",
        "Failures counted within the breaker's monitoring period.",
        |p| p.core.breaker.as_ref().map(|b| f64::from(b.failures)),
    );
    m.per_provider(s, "ccr_circuit_breaker_opened_total", "counter", "Times the breaker opened.", |p| {
        p.core.breaker.as_ref().map(|b| b.times_opened as f64)
    });
    m.per_provider(
        s,
        "ccr_health_check_healthy",
        "gauge",
        "1 if active health checks pass, 0 if they mark the provider unhealthy (absent: no checks).",
        |p| (p.core.health.enabled).then(|| flag(p.core.health.status != HealthStatus::Unhealthy)),
    );
    m.per_provider(
        s,
        "ccr_health_check_consecutive_failures",
        "gauge",
        "Failed health checks in a row.",
        |p| p.core.health.enabled.then_some(f64::from(p.core.health.consecutive_failures)),
    );
    key_metrics(&mut m, s);
    m.out
}

/// The developers' keys (only when `server.keys` has some): per instance, except the credits,
/// which are pool-wide with a shared backend.
fn key_metrics(m: &mut Prometheus, s: &Snapshot) {
    let keys = &s.keys.keys;
    if keys.is_empty() {
        return;
    }
    m.family(
        "ccr_key_requests_total",
        "counter",
        "Requests received with each developer key (admitted or not).",
    );
    for k in keys {
        m.sample("ccr_key_requests_total", &[("key", &k.name)], k.requests as f64);
    }
    m.family("ccr_key_credits_used", "gauge", "Credits each developer key spent this calendar month (UTC).");
    for k in keys {
        m.sample("ccr_key_credits_used", &[("key", &k.name)], k.credits_this_month);
    }
    m.family(
        "ccr_key_limited_total",
        "counter",
        "Requests of each developer key refused by a limit (budget, rate, concurrency, model).",
    );
    for k in keys {
        for reason in crate::keys::LIMIT_REASONS {
            let n = k.limited.get(reason).copied().unwrap_or(0);
            m.sample("ccr_key_limited_total", &[("key", &k.name), ("reason", reason)], n as f64);
        }
    }
    m.family("ccr_key_live_requests", "gauge", "Requests of each developer key in flight on this instance.");
    for k in keys {
        m.sample("ccr_key_live_requests", &[("key", &k.name)], f64::from(k.live_requests));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::Command;
    use crate::config::{ConfigSource, parse_config};

    const CONFIG: &str = r#"{
      "routing": {"rules": {
        "default": {"providers": ["a", "b"],
                    "loadBalancing": {"strategy": "weighted-round-robin", "weights": {"a": 7, "b": 3}}},
        "search": {"providers": ["b"], "loadBalancing": {"strategy": "response-time"}}
      }},
      "providers": {
        "a": {"weight": 7, "endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/ccr/a.json"},
        "b": {"weight": 3, "endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/ccr/b.json",
              "circuitBreaker": {"enabled": false}}
      }
    }"#;

    fn snapshot(setup: impl FnOnce(&Runtime)) -> Snapshot {
        let rt = Runtime::new(parse_config(CONFIG).expect("config"), ConfigSource::Embedded);
        setup(&rt);
        rt.snapshot_now()
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
    }

    #[test]
    fn dashboard_has_the_seed_shape() {
        let s = snapshot(|rt| {
            rt.balancer.apply(Command::SetWeight { provider: "a".into(), rule: None, weight: 9 }).expect("w");
        });
        let d = dashboard_json(&s);
        assert_eq!(keys(&d), ["providers", "strategies"]);
        let a = &d["providers"]["a"];
        assert_eq!(
            keys(a),
            ["status", "connections", "responseTime", "circuitBreakerState", "weight", "requestCount"]
        );
        assert_eq!(a["weight"], 9);
        assert_eq!(a["circuitBreakerState"], "CLOSED");
        assert_eq!(d["providers"]["b"]["circuitBreakerState"], "DISABLED");
        assert_eq!(d["strategies"], json!({"default": "weighted-round-robin", "search": "response-time"}));
    }

    #[test]
    fn health_turns_unavailable_when_nothing_can_serve() {
        let s = snapshot(|_| {});
        assert_eq!(health_json(&s)["status"], "ok");
        let s = snapshot(|rt| {
            for id in ["a", "b"] {
                rt.balancer.apply(Command::Drain(id.into())).expect("drain");
            }
        });
        let h = health_json(&s);
        assert_eq!(h["status"], "unavailable");
        assert_eq!(h["providers"], json!({"total": 2, "available": 0}));
        let p = providers_health_json(&s);
        assert_eq!(p["providers"]["a"]["status"], "draining");
        assert_eq!(p["providers"]["a"]["blocked"], json!(["drained"]));
    }

    #[test]
    fn breakers_and_load_balancing_shapes() {
        let s = snapshot(|_| {});
        let b = circuit_breakers_json(&s);
        assert_eq!(b["providers"]["a"]["state"], "CLOSED");
        assert_eq!(b["providers"]["a"]["failureThreshold"], 5);
        assert_eq!(b["providers"]["b"], json!({"enabled": false, "state": "DISABLED"}));
        let lb = load_balancing_json(&s);
        assert_eq!(
            lb["rules"]["default"]["providers"][0],
            json!({
                "id": "a", "weight": 7, "configuredWeight": 7, "weightOverride": null, "picks": 0
            })
        );
        assert_eq!(lb["providers"]["b"]["maxConcurrent"], 16);
    }

    #[test]
    fn prometheus_families_are_declared_once_and_labels_escaped() {
        let text = prometheus_text(&snapshot(|_| {}));
        let mut declared = BTreeSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).expect("name");
            assert!(declared.insert(name.to_owned()), "{name} declared twice");
        }
        assert!(text.contains("ccr_upstream_ttfb_seconds_bucket{provider=\"a\",le=\"+Inf\"} 0\n"));
        assert!(text.contains("ccr_rule_weight{rule=\"default\",provider=\"b\"} 3\n"));
        assert!(text.contains("ccr_provider_status{provider=\"a\",status=\"healthy\"} 1\n"));
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(prometheus_number(0.25), "0.25");
        assert_eq!(prometheus_number(120.0), "120");
    }
}

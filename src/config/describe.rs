//! The human-readable report of a resolved config, printed by `ccr check`.

use super::{Category, Config, ConfigSource};
use std::fmt::Write;

impl Config {
    /// The routing table (category → strategy → providers with effective weights → model) and
    /// every provider's settings with defaults filled in.
    pub fn describe(&self, source: &ConfigSource) -> String {
        let mut out = String::new();
        let title = self.name.as_deref().unwrap_or("ccr config");
        match &self.description {
            Some(d) => writeln!(out, "{title} — {d}"),
            None => writeln!(out, "{title}"),
        }
        .ok();
        writeln!(out, "source: {}", source.label()).ok();
        writeln!(
            out,
            "listen: {}   routing: {}   longcontext above {} tokens   background below {} tokens",
            self.listen_addr(),
            self.routing.strategy,
            self.routing.long_context_threshold,
            self.routing.background_max_tokens
        )
        .ok();
        writeln!(
            out,
            "api key: {}   max body: {} bytes   monitoring: {}",
            if self.server.api_key.is_some() { "required" } else { "none (loopback only)" },
            self.server.max_body_bytes,
            if self.monitoring.enabled {
                format!(
                    "{} {} {}/providers{}",
                    self.monitoring.metrics_endpoint,
                    self.monitoring.health_endpoint,
                    self.monitoring.health_endpoint,
                    if self.monitoring.dashboard_enabled { " /dashboard/load-balancing" } else { "" }
                )
            } else {
                "off".into()
            }
        )
        .ok();
        if self.state.is_redis() {
            writeln!(
                out,
                "state: redis {}   key prefix {:?}   timeout {} ms   leases {} ms (shared with every instance using them)",
                self.state.shown_url().unwrap_or_default(),
                self.state.key_prefix,
                self.state.timeout,
                self.state.lease_ttl
            )
            .ok();
        }

        writeln!(out, "\nRouting").ok();
        let rows: Vec<[String; 5]> = Category::ALL
            .iter()
            .map(|&category| {
                let Ok((rule_name, rule)) = self.rule(category) else {
                    let none = String::new;
                    return [category.to_string(), "(no rule)".into(), none(), none(), none()];
                };
                if rule_name != category.as_str() {
                    return [
                        category.to_string(),
                        format!("(uses the {rule_name} rule)"),
                        String::new(),
                        String::new(),
                        String::new(),
                    ];
                }
                let providers = rule
                    .providers
                    .iter()
                    .map(|id| format!("{id} ({})", self.effective_weight(rule, id)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut options = Vec::new();
                if self.effective_failover(rule) {
                    options.push("failover".to_string());
                }
                if rule.load_balancing.health_check {
                    options.push("health-checked".into());
                }
                if let Some(fb) = &rule.load_balancing.fallback {
                    options.push(format!("fallback {fb}"));
                }
                [
                    category.to_string(),
                    self.effective_strategy(rule).to_string(),
                    providers,
                    rule.model.clone().unwrap_or_else(|| "(mapped from request)".into()),
                    options.join(", "),
                ]
            })
            .collect();
        table(&mut out, ["category", "strategy", "providers (weight)", "model", "options"], &rows);

        writeln!(out, "\nProviders").ok();
        for (id, p) in &self.providers {
            match &p.name {
                Some(name) => writeln!(out, "  {id}  \"{name}\""),
                None => writeln!(out, "  {id}"),
            }
            .ok();
            writeln!(out, "    type {}, auth {}, token {}", p.kind, p.auth_method, p.token_path).ok();
            writeln!(
                out,
                "    endpoint {}  auth endpoint {}  region {}",
                p.api_base(),
                p.auth_base(),
                p.region
            )
            .ok();
            writeln!(
                out,
                "    weight {}, max concurrent {}, timeouts: connect {} ms, first byte {} ms, idle {} ms",
                p.weight, p.max_concurrent_requests, p.connect_timeout, p.first_byte_timeout, p.idle_timeout
            )
            .ok();
            match p.active_health_check() {
                Some(hc) => writeln!(
                    out,
                    "    health check: every {} ms (±10 %), timeout {} ms, unhealthy after {} failed probes, probe {}",
                    hc.interval,
                    hc.timeout,
                    hc.retries,
                    match (p.health_probe_path(), &hc.endpoint) {
                        (Some(ep), _) => format!("GET {}{ep}", p.api_base()),
                        (None, Some(ep)) => format!("getUsageLimits (the usage probe; the Kiro API serves no {ep})"),
                        (None, None) => "getUsageLimits".into(),
                    }
                ),
                None => writeln!(out, "    health check: off"),
            }
            .ok();
            match p.active_breaker() {
                Some(cb) => writeln!(
                    out,
                    "    circuit breaker: opens after {} failures within {} ms, one probe after {} ms",
                    cb.failure_threshold, cb.monitoring_period, cb.reset_timeout
                ),
                None => writeln!(out, "    circuit breaker: off"),
            }
            .ok();
            writeln!(
                out,
                "    metrics: {}, latency window {} samples",
                if p.metrics.enabled { "on" } else { "off" },
                p.metrics.response_time_window
            )
            .ok();
        }
        out
    }
}

/// A plain left-aligned text table with a two-space indent.
fn table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            write!(s, "  {cell:<w$}").ok();
        }
        writeln!(out, "{}", s.trim_end()).ok();
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigSource, load};

    #[test]
    fn a_redis_state_is_described_without_its_password() {
        let (mut config, _) = load(&ConfigSource::Embedded).unwrap();
        let memory = config.describe(&ConfigSource::Embedded);
        assert!(!memory.contains("state:"), "the memory default adds nothing: {memory}");
        config.state.backend = "redis".into();
        config.state.url = Some("rediss://pool:s3cret@cache.lan:6380/1".into());
        let text = config.describe(&ConfigSource::Embedded);
        assert!(text.contains("state: redis rediss://pool:***@cache.lan:6380/1"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn describes_routes_and_providers_with_defaults() {
        let (config, _) = load(&ConfigSource::Embedded).unwrap();
        let text = config.describe(&ConfigSource::Embedded);
        assert!(
            text.contains(
                "default      weighted-round-robin  codewhisperer-primary (70), codewhisperer-secondary (30)"
            ),
            "{text}"
        );
        assert!(text.contains("longcontext  single"), "{text}");
        assert!(text.contains("fallback codewhisperer-secondary"), "{text}");
        assert!(
            text.contains(
                "circuit breaker: opens after 3 failures within 10000 ms, one probe after 45000 ms"
            ),
            "{text}"
        );
        assert!(text.contains("endpoint https://q.us-east-1.amazonaws.com"), "{text}");
    }
}

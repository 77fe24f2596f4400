//! The validated config mapped onto the balancer's input.

use crate::balancer::{BalancerSpec, BreakerParams, HealthParams, ProviderSpec, RuleSpec, StrategyKind};
use crate::config::{Category, Config, Strategy, ms};

fn strategy_kind(s: Strategy) -> StrategyKind {
    match s {
        Strategy::RoundRobin => StrategyKind::RoundRobin,
        Strategy::WeightedRoundRobin => StrategyKind::WeightedRoundRobin,
        Strategy::LeastConnections => StrategyKind::LeastConnections,
        Strategy::ResponseTime => StrategyKind::ResponseTime,
        Strategy::Single => StrategyKind::Single,
        Strategy::Credits => StrategyKind::Credits,
    }
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// Map the validated config onto the balancer's input.
pub fn balancer_spec(config: &Config) -> BalancerSpec {
    let providers = config
        .providers
        .iter()
        .map(|(id, p)| ProviderSpec {
            id: id.clone(),
            weight: to_u32(p.weight),
            max_concurrent: to_u32(p.max_concurrent_requests),
            breaker: p.active_breaker().map(|b| BreakerParams {
                failure_threshold: to_u32(b.failure_threshold),
                monitoring_period: ms(b.monitoring_period),
                reset_timeout: ms(b.reset_timeout),
            }),
            health: p.active_health_check().map(|h| HealthParams {
                interval: h.interval(),
                timeout: h.timeout(),
                retries: to_u32(h.retries),
            }),
            latency_window: if p.metrics.enabled {
                usize::try_from(p.metrics.response_time_window).unwrap_or(100)
            } else {
                0
            },
            usage: p.usage.enabled.then(|| crate::balancer::UsageParams {
                refresh_interval: ms(p.usage.refresh_interval).max(crate::balancer::MIN_USAGE_REFRESH),
                reserve: p.usage.reserve.max(0.0),
            }),
        })
        .collect();
    let rules = Category::ALL
        .iter()
        .filter_map(|c| config.routing.rules.get(c.as_str()).map(|rule| (c, rule)))
        .map(|(category, rule)| RuleSpec {
            category: category.to_string(),
            strategy: strategy_kind(config.effective_strategy(rule)),
            providers: rule.providers.clone(),
            weights: rule.load_balancing.weights.iter().map(|(id, w)| (id.clone(), to_u32(*w))).collect(),
            failover: config.effective_failover(rule),
            health_check: rule.load_balancing.health_check,
            fallback: rule.load_balancing.fallback.clone(),
            sticky: rule.load_balancing.sticky,
            sticky_ttl: ms(rule.load_balancing.sticky_ttl),
        })
        .collect();
    BalancerSpec { providers, rules, ..BalancerSpec::default() }
}

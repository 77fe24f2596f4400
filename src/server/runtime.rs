//! The live state of a running ccr: the current config and provider clients (swapped whole on
//! reload) next to the balancer (which keeps its state across reloads).

use crate::balancer::{
    Balancer, BalancerSpec, BreakerParams, HealthParams, ProviderSpec, RuleSpec, StrategyKind,
};
use crate::classify::Thresholds;
use crate::config::{self, Category, Config, ConfigSource, Strategy, ms};
use crate::providers::codewhisperer::client::{CodeWhispererClient, HttpClients};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// One consistent view of the config and the clients built from it.
pub struct Live {
    pub config: Arc<Config>,
    pub clients: HashMap<String, Arc<CodeWhispererClient>>,
    pub thresholds: Thresholds,
}

/// The outcome of the last config (re)load, for the dashboard header and the snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadStatus {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub message: String,
}

/// Everything a running instance shares between the proxy, the monitors and the dashboard.
pub struct Runtime {
    live: RwLock<Arc<Live>>,
    pub balancer: Arc<Balancer>,
    http: HttpClients,
    pub source: ConfigSource,
    pub started_at: DateTime<Utc>,
    listen: Mutex<Option<SocketAddr>>,
    reload: Mutex<ReloadStatus>,
    /// Client requests received on `/v1/messages` (for requests/s).
    pub requests_total: AtomicU64,
    /// Serialises reloads (file watcher, admin API and dashboard may ask at once).
    reload_lock: Mutex<()>,
    /// The published operator snapshot and what building it needs (see [`crate::snapshot`]).
    pub(crate) snapshot_hub: crate::snapshot::SnapshotHub,
}

impl Runtime {
    pub fn new(config: Config, source: ConfigSource) -> Arc<Runtime> {
        let http = HttpClients::default();
        let balancer = Balancer::new(balancer_spec(&config));
        let live = build_live(config, &http, None);
        Arc::new(Runtime {
            live: RwLock::new(Arc::new(live)),
            balancer,
            http,
            source,
            started_at: Utc::now(),
            listen: Mutex::new(None),
            reload: Mutex::new(ReloadStatus { at: Utc::now(), ok: true, message: "loaded".into() }),
            requests_total: AtomicU64::new(0),
            reload_lock: Mutex::new(()),
            snapshot_hub: crate::snapshot::SnapshotHub::default(),
        })
    }

    /// The current config and clients (cheap: one `Arc` clone).
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.live().config.clone()
    }

    pub fn set_listen_addr(&self, addr: SocketAddr) {
        *self.listen.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        *self.listen.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn reload_status(&self) -> ReloadStatus {
        self.reload.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count_request(&self) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-read the config file and swap it in. A bad file keeps the old config; the error is
    /// logged and kept in [`reload_status`](Self::reload_status).
    pub fn reload(&self) -> Result<String, String> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = match config::load(&self.source) {
            Ok((config, _)) => {
                self.apply_config(config);
                Ok(format!("reloaded {}", self.source.label()))
            }
            Err(e) => {
                Err(format!("config not reloaded, keeping the previous one: {}", e.problems().join("; ")))
            }
        };
        let status = ReloadStatus {
            at: Utc::now(),
            ok: result.is_ok(),
            message: match &result {
                Ok(m) | Err(m) => m.clone(),
            },
        };
        match &result {
            Ok(m) => tracing::info!("{m}"),
            Err(m) => tracing::error!("{m}"),
        }
        *self.reload.lock().unwrap_or_else(|e| e.into_inner()) = status;
        self.snapshot_changed();
        result
    }

    /// Swap in a validated config in one step: the balancer keeps the live state of providers
    /// that persist; clients are reused where the provider's settings did not change.
    pub fn apply_config(&self, config: Config) {
        let old = self.live();
        self.balancer.reconfigure(balancer_spec(&config));
        let live = build_live(config, &self.http, Some(&old));
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }
}

fn build_live(config: Config, http: &HttpClients, old: Option<&Live>) -> Live {
    let clients = config
        .providers
        .iter()
        .map(|(id, p)| {
            let reused = old.and_then(|old| {
                let same = old.config.providers.get(id).is_some_and(|before| before == p);
                same.then(|| old.clients.get(id).cloned()).flatten()
            });
            (id.clone(), reused.unwrap_or_else(|| CodeWhispererClient::new(id, p, http)))
        })
        .collect();
    let thresholds = Thresholds::from_config(&config);
    Live { config: Arc::new(config), clients, thresholds }
}

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

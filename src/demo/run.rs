//! `ccr demo`: the seed's two providers as simulated upstreams on loopback (each with its own
//! token file in a temp dir), a real ccr in front of them, and synthetic Claude Code traffic
//! through the real proxy port. Faults are injected per upstream, from the dashboard's demo keys
//! or, headless, on a fixed script.

use super::pool::{Account, SimPool, SimPoolBuilder};
use super::traffic::{self, TrafficOptions, TrafficStats};
use super::upstream::{ErrorKind, SimOptions, SimUpstream};
use crate::app::dashboard::{DemoControls, FaultError};
use crate::app::{self, ListenOverride, Running};
use crate::config::ConfigSource;
use crate::tui::DemoAction;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The provider ids of the seed config, each backed by one simulated upstream.
pub const DEMO_PROVIDERS: [&str; 2] = ["codewhisperer-primary", "codewhisperer-secondary"];

/// `longcontext` threshold used by the demo, so long requests stay around 100 KB.
const DEMO_LONG_CONTEXT: u64 = 20_000;

/// Fault injection into the demo upstreams, driven by the dashboard's demo keys (or the
/// headless script).
pub struct Faults {
    upstreams: Vec<Arc<SimUpstream>>,
    /// Current (latency, error rate) of each upstream, as the demo set them.
    knobs: std::sync::Mutex<Vec<(Duration, f64)>>,
}

/// One latency step of the demo keys.
const LATENCY_STEP: Duration = Duration::from_millis(250);
/// One error-rate step of the demo keys.
const ERROR_STEP: f64 = 0.2;

impl Faults {
    /// Inject a fault into one provider's upstream; returns what happened, for the log.
    pub fn inject(&self, provider: &str, action: DemoAction) -> Result<String, FaultError> {
        let index = DEMO_PROVIDERS
            .iter()
            .position(|id| *id == provider)
            .ok_or_else(|| FaultError::NotADemoUpstream(provider.to_owned()))?;
        let up = &self.upstreams[index];
        let mut knobs = self.knobs.lock().unwrap_or_else(|e| e.into_inner());
        let (latency, error_rate) = &mut knobs[index];
        let message = match action {
            DemoAction::TakeDown => {
                up.set_down(true);
                "taken down (connections refused)".to_string()
            }
            DemoAction::BringBack => {
                up.set_down(false);
                "brought back up".to_string()
            }
            DemoAction::AddLatency | DemoAction::RemoveLatency => {
                *latency = if action == DemoAction::AddLatency {
                    *latency + LATENCY_STEP
                } else {
                    latency.saturating_sub(LATENCY_STEP)
                };
                up.set_latency(*latency);
                format!("latency {} ms", latency.as_millis())
            }
            DemoAction::RaiseErrors | DemoAction::LowerErrors => {
                *error_rate = if action == DemoAction::RaiseErrors {
                    (*error_rate + ERROR_STEP).min(1.0)
                } else {
                    (*error_rate - ERROR_STEP).max(0.0)
                };
                up.set_error_kind(ErrorKind::Status500);
                up.set_error_rate(*error_rate);
                format!("500-error rate {:.0} %", *error_rate * 100.0)
            }
            DemoAction::ExhaustCredits => {
                up.update_account(super::account::SimAccount::exhaust);
                "credits used up (its next request gets 402 MONTHLY_REQUEST_COUNT)".to_string()
            }
        };
        tracing::info!("demo: {provider} {message}");
        Ok(format!("{provider}: {message}"))
    }
}

impl DemoControls for Faults {
    fn apply(&self, provider: &str, action: DemoAction) -> Result<String, FaultError> {
        self.inject(provider, action)
    }
}

/// A running demo.
pub struct Demo {
    /// The (first) instance: the dashboard's.
    pub running: Running,
    /// With `--instances N`: the other instances in front of the same pool, sharing its state.
    pub others: Vec<Running>,
    /// The demo's private `redis-server`, when it started one.
    redis: Option<super::redis::RedisServer>,
    /// The upstreams, their token files and the config (in a temp dir that lives with the demo).
    pub pool: SimPool,
    pub traffic: Arc<TrafficStats>,
    pub faults: Arc<Faults>,
    workers: Vec<JoinHandle<()>>,
}

/// Options of a demo run.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    pub listen: ListenOverride,
    pub seed: u64,
    /// Traffic workers (concurrent simulated Claude Code sessions).
    pub workers: usize,
    /// ccr instances in front of the pool (0 or 1: one; more share the state through Redis).
    pub instances: usize,
    /// The Redis the instances share; `None` with several instances: a private `redis-server`.
    pub redis: Option<String>,
}

/// The shared-state section of a demo with several instances (or an explicit Redis): the URL
/// given, else a private `redis-server` (returned, to be kept alive). Each demo run uses its
/// own key prefix: a Redis used before keeps nothing that could mislead this run.
fn demo_state(
    options: &DemoOptions,
) -> color_eyre::Result<Option<(serde_json::Value, Option<super::redis::RedisServer>)>> {
    if options.instances <= 1 && options.redis.is_none() {
        return Ok(None);
    }
    let (url, server) = match &options.redis {
        Some(url) => (url.clone(), None),
        None => {
            let server = super::redis::RedisServer::start().map_err(|e| {
                color_eyre::eyre::eyre!(
                    "--instances {} shares the pool through Redis: give --redis URL, or install redis-server ({e})",
                    options.instances
                )
            })?;
            (server.url(), Some(server))
        }
    };
    let prefix = format!("ccr-demo-{}:", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    Ok(Some((json!({"state": {"backend": "redis", "url": url, "keyPrefix": prefix}}), server)))
}

/// Where instance `i` listens: the first where asked, the others on the next ports (any free
/// port when the first's is 0 or the next one is taken).
fn listen_of(first: &ListenOverride, i: usize) -> ListenOverride {
    if i == 0 {
        return first.clone();
    }
    let host = first.host.clone();
    let port = first
        .port
        .filter(|p| *p != 0)
        .and_then(|p| p.checked_add(u16::try_from(i).ok()?))
        .filter(|p| std::net::TcpListener::bind((host.as_deref().unwrap_or("127.0.0.1"), *p)).is_ok());
    ListenOverride { host, port: Some(port.unwrap_or(0)) }
}

/// The demo's accounts: a roomy PRO+ account with a bonus, and a FREE account on a free trial
/// that is two thirds used, so the credits gauges, tiers and the `x` key have something to show.
pub fn demo_account(index: usize) -> super::account::SimAccount {
    use super::account::SimAccount;
    if index == 0 {
        let mut a = SimAccount::new("KIRO PRO+", 2000.0, 412.5);
        a.bonuses = vec![(20.0, 250.0)];
        a
    } else {
        let mut a = SimAccount::new("KIRO FREE", 50.0, 31.0);
        a.free_trial = Some((120.0, 150.0));
        a
    }
}

/// The seed's providers as simulated upstreams, and the seed config pointed at them with timers
/// sized for a demo: health checks every 5 s, breakers that reopen for a probe after 8–10 s.
/// Upstream `i` answers after 120 or 220 ms and paces its frames 25 ms apart; returns also the
/// starting (latency, error rate) of each.
pub fn demo_pool(seed: u64) -> (SimPoolBuilder, Vec<(Duration, f64)>) {
    let mut pool = SimPool::seed()
        .temp_prefix("ccr-demo-")
        .config_file("demo-config.json")
        .provider_defaults(json!({
            "connectTimeout": 1000,
            "firstByteTimeout": 10000,
            "idleTimeout": 10000,
            "healthCheck": {"interval": 5000, "timeout": 1000},
        }))
        .merge(json!({
            "routing": {"longContextThreshold": DEMO_LONG_CONTEXT},
            "name": "ccr demo (simulated CodeWhisperer upstreams)",
        }));
    let mut knobs = Vec::new();
    for (i, id) in DEMO_PROVIDERS.iter().enumerate() {
        let latency = Duration::from_millis(if i == 0 { 120 } else { 220 });
        knobs.push((latency, 0.0));
        let reset_timeout = if i == 0 { 10000 } else { 8000 };
        pool = pool.account(
            *id,
            Account::new()
                .sim(SimOptions {
                    seed: seed.wrapping_add(i as u64),
                    latency,
                    chunk_delay: Duration::from_millis(25),
                    ..SimOptions::named(*id)
                })
                .token_file(format!("kiro-auth-token-{id}.json"))
                .provider(json!({"circuitBreaker": {"resetTimeout": reset_timeout}})),
        );
    }
    (pool, knobs)
}

impl Demo {
    /// Start the upstreams, ccr and the traffic.
    pub async fn start(options: DemoOptions) -> color_eyre::Result<Demo> {
        let (mut pool, knobs) = demo_pool(options.seed);
        let state = demo_state(&options)?;
        let mut redis = None;
        if let Some((section, server)) = state {
            pool = pool.merge(section);
            redis = server;
        }
        let pool = pool.start().await?;
        for (i, up) in pool.upstreams.iter().enumerate() {
            up.set_account(Some(demo_account(i)));
        }
        let config = pool.parsed_config().map_err(|e| color_eyre::eyre::eyre!("demo config: {e}"))?;
        let running = app::launch(
            config.clone(),
            ConfigSource::Flag(pool.config_path.clone()),
            listen_of(&options.listen, 0),
        )
        .await?;
        let mut others = Vec::new();
        for i in 1..options.instances.max(1) {
            let listen = listen_of(&options.listen, i);
            others.push(
                app::launch(config.clone(), ConfigSource::Flag(pool.config_path.clone()), listen).await?,
            );
        }
        let (workers, stats) = traffic::spawn(
            TrafficOptions {
                base_url: running.base_url(),
                more_base_urls: others.iter().map(Running::base_url).collect(),
                workers: options.workers.max(1),
                think_time: (Duration::from_millis(100), Duration::from_millis(900)),
                seed: options.seed,
                long_context_tokens: DEMO_LONG_CONTEXT,
                api_key: None,
            },
            running.shutdown_signal(),
        );
        let faults =
            Arc::new(Faults { upstreams: pool.upstreams.clone(), knobs: std::sync::Mutex::new(knobs) });
        Ok(Demo { running, others, redis, pool, traffic: stats, faults, workers })
    }

    /// Every instance's address, the dashboard's first.
    pub fn base_urls(&self) -> Vec<String> {
        std::iter::once(&self.running).chain(&self.others).map(Running::base_url).collect()
    }

    /// Stop the traffic, ccr and the upstreams.
    pub async fn shutdown(self) {
        let Demo { running, others, redis, pool, workers, .. } = self;
        running.shutdown().await;
        for other in others {
            other.shutdown().await;
        }
        for w in workers {
            let _ = w.await;
        }
        pool.shutdown().await;
        drop(redis);
    }
}

/// `ccr demo --headless`: run for `duration` with the status printer; the primary goes down at
/// one third and comes back at two thirds, so failover and the breaker show. Returns the
/// traffic summary and whether no request got an error answer (streams cut mid-answer by the
/// outage are counted apart: they had started and cannot be retried).
pub async fn run_headless(options: DemoOptions, duration: Duration) -> color_eyre::Result<(String, bool)> {
    let demo = Demo::start(options).await?;
    println!(
        "ccr demo listening on {} (simulated upstreams: {})",
        demo.base_urls().join(" and "),
        demo.pool.upstreams.iter().map(|u| u.base_url()).collect::<Vec<_>>().join(", ")
    );
    if let Some(state) = demo.running.runtime.config().state.url.as_deref().map(crate::state::redact_url) {
        println!(
            "{} instances share the pool's state through {state}; each conversation's turns alternate between them",
            1 + demo.others.len()
        );
    }
    println!("{}", crate::firstrun::claude_code_env(&demo.running.base_url(), false));
    let mut printers =
        vec![crate::status::spawn_printer(demo.running.snapshots(), demo.running.shutdown_signal())];
    for other in &demo.others {
        printers.push(crate::status::spawn_printer(other.snapshots(), other.shutdown_signal()));
    }
    let third = duration / 3;
    tokio::time::sleep(third).await;
    let say = |r: Result<String, FaultError>| println!("{}", r.unwrap_or_else(|e| e.to_string()));
    say(demo.faults.inject(DEMO_PROVIDERS[0], DemoAction::TakeDown));
    tokio::time::sleep(third).await;
    say(demo.faults.inject(DEMO_PROVIDERS[0], DemoAction::BringBack));
    tokio::time::sleep(duration.saturating_sub(third * 2)).await;
    for printer in printers {
        printer.abort();
    }
    let summary = demo.traffic.summary();
    let errors = demo.traffic.errors.load(std::sync::atomic::Ordering::Relaxed);
    demo.shutdown().await;
    Ok((summary, errors == 0))
}

/// `ccr demo` with the dashboard: the demo keys inject faults into the selected provider's
/// upstream. Returns when the user quits.
pub async fn run_interactive(options: DemoOptions) -> color_eyre::Result<()> {
    let demo = Demo::start(options).await?;
    tracing::info!(
        "demo: ccr on {}, simulated upstreams {}; keys d/D take the selected upstream down/up, ]/[ latency, e/E errors, x uses up its credits, u checks them",
        demo.running.base_url(),
        demo.pool.upstreams.iter().map(|u| u.base_url()).collect::<Vec<_>>().join(", ")
    );
    for other in &demo.others {
        tracing::info!(
            "demo: another ccr on {} shares the pool's state: `ccr status --url {}` shows it",
            other.base_url(),
            other.base_url()
        );
    }
    tracing::info!(
        "point Claude Code here: ANTHROPIC_BASE_URL={} ANTHROPIC_AUTH_TOKEN=ccr API_TIMEOUT_MS={}",
        demo.running.base_url(),
        crate::firstrun::CLAUDE_CODE_TIMEOUT_MS
    );
    let controls: Arc<dyn DemoControls> = demo.faults.clone();
    let result = app::dashboard::show(&demo.running, Some(controls)).await;
    demo.shutdown().await;
    result.map_err(|e| color_eyre::eyre::eyre!("{e}"))
}

//! `ccr demo`: the seed's two providers as simulated upstreams on loopback (each with its own
//! token file in a temp dir), a real ccr in front of them, and synthetic Claude Code traffic
//! through the real proxy port. Faults are injected per upstream, from the dashboard's demo keys
//! or, headless, on a fixed script.

use super::traffic::{self, TrafficOptions, TrafficStats};
use super::upstream::{ErrorKind, SimOptions, SimUpstream, write_social_token_file};
use crate::app::{self, ListenOverride, Running};
use crate::config::{ConfigSource, parse_config};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The provider ids of the seed config, each backed by one simulated upstream.
pub const DEMO_PROVIDERS: [&str; 2] = ["codewhisperer-primary", "codewhisperer-secondary"];

/// `longcontext` threshold used by the demo, so long requests stay around 100 KB.
const DEMO_LONG_CONTEXT: u64 = 20_000;

/// A fault to inject into one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Take it down (connections refused) or bring it back.
    ToggleDown,
    /// Add 250 ms before the first byte.
    MoreLatency,
    /// Remove 250 ms.
    LessLatency,
    /// Raise the 500-error rate by 20 points.
    MoreErrors,
    /// Lower it by 20 points.
    FewerErrors,
}

/// A running demo.
pub struct Demo {
    pub running: Running,
    pub upstreams: Vec<Arc<SimUpstream>>,
    pub traffic: Arc<TrafficStats>,
    /// Current (latency, error rate) of each upstream, as the demo set them.
    knobs: std::sync::Mutex<Vec<(Duration, f64)>>,
    workers: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Options of a demo run.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    pub listen: ListenOverride,
    pub seed: u64,
    /// Traffic workers (concurrent simulated Claude Code sessions).
    pub workers: usize,
}

/// The seed config pointed at the demo upstreams, with timers sized for a demo: health checks
/// every 5 s, breakers that reopen for a probe after 8–10 s.
pub fn demo_config(upstreams: &[Arc<SimUpstream>], dir: &std::path::Path) -> std::io::Result<Value> {
    let mut config: Value = serde_json::from_str(crate::config::DEFAULT_CONFIG)?;
    for (id, up) in DEMO_PROVIDERS.iter().zip(upstreams) {
        let token = dir.join(format!("kiro-auth-token-{id}.json"));
        write_social_token_file(&token, &up.issue_credentials(Duration::from_secs(3600)))?;
        let p = &mut config["providers"][*id];
        p["endpoint"] = json!(up.base_url());
        p["authEndpoint"] = json!(up.base_url());
        p["tokenPath"] = json!(token.to_string_lossy());
        p["connectTimeout"] = json!(1000);
        p["firstByteTimeout"] = json!(10000);
        p["idleTimeout"] = json!(10000);
        p["healthCheck"]["interval"] = json!(5000);
        p["healthCheck"]["timeout"] = json!(1000);
    }
    config["providers"]["codewhisperer-primary"]["circuitBreaker"]["resetTimeout"] = json!(10000);
    config["providers"]["codewhisperer-secondary"]["circuitBreaker"]["resetTimeout"] = json!(8000);
    config["routing"]["longContextThreshold"] = json!(DEMO_LONG_CONTEXT);
    config["name"] = json!("ccr demo (simulated CodeWhisperer upstreams)");
    Ok(config)
}

impl Demo {
    /// Start the upstreams, ccr and the traffic.
    pub async fn start(options: DemoOptions) -> color_eyre::Result<Demo> {
        let dir = tempfile::Builder::new().prefix("ccr-demo-").tempdir()?;
        let mut upstreams = Vec::new();
        let mut knobs = Vec::new();
        for (i, id) in DEMO_PROVIDERS.iter().enumerate() {
            let latency = Duration::from_millis(if i == 0 { 120 } else { 220 });
            knobs.push((latency, 0.0));
            let sim = SimUpstream::start(SimOptions {
                seed: options.seed.wrapping_add(i as u64),
                latency,
                chunk_delay: Duration::from_millis(25),
                ..SimOptions::named(*id)
            })
            .await?;
            upstreams.push(Arc::new(sim));
        }
        let config_value = demo_config(&upstreams, dir.path())?;
        let config_path = dir.path().join("demo-config.json");
        let text = serde_json::to_string_pretty(&config_value)?;
        std::fs::write(&config_path, &text)?;
        let config = parse_config(&text).map_err(|e| color_eyre::eyre::eyre!("demo config: {e}"))?;
        let running = app::launch(config, ConfigSource::Flag(config_path), options.listen).await?;
        let (workers, stats) = traffic::spawn(
            TrafficOptions {
                base_url: running.base_url(),
                workers: options.workers.max(1),
                think_time: (Duration::from_millis(100), Duration::from_millis(900)),
                seed: options.seed,
                long_context_tokens: DEMO_LONG_CONTEXT,
                api_key: None,
            },
            running.shutdown_signal(),
        );
        Ok(Demo {
            running,
            upstreams,
            traffic: stats,
            knobs: std::sync::Mutex::new(knobs),
            workers,
            _dir: dir,
        })
    }

    /// The simulated upstream behind a provider id.
    pub fn upstream(&self, provider: &str) -> Option<&Arc<SimUpstream>> {
        DEMO_PROVIDERS.iter().position(|id| *id == provider).and_then(|i| self.upstreams.get(i))
    }

    /// Inject a fault into one provider's upstream; returns what happened, for the log.
    pub fn inject(&self, provider: &str, fault: Fault) -> String {
        let Some(index) = DEMO_PROVIDERS.iter().position(|id| *id == provider) else {
            return format!("{provider} is not a demo upstream");
        };
        let up = &self.upstreams[index];
        let mut knobs = self.knobs.lock().unwrap_or_else(|e| e.into_inner());
        let (latency, error_rate) = &mut knobs[index];
        let message = match fault {
            Fault::ToggleDown => {
                let down = !up.is_down();
                up.set_down(down);
                if down {
                    "taken down (connections refused)".to_string()
                } else {
                    "brought back up".to_string()
                }
            }
            Fault::MoreLatency | Fault::LessLatency => {
                let step = Duration::from_millis(250);
                let next =
                    if fault == Fault::MoreLatency { *latency + step } else { latency.saturating_sub(step) };
                *latency = next;
                up.set_latency(next);
                format!("latency {} ms", next.as_millis())
            }
            Fault::MoreErrors | Fault::FewerErrors => {
                let next = if fault == Fault::MoreErrors {
                    (*error_rate + 0.2).min(1.0)
                } else {
                    (*error_rate - 0.2).max(0.0)
                };
                *error_rate = next;
                up.set_error_kind(ErrorKind::Status500);
                up.set_error_rate(next);
                format!("500-error rate {:.0} %", next * 100.0)
            }
        };
        tracing::info!("demo: {provider} {message}");
        format!("{provider}: {message}")
    }

    /// Stop the traffic, ccr and the upstreams.
    pub async fn shutdown(self) {
        let Demo { running, upstreams, workers, .. } = self;
        running.shutdown().await;
        for w in workers {
            let _ = w.await;
        }
        for up in upstreams {
            up.shutdown().await;
        }
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
        demo.running.base_url(),
        demo.upstreams.iter().map(|u| u.base_url()).collect::<Vec<_>>().join(", ")
    );
    let printer = crate::status::spawn_printer(&demo.running);
    let third = duration / 3;
    tokio::time::sleep(third).await;
    println!("{}", demo.inject(DEMO_PROVIDERS[0], Fault::ToggleDown));
    tokio::time::sleep(third).await;
    println!("{}", demo.inject(DEMO_PROVIDERS[0], Fault::ToggleDown));
    tokio::time::sleep(duration.saturating_sub(third * 2)).await;
    printer.abort();
    let summary = demo.traffic.summary();
    let errors = demo.traffic.errors.load(std::sync::atomic::Ordering::Relaxed);
    demo.shutdown().await;
    Ok((summary, errors == 0))
}

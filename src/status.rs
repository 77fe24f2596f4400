//! The headless status table: `ccr start --show-lb-status` prints it on stdout at start, on every
//! health / breaker / drain change and every [`PRINT_EVERY`]; `ccr status [--url]` fetches a
//! running instance's snapshot (`GET /status`) and prints it once.
//!
//! [`render`] is a pure function of the [`Snapshot`], so the table is the same wherever it comes
//! from and is tested without a terminal or a server.

use crate::balancer::{BreakerState, HealthStatus};
use crate::cli::StatusArgs;
use crate::config;
use crate::snapshot::{ProviderStatus, STATUS_PATH, Snapshot, format_duration_ms};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the table is printed when nothing changes: often enough to watch counters move,
/// rarely enough that the logs between stay readable.
pub const PRINT_EVERY: Duration = Duration::from_secs(5);

/// Lays out rows as left-aligned columns two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Credits with at most one decimal (`412.5`, `2000`).
fn credit_text(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 { format!("{r:.0}") } else { format!("{r:.1}") }
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".to_owned())
}

fn ms_text(ms: f64) -> String {
    if ms.is_finite() && ms >= 0.0 { format_duration_ms(ms.round() as u64) } else { "-".to_owned() }
}

/// Shortens `text` to at most `max` characters, marking the cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The status table for one snapshot.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let name = s.config_name.as_deref().unwrap_or("ccr");
    let listen = s.listen.as_deref().unwrap_or("not listening");
    out.push_str(&format!(
        "{name} · {listen} · up {} · {} requests · {:.1} req/s · config {}\n",
        format_duration_ms(s.uptime_ms),
        s.requests_total,
        s.requests_per_sec,
        if s.reload.ok { "ok" } else { "REJECTED (previous config kept)" },
    ));
    if s.state.backend != "memory" {
        out.push_str(&format!("  state: {} (shared with the pool's other instances)\n", s.state.short()));
    }
    if !s.reload.ok {
        out.push_str(&format!("  config: {}\n", clip(&s.reload.message, 300)));
    }
    if s.queue.waiting > 0 {
        out.push_str(&format!("  queue: {} waiting for capacity\n", s.queue.waiting));
    }

    let mut rows = vec![
        [
            "PROVIDER",
            "STATUS",
            "CREDITS",
            "RESET",
            "BREAKER",
            "IN-FLIGHT",
            "WEIGHT",
            "EWMA",
            "P95",
            "REQ",
            "OK",
            "FAIL",
            "LAST ERROR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in &s.providers {
        let c = &p.core;
        let breaker = match &c.breaker {
            None => "off".to_owned(),
            Some(b) if b.state == BreakerState::Closed && b.failures > 0 => {
                format!("CLOSED {}/{}", b.failures, b.failure_threshold)
            }
            Some(b) => b.state.as_str().to_owned(),
        };
        let in_flight = if c.max_concurrent > 0 {
            format!("{}/{}", c.in_flight, c.max_concurrent)
        } else {
            c.in_flight.to_string()
        };
        let weight = match c.weight_override {
            Some(w) => format!("{}→{w}", c.weight),
            None => c.weight.to_string(),
        };
        let last_error = c.last_error.as_ref().map(|e| {
            format!("{} ({} ago)", clip(&e.message, 60), format_duration_ms(s.now_ms.saturating_sub(e.at_ms)))
        });
        let credits = c.usage.as_ref().map(|u| format!("{}/{}", credit_text(u.used), credit_text(u.limit)));
        let reset = c.usage.as_ref().and_then(|u| u.reset_at).map(|t| t.format("%Y-%m-%d").to_string());
        rows.push(vec![
            c.id.clone(),
            p.status.as_str().to_owned(),
            or_dash(credits),
            or_dash(reset),
            breaker,
            in_flight,
            weight,
            if c.latency.measured { ms_text(c.latency.ewma_ms) } else { "-".to_owned() },
            or_dash(p.latency_p95_ms.map(ms_text)),
            c.counters.requests.to_string(),
            c.counters.successes.to_string(),
            c.counters.failures.to_string(),
            or_dash(last_error),
        ]);
    }
    out.push_str(&columns(&rows));
    for p in &s.providers {
        let mut notes = Vec::new();
        if p.status != ProviderStatus::Healthy
            && let Some(reason) = &p.status_reason
        {
            notes.push(reason.clone());
        }
        if p.core.health.status == HealthStatus::Unhealthy && p.status != ProviderStatus::Unhealthy {
            notes.push("health checks failing".to_owned());
        }
        if let Some(e) = &p.token.error
            && p.status != ProviderStatus::NeedsLogin
        {
            notes.push(format!("token: {}", clip(e, 120)));
        }
        if !notes.is_empty() {
            out.push_str(&format!("  {}: {}\n", p.core.id, notes.join("; ")));
        }
    }

    let mut rows =
        vec![["RULE", "STRATEGY", "MODEL", "PROVIDERS (weight, picks)"].map(String::from).to_vec()];
    for r in &s.rules {
        let providers: Vec<String> =
            r.core.providers.iter().map(|p| format!("{} {} ({})", p.id, p.weight, p.picks)).collect();
        let mut strategy = r.core.strategy.as_str().to_owned();
        if r.core.failover {
            strategy.push_str(" +failover");
        }
        rows.push(vec![r.core.category.clone(), strategy, or_dash(r.model.clone()), providers.join(", ")]);
    }
    out.push_str(&columns(&rows));
    out
}

/// What makes the headless printer print at once: per provider its status, breaker state, drain
/// and health; and the config's acceptance.
fn signature(s: &Snapshot) -> Vec<String> {
    let mut sig: Vec<String> = s
        .providers
        .iter()
        .map(|p| {
            format!(
                "{} {:?} {:?} {} {:?}",
                p.core.id,
                p.status,
                p.core.breaker.as_ref().map(|b| b.state),
                p.core.drained,
                p.core.health.status
            )
        })
        .collect();
    sig.push(format!("reload {} {}", s.reload.ok, s.reload.at));
    sig
}

/// Print the status table at start, on every health / breaker / drain change, and every
/// [`PRINT_EVERY`], on stdout, until the instance shuts down.
pub fn spawn_printer(
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    spawn_printer_to(snapshots, shutdown, std::io::stdout())
}

/// [`spawn_printer`] to any writer (tests use a buffer). Stops when `shutdown` turns true, the
/// snapshot channel closes, or the writer fails.
pub(crate) fn spawn_printer_to<W: Write + Send + 'static>(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut shutdown: watch::Receiver<bool>,
    mut out: W,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut print =
            |s: &Snapshot| -> bool { writeln!(out, "{}", render(s)).and_then(|()| out.flush()).is_ok() };
        let first = snapshots.borrow_and_update().clone();
        let mut last_signature = signature(&first);
        if !print(&first) {
            return;
        }
        let mut printed_at = Instant::now();
        loop {
            let due = printed_at + PRINT_EVERY;
            let now_due = tokio::select! {
                _ = shutdown.changed() => break,
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    false
                }
                () = tokio::time::sleep_until(due) => true,
            };
            if *shutdown.borrow() {
                break;
            }
            let s = snapshots.borrow_and_update().clone();
            let sig = signature(&s);
            if now_due || sig != last_signature {
                if !print(&s) {
                    break;
                }
                printed_at = Instant::now();
                last_signature = sig;
            }
        }
    })
}

/// Why `ccr status` could not show an instance.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing answered.
    #[error("cannot reach {url}: {reason} (is `ccr start` running there? use --url to point elsewhere)")]
    Unreachable { url: String, reason: String },
    /// Something answered, but not with a snapshot.
    #[error("{url} answered {status}{hint}")]
    Status { url: String, status: u16, hint: &'static str },
    /// The answer was not a ccr snapshot.
    #[error("{url} did not answer with a ccr status snapshot: {reason}")]
    Decode { url: String, reason: String },
}

/// The base URL `ccr status` talks to without `--url`: the config's `server` address (a
/// wildcard host is reached on loopback).
pub(crate) fn default_url(config: &config::Config) -> String {
    let host = match config.server.host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    format!("http://{host}:{}", config.server.port)
}

/// `host:port` as `http://host:port`; a URL with a scheme is kept.
pub fn normalize_url(url: &str) -> String {
    let url = url.trim();
    if url.contains("://") { url.to_owned() } else { format!("http://{url}") }
}

/// Fetch a running instance's snapshot from `base` (e.g. `http://127.0.0.1:3456`).
pub(crate) async fn fetch(base: &str) -> Result<Snapshot, StatusError> {
    let url = format!("{}{STATUS_PATH}", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| StatusError::Unreachable { url: url.clone(), reason: e.to_string() })?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| StatusError::Unreachable { url: url.clone(), reason: e.to_string() })?;
    let status = response.status();
    if !status.is_success() {
        let hint = if status.as_u16() == 404 { " (is monitoring.enabled false there?)" } else { "" };
        return Err(StatusError::Status { url, status: status.as_u16(), hint });
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| StatusError::Unreachable { url: url.clone(), reason: e.to_string() })?;
    serde_json::from_slice(&body).map_err(|e| StatusError::Decode { url, reason: e.to_string() })
}

/// `ccr status [--url URL]`: print a running instance's state; exit 1 when it cannot be reached.
pub fn run(args: &StatusArgs) -> ExitCode {
    let base = match &args.url {
        Some(url) => normalize_url(url),
        None => {
            let source = config::locate(args.config.config.as_deref());
            match config::load(&source) {
                Ok((cfg, _)) => default_url(&cfg),
                Err(e) => {
                    eprintln!(
                        "ccr status: cannot read the config to find the instance ({}); use --url",
                        e.problems().join("; ")
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccr status: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fetch(&base)) {
        Ok(snapshot) => {
            print!("{}", render(&snapshot));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ccr status: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::Command;
    use crate::config::{ConfigSource, parse_config};
    use crate::runtime::Runtime;
    use std::sync::Mutex;

    const CONFIG: &str = r#"{
      "name": "Two accounts",
      "routing": {"rules": {
        "default": {"providers": ["primary", "secondary"], "model": "CLAUDE_SONNET_4_20250514_V1_0",
                    "loadBalancing": {"strategy": "weighted-round-robin", "weights": {"primary": 70, "secondary": 30},
                                      "failover": true}},
        "background": {"providers": ["secondary", "primary"], "loadBalancing": {"strategy": "round-robin"}}
      }},
      "providers": {
        "primary": {"weight": 70, "maxConcurrentRequests": 10, "endpoint": "http://127.0.0.1:9",
                    "tokenPath": "/nonexistent/ccr/primary.json"},
        "secondary": {"weight": 30, "maxConcurrentRequests": 8, "endpoint": "http://127.0.0.1:9",
                      "tokenPath": "/nonexistent/ccr/secondary.json", "circuitBreaker": {"enabled": false}}
      }
    }"#;

    fn runtime() -> Arc<Runtime> {
        Runtime::new(parse_config(CONFIG).expect("config"), ConfigSource::Embedded)
    }

    #[test]
    fn the_table_reads_as_expected() {
        let rt = runtime();
        rt.balancer.apply(Command::Drain("secondary".into())).expect("drain");
        rt.balancer
            .apply(Command::SetWeight { provider: "primary".into(), rule: None, weight: 50 })
            .expect("w");
        let mut s = rt.snapshot_now();
        s.uptime_ms = 125_000;
        s.requests_total = 12;
        s.requests_per_sec = 0.4;
        s.listen = Some("127.0.0.1:3456".into());
        let expected = "\
Two accounts · 127.0.0.1:3456 · up 2m05s · 12 requests · 0.4 req/s · config ok
PROVIDER   STATUS    CREDITS  RESET  BREAKER  IN-FLIGHT  WEIGHT  EWMA  P95  REQ  OK  FAIL  LAST ERROR
primary    healthy   -        -      CLOSED   0/10       70→50   -     -    0    0   0     -
secondary  draining  -        -      off      0/8        30      -     -    0    0   0     -
  secondary: drained by the operator: new requests go elsewhere
RULE        STRATEGY                        MODEL                          PROVIDERS (weight, picks)
default     weighted-round-robin +failover  CLAUDE_SONNET_4_20250514_V1_0  primary 50 (0), secondary 30 (0)
background  round-robin                     -                              secondary 30 (0), primary 50 (0)
";
        assert_eq!(render(&s), expected);
    }

    #[test]
    fn a_rejected_config_is_shown() {
        let mut s = runtime().snapshot_now();
        s.reload.ok = false;
        s.reload.message = "config not reloaded, keeping the previous one: line 3 column 1: EOF".into();
        let text = render(&s);
        assert!(text.lines().next().is_some_and(|l| l.ends_with("config REJECTED (previous config kept)")));
        assert!(
            text.contains("  config: config not reloaded, keeping the previous one: line 3 column 1: EOF\n")
        );
    }

    #[test]
    fn default_url_reaches_wildcard_hosts_on_loopback() {
        let mut cfg = parse_config(CONFIG).expect("config");
        assert_eq!(default_url(&cfg), "http://127.0.0.1:3456");
        cfg.server.host = "0.0.0.0".into();
        cfg.server.port = 8080;
        assert_eq!(default_url(&cfg), "http://127.0.0.1:8080");
        cfg.server.host = "::1".into();
        assert_eq!(default_url(&cfg), "http://[::1]:8080");
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn tables(&self) -> usize {
            let text = String::from_utf8(self.0.lock().expect("buffer").clone()).expect("utf-8");
            text.matches("PROVIDER ").count()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn printer_prints_at_start_on_changes_and_periodically() {
        let rt = runtime();
        let (tx, rx) = watch::channel(Arc::new(rt.snapshot_now()));
        let (stop, stop_rx) = watch::channel(false);
        let buffer = Buffer::default();
        let task = spawn_printer_to(rx, stop_rx, buffer.clone());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(buffer.tables(), 1, "printed at start");

        // A counter-only change does not print; a drain does, at once.
        tx.send_replace(Arc::new(rt.snapshot_now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(buffer.tables(), 1);
        rt.balancer.apply(Command::Drain("primary".into())).expect("drain");
        tx.send_replace(Arc::new(rt.snapshot_now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(buffer.tables(), 2, "printed on the drain");

        // Quiet: once per PRINT_EVERY.
        tokio::time::sleep(PRINT_EVERY * 3).await;
        assert_eq!(buffer.tables(), 5);

        stop.send(true).expect("stop");
        task.await.expect("printer stops on shutdown");
    }
}

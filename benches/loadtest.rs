//! The load harness: ccr against the same simulated upstream reached directly, in one run.
//!
//! ```sh
//! cargo bench --bench loadtest            # the full table (under 2 minutes)
//! cargo bench --bench loadtest -- --quick # a shorter, noisier run
//! cargo bench --bench loadtest -- --only claude-code/non-stream/1 --slice-ms 10000 --rounds 1
//!                                         # one cell, long enough to attach a profiler
//! cargo bench --bench loadtest -- --baseline /tmp/ccr-before
//!                                         # and another ccr build in the same run (`base`)
//! ```
//!
//! What it does:
//!
//! 1. starts a simulated CodeWhisperer upstream ([`ccr::demo::upstream`]) in this process, with
//!    its token file and a config for ccr ([`ccr::demo::pool`]);
//! 2. starts the real `ccr` binary (`ccr start --config <tmp>`) as a child process in front of it,
//!    so that its memory can be read from `/proc/<pid>/status`;
//! 3. starts a **bare forwarder** as another child process (this harness re-run with
//!    `--bare-forwarder`): the same stack as ccr (tokio multi-thread runtime, axum, reqwest,
//!    `TCP_NODELAY`) passing the Kiro body through and the event stream back, with no parsing,
//!    conversion or translation. It is the floor of any proxy built this way on this machine:
//!    one more process and one more loopback hop;
//! 4. reads ccr's resident size idle, then while 256 streams are open through it;
//! 5. for each body (a small main turn, and a 1 MB Claude-Code-shaped session), each mode
//!    (non-streaming, streaming) and each concurrency (1, 32), alternates short slices of
//!    - **direct**: the client POSTs the Kiro body (converted once, up front, by the same
//!      conversion ccr uses) to the sim's `/generateAssistantResponse` and reads the event stream;
//!    - **bare**: the same request through the bare forwarder;
//!    - **ccr**: the client POSTs the Anthropic body to ccr's `/v1/messages`, which parses,
//!      classifies, converts, calls the same sim and translates the answer;
//!
//!    and prints requests/s, p50 / p99 latency (time to last byte; for streaming also time to
//!    first byte) and the ratios ccr / direct (and bare / direct).
//!
//! With `--baseline <ccr binary>`, a path **base** is that binary (another build of ccr, say the
//! one before a change) started with the same config: the `ccr/base` ratio row compares the two
//! builds slice by slice, which on a machine whose speed drifts is the only fair before/after.
//!
//! With `redis-server` installed, a fourth path **redis** is a second ccr child with the same
//! config plus `"state": {"backend": "redis"}` against a private `redis-server` (unix socket):
//! its row and the `redis/c` ratio (redis ÷ ccr, same run) are the cost of the shared state
//! (docs/shared-state.md).
//!
//! The paths alternate (several rounds each, the order rotating) so that the noise of a shared
//! machine falls on all of them. The client, the sim, the forwarder and ccr share the machine's
//! cores: at concurrency 32 the ratio includes ccr's CPU taken from the client and the sim.

#[path = "support/shapes.rs"]
mod shapes;

use bytes::Bytes;
use ccr::anthropic::types::parse_request;
use ccr::demo::pool::{Account, SimPool, SimPoolBuilder};
use ccr::demo::upstream::{SimOptions, SimUpstream};
use ccr::providers::codewhisperer::internals::{ConvertOptions, convert, request_body};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Streams held open through ccr for the memory figure.
const MEMORY_STREAMS: usize = 256;

/// Size of the large request body.
const LARGE_BODY_BYTES: usize = 1_000_000;

/// How long, how often, and what.
#[derive(Debug, Clone)]
struct Plan {
    /// Length of one measured slice of one path.
    slice: Duration,
    /// Direct/ccr alternations per cell.
    rounds: usize,
    /// Unmeasured traffic before a cell's first round, per path.
    warmup: Duration,
    /// Only cells whose `body/mode/concurrency` label (`small/non-stream/1`, `claude-code/stream/32`)
    /// contains this: for profiling one cell.
    only: Option<String>,
    /// Skip the memory phase.
    skip_memory: bool,
    /// No Redis-backed path even when `redis-server` is there (`--skip-redis`).
    skip_redis: bool,
    /// Another ccr binary to measure beside this one (`--baseline`).
    baseline: Option<String>,
}

fn plan_from_args() -> Option<Plan> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only say how to run it.
    if !args.iter().any(|a| a == "--bench") {
        println!("loadtest: run with `cargo bench --bench loadtest` (it takes about 2 minutes)");
        return None;
    }
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let mut plan = Plan {
        slice: Duration::from_millis(1500),
        rounds: 3,
        warmup: Duration::from_millis(300),
        only: value("--only"),
        skip_memory: args.iter().any(|a| a == "--skip-memory"),
        skip_redis: args.iter().any(|a| a == "--skip-redis"),
        baseline: value("--baseline"),
    };
    if args.iter().any(|a| a == "--quick") {
        plan.slice = Duration::from_millis(500);
        plan.rounds = 2;
        plan.warmup = Duration::from_millis(150);
    }
    if let Some(ms) = value("--slice-ms").and_then(|v| v.parse().ok()) {
        plan.slice = Duration::from_millis(ms);
    }
    if let Some(n) = value("--rounds").and_then(|v| v.parse().ok()) {
        plan.rounds = n;
    }
    Some(plan)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare-forwarder") {
        let (Some(upstream), Some(port)) = (args.get(i + 1), args.get(i + 2).and_then(|p| p.parse().ok()))
        else {
            eprintln!("usage: --bare-forwarder <upstream base url> <port>");
            std::process::exit(2);
        };
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
        if let Err(e) = runtime.block_on(bare_forwarder(upstream.clone(), port)) {
            eprintln!("bare forwarder failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let Some(plan) = plan_from_args() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(plan)) {
        eprintln!("loadtest failed: {e}");
        std::process::exit(1);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One request body, as the client sends it on each path.
struct Body {
    label: String,
    /// Anthropic JSON for ccr, by streaming mode.
    anthropic_stream: Bytes,
    anthropic_plain: Bytes,
    /// The Kiro JSON for the direct path (the same for both modes: the upstream always streams).
    kiro: Bytes,
}

impl Body {
    fn build(label: &str, stream: &Value, plain: &Value, profile_arn: &str) -> Result<Body, BoxError> {
        let anthropic_stream = Bytes::from(serde_json::to_vec(stream)?);
        let anthropic_plain = Bytes::from(serde_json::to_vec(plain)?);
        let request = parse_request(&anthropic_stream).map_err(|e| e.message.clone())?;
        let converted = convert(&request, &ConvertOptions::default()).map_err(|e| e.message.clone())?;
        let kiro = request_body(&converted, Some(profile_arn));
        Ok(Body {
            label: format!("{label} ({})", human_bytes(anthropic_stream.len())),
            anthropic_stream,
            anthropic_plain,
            kiro,
        })
    }
}

fn human_bytes(n: usize) -> String {
    if n >= 1_000_000 { format!("{:.2} MB", n as f64 / 1e6) } else { format!("{:.1} KB", n as f64 / 1e3) }
}

/// A child process (ccr, or the bare forwarder); killed when dropped.
struct ChildProcess {
    child: Child,
    base_url: String,
    log: std::path::PathBuf,
}

impl ChildProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmRSS` and `VmHWM` in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Spawn `command` listening on `port` and wait until `GET /health` answers.
    async fn spawn(
        mut command: Command,
        port: u16,
        log: std::path::PathBuf,
        http: &reqwest::Client,
    ) -> Result<ChildProcess, BoxError> {
        let child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let process = ChildProcess { child, base_url: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/health", process.base_url)).send().await
                && r.status().is_success()
            {
                return Ok(process);
            }
            if Instant::now() > deadline {
                return Err(format!("{:?} did not come up; its log:\n{}", command, process.log_tail()).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The simulated account behind ccr: one upstream, a 4-hour login, a config named `loadtest`
/// with room for every concurrent request.
fn loadtest_pool() -> SimPoolBuilder {
    SimPool::builder()
        .account(
            "sim",
            Account::new()
                .sim(SimOptions {
                    chunk_delay: Duration::ZERO,
                    max_body_bytes: 8 * 1024 * 1024,
                    ..SimOptions::named("loadtest-sim")
                })
                .token_ttl(Duration::from_secs(4 * 3600))
                .provider(
                    json!({"maxConcurrentRequests": 1024, "firstByteTimeout": 30000, "idleTimeout": 30000}),
                ),
        )
        .rule("default", json!({"providers": ["sim"]}))
        .merge(json!({"name": "loadtest"}))
}

async fn start_ccr(pool: &SimPool, http: &reqwest::Client) -> Result<ChildProcess, BoxError> {
    let port = free_port()?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_ccr"));
    command.args(["start", "--config"]).arg(&pool.config_path).args(["--port", &port.to_string()]);
    ChildProcess::spawn(command, port, pool.dir().join("ccr.log"), http).await
}

async fn start_bare(dir: &Path, sim: &SimUpstream, http: &reqwest::Client) -> Result<ChildProcess, BoxError> {
    let port = free_port()?;
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["--bare-forwarder", &sim.base_url(), &port.to_string()]);
    ChildProcess::spawn(command, port, dir.join("bare.log"), http).await
}

/// The bare forwarder's state: where to forward, and the client to do it with.
#[derive(Clone)]
struct Forwarder {
    http: reqwest::Client,
    url: String,
}

/// `--bare-forwarder`: POST `/generateAssistantResponse` is passed through to the upstream with
/// its authorization, and the upstream's body is streamed back as it arrives.
async fn bare_forwarder(upstream: String, port: u16) -> Result<(), BoxError> {
    use axum::routing::{get, post};
    let http = reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?;
    let state = Forwarder { http, url: format!("{upstream}/generateAssistantResponse") };
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/generateAssistantResponse", post(forward))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn forward(
    axum::extract::State(f): axum::extract::State<Forwarder>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut request = f.http.post(&f.url).header("content-type", "application/json").body(body);
    if let Some(auth) = headers.get("authorization") {
        request = request.header("authorization", auth.clone());
    }
    match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let mut response = axum::response::Response::new(axum::body::Body::from_stream(r.bytes_stream()));
            *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap_or_default();
            response
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Which way a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Bare,
    Ccr,
    /// ccr with its state shared through Redis.
    CcrRedis,
    /// Another build of ccr (`--baseline`).
    Baseline,
}

impl Route {
    const ALL: [Route; 3] = [Route::Direct, Route::Bare, Route::Ccr];

    /// The paths of a run: the Redis one when a `redis-server` is there.
    fn of(target: &Target) -> Vec<Route> {
        let mut routes = Route::ALL.to_vec();
        if target.redis_url.is_some() {
            routes.push(Route::CcrRedis);
        }
        if target.base_url.is_some() {
            routes.push(Route::Baseline);
        }
        routes
    }

    fn label(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Bare => "bare",
            Route::Ccr => "ccr",
            Route::CcrRedis => "redis",
            Route::Baseline => "base",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    NonStreaming,
    Streaming,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::NonStreaming => "non-stream",
            Mode::Streaming => "stream",
        }
    }
}

/// Where requests go and how they look.
struct Target {
    http: reqwest::Client,
    direct_url: String,
    bare_url: String,
    ccr_url: String,
    /// The ccr sharing its state through Redis, when `redis-server` is installed.
    redis_url: Option<String>,
    /// The `--baseline` build of ccr.
    base_url: Option<String>,
    bearer: String,
}

/// One request's timings.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ttfb: Duration,
    total: Duration,
}

#[derive(Debug, Default)]
struct Tally {
    samples: Vec<Sample>,
    /// Non-200 answers, transport errors, or bodies that did not end the way a complete answer ends.
    failures: u64,
    elapsed: Duration,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.samples.extend(other.samples);
        self.failures += other.failures;
        self.elapsed += other.elapsed;
    }
}

/// Send one request and read the whole answer.
async fn one_request(target: &Target, path: Route, mode: Mode, body: &Body) -> Result<Sample, String> {
    let started = Instant::now();
    let request = match path {
        Route::Direct | Route::Bare => target
            .http
            .post(if path == Route::Direct { &target.direct_url } else { &target.bare_url })
            .bearer_auth(&target.bearer)
            .header("content-type", "application/json")
            .body(body.kiro.clone()),
        Route::Ccr | Route::CcrRedis | Route::Baseline => target
            .http
            .post(match path {
                Route::CcrRedis => target.redis_url.as_deref().unwrap_or_default(),
                Route::Baseline => target.base_url.as_deref().unwrap_or_default(),
                _ => &target.ccr_url,
            })
            .header("content-type", "application/json")
            .header("x-api-key", "loadtest")
            .header("anthropic-version", "2023-06-01")
            .body(match mode {
                Mode::Streaming => body.anthropic_stream.clone(),
                Mode::NonStreaming => body.anthropic_plain.clone(),
            }),
    };
    let mut response = request.send().await.map_err(|e| e.to_string())?;
    if response.status() != 200 {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(format!("{status}: {}", text.chars().take(300).collect::<String>()));
    }
    let mut ttfb = None;
    let mut tail: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if ttfb.is_none() {
            ttfb = Some(started.elapsed());
        }
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(64)..]);
        if tail.len() > 128 {
            tail.drain(..tail.len() - 64);
        }
    }
    let total = started.elapsed();
    let tail = String::from_utf8_lossy(&tail);
    let complete = match (path, mode) {
        (Route::Direct | Route::Bare, _) => tail.contains("contextUsagePercentage"),
        (Route::Ccr | Route::CcrRedis | Route::Baseline, Mode::Streaming) => tail.contains("message_stop"),
        (Route::Ccr | Route::CcrRedis | Route::Baseline, Mode::NonStreaming) => {
            tail.contains("\"usage\"") || tail.ends_with('}')
        }
    };
    if !complete {
        return Err(format!("incomplete answer, ends with {tail:?}"));
    }
    Ok(Sample { ttfb: ttfb.unwrap_or(total), total })
}

/// `concurrency` workers sending back to back for `duration`.
async fn slice(
    target: &Arc<Target>,
    body: &Arc<Body>,
    path: Route,
    mode: Mode,
    concurrency: usize,
    duration: Duration,
) -> Tally {
    let started = Instant::now();
    let deadline = started + duration;
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let target = target.clone();
        let body = body.clone();
        let first_error = first_error.clone();
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                match one_request(&target, path, mode, &body).await {
                    Ok(sample) => tally.samples.push(sample),
                    Err(e) => {
                        tally.failures += 1;
                        first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                    }
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for w in workers {
        if let Ok(t) = w.await {
            total.merge(t);
        }
    }
    total.elapsed = started.elapsed();
    if let Some(e) = first_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        eprintln!(
            "  {} {} c={concurrency}: {} failures, first: {e}",
            path.label(),
            mode.label(),
            total.failures
        );
    }
    total
}

/// Percentile `p` (0–1) of sorted durations, in ms.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

/// The figures of one path in one cell.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50: f64,
    p99: f64,
    ttfb_p50: f64,
    ttfb_p99: f64,
    count: usize,
    failures: u64,
}

impl Figures {
    fn from(t: &Tally) -> Figures {
        let mut total: Vec<Duration> = t.samples.iter().map(|s| s.total).collect();
        let mut ttfb: Vec<Duration> = t.samples.iter().map(|s| s.ttfb).collect();
        total.sort_unstable();
        ttfb.sort_unstable();
        Figures {
            rps: t.samples.len() as f64 / t.elapsed.as_secs_f64().max(1e-9),
            p50: percentile(&total, 0.5),
            p99: percentile(&total, 0.99),
            ttfb_p50: percentile(&ttfb, 0.5),
            ttfb_p99: percentile(&ttfb, 0.99),
            count: t.samples.len(),
            failures: t.failures,
        }
    }
}

/// One row of the table: a body, a mode and a concurrency, every path.
struct Row {
    body: String,
    mode: Mode,
    concurrency: usize,
    direct: Figures,
    bare: Figures,
    ccr: Figures,
    redis: Option<Figures>,
    base: Option<Figures>,
}

async fn measure_cell(
    target: &Arc<Target>,
    body: &Arc<Body>,
    mode: Mode,
    concurrency: usize,
    plan: &Plan,
) -> Row {
    let routes = Route::of(target);
    for &path in &routes {
        slice(target, body, path, mode, concurrency, plan.warmup).await;
    }
    let mut tallies: Vec<Tally> = routes.iter().map(|_| Tally::default()).collect();
    for round in 0..plan.rounds {
        // Rotate which path goes first, so a slow-down in time does not favour one.
        for k in 0..routes.len() {
            let i = (round + k) % routes.len();
            let t = slice(target, body, routes[i], mode, concurrency, plan.slice).await;
            tallies[i].merge(t);
        }
    }
    Row {
        body: body.label.clone(),
        mode,
        concurrency,
        direct: Figures::from(&tallies[0]),
        bare: Figures::from(&tallies[1]),
        ccr: Figures::from(&tallies[2]),
        redis: routes.iter().position(|&r| r == Route::CcrRedis).map(|i| Figures::from(&tallies[i])),
        base: routes.iter().position(|&r| r == Route::Baseline).map(|i| Figures::from(&tallies[i])),
    }
}

/// Holds `MEMORY_STREAMS` streams open through ccr and samples its resident size meanwhile.
/// Returns (peak sampled VmRSS KiB, VmHWM KiB, most streams seen open at once, failures).
async fn memory_under_streams(
    target: &Arc<Target>,
    sim: &SimUpstream,
    ccr: &ChildProcess,
) -> (u64, u64, u64, u64) {
    let mut body = shapes::small_request(true);
    body["messages"][0]["content"][1]["text"] = json!("hold the line [sim:long:60]");
    let raw = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    sim.set_chunk_delay(Duration::from_millis(25));
    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..MEMORY_STREAMS {
        let target = target.clone();
        let raw = raw.clone();
        let failures = failures.clone();
        tasks.push(tokio::spawn(async move {
            let ok = async {
                let mut r = target
                    .http
                    .post(&target.ccr_url)
                    .header("content-type", "application/json")
                    .body(raw)
                    .send()
                    .await
                    .ok()?;
                if r.status() != 200 {
                    return None;
                }
                let mut last = Bytes::new();
                while let Some(c) = r.chunk().await.ok()? {
                    last = c;
                }
                String::from_utf8_lossy(&last).contains("message_stop").then_some(())
            }
            .await;
            if ok.is_none() {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut peak_rss = 0;
    let mut peak_open = 0;
    let sampler = {
        let done = done.clone();
        async move {
            while !done.load(Ordering::Relaxed) {
                peak_rss = peak_rss.max(ccr.memory().0);
                peak_open = peak_open.max(sim.stats().in_flight);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (peak_rss, peak_open)
        }
    };
    let waiter = async {
        for t in tasks {
            let _ = t.await;
        }
        done.store(true, Ordering::Relaxed);
    };
    let ((peak_rss, peak_open), ()) = tokio::join!(sampler, waiter);
    sim.set_chunk_delay(Duration::ZERO);
    (peak_rss, ccr.memory().1, peak_open, failures.load(Ordering::Relaxed))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn run(plan: Plan) -> Result<(), BoxError> {
    let started = Instant::now();
    let pool = loadtest_pool().start().await?;
    let sim = pool.upstreams[0].clone();
    let http =
        reqwest::Client::builder().no_proxy().tcp_nodelay(true).pool_max_idle_per_host(1024).build()?;
    let ccr = start_ccr(&pool, &http).await?;
    let bare = start_bare(pool.dir(), &sim, &http).await?;
    // The same ccr with its state shared through a private redis-server, when there is one.
    let redis_server = if plan.skip_redis {
        None
    } else if ccr::demo::redis::RedisServer::available() {
        Some(ccr::demo::redis::RedisServer::start()?)
    } else {
        println!("redis-server not found: no redis row");
        None
    };
    let ccr_redis = match &redis_server {
        Some(server) => {
            let mut config = pool.config.clone();
            config["state"] = json!({"backend": "redis", "url": server.url(), "keyPrefix": "loadtest:"});
            let path = pool.dir().join("config-redis.json");
            std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
            let port = free_port()?;
            let mut command = Command::new(env!("CARGO_BIN_EXE_ccr"));
            command.args(["start", "--config"]).arg(&path).args(["--port", &port.to_string()]);
            Some(ChildProcess::spawn(command, port, pool.dir().join("ccr-redis.log"), &http).await?)
        }
        None => None,
    };
    let ccr_base = match &plan.baseline {
        Some(binary) => {
            let port = free_port()?;
            let mut command = Command::new(binary);
            command.args(["start", "--config"]).arg(&pool.config_path).args(["--port", &port.to_string()]);
            Some(ChildProcess::spawn(command, port, pool.dir().join("ccr-base.log"), &http).await?)
        }
        None => None,
    };
    let credentials = sim.issue_credentials(Duration::from_secs(4 * 3600));
    let target = Arc::new(Target {
        http,
        direct_url: format!("{}/generateAssistantResponse", sim.base_url()),
        bare_url: format!("{}/generateAssistantResponse", bare.base_url),
        ccr_url: format!("{}/v1/messages?beta=true", ccr.base_url),
        redis_url: ccr_redis.as_ref().map(|c| format!("{}/v1/messages?beta=true", c.base_url)),
        base_url: ccr_base.as_ref().map(|c| format!("{}/v1/messages?beta=true", c.base_url)),
        bearer: credentials.access_token.clone(),
    });

    println!(
        "ccr load harness: {} CPUs; sim in-process at {}; ccr pid {} at {}; bare forwarder pid {} at {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sim.base_url(),
        ccr.pid(),
        ccr.base_url,
        bare.pid(),
        bare.base_url
    );
    println!(
        "slices of {} ms, {} rounds per path and cell, paths alternating\n",
        plan.slice.as_millis(),
        plan.rounds
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss, _) = ccr.memory();
    let (bare_idle_rss, _) = bare.memory();
    let (streams_rss, streams_hwm, open, stream_failures) =
        if plan.skip_memory { (0, 0, 0, 0) } else { memory_under_streams(&target, &sim, &ccr).await };

    let arn = credentials.profile_arn.clone();
    let small =
        Arc::new(Body::build("small", &shapes::small_request(true), &shapes::small_request(false), &arn)?);
    let large = Arc::new(Body::build(
        "claude-code",
        &shapes::long_session_request(LARGE_BODY_BYTES, true),
        &shapes::long_session_request(LARGE_BODY_BYTES, false),
        &arn,
    )?);

    let mut rows = Vec::new();
    for body in [&small, &large] {
        for mode in [Mode::NonStreaming, Mode::Streaming] {
            for concurrency in [1, 32] {
                let name = body.label.split(' ').next().unwrap_or_default();
                let label = format!("{name}/{}/{concurrency}", mode.label());
                if plan.only.as_ref().is_some_and(|only| !label.contains(only.as_str())) {
                    continue;
                }
                let row = measure_cell(&target, body, mode, concurrency, &plan).await;
                print_row(&row, rows.is_empty());
                let _ = std::io::stdout().flush();
                rows.push(row);
            }
        }
    }
    let (_, final_hwm) = ccr.memory();

    println!();
    println!("resident memory:");
    println!("  ccr idle after start                          VmRSS {}", mib(idle_rss));
    if !plan.skip_memory {
        println!(
            "  ccr with {MEMORY_STREAMS} concurrent streams (peak {open} open)  VmRSS peak {}  VmHWM {}{}",
            mib(streams_rss),
            mib(streams_hwm),
            if stream_failures > 0 { format!("  ({stream_failures} streams failed)") } else { String::new() }
        );
    }
    println!("  ccr after the whole run                       VmHWM {}", mib(final_hwm));
    println!("  bare forwarder idle (same stack, no features) VmRSS {}", mib(bare_idle_rss));
    println!();
    print_targets(&rows, idle_rss, (!plan.skip_memory).then_some(streams_hwm));
    let failures: u64 = rows
        .iter()
        .map(|r| {
            [Some(&r.direct), Some(&r.bare), Some(&r.ccr), r.redis.as_ref(), r.base.as_ref()]
                .into_iter()
                .flatten()
                .map(|f| f.failures)
                .sum::<u64>()
        })
        .sum::<u64>()
        + stream_failures;
    println!("\nfailed requests: {failures}; run took {:.0} s", started.elapsed().as_secs_f64());
    let log = std::fs::read_to_string(&ccr.log).unwrap_or_default();
    let warnings = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).count();
    if warnings > 0 {
        println!("ccr logged {warnings} warnings/errors; last lines:\n{}", ccr.log_tail());
    }
    drop(ccr);
    drop(ccr_redis);
    drop(ccr_base);
    drop(redis_server);
    drop(bare);
    sim.shutdown().await;
    if failures > 0 {
        return Err(format!("{failures} requests failed").into());
    }
    Ok(())
}

fn print_row(row: &Row, header: bool) {
    if header {
        println!(
            "{:<22} {:<10} {:>3}  {:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9}",
            "body", "mode", "c", "path", "req/s", "p50 ms", "p99 ms", "ttfb p50", "ttfb p99", "n", "floor"
        );
    }
    // The floor column: p50 above the bare forwarder's (the floor of one more hop) in the same cell.
    let line = |path: Route, f: &Figures| {
        println!(
            "{:<22} {:<10} {:>3}  {:<6} {:>9.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>+9.3}",
            row.body,
            row.mode.label(),
            row.concurrency,
            path.label(),
            f.rps,
            f.p50,
            f.p99,
            f.ttfb_p50,
            f.ttfb_p99,
            f.count,
            f.p50 - row.bare.p50
        );
    };
    line(Route::Direct, &row.direct);
    line(Route::Bare, &row.bare);
    line(Route::Ccr, &row.ccr);
    if let Some(redis) = &row.redis {
        line(Route::CcrRedis, redis);
    }
    if let Some(base) = &row.base {
        line(Route::Baseline, base);
    }
    let ratio = |name: &str, x: &Figures, d: &Figures| {
        println!(
            "{:<22} {:<10} {:>3}  {:<6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}   +{:.3} ms p50",
            "",
            "",
            "",
            name,
            x.rps / d.rps,
            x.p50 / d.p50,
            x.p99 / d.p99,
            x.ttfb_p50 / d.ttfb_p50,
            x.ttfb_p99 / d.ttfb_p99,
            x.p50 - d.p50
        );
    };
    ratio("bare/d", &row.bare, &row.direct);
    ratio("ccr/d", &row.ccr, &row.direct);
    ratio("ccr/b", &row.ccr, &row.bare);
    if let Some(redis) = &row.redis {
        ratio("redis/c", redis, &row.ccr);
    }
    if let Some(base) = &row.base {
        ratio("ccr/base", &row.ccr, base);
    }
}

/// The issue's targets, each with the measured figure, whether it was met, and the floor the
/// bare forwarder shows for the same figure.
fn print_targets(rows: &[Row], idle_rss: u64, streams_hwm: Option<u64>) {
    let find = |large: bool, mode: Mode, c: usize| {
        rows.iter()
            .find(|r| r.body.starts_with("claude-code") == large && r.mode == mode && r.concurrency == c)
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("targets (ccr; in brackets the bare forwarder, the floor of one more hop):");
    if let Some(r) = find(false, Mode::NonStreaming, 1) {
        let added = r.ccr.p50 - r.direct.p50;
        let floor = r.bare.p50 - r.direct.p50;
        println!(
            "  non-streaming overhead, c=1, p50 < 0.15 ms     +{added:.3} ms [+{floor:.3}]  {}",
            verdict(added < 0.15)
        );
    }
    for mode in [Mode::NonStreaming, Mode::Streaming] {
        if let Some(r) = find(false, mode, 32) {
            let ratio = r.ccr.rps / r.direct.rps;
            let floor = r.bare.rps / r.direct.rps;
            println!(
                "  throughput c=32 {:<10} >= 0.25 x direct    {ratio:.2} x [{floor:.2} x]  {}",
                mode.label(),
                verdict(ratio >= 0.25)
            );
        }
    }
    if let Some(r) = find(true, Mode::NonStreaming, 1) {
        let added = r.ccr.p50 - r.direct.p50;
        let floor = r.bare.p50 - r.direct.p50;
        println!(
            "  1 MB request adds < 3 ms p50 (c=1)             +{added:.3} ms [+{floor:.3}]  {}",
            verdict(added < 3.0)
        );
    }
    println!(
        "  idle RSS < 20 MiB                              {}  {}",
        mib(idle_rss),
        verdict(idle_rss < 20 * 1024)
    );
    if let Some(hwm) = streams_hwm {
        println!(
            "  RSS with {MEMORY_STREAMS} streams < 64 MiB                   {}  {}",
            mib(hwm),
            verdict(hwm < 64 * 1024)
        );
    }
    println!("targets against the floor (ccr ÷ or − the bare forwarder, same cell):");
    for mode in [Mode::NonStreaming, Mode::Streaming] {
        if let Some(r) = find(true, mode, 1) {
            let over = r.ccr.p50 - r.bare.p50;
            println!(
                "  1 MB {:<10} c=1: p50 within 1.0 ms of the floor   +{over:.3} ms  {}",
                mode.label(),
                verdict(over <= 1.0)
            );
        }
    }
    for mode in [Mode::NonStreaming, Mode::Streaming] {
        if let Some(r) = find(true, mode, 32) {
            let ratio = r.ccr.rps / r.bare.rps;
            println!(
                "  1 MB {:<10} c=32: throughput >= 0.8 x the floor  {ratio:.2} x  {}",
                mode.label(),
                verdict(ratio >= 0.8)
            );
        }
    }
    for mode in [Mode::NonStreaming, Mode::Streaming] {
        if let Some(r) = find(false, mode, 1) {
            let over = r.ccr.p50 - r.bare.p50;
            println!(
                "  small {:<10} c=1: p50 within 0.1 ms of the floor  +{over:.3} ms  {}",
                mode.label(),
                verdict(over <= 0.1)
            );
        }
    }
    if let Some(r) = find(false, Mode::Streaming, 32) {
        let ratio = r.ccr.rps / r.bare.rps;
        println!(
            "  small stream c=32: throughput >= 0.9 x the floor      {ratio:.2} x  {}",
            verdict(ratio >= 0.9)
        );
    }
}

//! Memory after a burst (ignored by default, like the soak): the real `ccr` binary, in front of
//! the simulated upstream, takes bursts of 32 concurrent 1 MB Claude-Code-shaped turns (half
//! streaming, half not); then it must give the memory back.
//!
//! ```sh
//! cargo test --release --test memory -- --ignored --nocapture
//! CCR_MEMORY_BIN=/path/to/other/ccr cargo test --release --test memory -- --ignored --nocapture
//! ```
//!
//! (`CCR_MEMORY_BIN` runs the same burst against another build of ccr, to compare.)
//!
//! Passes when:
//! - every turn of the burst gets a full answer;
//! - ccr's resident set at idle (after start, before any request) is under 16 MiB;
//! - within 30 s of the burst's end its resident set is back under 2× that idle figure.
//!
//! It prints idle, peak (`VmHWM`) and the resident set each half second after the burst, the
//! figures docs/performance.md quotes. Run it on a release build: a debug build's allocation
//! pattern (and speed) is not the one that ships.

mod common;
#[path = "../benches/support/shapes.rs"]
mod shapes;

use ccr::demo::pool::{Account, SimPool, SimPoolBuilder};
use ccr::demo::upstream::SimOptions;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Concurrent turns in one wave of the burst.
const CONCURRENCY: usize = 32;
/// Waves of the burst (each waits for the previous one to end).
const WAVES: usize = 3;
/// Size of one Claude Code turn.
const TURN_BYTES: usize = 1_000_000;
/// Idle resident set must be under this.
const IDLE_LIMIT_KIB: u64 = 16 * 1024;
/// How long ccr has to come back under 2× idle.
const SETTLE: Duration = Duration::from_secs(30);

/// The ccr child (killed when dropped) and its address.
struct Ccr {
    child: tokio::process::Child,
    base: String,
}

impl Ccr {
    /// `VmRSS` and `VmHWM` of the child, in KiB.
    fn memory(&self) -> (u64, u64) {
        let pid = self.child.id();
        (common::proc_status_kib(pid, "VmRSS:"), common::proc_status_kib(pid, "VmHWM:"))
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// One simulated account with room for every concurrent turn and a body of several MB.
fn memory_pool() -> SimPoolBuilder {
    SimPool::builder()
        .account(
            "sim",
            Account::new()
                .sim(SimOptions {
                    chunk_delay: Duration::ZERO,
                    max_body_bytes: 8 * 1024 * 1024,
                    ..SimOptions::named("memory-sim")
                })
                .token_ttl(Duration::from_secs(4 * 3600))
                .provider(json!({
                    "maxConcurrentRequests": 256, "firstByteTimeout": 30000, "idleTimeout": 30000,
                    "usage": {"enabled": false}
                })),
        )
        .rule("default", json!({"providers": ["sim"]}))
        .merge(json!({"name": "memory"}))
}

/// The ccr under test: this build, or `$CCR_MEMORY_BIN` to compare another.
async fn start_ccr(path: &std::path::Path, http: &reqwest::Client) -> Ccr {
    let bin = std::env::var_os("CCR_MEMORY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ccr").into());
    let (child, base) = common::spawn_ccr_quiet(&bin, path, http).await;
    Ccr { child, base }
}

/// One turn; `Err` says why it did not get a full answer.
async fn turn(http: &reqwest::Client, url: &str, body: bytes::Bytes, stream: bool) -> Result<(), String> {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("reading the answer: {e}"))?;
    if status != 200 {
        return Err(format!("{status}: {}", text.chars().take(300).collect::<String>()));
    }
    if stream {
        let last = text.lines().rev().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default();
        if last != "message_stop" {
            return Err(format!("stream ended with {last:?}"));
        }
    } else {
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
        if v["type"] != "message" {
            return Err(format!("not a message: {}", text.chars().take(300).collect::<String>()));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "memory test: release build; run with --ignored (see the module docs)"]
async fn resident_memory_comes_back_after_a_burst_of_1mb_turns() {
    let pool = memory_pool().start().await.unwrap();
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
    let ccr = start_ccr(&pool.config_path, &http).await;
    let url = format!("{}/v1/messages?beta=true", ccr.base);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = ccr.memory();
    println!("ccr idle after start: VmRSS {}", mib(idle));

    let bodies = [true, false].map(|stream| {
        bytes::Bytes::from(serde_json::to_vec(&shapes::long_session_request(TURN_BYTES, stream)).unwrap())
    });
    println!("burst: {WAVES} waves of {CONCURRENCY} concurrent turns of {} bytes", bodies[0].len());
    let started = Instant::now();
    let mut sampled_peak = 0;
    for wave in 0..WAVES {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CONCURRENCY {
            let stream = i % 2 == 0;
            let (http, url, body) = (http.clone(), url.clone(), bodies[usize::from(!stream)].clone());
            tasks.spawn(async move { turn(&http, &url, body, stream).await });
        }
        while !tasks.is_empty() {
            tokio::select! {
                done = tasks.join_next() => {
                    if let Some(done) = done {
                        done.expect("turn task").unwrap_or_else(|e| panic!("a turn of wave {wave} failed: {e}"));
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            sampled_peak = sampled_peak.max(ccr.memory().0);
        }
    }
    let (after, hwm) = ccr.memory();
    println!(
        "burst done in {:.1} s: VmRSS {} right after, sampled peak {}, VmHWM {}",
        started.elapsed().as_secs_f64(),
        mib(after),
        mib(sampled_peak),
        mib(hwm)
    );

    let ended = Instant::now();
    let mut timeline = Vec::new();
    let mut back_after = None;
    while ended.elapsed() <= SETTLE {
        let (rss, _) = ccr.memory();
        timeline.push(format!("{:.1}s {}", ended.elapsed().as_secs_f64(), mib(rss)));
        if rss < 2 * idle {
            back_after = Some(ended.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("after the burst: {}", timeline.join(", "));
    match back_after {
        Some(t) => println!("back under 2× idle ({}) after {:.1} s", mib(2 * idle), t.as_secs_f64()),
        None => println!("NOT back under 2× idle ({}) within {} s", mib(2 * idle), SETTLE.as_secs()),
    }
    assert!(idle < IDLE_LIMIT_KIB, "idle VmRSS {} is over {}", mib(idle), mib(IDLE_LIMIT_KIB));
    assert!(
        back_after.is_some(),
        "VmRSS did not come back under 2× idle ({}) within {} s of the burst: {}",
        mib(2 * idle),
        SETTLE.as_secs(),
        timeline.join(", ")
    );
    drop(ccr);
    pool.shutdown().await;
}

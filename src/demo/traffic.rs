//! A synthetic Claude Code: workers that send a realistic mix of request kinds through the real
//! proxy port and read every answer to the end, counting what a user would see.
//!
//! The mix follows real Claude Code traffic (the request shapes captured from the CLI): main
//! turns with adaptive thinking and tools (`default`), budgeted thinking (`thinking`), title and
//! page-summary requests without tools (`background`), the `web_search` server tool (`search`)
//! and an over-threshold prompt (`longcontext`). All are streaming, as Claude Code's are.

use crate::anthropic::sse::parse_events;
use crate::config::Category;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One kind of request and its share of the mix (percent).
const MIX: [(Category, u32); 5] = [
    (Category::Default, 45),
    (Category::Background, 20),
    (Category::Thinking, 15),
    (Category::Search, 10),
    (Category::Longcontext, 10),
];

/// What the synthetic user saw.
#[derive(Debug, Default)]
pub struct TrafficStats {
    pub sent: AtomicU64,
    /// Complete answers (`message_stop` seen).
    pub ok: AtomicU64,
    /// Error answers (an error status before any byte of the answer): what failover must hide.
    pub errors: AtomicU64,
    /// Streams that started and then ended with an `error` event (an upstream lost mid-answer).
    pub cut: AtomicU64,
    /// The answers by category and by provider (from the `x-ccr-*` headers).
    pub by_route: Mutex<BTreeMap<(String, String), u64>>,
    /// The last few client-visible errors.
    pub last_errors: Mutex<Vec<String>>,
}

impl TrafficStats {
    /// (sent, complete, error answers, cut streams).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (get(&self.sent), get(&self.ok), get(&self.errors), get(&self.cut))
    }

    fn record_error(&self, counter: &AtomicU64, message: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.last_errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() >= 8 {
            errors.remove(0);
        }
        errors.push(message);
    }

    /// A short multi-line summary for the end of a headless demo.
    pub fn summary(&self) -> String {
        let (sent, ok, errors, cut) = self.totals();
        // Requests still waiting for their answer when the demo stopped: the rest of `sent`.
        let unfinished = sent.saturating_sub(ok + errors + cut);
        let mut out = format!(
            "traffic: {sent} requests, {ok} complete answers, {errors} error answers, {cut} streams cut \
             mid-answer, {unfinished} unfinished at the end\n"
        );
        let routes = self.by_route.lock().unwrap_or_else(|e| e.into_inner());
        for ((category, provider), n) in routes.iter() {
            out.push_str(&format!("  {category:<12} {provider:<26} {n}\n"));
        }
        for e in self.last_errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push_str(&format!("  error: {e}\n"));
        }
        out
    }
}

/// How the generator behaves.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    pub base_url: String,
    /// Other instances of the same pool: a worker's turns go to `base_url` and these in turn
    /// (its conversation moves between instances).
    pub more_base_urls: Vec<String>,
    pub workers: usize,
    /// Pause between a worker's requests: uniformly random in this range.
    pub think_time: (Duration, Duration),
    pub seed: u64,
    /// Estimated tokens a `longcontext` request must exceed (the config's threshold).
    pub long_context_tokens: u64,
    /// API key to present, when the instance requires one.
    pub api_key: Option<String>,
}

/// Start the workers; they stop when `shutdown` turns true.
pub fn spawn(
    options: TrafficOptions,
    shutdown: watch::Receiver<bool>,
) -> (Vec<JoinHandle<()>>, std::sync::Arc<TrafficStats>) {
    let stats = std::sync::Arc::new(TrafficStats::default());
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|_| reqwest::Client::new());
    let handles = (0..options.workers)
        .map(|worker| {
            let options = options.clone();
            let stats = stats.clone();
            let http = http.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(options.seed.wrapping_add(worker as u64 * 7919));
                let mut turn = 0u64;
                loop {
                    let pause = rng.random_range(options.think_time.0..=options.think_time.1);
                    tokio::select! {
                        _ = shutdown.wait_for(|stop| *stop) => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    turn += 1;
                    let category = pick(&mut rng);
                    let body = request_for(category, worker, turn, options.long_context_tokens);
                    tokio::select! {
                        _ = shutdown.wait_for(|stop| *stop) => return,
                        _ = send(&http, &options, options.base_url_for(worker, turn), &body, &stats) => {}
                    }
                }
            })
        })
        .collect();
    (handles, stats)
}

fn pick(rng: &mut StdRng) -> Category {
    let total: u32 = MIX.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for (category, weight) in MIX {
        if roll < weight {
            return category;
        }
        roll -= weight;
    }
    Category::Default
}

impl TrafficOptions {
    /// The instance a worker's turn goes to: the first alone, else one after the other.
    fn base_url_for(&self, worker: usize, turn: u64) -> &str {
        let n = 1 + self.more_base_urls.len();
        let i = (worker + usize::try_from(turn).unwrap_or(0)) % n;
        if i == 0 { &self.base_url } else { &self.more_base_urls[i - 1] }
    }
}

async fn send(
    http: &reqwest::Client,
    options: &TrafficOptions,
    base_url: &str,
    body: &Value,
    stats: &TrafficStats,
) {
    stats.sent.fetch_add(1, Ordering::Relaxed);
    let mut request = http.post(format!("{base_url}/v1/messages?beta=true")).json(body);
    if let Some(key) = &options.api_key {
        request = request.header("x-api-key", key);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return stats.record_error(&stats.errors, format!("cannot reach ccr: {e}")),
    };
    let status = response.status();
    let header =
        |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let route = (header("x-ccr-category"), header("x-ccr-provider"));
    let text = match response.text().await {
        Ok(t) => t,
        Err(e) => return stats.record_error(&stats.cut, format!("answer cut: {e}")),
    };
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        return stats.record_error(&stats.errors, format!("{status}: {message}"));
    }
    let events = parse_events(&text);
    match events.last().map(|(name, data)| (name.as_str(), data)) {
        Some(("message_stop", _)) => {
            stats.ok.fetch_add(1, Ordering::Relaxed);
            *stats.by_route.lock().unwrap_or_else(|e| e.into_inner()).entry(route).or_insert(0) += 1;
        }
        Some(("error", data)) => stats.record_error(&stats.cut, format!("stream error: {data}")),
        _ => stats.record_error(&stats.cut, "stream ended without message_stop".into()),
    }
}

/// A Claude-Code-shaped request of the given category.
pub fn request_for(category: Category, worker: usize, turn: u64, long_context_tokens: u64) -> Value {
    let session = format!("{{\"device_id\":\"demo\",\"session_id\":\"demo-worker-{worker}\"}}");
    let tools = json!([
        {"name": "Bash", "description": "Executes a given bash command and returns its output.",
         "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "properties": {"command": {"type": "string", "description": "The command to execute"},
                           "timeout": {"type": "number"}},
            "required": ["command"], "additionalProperties": false}},
        {"name": "Read", "description": "Reads a file from the local filesystem.",
         "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
            "required": ["file_path"], "additionalProperties": false}}
    ]);
    let system = json!([
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197"},
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."}
    ]);
    let main = |text: String, thinking: Value| {
        json!({
            "model": "claude-opus-4-8", "max_tokens": 32000, "stream": true,
            "thinking": thinking, "output_config": {"effort": "high"},
            "metadata": {"user_id": session}, "system": system, "tools": tools,
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "<system-reminder>As you answer, use the tools.</system-reminder>"},
                    {"type": "text", "text": text}]},
                {"role": "system", "content": "Today's date is 2026-11-26."}
            ]
        })
    };
    match category {
        Category::Default => {
            let scenario = ["", " [sim:tool]", " [sim:text-after-tool]", " [sim:long]"][(turn % 4) as usize];
            main(
                format!("worker {worker} turn {turn}: fix the failing test{scenario}"),
                json!({"type": "adaptive"}),
            )
        }
        Category::Thinking => main(
            format!("worker {worker} turn {turn}: think about the design [sim:thinking]"),
            json!({"type": "enabled", "budget_tokens": 4000}),
        ),
        Category::Background => json!({
            "model": "claude-opus-4-8", "max_tokens": 64000, "stream": true,
            "thinking": {"type": "disabled"}, "tools": [], "metadata": {"user_id": session},
            "system": [{"type": "text", "text": "Generate a concise title for this coding session."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": format!("session {worker}-{turn}: fix the failing test")}]}]
        }),
        Category::Search => json!({
            "model": "claude-opus-4-8", "max_tokens": 64000, "stream": true,
            "thinking": {"type": "disabled"}, "metadata": {"user_id": session},
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}],
            "tool_choice": {"type": "tool", "name": "web_search"},
            "system": [{"type": "text", "text": "You are an assistant for performing a web search tool use"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": format!("Perform a web search for the query: rust {turn}")}]}]
        }),
        Category::Longcontext => {
            // ~4 bytes per estimated token: just over the threshold.
            let words = (long_context_tokens as usize * 4).div_ceil(5) + 500;
            main(format!("summarise this log:\n{}", "word ".repeat(words)), json!({"type": "adaptive"}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::types::parse_request;
    use crate::classify::{Thresholds, classify};

    #[test]
    fn every_kind_classifies_as_its_category() {
        let t = Thresholds { long_context: 20_000, background_max: 16_000 };
        for (category, _) in MIX {
            for turn in 0..4 {
                let body = request_for(category, 1, turn, t.long_context);
                let req = parse_request(body.to_string().as_bytes()).unwrap();
                assert_eq!(classify(&req, req.estimate_input_tokens(), t), category, "turn {turn}");
            }
        }
    }

    #[test]
    fn the_mix_is_seeded() {
        let picks = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50).map(|_| pick(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        let all = picks(7);
        for (category, _) in MIX {
            assert!(all.contains(&category), "{category} appears in 50 picks");
        }
    }
}

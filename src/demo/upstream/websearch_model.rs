//! How the simulated model behaves when it is given a `web_search` tool (the way ccr runs
//! Anthropic's web search server tool over Kiro, protocol notes §7.5).
//!
//! - Asked to search (`Perform a web search for the query: <q>`, Claude Code's WebSearch
//!   sub-request, "search the web for <q>" / "search for <q>", or when ccr's `web_search` tool is
//!   declared any message containing "search"), it says so and calls `web_search` with the
//!   query, or Claude Code's own `WebSearch` tool when that is the one declared (main conversation).
//! - Given search results as a tool result (they start with
//!   [`RESULTS_HEADER`](crate::providers::codewhisperer::websearch::RESULTS_HEADER)), it writes a
//!   summary naming every result title and URL. A query carrying `[sim:searches:N]` makes it
//!   search N times in all before summarising (`<query> (more 2)`, `(more 3)`, …), so tests can
//!   check `max_uses`.
//! - Given an error result, it says the search could not be completed.

use super::chat::RequestView;
use crate::providers::codewhisperer::websearch::RESULTS_HEADER;

/// The tool name ccr declares for web search.
pub const TOOL_NAME: &str = "web_search";

/// Claude Code's own (client) WebSearch tool: the main conversation calls it, and Claude Code
/// then sends the sub-request with the server tool.
pub const CLAUDE_CODE_TOOL: &str = "WebSearch";

/// The prefix of Claude Code's WebSearch sub-request.
const CLAUDE_CODE_PREFIX: &str = "Perform a web search for the query:";

fn declares_search(view: &RequestView<'_>) -> bool {
    view.tools.iter().any(|(name, _)| *name == TOOL_NAME)
}

/// The search tool to call: `web_search` (ccr's rounds) or Claude Code's `WebSearch`.
pub fn tool_name(view: &RequestView<'_>) -> Option<&'static str> {
    if declares_search(view) {
        Some(TOOL_NAME)
    } else if view.tools.iter().any(|(name, _)| *name == CLAUDE_CODE_TOOL) {
        Some(CLAUDE_CODE_TOOL)
    } else {
        None
    }
}

/// The query the model searches for first, when it should search.
pub fn query(view: &RequestView<'_>) -> Option<String> {
    tool_name(view)?;
    if let Some(next) = next_query(view) {
        return Some(next);
    }
    if !view.tool_results.is_empty() {
        return None;
    }
    let content = view.content;
    if let Some(at) = content.find(CLAUDE_CODE_PREFIX) {
        let rest = content[at + CLAUDE_CODE_PREFIX.len()..].lines().next().unwrap_or("").trim();
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    let lower = content.to_ascii_lowercase();
    for phrase in ["search the web for", "search for"] {
        if let Some(at) = lower.rfind(phrase) {
            let rest = content[at + phrase.len()..].lines().next().unwrap_or("").trim();
            let rest = rest.trim_end_matches(['.', '?', '!']).trim();
            if !rest.is_empty() {
                return Some(rest.to_owned());
            }
        }
    }
    if declares_search(view) && lower.contains("search") {
        let line = content.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        return (!line.is_empty()).then(|| line.to_owned());
    }
    None
}

/// The query of the results in the current tool results, and how many searches were done.
fn last_search(view: &RequestView<'_>) -> Option<(String, usize)> {
    let text = view.tool_results.iter().map(|(_, t)| t.as_str()).find(|t| t.starts_with(RESULTS_HEADER))?;
    let first_line = text.lines().next().unwrap_or("");
    let query = first_line[RESULTS_HEADER.len()..].trim().trim_matches('"').to_owned();
    let done = query
        .rsplit_once(" (more ")
        .and_then(|(_, n)| n.strip_suffix(')'))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1);
    Some((query, done))
}

/// Searches wanted in all: `[sim:searches:N]` in the query, else 1.
fn wanted(query: &str) -> usize {
    query
        .split("[sim:searches:")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The next query when the results so far are fewer than wanted.
fn next_query(view: &RequestView<'_>) -> Option<String> {
    let (query, done) = last_search(view)?;
    if done >= wanted(&query) {
        return None;
    }
    let base = query.rsplit_once(" (more ").map_or(query.as_str(), |(b, _)| b);
    Some(format!("{base} (more {})", done + 1))
}

/// The answer to the current tool results, when they are search results or a search error and
/// no further search is wanted.
pub fn summary(view: &RequestView<'_>) -> Option<String> {
    if declares_search(view) && next_query(view).is_some() {
        return None;
    }
    if let Some(text) =
        view.tool_results.iter().map(|(_, t)| t.as_str()).find(|t| t.starts_with(RESULTS_HEADER))
    {
        let mut found = Vec::new();
        // Claude Code's WebSearch tool result: `Links: [{"title":…,"url":…},…]`.
        for line in text.lines() {
            if let Some(links) = line.trim().strip_prefix("Links: ")
                && let Ok(serde_json::Value::Array(items)) = serde_json::from_str(links)
            {
                for item in items {
                    if let (Some(t), Some(u)) = (item["title"].as_str(), item["url"].as_str()) {
                        found.push(format!("{t} ({u})"));
                    }
                }
            }
        }
        let mut title = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some((n, rest)) = line.split_once(". ")
                && n.chars().all(|c| c.is_ascii_digit())
                && !n.is_empty()
            {
                title = Some(rest.to_owned());
            } else if let Some(url) = line.strip_prefix("URL: ")
                && let Some(t) = title.take()
            {
                found.push(format!("{t} ({url})"));
            }
        }
        return Some(format!("According to the search results: {}.", found.join("; ")));
    }
    let searched = view.tool_results.iter().any(|(_, t)| t.contains("web search"));
    searched.then(|| "The web search could not be completed, so I cannot answer from the web.".to_owned())
}

//! Request → routing category (design §5).
//!
//! Real Claude Code traffic differs from what older routers assumed: thinking is on in every main
//! turn (`adaptive`), background work often uses the main model, and token counts are never
//! requested. First match wins:
//!
//! | order | category | when |
//! |---|---|---|
//! | 1 | `longcontext` | estimated input tokens above `routing.longContextThreshold` |
//! | 2 | `search` | a tool whose `type` starts with `web_search` (Anthropic's server tool) |
//! | 3 | `background` | the model name contains `haiku`; or no tools, thinking absent or disabled, and fewer estimated tokens than `routing.backgroundMaxTokens` |
//! | 4 | `thinking` | `thinking.type == "enabled"` with a budget, or `output_config.effort` of `xhigh` / `max` |
//! | 5 | `default` | everything else, including `adaptive` thinking (every main turn) |

use crate::anthropic::types::{MessagesRequest, ThinkingKind};
use crate::config::{Category, Config};

/// The thresholds the classifier reads from `routing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub long_context: u64,
    pub background_max: u64,
}

impl Thresholds {
    pub fn from_config(config: &Config) -> Thresholds {
        Thresholds {
            long_context: u64::try_from(config.routing.long_context_threshold).unwrap_or(60_000),
            background_max: u64::try_from(config.routing.background_max_tokens).unwrap_or(16_000),
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { long_context: 60_000, background_max: 16_000 }
    }
}

/// Classify a parsed request whose input size was estimated as `estimated_tokens`.
pub fn classify(req: &MessagesRequest, estimated_tokens: u64, t: Thresholds) -> Category {
    if estimated_tokens > t.long_context {
        return Category::Longcontext;
    }
    if req.has_server_tool("web_search") {
        return Category::Search;
    }
    let thinking = req.thinking_kind();
    let no_thinking = matches!(thinking, None | Some(ThinkingKind::Disabled));
    if req.model.to_ascii_lowercase().contains("haiku")
        || (req.tools.is_empty() && no_thinking && estimated_tokens < t.background_max)
    {
        return Category::Background;
    }
    let deep_effort = matches!(req.effort(), Some("xhigh" | "max"));
    if (thinking == Some(ThinkingKind::Enabled) && req.thinking_budget().is_some()) || deep_effort {
        return Category::Thinking;
    }
    Category::Default
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::types::parse_request;
    use serde_json::json;

    fn category(body: serde_json::Value) -> Category {
        let req = parse_request(body.to_string().as_bytes()).unwrap();
        classify(&req, req.estimate_input_tokens(), Thresholds::default())
    }

    fn tool(name: &str) -> serde_json::Value {
        json!({"name": name, "description": "d", "input_schema": {"type": "object", "properties": {}}})
    }

    #[test]
    fn main_turn_with_adaptive_thinking_is_default() {
        let body = json!({"model":"claude-opus-4-8","max_tokens":32000,"thinking":{"type":"adaptive"},
            "output_config":{"effort":"high"},"tools":[tool("Bash")],
            "messages":[{"role":"user","content":"say hello"}]});
        assert_eq!(category(body), Category::Default);
    }

    #[test]
    fn budgeted_thinking_is_thinking_and_so_is_max_effort() {
        let body = json!({"model":"claude-sonnet-4-5-20250929","max_tokens":32000,
            "thinking":{"type":"enabled","budget_tokens":4000},"tools":[tool("Bash")],
            "messages":[{"role":"user","content":"think"}]});
        assert_eq!(category(body), Category::Thinking);
        let body = json!({"model":"claude-opus-4-8","max_tokens":32000,"thinking":{"type":"adaptive"},
            "output_config":{"effort":"max"},"tools":[tool("Bash")],
            "messages":[{"role":"user","content":"think hard"}]});
        assert_eq!(category(body), Category::Thinking);
    }

    #[test]
    fn haiku_and_small_toolless_requests_are_background() {
        let haiku = json!({"model":"claude-haiku-4-5-20251001","max_tokens":32000,
            "thinking":{"type":"enabled","budget_tokens":31999},"tools":[tool("Read")],
            "messages":[{"role":"user","content":"explore"}]});
        assert_eq!(category(haiku), Category::Background);
        let title = json!({"model":"claude-opus-4-8","max_tokens":64000,"thinking":{"type":"disabled"},"tools":[],
            "messages":[{"role":"user","content":"write a title"}]});
        assert_eq!(category(title), Category::Background);
        let smallfast = json!({"model":"my-small-fast","max_tokens":32000,"tools":[],
            "messages":[{"role":"user","content":"write a title"}]});
        assert_eq!(category(smallfast), Category::Background);
    }

    #[test]
    fn thinking_disabled_main_turn_with_tools_is_default() {
        let body = json!({"model":"claude-opus-4-8","max_tokens":32000,"thinking":{"type":"disabled"},
            "tools":[tool("Bash")],"messages":[{"role":"user","content":"hi"}]});
        assert_eq!(category(body), Category::Default);
    }

    #[test]
    fn web_search_server_tool_is_search() {
        let body = json!({"model":"claude-opus-4-8","max_tokens":64000,"thinking":{"type":"disabled"},
            "tools":[{"type":"web_search_20250305","name":"web_search","max_uses":8}],
            "tool_choice":{"type":"tool","name":"web_search"},
            "messages":[{"role":"user","content":"Perform a web search for the query: weather"}]});
        assert_eq!(category(body), Category::Search);
    }

    #[test]
    fn long_prompts_are_longcontext_before_anything_else() {
        let words = "word ".repeat(70_000 * 4 / 5 + 10);
        let body = json!({"model":"claude-haiku-4-5","max_tokens":32000,
            "tools":[{"type":"web_search_20250305","name":"web_search"}],
            "messages":[{"role":"user","content": words}]});
        assert_eq!(category(body), Category::Longcontext);
    }
}

//! What a user meets on the first run and every start: each account's token file is read at once
//! and a problem is reported with its fix ([`tokens`]), and `ccr init` writes a starter config
//! ([`init`]).

pub mod init;
pub mod tokens;

pub use tokens::{TokenProblem, fix_hint, token_problems};

/// `API_TIMEOUT_MS` suggested to Claude Code: long thinking turns through Kiro can outlast
/// Claude Code's default of 10 minutes.
pub const CLAUDE_CODE_TIMEOUT_MS: u64 = 3_000_000;

/// The shell lines that point Claude Code at a running ccr. `ANTHROPIC_AUTH_TOKEN`, not
/// `ANTHROPIC_API_KEY` (which makes Claude Code ask "Detected a custom API key… use it?").
/// With `server.apiKey` set the token must be that key (never printed here).
pub fn claude_code_env(base_url: &str, api_key_required: bool) -> String {
    let token = if api_key_required { "<your server.apiKey>" } else { "ccr" };
    format!(
        "point Claude Code here:\n  export ANTHROPIC_BASE_URL={base_url}\n  export ANTHROPIC_AUTH_TOKEN={token}\n  \
         export API_TIMEOUT_MS={CLAUDE_CODE_TIMEOUT_MS}"
    )
}

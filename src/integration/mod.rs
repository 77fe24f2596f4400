//! Claude Code integration: `ccr code` (run Claude Code through ccr, starting a background
//! instance when none answers), `ccr stop` (stop that instance), and `ccr statusline` (the
//! command for Claude Code's `statusLine` setting).

pub mod code;
pub mod statusline;

use crate::cli::ConfigArgs;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct CodeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Arguments passed to Claude Code unchanged (after `--`).
    #[arg(last = true, value_name = "CLAUDE_ARGS")]
    pub claude_args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Clone, Args)]
pub struct StatuslineArgs {
    /// Base URL of the instance. Default: the address in the config.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

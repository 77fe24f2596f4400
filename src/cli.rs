//! The command line: `ccr start | tui | demo | check | status | accounts | keys | code | stop | statusline`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Run Claude Code on several Kiro / CodeWhisperer accounts at once.
///
/// ccr is an Anthropic-compatible proxy with a load balancer, health checks, circuit breakers and
/// a live dashboard. Point Claude Code at it with
/// `ANTHROPIC_BASE_URL=http://127.0.0.1:3456` and `ANTHROPIC_AUTH_TOKEN=ccr` (or your
/// `server.apiKey`). First time: `ccr init` writes a config with the accounts it finds.
#[derive(Debug, Parser)]
#[command(name = "ccr", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy headless; logs go to stderr.
    ///
    /// Config lookup: --config, else $CCR_CONFIG, else ~/.config/ccr/config.json, else
    /// ~/.claude-code-router/config.json if it is a ccr config, else the built-in default.
    Start(StartArgs),
    /// Run the proxy with the live dashboard in this terminal.
    Tui(TuiArgs),
    /// The dashboard against simulated CodeWhisperer upstreams and synthetic Claude Code
    /// traffic: no account needed. Demo keys inject faults into the selected upstream.
    Demo(DemoArgs),
    /// Validate a config and print the resolved routing table; exits non-zero on errors.
    Check(ConfigArgs),
    /// Print a running instance's load-balancing state.
    Status(StatusArgs),
    /// Add, list and remove Kiro accounts (import a Kiro token file, or log in with Builder ID).
    #[command(subcommand)]
    Accounts(crate::accounts::args::AccountsCommand),
    /// Developers' keys: add (prints the key once, stores its hash), list (limits and usage), remove.
    #[command(subcommand)]
    Keys(crate::keys::args::KeysCommand),
    /// Run Claude Code through ccr, starting an instance in the background when none answers.
    Code(CodeArgs),
    /// Stop the background instance `ccr code` started for this config.
    Stop(ConfigArgs),
    /// The command for Claude Code's `statusLine` setting: account, credits, reset, category.
    Statusline(StatuslineArgs),
    /// Write a starter config (default ~/.config/ccr/config.json) with the Kiro accounts found
    /// in ~/.aws/sso/cache, and say what to do next.
    Init(InitArgs),
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Where to write. Default: ~/.config/ccr/config.json ($XDG_CONFIG_HOME/ccr/config.json).
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Config file (JSON). Default: $CCR_CONFIG, else ~/.config/ccr/config.json, else built in.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Listen address, overriding `server.host`.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Listen port, overriding `server.port` (0 picks a free port; `ccr demo` defaults to 3456
    /// when free, else any free port).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Also print a compact load-balancing status table at start, on every health, breaker or
    /// drain change, and every few seconds.
    #[arg(long)]
    pub show_lb_status: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TuiArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// No dashboard: run for --duration and print the status table like `start --show-lb-status`.
    #[arg(long)]
    pub headless: bool,
    /// How long a headless demo runs, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub duration: u64,
    /// Seed for the traffic generator and fault injection (same seed, same traffic).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Run this many ccr instances (1–4) in front of the same simulated pool, sharing its state
    /// through Redis (docs/shared-state.md); they listen on consecutive ports.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=4))]
    pub instances: u8,
    /// The Redis the instances share (`redis://…`, `redis+unix://…`). Default with
    /// `--instances` above 1: a private `redis-server` started for the demo (needs it on PATH).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Address of the running instance (`http://127.0.0.1:3456` or `127.0.0.1:3456`); no
    /// config is read when given. Default: the address in the config.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_seed_invocation() {
        let cli = Cli::try_parse_from([
            "ccr",
            "start",
            "--config=codewhisperer-load-balancing.json",
            "--show-lb-status",
        ])
        .unwrap();
        match cli.command {
            Command::Start(a) => {
                assert!(a.show_lb_status);
                assert_eq!(a.config.config.unwrap(), PathBuf::from("codewhisperer-load-balancing.json"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}

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

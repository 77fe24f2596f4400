//! The `ccr` binary: install error reporting, parse the command line, run one command.

use ccr::cli::{Cli, Command, ConfigArgs};
use ccr::config;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Err(e) = color_eyre::install() {
        eprintln!("ccr: cannot install error reporting: {e}");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Start(_) => not_built("start"),
        Command::Tui(_) => not_built("tui"),
        Command::Demo(_) => not_built("demo"),
        Command::Status(_) => not_built("status"),
    }
}

fn not_built(what: &str) -> ExitCode {
    eprintln!("ccr {what}: not built yet");
    ExitCode::from(2)
}

/// `ccr check`: validate, print the resolved table, exit 0 / 1.
fn check(args: &ConfigArgs) -> ExitCode {
    let source = config::locate(args.config.as_deref());
    match config::load(&source) {
        Ok((cfg, _)) => {
            println!("{}", cfg.describe(&source));
            println!("OK: {} is valid", source.label());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", render_config_error(&e));
            ExitCode::FAILURE
        }
    }
}

fn render_config_error(e: &config::ConfigError) -> String {
    let problems = e.problems();
    let file = match e {
        config::ConfigError::Io { file, .. } | config::ConfigError::Parse { file, .. } => file,
    };
    if matches!(e, config::ConfigError::Io { .. }) {
        return format!("error: {}", problems.join("\n"));
    }
    let mut out =
        format!("error: {file}: {} problem{}", problems.len(), if problems.len() == 1 { "" } else { "s" });
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p);
    }
    out
}

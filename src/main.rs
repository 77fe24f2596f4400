//! The `ccr` binary: install error reporting, parse the command line, run one command.

use ccr::app::{self, ListenOverride};
use ccr::cli::{Cli, Command, ConfigArgs, DemoArgs, ListenArgs, StartArgs};
use ccr::config::{self, Config, ConfigSource};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Err(e) = color_eyre::install() {
        eprintln!("ccr: cannot install error reporting: {e}");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Start(args) => start(args),
        Command::Tui(args) => match load_config(&args.config) {
            Ok((cfg, source)) => app::dashboard::run_tui(cfg, source, listen(&args.listen)),
            Err(code) => code,
        },
        Command::Demo(args) => demo(args),
        Command::Status(args) => ccr::status::run(&args),
        Command::Accounts(command) => ccr::accounts::run(&command),
        Command::Keys(command) => ccr::keys::cli::run(&command),
        Command::Code(args) => ccr::integration::code::run(&args),
        Command::Stop(args) => ccr::integration::code::stop(&args),
        Command::Statusline(args) => ccr::integration::statusline::run(&args),
    }
}

/// Load the config for a serving command, or print its problems. Nothing else has started yet.
fn load_config(args: &ConfigArgs) -> Result<(Config, ConfigSource), ExitCode> {
    let source = config::locate(args.config.as_deref());
    match config::load(&source) {
        Ok((cfg, _)) => Ok((cfg, source)),
        Err(e) => {
            eprintln!("{}", render_config_error(&e));
            Err(ExitCode::FAILURE)
        }
    }
}

fn listen(args: &ListenArgs) -> ListenOverride {
    ListenOverride { host: args.host.clone(), port: args.port }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn init_stderr_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// `ccr start`: the headless proxy until Ctrl-C.
fn start(args: StartArgs) -> ExitCode {
    let (cfg, source) = match load_config(&args.config) {
        Ok(v) => v,
        Err(code) => return code,
    };
    init_stderr_logs();
    eprintln!("{}", source.notice());
    for w in config::warnings(&cfg) {
        tracing::warn!("config: {w}");
    }
    let print_env = cfg.input.default_instance;
    runtime().block_on(async move {
        let mut signals = ccr::signals::StopSignals::install();
        let running = match app::launch(cfg, source, listen(&args.listen)).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!("listening on {}", running.base_url());
        if print_env {
            eprintln!("point Claude Code here:\n  export ANTHROPIC_BASE_URL={}\n  export ANTHROPIC_API_KEY=any-value", running.base_url());
        }
        let status = args
            .show_lb_status
            .then(|| ccr::status::spawn_printer(running.snapshots(), running.shutdown_signal()));
        let first = signals.next().await;
        ccr::signals::shut_down_on(&mut signals, first, running.shutdown()).await;
        if let Some(task) = status {
            task.abort();
        }
        ExitCode::SUCCESS
    })
}

/// `ccr check`: validate, print the resolved table, exit 0 / 1.
fn check(args: &ConfigArgs) -> ExitCode {
    let source = config::locate(args.config.as_deref());
    match config::load(&source) {
        Ok((cfg, _)) => {
            println!("{}", cfg.describe(&source));
            for w in config::warnings(&cfg) {
                println!("warning: {w}");
            }
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
    let count = e.problem_count();
    let mut out = format!("error: {file}: {count} problem{}", if count == 1 { "" } else { "s" });
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p);
    }
    out
}

/// `ccr demo`: simulated upstreams, synthetic traffic, and the dashboard (or, with
/// `--headless`, the status printer for `--duration` seconds).
fn demo(args: DemoArgs) -> ExitCode {
    let options = ccr::demo::run::DemoOptions {
        listen: ListenOverride { host: args.listen.host.clone(), port: Some(args.listen.port.unwrap_or(0)) },
        seed: args.seed.unwrap_or(1),
        workers: 4,
    };
    if !args.headless {
        if let Err(e) = ccr::tui::init_logging() {
            eprintln!("ccr demo: {e}");
            return ExitCode::FAILURE;
        }
        return match runtime().block_on(ccr::demo::run::run_interactive(options)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ccr demo: {e:?}");
                ExitCode::FAILURE
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let duration = std::time::Duration::from_secs(args.duration.max(3));
    match runtime().block_on(ccr::demo::run::run_headless(options, duration)) {
        Ok((summary, clean)) => {
            println!("{summary}");
            if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

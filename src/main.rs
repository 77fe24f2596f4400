//! The `ccr` binary: install error reporting, parse the command line, run one command.

use ccr::app::{self, ListenOverride};
use ccr::cli::{Cli, Command, ConfigArgs, DemoArgs, InitArgs, ListenArgs, StartArgs};
use ccr::config::{self, Config, ConfigSource};
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: it gives a burst's memory back to the OS (see
/// [`ccr::memory`]).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    ccr::memory::release_after_bursts();
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
        Command::Keys(command) => ccr::keys_cli::run(&command),
        Command::Code(args) => ccr::integration::code::run(&args),
        Command::Stop(args) => ccr::integration::code::stop(&args),
        Command::Statusline(args) => ccr::integration::statusline::run(&args),
        Command::Init(args) => init(&args),
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
    // Colour only for a terminal: logs sent to a file or a pipe carry no escape codes.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Print, once at start, every account whose token file cannot be used, with the fix.
fn report_token_problems(cfg: &Config) {
    let problems = ccr::firstrun::token_problems(cfg);
    for line in ccr::firstrun::tokens::report(cfg, &problems) {
        tracing::warn!("{line}");
    }
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
    report_token_problems(&cfg);
    let print_env = cfg.input.default_instance;
    let api_key_required = cfg.server.api_key.is_some();
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
            eprintln!("{}", ccr::firstrun::claude_code_env(&running.base_url(), api_key_required));
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

/// `ccr check`: validate, print the resolved table, exit 0 / 1. Reports what `ccr start` would
/// refuse (an open listen address without `server.apiKey`) as an error, and token files that
/// cannot be used as warnings.
fn check(args: &ConfigArgs) -> ExitCode {
    let source = config::locate(args.config.as_deref());
    match config::load(&source) {
        Ok((cfg, _)) => {
            if matches!(source, config::ConfigSource::EmbeddedSkipping(_)) {
                println!("note: {}", source.notice());
            }
            println!("{}", cfg.describe(&source));
            for w in config::warnings(&cfg) {
                println!("warning: {w}");
            }
            for p in ccr::firstrun::token_problems(&cfg) {
                println!("warning: {p}\n  fix: {}", ccr::firstrun::fix_hint(&p.provider));
            }
            if !app::is_loopback(&cfg.server.host) && cfg.server.api_key.is_none() {
                eprintln!(
                    "error: server.host: {}",
                    app::LaunchError::OpenWithoutKey { host: cfg.server.host.clone() }
                );
                return ExitCode::FAILURE;
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

/// `ccr init`: write a starter config and say what to do next.
fn init(args: &InitArgs) -> ExitCode {
    let target = match args.config.clone().map_or_else(ccr::firstrun::init::default_target, Ok) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ccr init: {e}");
            return ExitCode::FAILURE;
        }
    };
    match ccr::firstrun::init::run(&target, args.force) {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ccr init: {e}");
            ExitCode::FAILURE
        }
    }
}

fn render_config_error(e: &config::ConfigError) -> String {
    let problems = e.problems();
    let file = match e {
        config::ConfigError::Io { file, .. }
        | config::ConfigError::Parse { file, .. }
        | config::ConfigError::NodeRouter { file, .. } => file,
    };
    if matches!(e, config::ConfigError::Io { .. } | config::ConfigError::NodeRouter { .. }) {
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
/// `--headless`, the status printer for `--duration` seconds). Listens on 3456 when it is free
/// (else on any free port, and says which). Failures are one line, never a report.
fn demo(args: DemoArgs) -> ExitCode {
    let port = match args.listen.port {
        Some(p) => p,
        None => {
            let host = args.listen.host.as_deref().unwrap_or("127.0.0.1");
            if std::net::TcpListener::bind((host, config::DEFAULT_PORT)).is_ok() {
                config::DEFAULT_PORT
            } else {
                eprintln!("ccr demo: port {} is taken; using any free port", config::DEFAULT_PORT);
                0
            }
        }
    };
    let options = ccr::demo::run::DemoOptions {
        listen: ListenOverride { host: args.listen.host.clone(), port: Some(port) },
        seed: args.seed.unwrap_or(1),
        workers: 4,
        instances: usize::from(args.instances),
        redis: args.redis.clone(),
    };
    if !args.headless {
        if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
            eprintln!(
                "ccr demo: the dashboard needs a terminal; run `ccr demo --headless` to run without one"
            );
            return ExitCode::FAILURE;
        }
        if let Err(e) = ccr::tui::init_logging() {
            eprintln!("ccr demo: {e}");
            return ExitCode::FAILURE;
        }
        return match runtime().block_on(ccr::demo::run::run_interactive(options)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ccr demo: {}{}", one_line(&e), busy_hint(&e));
                ExitCode::FAILURE
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let duration = std::time::Duration::from_secs(args.duration.max(3));
    match runtime().block_on(ccr::demo::run::run_headless(options, duration)) {
        Ok((summary, clean)) => {
            println!("{summary}");
            if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("ccr demo: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line (`a: b: c`), without a report's location or backtrace.
fn one_line(e: &color_eyre::Report) -> String {
    let mut out = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if out.contains(&cause) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&cause);
    }
    out
}

fn busy_hint(e: &color_eyre::Report) -> &'static str {
    let busy = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
            || c.to_string().contains("cannot listen")
    });
    if busy { " (pick another --port, or run `ccr demo --headless`)" } else { "" }
}

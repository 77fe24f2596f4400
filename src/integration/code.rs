//! `ccr code [-- CLAUDE_ARGS…]` and `ccr stop`.
//!
//! `ccr code` makes sure an instance for the config answers on the config's address; when none
//! does, it starts `ccr start` in the background (its own process group, so Ctrl-C in Claude Code
//! does not reach it) with its logs in `<state>/instance-<host>-<port>.log` and its pid in
//! `….pid`, where `<state>` is `$XDG_STATE_HOME/ccr` (default `~/.local/state/ccr`). Then it
//! runs Claude Code (`$CCR_CLAUDE_BIN`, else `claude` on PATH) with:
//!
//! - `ANTHROPIC_BASE_URL` = the instance;
//! - `ANTHROPIC_AUTH_TOKEN` = `server.apiKey`, or a placeholder when none is set. Claude Code
//!   sends it as `Authorization: Bearer`, which ccr accepts, and unlike `ANTHROPIC_API_KEY` it
//!   does not make Claude Code ask "Detected a custom API key… use it?" on first start;
//! - `ANTHROPIC_API_KEY` removed, so a real Anthropic key in the shell is never sent to ccr.
//!
//! Arguments after `--` go to Claude Code unchanged; `ccr code` exits with its status. `ccr stop`
//! signals the background instance (SIGINT with the system's `kill`: the same graceful
//! shutdown as Ctrl-C) and removes
//! the pid file.

use super::CodeArgs;
use crate::cli::ConfigArgs;
use crate::config::{self, Config, ConfigSource};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The value of `ANTHROPIC_AUTH_TOKEN` when the config sets no `server.apiKey`.
pub const PLACEHOLDER_KEY: &str = "ccr-no-key-needed";

/// Environment variable naming the Claude Code binary (default `claude` on PATH).
pub const CLAUDE_BIN_ENV: &str = "CCR_CLAUDE_BIN";

/// How long a freshly started instance may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The folder of background instances' pid and log files.
pub fn state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("ccr"));
    }
    dirs::home_dir().map(|h| h.join(".local").join("state").join("ccr"))
}

/// The pid and log files of the background instance listening on `config`'s address.
#[derive(Debug, Clone)]
pub struct InstanceFiles {
    pub pid: PathBuf,
    pub log: PathBuf,
}

impl InstanceFiles {
    pub fn for_config(config: &Config) -> Option<InstanceFiles> {
        let host: String = config
            .server
            .host
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .collect();
        let stem = format!("instance-{host}-{}", config.server.port);
        let dir = state_dir()?;
        Some(InstanceFiles { pid: dir.join(format!("{stem}.pid")), log: dir.join(format!("{stem}.log")) })
    }

    fn read_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid).ok()?.trim().parse().ok()
    }
}

/// Whether something answers HTTP at `base` (`http://host:port`): one `GET /health` with short
/// timeouts; any HTTP status counts (monitoring may be off).
pub fn answers(base: &str, timeout: Duration) -> bool {
    super::statusline::http_get(base, "/health", None, timeout).is_ok()
}

fn load(args: &ConfigArgs, verb: &str) -> Result<(Config, ConfigSource), ExitCode> {
    let source = config::locate(args.config.as_deref());
    match config::load(&source) {
        Ok((cfg, _)) => Ok((cfg, source)),
        Err(e) => {
            eprintln!("ccr {verb}: {}", e.problems().join("\n  "));
            Err(ExitCode::FAILURE)
        }
    }
}

/// `ccr code`.
pub fn run(args: &CodeArgs) -> ExitCode {
    let (cfg, source) = match load(&args.config, "code") {
        Ok(v) => v,
        Err(code) => return code,
    };
    if cfg.server.port == 0 {
        eprintln!(
            "ccr code: server.port is 0 (any free port); ccr code needs a fixed port to find its instance again"
        );
        return ExitCode::FAILURE;
    }
    let base = crate::status::default_url(&cfg);
    if !answers(&base, Duration::from_millis(500)) {
        if let Err(e) = start_background(&cfg, &source, &base) {
            eprintln!("ccr code: {e}");
            return ExitCode::FAILURE;
        }
    }
    let bin = std::env::var_os(CLAUDE_BIN_ENV).filter(|b| !b.is_empty()).unwrap_or_else(|| "claude".into());
    let key =
        cfg.server.api_key.clone().filter(|k| !k.is_empty()).unwrap_or_else(|| PLACEHOLDER_KEY.to_owned());
    let mut command = tokio::process::Command::new(&bin);
    command
        .args(&args.claude_args)
        .env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_AUTH_TOKEN", key)
        .env_remove("ANTHROPIC_API_KEY");
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccr code: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "ccr code: cannot run `{}`: not found (install Claude Code, or set ${CLAUDE_BIN_ENV} to its path); ccr is at {base}",
                    bin.to_string_lossy()
                );
                return ExitCode::from(127);
            }
            Err(e) => {
                eprintln!("ccr code: cannot run `{}`: {e}", bin.to_string_lossy());
                return ExitCode::from(126);
            }
        };
        // Ctrl-C belongs to Claude Code (same terminal): ccr code keeps waiting for it.
        loop {
            tokio::select! {
                status = child.wait() => {
                    return match status {
                        Ok(s) => exit_code_of(s),
                        Err(e) => {
                            eprintln!("ccr code: waiting for Claude Code failed: {e}");
                            ExitCode::FAILURE
                        }
                    };
                }
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    })
}

fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return ExitCode::from(u8::try_from(128 + signal).unwrap_or(1));
        }
    }
    ExitCode::FAILURE
}

/// Start `ccr start` for this config in the background and wait until it answers.
fn start_background(cfg: &Config, source: &ConfigSource, base: &str) -> Result<(), String> {
    let files = InstanceFiles::for_config(cfg).ok_or("no home directory for the state folder")?;
    if let Some(dir) = files.pid.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the ccr binary: {e}"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.log)
        .map_err(|e| format!("cannot open {}: {e}", files.log.display()))?;
    let log_err = log.try_clone().map_err(|e| format!("cannot open {}: {e}", files.log.display()))?;
    let mut command = Command::new(exe);
    command.arg("start");
    if let Some(path) = source.path() {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        command.arg("--config").arg(path);
    }
    command.stdin(Stdio::null()).stdout(log).stderr(log_err);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|e| format!("cannot start ccr: {e}"))?;
    std::fs::write(&files.pid, format!("{}\n", child.id()))
        .map_err(|e| format!("cannot write {}: {e}", files.pid.display()))?;
    let started = Instant::now();
    loop {
        if answers(base, Duration::from_millis(300)) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_file(&files.pid);
            return Err(format!(
                "the background instance exited ({status}) before answering on {base}; its log {}:\n{}",
                files.log.display(),
                log_tail(&files.log, 10)
            ));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(format!(
                "the background instance (pid {}) does not answer on {base} after {} s; see {}",
                child.id(),
                START_TIMEOUT.as_secs(),
                files.log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "ccr: started an instance on {base} (pid {}, {}, logs: {}); `ccr stop` stops it",
        child.id(),
        source.notice(),
        files.log.display()
    );
    Ok(())
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `ccr stop`.
pub fn stop(args: &ConfigArgs) -> ExitCode {
    let (cfg, _) = match load(args, "stop") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let base = crate::status::default_url(&cfg);
    let Some(files) = InstanceFiles::for_config(&cfg) else {
        eprintln!("ccr stop: no home directory for the state folder");
        return ExitCode::FAILURE;
    };
    let Some(pid) = files.read_pid() else {
        let hint = if answers(&base, Duration::from_millis(300)) {
            " (something answers there: an instance started with `ccr start` stops with Ctrl-C in its terminal)"
        } else {
            ""
        };
        println!("ccr stop: no background instance for {base}{hint}");
        return ExitCode::SUCCESS;
    };
    if !is_ccr_process(pid) {
        let _ = std::fs::remove_file(&files.pid);
        println!("ccr stop: the background instance for {base} is not running (stale pid file removed)");
        return ExitCode::SUCCESS;
    }
    match terminate(pid) {
        Ok(()) => {
            let _ = std::fs::remove_file(&files.pid);
            println!("ccr stop: stopped the instance on {base} (pid {pid})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ccr stop: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `pid` is a live (not zombie) `ccr start` process. Off Linux: whether it is alive.
fn is_ccr_process(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, Some("Z" | "X")) {
            return false;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        return args.iter().skip(1).any(|a| *a == b"start");
    }
    alive(pid)
}

/// Send `signal` (`INT`, `TERM`, `0`) with the system's `kill` (the crate has no unsafe code).
#[cfg(unix)]
fn kill(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(unix)]
fn alive(pid: u32) -> bool {
    kill(pid, "0")
}

#[cfg(not(unix))]
fn alive(_: u32) -> bool {
    false
}

/// SIGINT (graceful, like Ctrl-C), then SIGTERM after 10 s.
#[cfg(unix)]
fn terminate(pid: u32) -> Result<(), String> {
    for (signal, wait) in [("INT", Duration::from_secs(10)), ("TERM", Duration::from_secs(5))] {
        if !kill(pid, signal) {
            return if is_ccr_process(pid) { Err(format!("cannot signal pid {pid}")) } else { Ok(()) };
        }
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if !is_ccr_process(pid) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Err(format!("pid {pid} is still running after SIGINT and SIGTERM"))
}

#[cfg(not(unix))]
fn terminate(pid: u32) -> Result<(), String> {
    Err(format!("stopping pid {pid} is only supported on unix; end it with the task manager"))
}

/// Read a whole small file into a string, for tests and the statusline.
pub(crate) fn read_limited(mut r: impl Read, limit: u64) -> String {
    let mut s = String::new();
    let _ = r.by_ref().take(limit).read_to_string(&mut s);
    s
}

/// Write one line and flush, ignoring a closed pipe.
pub(crate) fn print_line(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Resolve `host:port` of an `http://` base URL.
pub(crate) fn socket_of(base: &str) -> Option<std::net::SocketAddr> {
    let rest = base.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    authority.to_socket_addrs().ok()?.next()
}

/// Connect with a timeout.
pub(crate) fn connect(base: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let addr = socket_of(base).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "only http://host:port URLs are supported")
    })?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

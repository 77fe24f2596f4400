//! `ccr accounts`: add, list and remove Kiro accounts without editing JSON by hand.
//!
//! - [`import`]: copy a Kiro token file (default: the Kiro IDE's) into ccr's own accounts folder,
//!   check it upstream, add the provider to the config.
//! - [`login`]: the Builder ID device-code login (AWS SSO-OIDC, protocol notes §7.7), then the same.
//! - [`list`]: every account's tier and credits, asked upstream (`getUsageLimits`), no instance needed.
//! - [`remove`]: out of the providers and every rule.
//!
//! The config is edited as JSON ([`edit`]): keys and their order are kept, the result must pass
//! the same validation as `ccr check` before it replaces the file (atomically), and a refused
//! command leaves the file untouched. A running instance picks the change up by hot reload.
//! Token files ccr owns live in `accounts/` beside the config, mode 0600.

pub mod args;
pub mod edit;
pub mod import;
pub mod list;
pub mod login;
pub mod remove;
pub mod usage;

use crate::atomic_file::Permissions;
use crate::config::{self, ConfigSource};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Why an accounts command refused or failed. Messages never carry token material.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("{0}")]
    Refused(String),
    #[error("{file}: {reason}")]
    Io { file: String, reason: String },
    #[error("the config would not be valid after this change (nothing was written):\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl AccountsError {
    pub fn refused(message: impl Into<String>) -> Self {
        AccountsError::Refused(message.into())
    }

    pub fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        AccountsError::Io { file: path.display().to_string(), reason: e.to_string() }
    }
}

/// The config file an accounts command edits, as JSON text and value.
#[derive(Debug)]
pub struct ConfigDoc {
    pub path: PathBuf,
    /// `None` when the file does not exist yet (it is created on save).
    pub original: Option<String>,
    pub value: Value,
}

impl ConfigDoc {
    /// The config named by `--config`, `$CCR_CONFIG`, or the user config (created on save when
    /// there is none: the built-in default is never copied, its accounts are placeholders).
    /// An existing file must be valid: accounts commands never build on a broken config.
    pub fn open(flag: Option<&Path>) -> Result<ConfigDoc, AccountsError> {
        let path = match config::locate(flag) {
            ConfigSource::Embedded => config::user_config_path().ok_or_else(|| {
                AccountsError::refused("no home directory to keep a config in; use --config FILE")
            })?,
            source => source.path().map(Path::to_path_buf).unwrap_or_default(),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let value = serde_json::json!({"routing": {"rules": {}}, "providers": {}});
                return Ok(ConfigDoc { path, original: None, value });
            }
            Err(e) => return Err(AccountsError::io(&path, e)),
        };
        if let Err(e) = config::parse_config(&text) {
            return Err(AccountsError::refused(format!(
                "{} is not valid; fix it first (`ccr check --config {}`): {e}",
                path.display(),
                path.display()
            )));
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| AccountsError::io(&path, e))?;
        Ok(ConfigDoc { path, original: Some(text), value })
    }

    /// The folder ccr keeps account token files in: `accounts/` beside the config.
    pub fn accounts_dir(&self) -> PathBuf {
        self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("accounts")
    }

    pub fn providers(&self) -> Option<&Map<String, Value>> {
        self.value.get("providers").and_then(Value::as_object)
    }

    /// Check the edited value as `ccr check` would, then replace the file atomically (mode kept;
    /// 0600 for a new file). Nothing is written when the check fails.
    pub fn save(&self) -> Result<(), AccountsError> {
        let mut text =
            serde_json::to_string_pretty(&self.value).map_err(|e| AccountsError::io(&self.path, e))?;
        text.push('\n');
        if let Err(e) = config::parse_config(&text) {
            let problems = match e {
                config::ParseError::Invalid(p) => p.iter().map(|p| p.to_string()).collect(),
                other => vec![other.to_string()],
            };
            return Err(AccountsError::Invalid(problems));
        }
        write_file_atomically(&self.path, text.as_bytes(), Permissions::Keep)
    }
}

/// Replace `path` with `bytes` through the one atomic writer ([`crate::atomic_file`]), creating
/// the folder when needed.
pub fn write_file_atomically(
    path: &Path,
    bytes: &[u8],
    permissions: Permissions,
) -> Result<(), AccountsError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| AccountsError::io(dir, e))?;
    crate::atomic_file::write(path, bytes, permissions).map_err(|e| AccountsError::io(path, e))
}

/// An account id must be a usable JSON key and file name: letters, digits, `-`, `_`, `.`.
pub fn check_id(id: &str) -> Result<(), AccountsError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AccountsError::refused(format!(
            "`{id}` is not a usable account id: use 1–64 letters, digits, `-`, `_` or `.` (not starting with `.`)"
        )))
    }
}

/// A runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, AccountsError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AccountsError::refused(format!("cannot start the async runtime: {e}")))
}

/// The HTTP client of the accounts commands (like the proxy's: no environment proxy).
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Run one `ccr accounts` command: its report on stdout, a refusal on stderr with exit 1.
pub fn run(command: &args::AccountsCommand) -> std::process::ExitCode {
    use args::AccountsCommand as C;
    let (verb, result) = match command {
        C::List(a) => ("list", list::run(a)),
        C::Import(a) => ("import", import::run(a)),
        C::Login(a) => ("login", login::run(a)),
        C::Remove(a) => ("remove", remove::run(a)),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ccr accounts {verb}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in ["primary", "kiro-2", "a_b.c", "X"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "ü", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}

//! `ccr init`: write a starter config with the accounts found on this machine, and say what to
//! do next.
//!
//! Accounts found: every `kiro-auth-token*.json` in `~/.aws/sso/cache/` (the Kiro IDE writes
//! `kiro-auth-token.json` there when you log in). Each becomes one provider; with none found the
//! starter names the Kiro IDE's file anyway, so logging in with the Kiro IDE is all that is left.

use crate::config::{DEFAULT_TOKEN_PATH, expand_tilde, parse_config};
use crate::providers::codewhisperer::token::read_token_file;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// One Kiro token file found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundAccount {
    /// The provider id the starter config gives it.
    pub id: String,
    /// The token file, as written in the config (`~/...`).
    pub token_path: String,
    /// Why it cannot serve yet, if it cannot.
    pub problem: Option<String>,
}

/// Why `ccr init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists; edit it, or run `ccr init --force` to replace it")]
    Exists(String),
    #[error("cannot write {file}: {source}")]
    Write { file: String, source: std::io::Error },
    #[error("no home directory to put the config in; use --config PATH")]
    NoHome,
}

/// The Kiro token files in `cache_dir` (`kiro-auth-token*.json`), in name order; `display_dir`
/// is how the directory is written in the config (`~/.aws/sso/cache`).
pub fn find_accounts(cache_dir: &Path, display_dir: &str) -> Vec<FoundAccount> {
    let Ok(entries) = std::fs::read_dir(cache_dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("kiro-auth-token") && n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let stem = name.trim_end_matches(".json").trim_start_matches("kiro-auth-token");
            let suffix = stem.trim_start_matches(['-', '_', '.']);
            let id = if suffix.is_empty() { "kiro".to_owned() } else { format!("kiro-{suffix}") };
            let problem = read_token_file(&cache_dir.join(&name)).err().map(|e| e.to_string());
            FoundAccount { id, token_path: format!("{display_dir}/{name}"), problem }
        })
        .collect()
}

/// The starter config for these accounts (the Kiro IDE's default file when none was found):
/// every account in one round-robin rule with failover, loopback only, usage-probe health checks.
pub fn starter_config(accounts: &[FoundAccount]) -> Value {
    let default = [FoundAccount { id: "kiro".into(), token_path: DEFAULT_TOKEN_PATH.into(), problem: None }];
    let accounts = if accounts.is_empty() { &default[..] } else { accounts };
    let mut providers = Map::new();
    for a in accounts {
        providers.insert(
            a.id.clone(),
            json!({
                "tokenPath": a.token_path,
                "healthCheck": {"enabled": true, "interval": 60000, "timeout": 10000, "retries": 3}
            }),
        );
    }
    let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    json!({
        "name": "my Kiro accounts",
        "server": {"host": "127.0.0.1", "port": crate::config::DEFAULT_PORT},
        "routing": {"rules": {"default": {
            "providers": ids,
            "loadBalancing": {"strategy": "round-robin", "healthCheck": true, "failover": true}
        }}},
        "providers": providers,
    })
}

/// Write the starter config to `target` (not over an existing file unless `force`). Returns
/// what to print.
pub fn run(target: &Path, force: bool) -> Result<String, InitError> {
    let file = target.display().to_string();
    if target.exists() && !force {
        return Err(InitError::Exists(file));
    }
    let accounts = find_accounts(&expand_tilde("~/.aws/sso/cache"), "~/.aws/sso/cache");
    let config = starter_config(&accounts);
    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
    debug_assert!(parse_config(&text).is_ok(), "the starter config must be valid");
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| InitError::Write { file: file.clone(), source: e })?;
    }
    std::fs::write(target, &text).map_err(|e| InitError::Write { file: file.clone(), source: e })?;
    Ok(next_steps(&file, &accounts))
}

/// What `ccr init` prints after writing `file`.
pub fn next_steps(file: &str, accounts: &[FoundAccount]) -> String {
    let mut out = format!("wrote {file}\n");
    if accounts.is_empty() {
        out.push_str(&format!(
            "no Kiro token file found in ~/.aws/sso/cache; the config names {DEFAULT_TOKEN_PATH}\n\
             next: log in with the Kiro IDE (it writes that file), or import one with `ccr accounts import`\n"
        ));
    } else {
        out.push_str(&format!("accounts found: {}\n", accounts.len()));
        for a in accounts {
            match &a.problem {
                None => out.push_str(&format!("  {:<16} {}\n", a.id, a.token_path)),
                Some(p) => {
                    out.push_str(&format!("  {:<16} {} (cannot serve yet: {p})\n", a.id, a.token_path))
                }
            }
        }
    }
    out.push_str(
        "then: `ccr check` to validate it, `ccr start` (or `ccr tui` for the dashboard) to run the proxy;\n\
         add accounts under \"providers\" and to routing.rules.default.providers",
    );
    out
}

/// Where `ccr init` writes without `--config`: ccr's user config path.
pub fn default_target() -> Result<PathBuf, InitError> {
    crate::config::locate::user_config_path().ok_or(InitError::NoHome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_token_files_become_providers_of_a_valid_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kiro-auth-token.json"),
            r#"{"accessToken":"a","refreshToken":"r","expiresAt":"2030-01-01T00:00:00Z","authMethod":"social"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("kiro-auth-token-work.json"), "{}").unwrap();
        std::fs::write(dir.path().join("other.json"), "{}").unwrap();
        let found = find_accounts(dir.path(), "~/.aws/sso/cache");
        let ids: Vec<&str> = found.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["kiro-work", "kiro"]);
        assert_eq!(found[1].token_path, "~/.aws/sso/cache/kiro-auth-token.json");
        assert_eq!(found[1].problem, None);
        assert!(found[0].problem.as_deref().is_some_and(|p| p.contains("no refreshToken")));
        let text = starter_config(&found).to_string();
        let config = parse_config(&text).expect("valid");
        assert_eq!(config.routing.rules["default"].providers, ["kiro-work", "kiro"]);
        assert!(config.providers["kiro"].health_probe_path().is_none());
    }

    #[test]
    fn without_accounts_the_kiro_ide_file_is_named_and_an_existing_file_is_kept() {
        let text = starter_config(&[]).to_string();
        let config = parse_config(&text).expect("valid");
        assert_eq!(config.providers["kiro"].token_path, DEFAULT_TOKEN_PATH);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ccr").join("config.json");
        let said = run(&target, false).unwrap();
        assert!(said.starts_with(&format!("wrote {}", target.display())));
        assert!(parse_config(&std::fs::read_to_string(&target).unwrap()).is_ok());
        std::fs::write(&target, "mine").unwrap();
        assert!(matches!(run(&target, false), Err(InitError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "mine");
    }
}

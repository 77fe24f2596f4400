//! Where the config comes from: `--config`, else `$CCR_CONFIG`, else ccr's own user config
//! (`$XDG_CONFIG_HOME/ccr/config.json`, normally `~/.config/ccr/config.json`), else the older
//! `~/.claude-code-router/config.json` *only when it holds a ccr config*, else the built-in
//! default.
//!
//! The older path is shared with claude-code-router (the Node.js tool), whose config has a
//! different schema (`Providers`, `Router`, `APIKEY`...). ccr never takes such a file for its own:
//! found at the old path it is skipped (and the start notice says so); named with `--config` or
//! `$CCR_CONFIG` it is refused with a message saying what it is and what to do.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Top-level keys of a claude-code-router (Node.js) config that a ccr config never has.
const NODE_ROUTER_KEYS: [&str; 6] = ["Providers", "Router", "APIKEY", "HOST", "PORT", "LOG"];

/// ccr's own user config: `$XDG_CONFIG_HOME/ccr/config.json`, else `~/.config/ccr/config.json`.
pub fn user_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| dirs::home_dir().map(|h| h.join(".config")))?;
    Some(base.join("ccr").join("config.json"))
}

/// The path ccr used before it had its own: shared with claude-code-router (Node.js).
pub fn legacy_config_path() -> Option<PathBuf> {
    dirs::home_dir().map(|h| h.join(".claude-code-router").join("config.json"))
}

/// What a config file's text is, as far as its top-level keys tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A JSON object with ccr's keys (`routing` / `providers`), or one to validate as such.
    Ccr,
    /// claude-code-router's (Node.js) config: `Providers`, `Router`, ...
    NodeRouter,
}

/// Tell a claude-code-router (Node.js) config from a ccr one. Anything that is not clearly the
/// Node format is [`FileKind::Ccr`] (and gets ccr's validation errors).
pub fn file_kind(text: &str) -> FileKind {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map))
            if !map.contains_key("routing") && NODE_ROUTER_KEYS.iter().any(|k| map.contains_key(*k)) =>
        {
            FileKind::NodeRouter
        }
        _ => FileKind::Ccr,
    }
}

/// What to tell a user whose file is claude-code-router's.
pub fn node_router_message(file: &Path) -> String {
    let user =
        user_config_path().map_or_else(|| "~/.config/ccr/config.json".into(), |p| p.display().to_string());
    format!(
        "{} is a claude-code-router (Node.js) config (it has `Providers` / `Router`), not a ccr config; \
         the two tools use different formats. Run `ccr init` to write a ccr config to {user}, or pass \
         --config with a ccr config",
        file.display()
    )
}

/// The older shared path when it exists and is not claude-code-router's; `Err(path)` when it
/// is claude-code-router's (skipped); `Ok(None)` when there is no file.
pub fn legacy_ccr_config() -> Result<Option<PathBuf>, PathBuf> {
    let Some(path) = legacy_config_path().filter(|p| p.is_file()) else { return Ok(None) };
    match std::fs::read_to_string(&path) {
        Ok(text) if file_kind(&text) == FileKind::NodeRouter => Err(path),
        _ => Ok(Some(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_router_configs_are_recognised_and_ccr_ones_are_not_mistaken() {
        let node =
            r#"{"APIKEY":"x","LOG":true,"Providers":[{"name":"openrouter"}],"Router":{"default":"a,b"}}"#;
        assert_eq!(file_kind(node), FileKind::NodeRouter);
        assert_eq!(file_kind(r#"{"Router":{}}"#), FileKind::NodeRouter);
        let ccr = r#"{"routing":{"rules":{"default":{"providers":["a"]}}},"providers":{"a":{}}}"#;
        assert_eq!(file_kind(ccr), FileKind::Ccr);
        assert_eq!(file_kind("not json"), FileKind::Ccr, "left to the validator's syntax error");
        assert_eq!(file_kind(r#"{"providers":{}}"#), FileKind::Ccr);
        let msg = node_router_message(Path::new("/h/.claude-code-router/config.json"));
        assert!(
            msg.starts_with("/h/.claude-code-router/config.json is a claude-code-router (Node.js) config")
        );
        assert!(msg.contains("ccr init"));
    }
}

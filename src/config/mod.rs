//! The JSON config: schema, validation with JSON-path errors, lookup, and the `ccr check` report.

mod describe;
pub mod keys;
pub mod locate;
pub(crate) mod origin;
pub mod schema;
pub mod validate;
pub mod watch;

pub use keys::KeyEntry;
pub use schema::*;
pub use validate::{ParseError, Problem, parse_config, warnings};

use std::path::{Path, PathBuf};

/// The embedded default config: the seed's Use Case 3 load-balancing config.
pub const DEFAULT_CONFIG: &str = include_str!("../../assets/default-config.json");

/// Environment variable naming a config file, consulted after `--config`.
pub const CONFIG_ENV: &str = "CCR_CONFIG";

/// Where the config in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config PATH`.
    Flag(PathBuf),
    /// `$CCR_CONFIG`.
    Env(PathBuf),
    /// ccr's user config, `~/.config/ccr/config.json` (see [`locate::user_config_path`]).
    Home(PathBuf),
    /// `~/.claude-code-router/config.json` holding a ccr config (the path ccr used first).
    Legacy(PathBuf),
    /// Nothing found: the built-in default.
    Embedded,
    /// The built-in default, after skipping claude-code-router's config at this path.
    EmbeddedSkipping(PathBuf),
}

impl ConfigSource {
    /// The file behind this source, if any (the embedded default has none).
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Flag(p)
            | ConfigSource::Env(p)
            | ConfigSource::Home(p)
            | ConfigSource::Legacy(p) => Some(p),
            ConfigSource::Embedded | ConfigSource::EmbeddedSkipping(_) => None,
        }
    }

    /// The one-line notice printed at start.
    pub fn notice(&self) -> String {
        match self {
            ConfigSource::Flag(p) => format!("config: {} (from --config)", p.display()),
            ConfigSource::Env(p) => format!("config: {} (from ${CONFIG_ENV})", p.display()),
            ConfigSource::Home(p) => format!("config: {} (the user config)", p.display()),
            ConfigSource::Legacy(p) => format!("config: {} (the older user config path)", p.display()),
            ConfigSource::Embedded => {
                "config: built-in default (no --config, no $CCR_CONFIG, no ~/.config/ccr/config.json; \
                 `ccr init` writes one)"
                    .into()
            }
            ConfigSource::EmbeddedSkipping(p) => format!(
                "config: built-in default (ignored {}: it is claude-code-router's (Node.js) config; \
                 `ccr init` writes a ccr config to ~/.config/ccr/config.json)",
                p.display()
            ),
        }
    }

    /// A short label for headers.
    pub fn label(&self) -> String {
        match self.path() {
            Some(p) => p.display().to_string(),
            None => "built-in default".into(),
        }
    }
}

/// Decide which config to use: `--config`, else `$CCR_CONFIG`, else ccr's user config if it
/// exists, else `~/.claude-code-router/config.json` if it holds a ccr config, else the embedded
/// default (see [`locate`](self::locate) for why).
pub fn locate(flag: Option<&Path>) -> ConfigSource {
    if let Some(p) = flag {
        return ConfigSource::Flag(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return ConfigSource::Env(PathBuf::from(p));
    }
    if let Some(p) = locate::user_config_path().filter(|p| p.is_file()) {
        return ConfigSource::Home(p);
    }
    match locate::legacy_ccr_config() {
        Ok(Some(p)) => ConfigSource::Legacy(p),
        Ok(None) => ConfigSource::Embedded,
        Err(skipped) => ConfigSource::EmbeddedSkipping(skipped),
    }
}

/// The user config file, whether or not it exists: `~/.config/ccr/config.json` (see
/// [`locate::user_config_path`]). Commands that create a config (`ccr init`, `ccr accounts
/// import` / `login` with none yet) create this one.
pub fn user_config_path() -> Option<PathBuf> {
    locate::user_config_path()
}

/// A config that could not be loaded, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io { file: String, source: crate::fsio::ReadError },
    #[error("{file}: {source}")]
    Parse { file: String, source: ParseError },
    /// The file is claude-code-router's (Node.js) config.
    #[error("{message}")]
    NodeRouter { file: String, message: String },
}

impl ConfigError {
    /// The problems found, for callers that show them one by one.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Io { .. } | ConfigError::NodeRouter { .. } => vec![self.to_string()],
            ConfigError::Parse { source: ParseError::Invalid(p), .. } => validate::capped(p),
            ConfigError::Parse { source, .. } => vec![source.to_string()],
        }
    }

    /// How many problems there are in all (more than [`problems`](Self::problems) lists when
    /// they were capped).
    pub fn problem_count(&self) -> usize {
        match self {
            ConfigError::Parse { source: ParseError::Invalid(p), .. } => p.len(),
            _ => 1,
        }
    }
}

/// Read and check the config from a source. Returns the config and its raw text (kept so that
/// saving weights can preserve the file's other content).
pub fn load(source: &ConfigSource) -> Result<(Config, String), ConfigError> {
    let (label, text) = match source.path() {
        Some(p) => {
            let text = crate::fsio::read_text_capped(p, crate::fsio::CONFIG_FILE_CAP)
                .map_err(|e| ConfigError::Io { file: p.display().to_string(), source: e })?;
            (p.display().to_string(), text)
        }
        None => ("built-in default".to_string(), DEFAULT_CONFIG.to_string()),
    };
    if let Some(p) = source.path()
        && locate::file_kind(&text) == locate::FileKind::NodeRouter
    {
        return Err(ConfigError::NodeRouter { file: label, message: locate::node_router_message(p) });
    }
    let config = parse_config(&text).map_err(|e| ConfigError::Parse { file: label, source: e })?;
    Ok((config, text))
}

/// Expand a leading `~` to the home directory.
pub fn expand_tilde(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/").or_else(|| path.strip_prefix("~\\"))
        && let Some(home) = dirs::home_dir()
    {
        return home.join(rest);
    }
    if path == "~"
        && let Some(home) = dirs::home_dir()
    {
        return home;
    }
    PathBuf::from(path)
}

/// Neither a category nor `default` has a routing rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no routing rule for category {0} and no default rule")]
pub struct NoRule(pub Category);

impl Config {
    /// The rule for a category, falling back to `default` (which validation requires, so the
    /// error is for configs built without it).
    pub fn rule(&self, category: Category) -> Result<(&str, &Rule), NoRule> {
        self.routing
            .rules
            .get_key_value(category.as_str())
            .or_else(|| self.routing.rules.get_key_value("default"))
            .map(|(name, rule)| (name.as_str(), rule))
            .ok_or(NoRule(category))
    }

    /// The weight of `provider` in `rule` from the file: the rule's `weights`, else the
    /// provider's `weight` (run-time overrides live in the balancer).
    pub fn effective_weight(&self, rule: &Rule, provider: &str) -> u32 {
        let w = rule
            .load_balancing
            .weights
            .get(provider)
            .copied()
            .or_else(|| self.providers.get(provider).map(|p| p.weight))
            .unwrap_or(0);
        u32::try_from(w.max(0)).unwrap_or(u32::MAX)
    }

    /// The strategy a rule effectively runs (`routing.strategy: fixed` makes every rule
    /// `single`).
    pub fn effective_strategy(&self, rule: &Rule) -> Strategy {
        if self.routing.strategy == "fixed" {
            return Strategy::Single;
        }
        Strategy::parse(&rule.load_balancing.strategy).unwrap_or(Strategy::RoundRobin)
    }

    /// Whether a rule retries failed requests on its next provider.
    pub fn effective_failover(&self, rule: &Rule) -> bool {
        rule.load_balancing.failover
            || (self.effective_strategy(rule) == Strategy::Single && rule.load_balancing.fallback.is_some())
    }

    /// The listen address from `server`.
    pub fn listen_addr(&self) -> String {
        let host = &self.server.host;
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.server.port)
        } else {
            format!("{host}:{}", self.server.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_complete() {
        let (config, _) = load(&ConfigSource::Embedded).expect("embedded default must load");
        assert_eq!(config.routing.rules.len(), 5);
        let (_, rule) = config.rule(Category::Default).unwrap();
        assert_eq!(config.effective_weight(rule, "codewhisperer-primary"), 70);
        assert_eq!(config.effective_strategy(rule), Strategy::WeightedRoundRobin);
        assert!(config.effective_failover(config.rule(Category::Longcontext).unwrap().1));
    }

    #[test]
    fn missing_category_falls_back_to_default() {
        let text = r#"{"routing":{"rules":{"default":{"providers":["a"]}}},"providers":{"a":{}}}"#;
        let config = parse_config(text).unwrap();
        assert_eq!(config.rule(Category::Search).unwrap().0, "default");
    }

    #[test]
    fn tilde_expands_to_home() {
        let home = dirs::home_dir().unwrap();
        assert_eq!(expand_tilde("~/x/y.json"), home.join("x/y.json"));
        assert_eq!(expand_tilde("/abs/y.json"), PathBuf::from("/abs/y.json"));
    }
}

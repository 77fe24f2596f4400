//! The JSON config: schema, validation with JSON-path errors, lookup, and the `ccr check` report.

mod describe;
pub mod keys;
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
    /// `~/.claude-code-router/config.json`.
    Home(PathBuf),
    /// Nothing found: the built-in default.
    Embedded,
}

impl ConfigSource {
    /// The file behind this source, if any (the embedded default has none).
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Flag(p) | ConfigSource::Env(p) | ConfigSource::Home(p) => Some(p),
            ConfigSource::Embedded => None,
        }
    }

    /// The one-line notice printed at start.
    pub fn notice(&self) -> String {
        match self {
            ConfigSource::Flag(p) => format!("config: {} (from --config)", p.display()),
            ConfigSource::Env(p) => format!("config: {} (from ${CONFIG_ENV})", p.display()),
            ConfigSource::Home(p) => format!("config: {} (the user config)", p.display()),
            ConfigSource::Embedded => {
                "config: built-in default (no --config, no $CCR_CONFIG, no ~/.claude-code-router/config.json)"
                    .into()
            }
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

/// Decide which config to use: `--config`, else `$CCR_CONFIG`, else the user config if it
/// exists, else the embedded default.
pub fn locate(flag: Option<&Path>) -> ConfigSource {
    if let Some(p) = flag {
        return ConfigSource::Flag(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return ConfigSource::Env(PathBuf::from(p));
    }
    if let Some(p) = user_config_path()
        && p.is_file()
    {
        return ConfigSource::Home(p);
    }
    ConfigSource::Embedded
}

/// The user config file, whether or not it exists: `~/.claude-code-router/config.json`. Commands
/// that create a config (`ccr accounts import` / `login` with none yet) create this one.
pub fn user_config_path() -> Option<PathBuf> {
    dirs::home_dir().map(|home| home.join(".claude-code-router").join("config.json"))
}

/// A config that could not be loaded, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io { file: String, source: crate::fsio::ReadError },
    #[error("{file}: {source}")]
    Parse { file: String, source: ParseError },
}

impl ConfigError {
    /// The problems found, for callers that show them one by one.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Io { .. } => vec![self.to_string()],
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

impl Config {
    /// The rule for a category, falling back to `default` (validation guarantees it exists).
    pub fn rule(&self, category: Category) -> (&str, &Rule) {
        match self.routing.rules.get_key_value(category.as_str()) {
            Some((name, rule)) => (name.as_str(), rule),
            None => {
                let (name, rule) =
                    self.routing.rules.get_key_value("default").expect("validated: default rule exists");
                (name.as_str(), rule)
            }
        }
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
        let (_, rule) = config.rule(Category::Default);
        assert_eq!(config.effective_weight(rule, "codewhisperer-primary"), 70);
        assert_eq!(config.effective_strategy(rule), Strategy::WeightedRoundRobin);
        assert!(config.effective_failover(config.rule(Category::Longcontext).1));
    }

    #[test]
    fn missing_category_falls_back_to_default() {
        let text = r#"{"routing":{"rules":{"default":{"providers":["a"]}}},"providers":{"a":{}}}"#;
        let config = parse_config(text).unwrap();
        assert_eq!(config.rule(Category::Search).0, "default");
    }

    #[test]
    fn tilde_expands_to_home() {
        let home = dirs::home_dir().unwrap();
        assert_eq!(expand_tilde("~/x/y.json"), home.join("x/y.json"));
        assert_eq!(expand_tilde("/abs/y.json"), PathBuf::from("/abs/y.json"));
    }
}

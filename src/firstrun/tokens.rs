//! Reading every account's token file at start, so that a missing or unusable one is reported
//! at once, with its fix, instead of on the first request.

use crate::config::{Config, DEFAULT_TOKEN_PATH, expand_tilde};
use crate::providers::codewhisperer::token::{TokenError, read_token_file};
use std::path::PathBuf;

/// One account whose token file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenProblem {
    /// The provider id.
    pub provider: String,
    /// The token file, `~` expanded.
    pub path: PathBuf,
    /// What is wrong with it (never token material).
    pub error: TokenError,
}

impl std::fmt::Display for TokenProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "account {} cannot serve: {}", self.provider, self.error)
    }
}

/// How to fix a token problem of account `provider`.
pub fn fix_hint(provider: &str) -> String {
    format!(
        "log in with the Kiro IDE (it writes {DEFAULT_TOKEN_PATH}), import a token file with \
         `ccr accounts import`, or set providers.{provider}.tokenPath to the right file"
    )
}

/// Every account of `config` whose token file is missing, unreadable or not a Kiro token file.
/// Reads each file once; an expired access token is not a problem (it is refreshed on use).
pub fn token_problems(config: &Config) -> Vec<TokenProblem> {
    config
        .providers
        .iter()
        .filter_map(|(id, p)| {
            let path = expand_tilde(&p.token_path);
            match read_token_file(&path) {
                Ok(_) => None,
                Err(error) => Some(TokenProblem { provider: id.clone(), path, error }),
            }
        })
        .collect()
}

/// The lines `ccr start` and `ccr check` print for the problems found: one per account and its
/// fix, and a last line when no account at all can serve.
pub fn report(config: &Config, problems: &[TokenProblem]) -> Vec<String> {
    let mut out = Vec::new();
    for p in problems {
        out.push(format!("{p}\n  fix: {}", fix_hint(&p.provider)));
    }
    if !problems.is_empty() && problems.len() == config.providers.len() {
        out.push(
            "no account can serve requests: every request will fail with 503 until one token file is \
             usable (ccr re-reads token files on every request; no restart needed)"
                .to_owned(),
        );
    }
    out
}

/// Whether `error` means the account needs the user (a login or a file), not a retry.
pub fn is_token_file_problem(error: &TokenError) -> bool {
    matches!(error, TokenError::Missing(_) | TokenError::Unreadable { .. } | TokenError::Malformed { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;

    fn config(dir: &std::path::Path) -> Config {
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"accessToken":"a","refreshToken":"r","expiresAt":"2020-01-01T00:00:00Z","authMethod":"social"}"#,
        )
        .unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "not json").unwrap();
        let text = serde_json::json!({
            "routing": {"rules": {"default": {"providers": ["good", "bad", "gone"]}}},
            "providers": {
                "good": {"tokenPath": good},
                "bad": {"tokenPath": bad},
                "gone": {"tokenPath": dir.join("gone.json")},
            }
        });
        parse_config(&text.to_string()).unwrap()
    }

    #[test]
    fn every_unusable_token_file_is_found_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let problems = token_problems(&cfg);
        let ids: Vec<&str> = problems.iter().map(|p| p.provider.as_str()).collect();
        assert_eq!(ids, ["bad", "gone"]);
        assert!(matches!(problems[0].error, TokenError::Malformed { .. }));
        assert!(matches!(problems[1].error, TokenError::Missing(_)));
        let lines = report(&cfg, &problems);
        assert_eq!(lines.len(), 2, "one account still serves: no 'no account' line");
        assert!(lines[1].starts_with("account gone cannot serve: token file "));
        assert!(lines[1].contains("ccr accounts import"));
        assert!(lines[1].contains("providers.gone.tokenPath"));
    }

    #[test]
    fn a_last_line_says_when_no_account_can_serve() {
        let dir = tempfile::tempdir().unwrap();
        let text = serde_json::json!({
            "routing": {"rules": {"default": {"providers": ["a"]}}},
            "providers": {"a": {"tokenPath": dir.path().join("a.json")}}
        });
        let cfg = parse_config(&text.to_string()).unwrap();
        let lines = report(&cfg, &token_problems(&cfg));
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("no account can serve requests"));
    }
}

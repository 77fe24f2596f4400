//! The answer when no account could serve a request because of its token: a server-side error
//! (503 `api_error`) naming every account of the rule and its reason, with the fix.
//!
//! Not 401: Anthropic clients read 401 as "your API key is wrong" (Claude Code says "Invalid API
//! key · Please run /login"), which sends the user to the wrong fix. The key the client sent
//! was fine; ccr's accounts are what need attention.

use crate::anthropic::{ApiError, ErrorKind};
use crate::config::Category;
use crate::firstrun::fix_hint;
use crate::providers::codewhisperer::{UpstreamError, UpstreamErrorKind};
use crate::runtime::Live;
use axum::http::StatusCode;

/// Collects why each account tried failed.
#[derive(Debug, Default)]
pub(super) struct Failures {
    tried: Vec<(String, UpstreamError)>,
}

impl Failures {
    pub(super) fn push(&mut self, provider: &str, err: &UpstreamError) {
        self.tried.push((provider.to_owned(), err.clone()));
    }

    /// The error the client gets when every attempt failed: the aggregated token error when
    /// every tried account failed for token reasons, else the last error as is.
    pub(super) fn final_error(&self, live: &Live, category: Category) -> Option<ApiError> {
        let (_, last) = self.tried.last()?;
        if !self
            .tried
            .iter()
            .all(|(_, e)| matches!(e.kind, UpstreamErrorKind::Auth | UpstreamErrorKind::LoginExpired))
        {
            return Some(last.to_api_error());
        }
        let mut reasons: Vec<String> =
            self.tried.iter().map(|(id, e)| format!("{id}: {}", e.message)).collect();
        // The rule's other accounts (not tried: failover off, or excluded) with a known problem.
        let rule_providers =
            live.config.rule(category).map(|(_, rule)| rule.providers.as_slice()).unwrap_or(&[]);
        for id in rule_providers {
            if self.tried.iter().any(|(t, _)| t == id) {
                continue;
            }
            if let Some(error) = live.clients.get(id).and_then(|c| c.token_status().error) {
                reasons.push(format!("{id}: {error}"));
            }
        }
        let first = &self.tried[0].0;
        let fix =
            if self.tried.len() == 1 && reasons.len() == 1 { fix_hint(first) } else { fix_hint("<id>") };
        Some(
            ApiError::new(
                ErrorKind::ApiError,
                format!("no ccr account can serve this request: {}; fix: {fix}", reasons.join("; ")),
            )
            .with_status(StatusCode::SERVICE_UNAVAILABLE),
        )
    }
}

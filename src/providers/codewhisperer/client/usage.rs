//! `getUsageLimits` for the usage poller (protocol notes §7.1): the account's credits, tier and
//! reset, with the same token handling as chat calls (one refresh after a bearer-invalid answer).

use super::{CodeWhispererClient, classify_status, is_bearer_invalid};
use crate::balancer::UsageProblem;
use crate::providers::codewhisperer::token::{Credential, TokenError, describe_transport};
use crate::usage::{AGENTIC_REQUEST, UsageReport, parse_usage_limits};
use std::time::Duration;

/// Longest a usage check may take.
const USAGE_TIMEOUT: Duration = Duration::from_secs(15);

fn token_problem(e: &TokenError) -> UsageProblem {
    match e {
        TokenError::Rejected { .. } => UsageProblem::NeedsLogin(format!("{e}")),
        other => UsageProblem::Other(format!("no usable token: {other}")),
    }
}

fn status_problem(status: u16, body: &str) -> UsageProblem {
    let err = classify_status(status, body, None);
    match err.kind {
        super::UpstreamErrorKind::Suspended => UsageProblem::Suspended(err.message),
        _ => UsageProblem::Other(format!("getUsageLimits: {}", err.message)),
    }
}

impl CodeWhispererClient {
    /// The account's usage now.
    pub async fn usage_limits(&self) -> Result<UsageReport, UsageProblem> {
        let work = async {
            let credential = self.tokens.credential().await.map_err(|e| token_problem(&e))?;
            let (status, body) = self.usage_once(&credential).await?;
            let (status, body) = if is_bearer_invalid(status, &body) {
                let fresh = self
                    .tokens
                    .refresh_after_rejection(&credential.access_token)
                    .await
                    .map_err(|e| token_problem(&e))?;
                self.usage_once(&fresh).await?
            } else {
                (status, body)
            };
            if status != 200 {
                return Err(status_problem(status, &body));
            }
            parse_usage_limits(&body).map_err(|e| UsageProblem::Other(e.to_string()))
        };
        match tokio::time::timeout(USAGE_TIMEOUT, work).await {
            Ok(result) => result,
            Err(_) => Err(UsageProblem::Other(format!(
                "getUsageLimits timed out after {} s",
                USAGE_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn usage_once(&self, credential: &Credential) -> Result<(u16, String), UsageProblem> {
        let mut query = vec![("origin", "AI_EDITOR"), ("resourceType", AGENTIC_REQUEST)];
        if let Some(arn) = credential.profile_arn.as_deref() {
            query.push(("profileArn", arn));
        }
        let response = self
            .decorate(self.http.get(format!("{}/getUsageLimits", self.api_base)), credential)
            .query(&query)
            .send()
            .await
            .map_err(|e| UsageProblem::Other(format!("getUsageLimits {}", describe_transport(&e))))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Ok((status, body))
    }
}

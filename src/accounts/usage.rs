//! One account's usage, asked upstream: `getUsageLimits` (protocol notes §7.1, §7.6) with the
//! account's token, refreshed first when it is near expiry and once more when the upstream
//! calls it invalid (the refreshed token is written back to the account's file).

use crate::config::{Provider, expand_tilde};
use crate::providers::codewhisperer::client::is_bearer_invalid;
use crate::providers::codewhisperer::token::{Credential, TokenManager, describe_transport};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;

/// What `getUsageLimits` says about an account this month.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// `subscriptionInfo.subscriptionTitle`, e.g. `KIRO FREE`.
    pub tier: Option<String>,
    /// Credits used: base + active free trial + active bonuses.
    pub used: f64,
    /// Credits available: base + active free trial + active bonuses.
    pub limit: f64,
    /// `nextDateReset`.
    pub reset_at: Option<DateTime<Utc>>,
}

impl Usage {
    pub fn remaining(&self) -> f64 {
        (self.limit - self.used).max(0.0)
    }

    /// `12/1000` (credits are whole numbers in practice; fractions are shown to one place).
    pub fn credits(&self) -> String {
        format!("{}/{}", number(self.used), number(self.limit))
    }
}

/// A credit amount: whole numbers without decimals, others with one.
pub fn number(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 { format!("{}", v.round() as i64) } else { format!("{v:.1}") }
}

/// Read a `getUsageLimits` answer: the `AGENTIC_REQUEST` breakdown (else the first), values
/// with precision when present, active free trial and bonuses added.
pub fn parse_usage(v: &Value) -> Usage {
    let num = |o: &Value, precise: &str, plain: &str| {
        o.get(precise).and_then(Value::as_f64).or_else(|| o.get(plain).and_then(Value::as_f64)).unwrap_or(0.0)
    };
    let list = v.get("usageBreakdownList").and_then(Value::as_array);
    let breakdown = list.and_then(|l| {
        l.iter()
            .find(|b| b.get("resourceType").and_then(Value::as_str) == Some("AGENTIC_REQUEST"))
            .or(l.first())
    });
    let (mut used, mut limit) = (0.0, 0.0);
    let mut reset = v.get("nextDateReset").and_then(Value::as_f64);
    if let Some(b) = breakdown {
        used += num(b, "currentUsageWithPrecision", "currentUsage");
        limit += num(b, "usageLimitWithPrecision", "usageLimit");
        if let Some(trial) = b.get("freeTrialInfo")
            && trial.get("freeTrialStatus").and_then(Value::as_str) == Some("ACTIVE")
        {
            used += num(trial, "currentUsageWithPrecision", "currentUsage");
            limit += num(trial, "usageLimitWithPrecision", "usageLimit");
        }
        for bonus in b.get("bonuses").and_then(Value::as_array).into_iter().flatten() {
            if bonus.get("status").and_then(Value::as_str) == Some("ACTIVE") {
                used += num(bonus, "currentUsageWithPrecision", "currentUsage");
                limit += num(bonus, "usageLimitWithPrecision", "usageLimit");
            }
        }
        reset = reset.or_else(|| b.get("nextDateReset").and_then(Value::as_f64));
    }
    Usage {
        tier: v.pointer("/subscriptionInfo/subscriptionTitle").and_then(Value::as_str).map(str::to_owned),
        used,
        limit,
        reset_at: reset.and_then(|s| DateTime::from_timestamp(s as i64, 0)),
    }
}

/// The result of asking one account.
#[derive(Debug, Clone)]
pub struct Checked {
    pub usage: Usage,
    /// The token's expiry after any refresh.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Ask the upstream for the account's usage.
pub async fn check(provider: &Provider, http: &reqwest::Client) -> Result<Checked, String> {
    let idc_base = match &provider.auth_endpoint {
        Some(base) => base.clone(),
        None => format!("https://oidc.{}.amazonaws.com", provider.region),
    };
    let path: PathBuf = expand_tilde(&provider.token_path);
    let tokens = TokenManager::new(path, &provider.auth_base(), &idc_base, http.clone());
    let credential = tokens.credential().await.map_err(|e| e.to_string())?;
    let api = provider.api_base();
    let (status, body) = get_usage(http, &api, &credential).await?;
    let (status, body, credential) = if is_bearer_invalid(status, &body) {
        let fresh =
            tokens.refresh_after_rejection(&credential.access_token).await.map_err(|e| e.to_string())?;
        let (status, body) = get_usage(http, &api, &fresh).await?;
        (status, body, fresh)
    } else {
        (status, body, credential)
    };
    if !(200..300).contains(&status) {
        let message = crate::providers::codewhisperer::client::classify_status(status, &body, None).message;
        return Err(format!("getUsageLimits answered {status}: {message}"));
    }
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("getUsageLimits answer is not JSON: {e}"))?;
    Ok(Checked { usage: parse_usage(&v), expires_at: credential.expires_at })
}

async fn get_usage(
    http: &reqwest::Client,
    api: &str,
    credential: &Credential,
) -> Result<(u16, String), String> {
    let mut query = vec![("origin", "AI_EDITOR"), ("resourceType", "AGENTIC_REQUEST")];
    if let Some(arn) = credential.profile_arn.as_deref() {
        query.push(("profileArn", arn));
    }
    let url = format!("{api}/getUsageLimits");
    let response = http
        .get(&url)
        .query(&query)
        .bearer_auth(&credential.access_token)
        .header("x-amz-user-agent", "aws-sdk-js/1.0.0 KiroIDE")
        .header("amz-sdk-invocation-id", uuid::Uuid::new_v4().to_string())
        .header("amz-sdk-request", "attempt=1; max=1")
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {}", describe_transport(&e)))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| format!("{url}: {}", describe_transport(&e)))?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn totals_add_active_trial_and_bonuses_with_precision() {
        let v = json!({
            "nextDateReset": 1767225600.0,
            "subscriptionInfo": {"subscriptionTitle": "KIRO PRO"},
            "usageBreakdownList": [
                {"resourceType": "OTHER", "currentUsage": 999, "usageLimit": 999},
                {"resourceType": "AGENTIC_REQUEST", "currentUsage": 12, "currentUsageWithPrecision": 12.4,
                 "usageLimit": 50, "usageLimitWithPrecision": 50.0,
                 "freeTrialInfo": {"freeTrialStatus": "ACTIVE", "currentUsage": 3, "usageLimit": 500},
                 "bonuses": [{"status": "ACTIVE", "currentUsage": 1.0, "usageLimit": 100.0},
                             {"status": "EXPIRED", "currentUsage": 50.0, "usageLimit": 50.0}]}]
        });
        let u = parse_usage(&v);
        assert_eq!(u.tier.as_deref(), Some("KIRO PRO"));
        assert!((u.used - 16.4).abs() < 1e-9);
        assert!((u.limit - 650.0).abs() < 1e-9);
        assert_eq!(u.credits(), "16.4/650");
        assert_eq!(u.reset_at.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
    }

    #[test]
    fn odd_answers_give_zeros_not_panics() {
        let u = parse_usage(&json!({"usageBreakdownList": "no"}));
        assert_eq!((u.used, u.limit, u.tier.clone(), u.reset_at), (0.0, 0.0, None, None));
        assert_eq!(parse_usage(&Value::Null).remaining(), 0.0);
    }
}

//! Credits per account (protocol notes §7.1, §7.6): the arithmetic of a `getUsageLimits` answer,
//! which models a tier can serve, and when the monthly quota resets. The loop that polls every
//! account lives in the running instance (`runtime::usage_poller`).
//!
//! A report is plain data; the balancer keeps the latest one per provider and adds the credits
//! each answer's `meteringEvent` reports until the next poll replaces them.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The month's picture of one account, from `getUsageLimits`.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    /// Credits used this month: base + active free trial + active bonuses.
    pub used: f64,
    /// Credits available this month: base + active free trial + active bonuses.
    pub limit: f64,
    /// When the month's credits reset (`nextDateReset`).
    pub reset_at: Option<DateTime<Utc>>,
    /// `subscriptionInfo.subscriptionTitle`, e.g. `KIRO FREE`, `KIRO PRO+`.
    pub tier: Option<String>,
}

impl UsageReport {
    /// Credits left (never negative).
    pub fn remaining(&self) -> f64 {
        (self.limit - self.used).max(0.0)
    }
}

/// Why a `getUsageLimits` answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("getUsageLimits answer is not JSON: {0}")]
    NotJson(String),
    #[error("getUsageLimits answer has no usageBreakdownList entry")]
    NoBreakdown,
}

/// The resource type chat turns are metered under.
pub const AGENTIC_REQUEST: &str = "AGENTIC_REQUEST";

/// A number field, preferring `<name>WithPrecision`; absent or not a finite number → 0.
fn amount(v: &Value, name: &str) -> f64 {
    let precise = v.get(format!("{name}WithPrecision")).and_then(Value::as_f64);
    let plain = v.get(name).and_then(Value::as_f64);
    precise.or(plain).filter(|x| x.is_finite() && *x >= 0.0).unwrap_or(0.0)
}

fn active(v: &Value, field: &str) -> bool {
    v.get(field).and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("ACTIVE"))
}

/// An epoch-seconds time (`1767225600.0`).
fn epoch(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let secs = v?.as_f64().filter(|s| s.is_finite() && *s > 0.0 && *s < 1e11)?;
    DateTime::<Utc>::from_timestamp_millis((secs * 1000.0).round() as i64)
}

/// Reads a `getUsageLimits` answer: the `AGENTIC_REQUEST` breakdown (else the first), its base
/// usage and limit plus an `ACTIVE` free trial and `ACTIVE` bonuses, the precise fields when
/// present; the reset from the breakdown's `nextDateReset`, else the top-level one; the tier from
/// `subscriptionInfo.subscriptionTitle`.
pub fn parse_usage_limits(body: &str) -> Result<UsageReport, UsageError> {
    let v: Value = serde_json::from_str(body).map_err(|e| UsageError::NotJson(e.to_string()))?;
    let list = v.get("usageBreakdownList").and_then(Value::as_array).ok_or(UsageError::NoBreakdown)?;
    let entry = list
        .iter()
        .find(|e| e.get("resourceType").and_then(Value::as_str) == Some(AGENTIC_REQUEST))
        .or_else(|| list.first())
        .ok_or(UsageError::NoBreakdown)?;
    let mut used = amount(entry, "currentUsage");
    let mut limit = amount(entry, "usageLimit");
    if let Some(trial) = entry.get("freeTrialInfo").filter(|t| active(t, "freeTrialStatus")) {
        used += amount(trial, "currentUsage");
        limit += amount(trial, "usageLimit");
    }
    for bonus in entry.get("bonuses").and_then(Value::as_array).into_iter().flatten() {
        if active(bonus, "status") {
            used += amount(bonus, "currentUsage");
            limit += amount(bonus, "usageLimit");
        }
    }
    let reset_at = epoch(entry.get("nextDateReset")).or_else(|| epoch(v.get("nextDateReset")));
    let tier = v
        .pointer("/subscriptionInfo/subscriptionTitle")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Ok(UsageReport { used, limit, reset_at, tier })
}

/// Whether an account of `tier` can serve `model_id` when its own model list (§7.2) is not
/// known: free tiers lost Opus in January 2026 (protocol notes §7.1, §7.6). An unknown tier
/// serves everything. A fetched model list replaces this rule (see
/// [`crate::balancer::ProviderModels`]).
pub fn tier_serves(tier: Option<&str>, model_id: &str) -> bool {
    let free = tier.is_some_and(|t| t.to_ascii_uppercase().contains("FREE"));
    !(free && model_id.to_ascii_lowercase().contains("opus"))
}

/// Why a usage check failed, as the poller classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageProblem {
    /// `403` "temporarily is suspended": out of rotation until an operator resets it.
    Suspended(String),
    /// The token refresh was answered `invalid_grant`: the account needs a new login.
    NeedsLogin(String),
    /// Anything else (network, 5xx, 429): shown, changes nothing else.
    Other(String),
}

/// When Kiro's monthly request quota (`MONTHLY_REQUEST_COUNT`) resets: the first of the next
/// month, 00:00 UTC.
pub fn next_quota_reset(now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::{Datelike, TimeZone};
    let (year, month) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
    chrono::Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single().unwrap_or(now)
}

/// Time until Kiro's monthly request quota resets (see [`next_quota_reset`]).
pub fn until_quota_reset(now: chrono::DateTime<chrono::Utc>) -> std::time::Duration {
    (next_quota_reset(now) - now).to_std().unwrap_or(std::time::Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(v: Value) -> UsageReport {
        parse_usage_limits(&v.to_string()).expect("parses")
    }

    #[test]
    fn base_only_prefers_precision() {
        let r = report(json!({
            "nextDateReset": 1767225600.0,
            "subscriptionInfo": {"subscriptionTitle": "KIRO PRO"},
            "usageBreakdownList": [{"resourceType": "AGENTIC_REQUEST",
                "currentUsage": 12, "currentUsageWithPrecision": 12.37,
                "usageLimit": 50, "usageLimitWithPrecision": 50.5}]
        }));
        assert_eq!(r.used, 12.37);
        assert_eq!(r.limit, 50.5);
        assert!((r.remaining() - 38.13).abs() < 1e-9);
        assert_eq!(r.tier.as_deref(), Some("KIRO PRO"));
        assert_eq!(r.reset_at.map(|t| t.timestamp()), Some(1_767_225_600));
    }

    #[test]
    fn active_free_trial_and_bonuses_add_up_inactive_ones_do_not() {
        let r = report(json!({
            "subscriptionInfo": {"subscriptionTitle": "KIRO FREE"},
            "usageBreakdownList": [{"resourceType": "AGENTIC_REQUEST",
                "currentUsage": 10, "usageLimit": 50, "nextDateReset": 1767225600,
                "freeTrialInfo": {"freeTrialStatus": "ACTIVE", "currentUsageWithPrecision": 100.25,
                                  "usageLimitWithPrecision": 500.0},
                "bonuses": [
                    {"status": "ACTIVE", "currentUsage": 1.5, "usageLimit": 100.0},
                    {"status": "EXPIRED", "currentUsage": 99.0, "usageLimit": 1000.0},
                    {"currentUsage": 7.0, "usageLimit": 70.0}
                ]}]
        }));
        assert_eq!(r.used, 10.0 + 100.25 + 1.5);
        assert_eq!(r.limit, 50.0 + 500.0 + 100.0);
        let expired = report(json!({"usageBreakdownList": [{"resourceType": "AGENTIC_REQUEST",
            "currentUsage": 3, "usageLimit": 50,
            "freeTrialInfo": {"freeTrialStatus": "EXPIRED", "currentUsage": 400, "usageLimit": 500}}]}));
        assert_eq!((expired.used, expired.limit), (3.0, 50.0));
        assert_eq!(expired.tier, None);
        assert_eq!(expired.reset_at, None);
    }

    #[test]
    fn picks_agentic_request_and_tolerates_junk() {
        let r = report(json!({"nextDateReset": 1700000000.5, "usageBreakdownList": [
            {"resourceType": "OTHER", "currentUsage": 999, "usageLimit": 1000},
            {"resourceType": "AGENTIC_REQUEST", "currentUsage": "lots", "usageLimit": -4,
             "usageLimitWithPrecision": null}
        ]}));
        assert_eq!((r.used, r.limit), (0.0, 0.0));
        assert_eq!(r.reset_at.map(|t| t.timestamp_millis()), Some(1_700_000_000_500));
        let first = report(json!({"usageBreakdownList": [{"currentUsage": 2, "usageLimit": 5}]}));
        assert_eq!((first.used, first.limit), (2.0, 5.0));
        assert_eq!(parse_usage_limits("{}"), Err(UsageError::NoBreakdown));
        assert_eq!(parse_usage_limits(r#"{"usageBreakdownList":[]}"#), Err(UsageError::NoBreakdown));
        assert!(matches!(parse_usage_limits("nope"), Err(UsageError::NotJson(_))));
    }

    #[test]
    fn free_tiers_do_not_serve_opus() {
        assert!(!tier_serves(Some("KIRO FREE"), "claude-opus-4.6"));
        assert!(tier_serves(Some("KIRO FREE"), "claude-sonnet-4.5"));
        assert!(tier_serves(Some("KIRO PRO+"), "claude-opus-4.6"));
        assert!(tier_serves(None, "claude-opus-4.6"));
    }
}

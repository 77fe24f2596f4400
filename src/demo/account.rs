//! The simulated upstream's account: tier, monthly credits, what they cost, suspension
//! (protocol notes §7.1, §7.6). Set one with [`super::upstream::SimUpstream::set_account`]; without
//! one the sim reports a `KIRO FREE` account whose usage is the number of streams it served.
//!
//! With an account, every answer's `meteringEvent` credits are added to `used`, `getUsageLimits`
//! reports them (base plus an active free trial and bonuses, with precision), a chat request
//! once `used >= limit` is answered `402 MONTHLY_REQUEST_COUNT`, and a suspended account answers
//! every authenticated call `403 … temporarily is suspended`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// One simulated Kiro account.
#[derive(Debug, Clone, PartialEq)]
pub struct SimAccount {
    /// `subscriptionInfo.subscriptionTitle`: `KIRO FREE`, `KIRO PRO`, `KIRO PRO+`.
    pub tier: String,
    /// Base credits of the month.
    pub limit: f64,
    /// Base credits used.
    pub used: f64,
    /// An active free trial's `(used, limit)`, counted in the totals.
    pub free_trial: Option<(f64, f64)>,
    /// Active bonuses' `(used, limit)`.
    pub bonuses: Vec<(f64, f64)>,
    /// `nextDateReset`; `None` is the first of next month, UTC.
    pub reset_at: Option<DateTime<Utc>>,
    /// Answer `403 … temporarily is suspended`.
    pub suspended: bool,
}

impl SimAccount {
    /// An account of `tier` with `limit` credits, `used` of them gone.
    pub fn new(tier: &str, limit: f64, used: f64) -> Self {
        SimAccount {
            tier: tier.to_owned(),
            limit,
            used,
            free_trial: None,
            bonuses: Vec::new(),
            reset_at: None,
            suspended: false,
        }
    }

    /// Credits used, all sources.
    pub fn total_used(&self) -> f64 {
        self.used + self.free_trial.map_or(0.0, |t| t.0) + self.bonuses.iter().map(|b| b.0).sum::<f64>()
    }

    /// Credits of the month, all sources.
    pub fn total_limit(&self) -> f64 {
        self.limit + self.free_trial.map_or(0.0, |t| t.1) + self.bonuses.iter().map(|b| b.1).sum::<f64>()
    }

    /// Whether the credits are used up.
    pub fn exhausted(&self) -> bool {
        self.total_used() >= self.total_limit()
    }

    /// Charges `credits` to the base usage.
    pub fn charge(&mut self, credits: f64) {
        self.used += credits;
    }

    /// Uses up every remaining credit.
    pub fn exhaust(&mut self) {
        self.used = self.limit;
        if let Some(t) = self.free_trial.as_mut() {
            t.0 = t.1;
        }
        for b in &mut self.bonuses {
            b.0 = b.1;
        }
    }

    /// The `getUsageLimits` answer.
    pub fn usage_json(&self, resource_type: &str, now: DateTime<Utc>, user: &str) -> Value {
        let reset = self.reset_at.unwrap_or_else(|| crate::usage::next_quota_reset(now));
        let reset_epoch = reset.timestamp() as f64;
        let mut entry = json!({
            "resourceType": resource_type,
            "unit": "CREDIT",
            "displayName": "Credit",
            "displayNamePlural": "Credits",
            "currentUsage": self.used.floor(),
            "currentUsageWithPrecision": self.used,
            "usageLimit": self.limit.floor(),
            "usageLimitWithPrecision": self.limit,
            "nextDateReset": reset_epoch,
            "bonuses": self.bonuses.iter().map(|(used, limit)| json!({
                "status": "ACTIVE", "currentUsage": used, "usageLimit": limit,
            })).collect::<Vec<_>>(),
        });
        if let Some((used, limit)) = self.free_trial {
            entry["freeTrialInfo"] = json!({
                "freeTrialStatus": "ACTIVE", "freeTrialExpiry": reset_epoch,
                "currentUsage": used.floor(), "currentUsageWithPrecision": used,
                "usageLimit": limit.floor(), "usageLimitWithPrecision": limit,
            });
        }
        json!({
            "daysUntilReset": (reset - now).num_days().max(0),
            "nextDateReset": reset_epoch,
            "subscriptionInfo": {"subscriptionTitle": self.tier, "type": "Q_DEVELOPER_STANDALONE"},
            "usageBreakdownList": [entry],
            "userInfo": {"email": format!("{user}@sim.invalid"), "userId": format!("sim-{user}")},
        })
    }
}

/// Text of the suspension error (protocol notes §7.6).
pub const SUSPENDED_MESSAGE: &str = "Your User ID temporarily is suspended. Contact support.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::parse_usage_limits;

    #[test]
    fn usage_json_reads_back_with_the_proxy_arithmetic() {
        let mut a = SimAccount::new("KIRO PRO", 100.0, 10.25);
        a.free_trial = Some((5.0, 500.0));
        a.bonuses = vec![(1.0, 50.0)];
        let report = parse_usage_limits(&a.usage_json("AGENTIC_REQUEST", Utc::now(), "a").to_string())
            .expect("parses");
        assert_eq!((report.used, report.limit), (16.25, 650.0));
        assert_eq!(report.tier.as_deref(), Some("KIRO PRO"));
        assert!(!a.exhausted());
        a.exhaust();
        assert!(a.exhausted());
    }
}

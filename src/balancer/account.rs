//! What the balancer knows about a provider as a Kiro account (protocol notes §7.6): its credits
//! (the last `getUsageLimits` report plus the credits metered since), its tier and model list,
//! and the states only an operator or a new login ends (`suspended`, `needs_login`).

pub use crate::usage::UsageProblem;
use crate::usage::{UsageReport, tier_serves};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Per-provider usage settings (`providers.<id>.usage`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageParams {
    /// Time between two `getUsageLimits` polls (jittered by ±10 %).
    pub refresh_interval: Duration,
    /// Credits to keep unused: at or below this, the account is skipped while another can serve.
    pub reserve: f64,
}

/// Default of [`UsageParams::refresh_interval`]: five minutes.
pub const DEFAULT_USAGE_REFRESH: Duration = Duration::from_secs(300);
/// Shortest poll interval accepted.
pub const MIN_USAGE_REFRESH: Duration = Duration::from_secs(10);

/// The latest usage of one account.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Usage {
    pub report: UsageReport,
    /// Credits reported by `meteringEvent`s since the report.
    pub metered: f64,
    pub checked_at: DateTime<Utc>,
}

impl Usage {
    pub fn used(&self) -> f64 {
        self.report.used + self.metered
    }

    pub fn remaining(&self) -> f64 {
        (self.report.limit - self.used()).max(0.0)
    }

    /// Whole days until the reset, at least 1 (Kiro's own `daysUntilReset` is whole days too).
    pub fn days_to_reset(&self, now: DateTime<Utc>) -> f64 {
        let secs = self.report.reset_at.map_or(30.0 * 86_400.0, |t| (t - now).num_seconds() as f64);
        (secs / 86_400.0).ceil().max(1.0)
    }
}

/// Account state of one provider.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccountState {
    pub usage: Option<Usage>,
    pub usage_error: Option<String>,
    pub suspended: Option<String>,
    pub needs_login: Option<String>,
    /// The account's own model list (§7.2), when fetched; else the tier rule applies.
    pub models: Option<Vec<String>>,
}

impl AccountState {
    /// Whether this account may be sent `model` (a Kiro model id).
    pub fn serves(&self, model: Option<&str>) -> bool {
        let Some(model) = model else { return true };
        match &self.models {
            Some(list) => list.iter().any(|m| m.eq_ignore_ascii_case(model)),
            None => tier_serves(self.usage.as_ref().and_then(|u| u.report.tier.as_deref()), model),
        }
    }

    /// At or below its reserve (only with a positive reserve and a known limit).
    pub fn below_reserve(&self, reserve: f64) -> bool {
        reserve > 0.0 && self.usage.as_ref().is_some_and(|u| u.report.limit > 0.0 && u.remaining() <= reserve)
    }

    /// Remaining credits ÷ whole days to reset: the `credits` strategy's raw weight.
    pub fn credits_rate(&self, now: DateTime<Utc>) -> Option<f64> {
        let u = self.usage.as_ref()?;
        Some(u.remaining() / u.days_to_reset(now))
    }

    /// The report says the credits are used up.
    pub fn exhausted(&self) -> bool {
        self.usage.as_ref().is_some_and(|u| u.report.limit > 0.0 && u.remaining() <= 0.0)
    }
}

/// A provider's credits, for views (camelCase, as in `/health/providers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSnapshot {
    /// Credits used this month (last report + metered since).
    pub used: f64,
    /// Credits this month (base + free trial + bonuses).
    pub limit: f64,
    /// `limit - used`, at least 0.
    pub remaining: f64,
    /// When the credits reset.
    pub reset_at: Option<DateTime<Utc>>,
    /// `KIRO FREE`, `KIRO PRO`, …
    pub tier: Option<String>,
    /// When the last report was fetched.
    pub checked_at: DateTime<Utc>,
    /// Credits metered since that report.
    pub metered: f64,
}

impl AccountState {
    pub fn snapshot(&self) -> Option<UsageSnapshot> {
        self.usage.as_ref().map(|u| UsageSnapshot {
            used: round6(u.used()),
            limit: round6(u.report.limit),
            remaining: round6(u.remaining()),
            reset_at: u.report.reset_at,
            tier: u.report.tier.clone(),
            checked_at: u.checked_at,
            metered: round6(u.metered),
        })
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Time from `now` until a wall-clock instant, for converting a reset into the balancer's clock.
pub fn until_wall(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn usage(used: f64, limit: f64, tier: &str) -> AccountState {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        AccountState {
            usage: Some(Usage {
                report: UsageReport {
                    used,
                    limit,
                    reset_at: Some(Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap()),
                    tier: Some(tier.into()),
                },
                metered: 0.5,
                checked_at: now,
            }),
            ..AccountState::default()
        }
    }

    #[test]
    fn metered_credits_count_and_rate_uses_whole_days() {
        let a = usage(10.0, 100.0, "KIRO PRO");
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        let u = a.usage.as_ref().unwrap();
        assert_eq!(u.used(), 10.5);
        assert_eq!(u.remaining(), 89.5);
        assert_eq!(u.days_to_reset(now), 22.0); // 21.5 days, rounded up
        assert_eq!(a.credits_rate(now), Some(89.5 / 22.0));
        assert!(a.below_reserve(90.0));
        assert!(!a.below_reserve(0.0));
        assert!(!a.exhausted());
        assert!(usage(99.5, 100.0, "KIRO PRO").exhausted());
    }

    #[test]
    fn model_list_beats_the_tier_rule() {
        let mut a = usage(0.0, 50.0, "KIRO FREE");
        assert!(!a.serves(Some("claude-opus-4.6")));
        assert!(a.serves(Some("claude-sonnet-4.5")));
        assert!(a.serves(None));
        a.models = Some(vec!["claude-opus-4.6".into()]);
        assert!(a.serves(Some("claude-opus-4.6")));
        assert!(!a.serves(Some("claude-sonnet-4.5")));
    }
}

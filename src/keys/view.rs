//! The keys as plain data: what `/admin/keys`, the metrics, `/status` and the dashboard show.
//! Names and digest prefixes only, never a key.

use super::{Keys, month_end, month_of};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every key of an instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeysView {
    /// Where the counters live: `memory` (limits per instance) or a shared backend.
    pub backend: String,
    /// The month the credits count (`YYYY-MM`, UTC).
    pub month: String,
    /// When that month's budgets reset.
    pub resets_at: Option<DateTime<Utc>>,
    /// The configured keys, in config order.
    pub keys: Vec<KeyView>,
}

/// One developer's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub name: String,
    /// The first 8 hex digits of the key's SHA-256.
    pub hash_prefix: String,
    pub limits: KeyLimitsView,
    /// Requests this instance received with the key (admitted or not).
    pub requests: u64,
    /// Requests refused, by reason (`budget`, `rate`, `concurrency`, `model`).
    pub limited: BTreeMap<String, u64>,
    /// Credits spent this month (pool-wide with a shared backend).
    pub credits_this_month: f64,
    /// The last request with the key (this instance).
    pub last_seen: Option<DateTime<Utc>>,
    /// Requests in flight on this instance.
    pub live_requests: u32,
    /// This month's credits by account (this instance).
    pub by_account: BTreeMap<String, f64>,
    /// This month's credits by routing category (this instance).
    pub by_category: BTreeMap<String, f64>,
}

/// A key's limits (absent: none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyLimitsView {
    pub monthly_credits: Option<f64>,
    pub requests_per_minute: Option<u32>,
    pub max_concurrent: Option<u32>,
    pub models: Option<Vec<String>>,
}

pub(super) fn build(keys: &Keys, now: DateTime<Utc>) -> KeysView {
    let month = month_of(now);
    let entries = keys.entries();
    let stats = keys.stats();
    let views = entries
        .iter()
        .map(|e| {
            let s = stats.get(&e.name).cloned().unwrap_or_default();
            let current = s.month == month;
            KeyView {
                name: e.name.clone(),
                hash_prefix: e.hash_prefix(),
                limits: KeyLimitsView {
                    monthly_credits: e.limits.monthly_credits,
                    requests_per_minute: e.limits.requests_per_minute,
                    max_concurrent: e.limits.max_concurrent,
                    models: e.models.clone(),
                },
                requests: s.requests,
                limited: s.limited.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
                credits_this_month: if current { s.credits } else { 0.0 },
                last_seen: s.last_seen,
                live_requests: s.live,
                by_account: if current { s.by_account } else { BTreeMap::new() },
                by_category: if current { s.by_category } else { BTreeMap::new() },
            }
        })
        .collect();
    KeysView {
        backend: keys.counters().backend().to_owned(),
        month,
        resets_at: Some(month_end(now)),
        keys: views,
    }
}

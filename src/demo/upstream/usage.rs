//! `GET /getUsageLimits`: the account's plan and usage (the protocol notes' §7.1 JSON): the
//! simulated account's credits when one is set ([`crate::demo::account`]), else a `KIRO FREE`
//! account whose usage is the number of streams this sim served.

use super::errors::add_request_id;
use super::guard::guarded;
use super::options::Endpoint;
use super::state::Shared;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(super) async fn usage_limits(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = guarded(&sim, Endpoint::UsageLimits, &method, &uri, &headers, true).await {
        return response;
    }
    let resource_type = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("resourceType="))
        .filter(|v| !v.is_empty())
        .unwrap_or("AGENTIC_REQUEST")
        .to_owned();
    let now = Utc::now();
    let account = super::state::lock(&sim.account).clone();
    if let Some(account) = account {
        if account.suspended {
            return super::errors::suspended();
        }
        let mut response = axum::Json(account.usage_json(&resource_type, now, &sim.name)).into_response();
        add_request_id(&mut response);
        return response;
    }
    let used = sim.counters.streams_started.load(Ordering::Relaxed);
    let limit = sim.fixed.usage_limit;
    let reset = crate::usage::next_quota_reset(now);
    let reset_epoch = reset.timestamp() as f64;
    let days = (reset - now).num_days().max(0);
    let mut response = axum::Json(json!({
        "daysUntilReset": days,
        "nextDateReset": reset_epoch,
        "subscriptionInfo": {
            "subscriptionTitle": sim.fixed.tier.title(),
            "type": "Q_DEVELOPER_STANDALONE_FREE",
            "overageCapability": "OVERAGE_INCAPABLE",
            "upgradeCapability": "UPGRADE_CAPABLE",
        },
        "usageBreakdownList": [{
            "resourceType": resource_type,
            "unit": "INVOCATIONS",
            "displayName": "Vibe",
            "displayNamePlural": "Vibes",
            "currency": "USD",
            "currentUsage": used,
            "currentUsageWithPrecision": used as f64,
            "usageLimit": limit,
            "usageLimitWithPrecision": limit as f64,
            "nextDateReset": reset_epoch,
            "overageRate": 0.04,
            "overageCap": 0,
            "bonuses": [],
        }],
        "userInfo": {"email": format!("{}@sim.invalid", sim.name), "userId": format!("sim-{}", sim.name)},
        "overageConfiguration": {"overageStatus": "DISABLED"},
    }))
    .into_response();
    add_request_id(&mut response);
    response
}

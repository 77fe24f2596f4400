//! The simulated AWS SSO-OIDC service: the Builder ID device-code login of the protocol notes
//! §7.7, so that `ccr accounts login`, its tests and the demo can log in without AWS.
//!
//! | path | does |
//! |---|---|
//! | `POST /client/register` | `{"clientName","clientType":"public","scopes":[…]}` → `{"clientId","clientSecret","clientIdIssuedAt","clientSecretExpiresAt"}` |
//! | `POST /device_authorization` | `{"clientId","clientSecret","startUrl"}` → `{"deviceCode","userCode","verificationUri","verificationUriComplete","expiresIn","interval"}` |
//! | `POST /token` with `grantType` `urn:ietf:params:oauth:grant-type:device_code` | `400 authorization_pending` / `slow_down` / `expired_token` / `access_denied`, or the tokens |
//! | `GET /device?user_code=…[&action=deny]` | the "browser" page: approves (or denies) that login |
//!
//! How a pending login ends is the [`DeviceFlow`] knob: approved after a number of polls (the
//! default, so tests and the demo need no browser), only through `GET /device`, denied, or
//! expired. The tokens issued are ordinary IdC logins of the sim: they serve chat requests and
//! refresh at `POST /token` with `grantType: refresh_token` like any other.

use super::auth::random_string;
use super::errors::{add_request_id, cut_response, oauth_error};
use super::handle::SimUpstream;
use super::state::{Shared, lock};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `grantType` of a device-code poll.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How a device authorization the sim handed out ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFlow {
    /// The user "approves" after this many polls answered `authorization_pending`.
    ApproveAfterPolls(u32),
    /// Pending until `GET /device?user_code=…` approves it (or `&action=deny` denies it).
    Manual,
    /// The user refuses: the first poll gets `access_denied`.
    Deny,
    /// The code expires before anyone approves: the first poll gets `expired_token`.
    Expire,
}

/// Device-flow knobs and state.
#[derive(Debug)]
pub(super) struct OidcState {
    inner: std::sync::Mutex<Inner>,
    registrations: AtomicU64,
    authorizations: AtomicU64,
    polls: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    flow: DeviceFlow,
    /// `interval` handed out, seconds.
    interval: u64,
    /// Answer the first poll of each login with `slow_down`.
    slow_down_first: bool,
    devices: HashMap<String, Device>,
}

#[derive(Debug)]
struct Device {
    client_id: String,
    user_code: String,
    expires_at: DateTime<Utc>,
    polls: u32,
    approved: bool,
    denied: bool,
}

impl Default for OidcState {
    fn default() -> Self {
        OidcState {
            inner: std::sync::Mutex::new(Inner {
                flow: DeviceFlow::ApproveAfterPolls(2),
                interval: 1,
                slow_down_first: false,
                devices: HashMap::new(),
            }),
            registrations: AtomicU64::new(0),
            authorizations: AtomicU64::new(0),
            polls: AtomicU64::new(0),
        }
    }
}

/// Counters of the OIDC endpoints since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OidcStats {
    pub registrations: u64,
    pub device_authorizations: u64,
    /// Device-code polls of `/token` (refreshes are counted in `SimStats::refresh_idc`).
    pub device_polls: u64,
}

impl SimUpstream {
    /// How device logins end from now on (default: approved after 2 pending polls).
    pub fn set_device_flow(&self, flow: DeviceFlow) {
        lock(&self.shared.oidc.inner).flow = flow;
    }

    /// The `interval` (seconds) handed out by `/device_authorization` (default 1; tests use 0).
    pub fn set_device_interval(&self, seconds: u64) {
        lock(&self.shared.oidc.inner).interval = seconds;
    }

    /// Answer the first poll of every login with `slow_down`.
    pub fn set_device_slow_down(&self, on: bool) {
        lock(&self.shared.oidc.inner).slow_down_first = on;
    }

    /// Approve every pending login (what a user does in the browser).
    pub fn approve_device_logins(&self) {
        for device in lock(&self.shared.oidc.inner).devices.values_mut() {
            device.approved = true;
        }
    }

    pub fn oidc_stats(&self) -> OidcStats {
        let o = &self.shared.oidc;
        OidcStats {
            registrations: o.registrations.load(Ordering::Relaxed),
            device_authorizations: o.authorizations.load(Ordering::Relaxed),
            device_polls: o.polls.load(Ordering::Relaxed),
        }
    }
}

/// The routes this file adds to the sim (`/token` stays shared with the refresh grant).
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/client/register", post(register))
        .route("/device_authorization", post(device_authorization))
        .route("/device", get(device_page))
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn ok(body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    add_request_id(&mut response);
    response
}

/// `None` when `(id, secret)` is a live registration, else the answer to send.
fn check_client(sim: &Shared, id: &str, secret: &str) -> Option<Response> {
    let tokens = lock(&sim.tokens);
    match tokens.clients.get(id) {
        Some(c) if c.secret == secret && c.expires_at > Utc::now() => None,
        Some(c) if c.secret == secret => {
            Some(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Client is expired"))
        }
        _ => Some(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client credentials")),
    }
}

/// The latency knob; `Some` is the answer when the connection was cut meanwhile.
async fn pause(sim: &Shared) -> Option<Response> {
    let epoch = sim.epoch();
    let latency = sim.knobs().latency;
    sim.pause(latency, epoch).await.err().map(|_| cut_response())
}

async fn register(State(sim): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    if let Some(r) = pause(&sim).await {
        return r;
    }
    sim.oidc.registrations.fetch_add(1, Ordering::Relaxed);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if field(&body, "clientName").is_none() || field(&body, "clientType") != Some("public") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "clientName and clientType \"public\" are required",
        );
    }
    let scopes_ok = body.get("scopes").and_then(Value::as_array).is_some_and(|s| {
        !s.is_empty() && s.iter().all(|s| s.as_str().is_some_and(|s| s.starts_with("codewhisperer:")))
    });
    if !scopes_ok {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scopes must be codewhisperer:* scopes",
        );
    }
    let (id, secret, expires_at) = lock(&sim.tokens).register_client();
    ok(json!({
        "clientId": id,
        "clientSecret": secret,
        "clientIdIssuedAt": Utc::now().timestamp(),
        "clientSecretExpiresAt": expires_at.timestamp(),
    }))
}

async fn device_authorization(State(sim): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    if let Some(r) = pause(&sim).await {
        return r;
    }
    sim.oidc.authorizations.fetch_add(1, Ordering::Relaxed);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (Some(id), Some(secret), Some(start_url)) =
        (field(&body, "clientId"), field(&body, "clientSecret"), field(&body, "startUrl"))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "clientId, clientSecret and startUrl are required",
        );
    };
    if !start_url.starts_with("https://") && !start_url.starts_with("http://") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "startUrl is not a URL");
    }
    if let Some(r) = check_client(&sim, id, secret) {
        return r;
    }
    let (device_code, user_code) = {
        let mut tokens = lock(&sim.tokens);
        let device = random_string(&mut tokens.rng, "", 86);
        let user: String =
            (0..8).map(|_| char::from(b"BCDFGHJKLMNPQRSTVWXZ"[tokens.rng.random_range(0..20)])).collect();
        (device, format!("{}-{}", &user[..4], &user[4..]))
    };
    let mut inner = lock(&sim.oidc.inner);
    let interval = inner.interval;
    inner.devices.insert(
        device_code.clone(),
        Device {
            client_id: id.to_owned(),
            user_code: user_code.clone(),
            expires_at: Utc::now() + TimeDelta::seconds(600),
            polls: 0,
            approved: false,
            denied: false,
        },
    );
    drop(inner);
    let base = format!("http://{}", sim.addr);
    ok(json!({
        "deviceCode": device_code,
        "userCode": user_code,
        "verificationUri": format!("{base}/device"),
        "verificationUriComplete": format!("{base}/device?user_code={user_code}"),
        "expiresIn": 600,
        "interval": interval,
    }))
}

/// A `/token` request with the device-code grant (called by the `/token` handler).
pub(super) async fn device_token(sim: &Shared, body: &Value) -> Response {
    if let Some(r) = pause(sim).await {
        return r;
    }
    sim.oidc.polls.fetch_add(1, Ordering::Relaxed);
    let (Some(id), Some(secret), Some(code)) =
        (field(body, "clientId"), field(body, "clientSecret"), field(body, "deviceCode"))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "clientId, clientSecret and deviceCode are required",
        );
    };
    if let Some(r) = check_client(sim, id, secret) {
        return r;
    }
    let mut inner = lock(&sim.oidc.inner);
    let (flow, slow_down_first) = (inner.flow, inner.slow_down_first);
    let Some(device) = inner.devices.get_mut(code).filter(|d| d.client_id == id) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid device code provided");
    };
    device.polls += 1;
    let pending = oauth_error(StatusCode::BAD_REQUEST, "authorization_pending", "Authorization is pending");
    if device.expires_at <= Utc::now() || flow == DeviceFlow::Expire {
        inner.devices.remove(code);
        return oauth_error(StatusCode::BAD_REQUEST, "expired_token", "Device code has expired");
    }
    if device.denied || flow == DeviceFlow::Deny {
        inner.devices.remove(code);
        return oauth_error(StatusCode::BAD_REQUEST, "access_denied", "The user denied the authorization");
    }
    if slow_down_first && device.polls == 1 {
        return oauth_error(StatusCode::BAD_REQUEST, "slow_down", "Client is polling too quickly");
    }
    let approved = device.approved
        || matches!(flow, DeviceFlow::ApproveAfterPolls(n)
            if device.polls > n + u32::from(slow_down_first));
    if !approved {
        return pending;
    }
    inner.devices.remove(code);
    drop(inner);
    let ttl = sim.fixed.refreshed_token_ttl;
    let credentials = lock(&sim.tokens).issue(ttl, Some(id.to_owned()));
    ok(json!({
        "accessToken": credentials.access_token,
        "refreshToken": credentials.refresh_token,
        "expiresIn": ttl.as_secs(),
        "tokenType": "Bearer",
    }))
}

/// The page a user opens from the verification URL.
async fn device_page(
    State(sim): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(user_code) = query.get("user_code") else {
        return (StatusCode::OK, "Enter the code shown by your tool: /device?user_code=XXXX-XXXX\n")
            .into_response();
    };
    let deny = query.get("action").is_some_and(|a| a == "deny");
    let mut inner = lock(&sim.oidc.inner);
    let Some(device) = inner.devices.values_mut().find(|d| &d.user_code == user_code) else {
        return (StatusCode::NOT_FOUND, "Unknown or expired code\n").into_response();
    };
    if deny {
        device.denied = true;
        (StatusCode::OK, "Request denied. You can close this window.\n").into_response()
    } else {
        device.approved = true;
        (StatusCode::OK, "Request approved. You can close this window.\n").into_response()
    }
}

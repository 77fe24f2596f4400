//! The simulator's shared state: start-up settings, run-time knobs, the power switch (up, down,
//! shutdown), fault dice, counters and recorded requests, and the checks every handler shares
//! (record, pause, fault, bearer).

use super::auth::TokenStore;
use super::errors::{aws_error, bearer_invalid, quota_exhausted};
use super::models::KNOWN_MODEL_IDS;
use super::options::{Endpoint, ErrorKind, Scenario};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// Counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Every request received, any endpoint.
    pub requests: u64,
    pub generate: u64,
    pub refresh_social: u64,
    pub refresh_idc: u64,
    pub usage_limits: u64,
    pub list_models: u64,
    pub health: u64,
    pub mcp: u64,
    pub unknown: u64,
    /// Web searches answered with results by `/mcp`.
    pub searches: u64,
    /// Chat requests being handled now (from arrival until the streamed body ends or is dropped).
    pub in_flight: u64,
    /// Chat requests answered 200 with a stream.
    pub streams_started: u64,
    /// Streams whose last byte was handed to the connection.
    pub streams_completed: u64,
    /// Injected faults (random and scripted).
    pub faults_injected: u64,
    /// Requests answered 403 because the bearer token was missing, unknown or expired.
    pub auth_rejected: u64,
    /// Chat requests answered 400 by validation (malformed, unknown model, too long).
    pub validation_rejected: u64,
}

impl SimStats {
    /// Requests received by one endpoint.
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        match endpoint {
            Endpoint::Generate => self.generate,
            Endpoint::RefreshSocial => self.refresh_social,
            Endpoint::RefreshIdc => self.refresh_idc,
            Endpoint::UsageLimits => self.usage_limits,
            Endpoint::ListModels => self.list_models,
            Endpoint::Health => self.health,
            Endpoint::Mcp => self.mcp,
            Endpoint::Unknown => self.unknown,
        }
    }
}

/// A request as the sim received it, for tests to assert what the client sent.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub endpoint: Endpoint,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names, in arrival order (values decoded lossily).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Up/down/shutdown state watched by the listener, every connection and every handler.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Power {
    pub(super) down: bool,
    pub(super) shutdown: bool,
    /// Incremented every time the sim goes down: a connection or stream created in an earlier
    /// epoch is cut even if the sim came back up before it noticed.
    pub(super) epoch: u64,
}

impl Power {
    pub(super) fn cuts(&self, epoch: u64) -> bool {
        self.shutdown || self.down || self.epoch != epoch
    }
}

/// Run-time knobs, copied out under the lock (never held across an await).
#[derive(Debug, Clone)]
pub(super) struct Knobs {
    pub(super) latency: Duration,
    pub(super) chunk_delay: Duration,
    pub(super) error_rate: f64,
    pub(super) error_kind: ErrorKind,
    pub(super) scenario: Scenario,
    pub(super) refresh_fails: bool,
    pub(super) context_usage: Option<f64>,
    pub(super) metadata_event: bool,
    pub(super) max_body_bytes: usize,
    pub(super) cache_tokens: (u64, u64),
}

/// Settings fixed at start.
#[derive(Debug)]
pub(super) struct Fixed {
    pub(super) long_frames: usize,
    pub(super) retry_after: Duration,
    pub(super) refreshed_token_ttl: Duration,
    pub(super) usage_limit: u64,
    pub(super) enforce_usage_limit: bool,
    pub(super) accept_any_token: bool,
    pub(super) extra_models: Vec<String>,
    pub(super) seed: u64,
    pub(super) tier: super::SimTier,
}

#[derive(Debug)]
pub(super) struct Faults {
    /// Dice for chat requests, separate from the others so that health probes do not change the
    /// fault sequence chat requests see.
    pub(super) generate_rng: StdRng,
    pub(super) other_rng: StdRng,
    pub(super) scripted: VecDeque<ErrorKind>,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) generate: AtomicU64,
    pub(super) refresh_social: AtomicU64,
    pub(super) refresh_idc: AtomicU64,
    pub(super) usage_limits: AtomicU64,
    pub(super) list_models: AtomicU64,
    pub(super) health: AtomicU64,
    pub(super) mcp: AtomicU64,
    pub(super) unknown: AtomicU64,
    pub(super) searches: AtomicU64,
    pub(super) in_flight: AtomicU64,
    pub(super) streams_started: AtomicU64,
    pub(super) streams_completed: AtomicU64,
    pub(super) faults_injected: AtomicU64,
    pub(super) auth_rejected: AtomicU64,
    pub(super) validation_rejected: AtomicU64,
    pub(super) tool_ids: AtomicU64,
}

#[derive(Debug, Default)]
pub(super) struct LastRequests {
    pub(super) any: Option<RecordedRequest>,
    pub(super) by_endpoint: HashMap<Endpoint, RecordedRequest>,
}

/// Everything the server, its connections and the [`SimUpstream`] handle share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) name: String,
    pub(super) addr: SocketAddr,
    pub(super) fixed: Fixed,
    pub(super) knobs: Mutex<Knobs>,
    pub(super) faults: Mutex<Faults>,
    pub(super) tokens: Mutex<TokenStore>,
    pub(super) counters: Counters,
    pub(super) last: Mutex<LastRequests>,
    pub(super) last_rejection: Mutex<Option<String>>,
    pub(super) mcp_failure: Mutex<Option<super::McpFailure>>,
    pub(super) power: watch::Sender<Power>,
    /// `Some(epoch)` while a listener of that epoch accepts connections.
    pub(super) listening: watch::Sender<Option<u64>>,
    /// The simulated account's credits, when set (see [`crate::demo::account`]).
    pub(super) account: Mutex<Option<crate::demo::account::SimAccount>>,
    /// The simulated SSO-OIDC device login (`oidc.rs`).
    pub(super) oidc: super::oidc::OidcState,
}

/// Lock a mutex, ignoring poisoning: the sim's state stays usable after a panicking test thread.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The request's connection or stream was cut (down or shutdown): nothing can be sent.
#[derive(Debug)]
pub(super) struct Cut;

impl Shared {
    pub(super) fn knobs(&self) -> Knobs {
        lock(&self.knobs).clone()
    }

    pub(super) fn epoch(&self) -> u64 {
        self.power.borrow().epoch
    }

    /// Count and remember a request; returns the epoch it belongs to.
    pub(super) fn record(
        &self,
        endpoint: Endpoint,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> u64 {
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        let counter = match endpoint {
            Endpoint::Generate => &c.generate,
            Endpoint::RefreshSocial => &c.refresh_social,
            Endpoint::RefreshIdc => &c.refresh_idc,
            Endpoint::UsageLimits => &c.usage_limits,
            Endpoint::ListModels => &c.list_models,
            Endpoint::Health => &c.health,
            Endpoint::Mcp => &c.mcp,
            Endpoint::Unknown => &c.unknown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let recorded = RecordedRequest {
            endpoint,
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: body.clone(),
        };
        let mut last = lock(&self.last);
        last.by_endpoint.insert(endpoint, recorded.clone());
        last.any = Some(recorded);
        drop(last);
        tracing::debug!(sim = %self.name, ?endpoint, path = uri.path(), "request");
        self.epoch()
    }

    /// Sleep `d`, unless the sim goes down or shuts down first.
    pub(super) async fn pause(&self, d: Duration, epoch: u64) -> Result<(), Cut> {
        let mut power = self.power.subscribe();
        if power.borrow_and_update().cuts(epoch) {
            return Err(Cut);
        }
        if d.is_zero() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = power.wait_for(|p| p.cuts(epoch)) => Err(Cut),
        }
    }

    /// Wait until the request's epoch ends (the `Hang` fault).
    pub(super) async fn hang(&self, epoch: u64) {
        let mut power = self.power.subscribe();
        let _ = power.wait_for(|p| p.cuts(epoch)).await;
    }

    /// The fault to inject into this request, if any: a scripted one first (chat only), else the dice.
    pub(super) fn take_fault(&self, endpoint: Endpoint, knobs: &Knobs) -> Option<ErrorKind> {
        let mut faults = lock(&self.faults);
        let fault = if endpoint == Endpoint::Generate && !faults.scripted.is_empty() {
            faults.scripted.pop_front()
        } else if knobs.error_rate > 0.0 && knobs.error_kind.applies_to(endpoint) {
            let rng =
                if endpoint == Endpoint::Generate { &mut faults.generate_rng } else { &mut faults.other_rng };
            (rng.random::<f64>() < knobs.error_rate).then_some(knobs.error_kind)
        } else {
            None
        };
        drop(faults);
        if let Some(kind) = fault {
            self.counters.faults_injected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(sim = %self.name, ?endpoint, ?kind, "injecting fault");
        }
        fault
    }

    /// Whether the request carries a bearer token this sim issued and that has not expired
    /// (counts the rejections).
    pub(super) fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty());
        let ok = match token {
            Some(_) if self.fixed.accept_any_token => true,
            Some(token) => lock(&self.tokens).access_valid(token),
            None => false,
        };
        if !ok {
            self.counters.auth_rejected.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    pub(super) fn reject(&self, response: Response, why: String) -> Response {
        tracing::debug!(sim = %self.name, reason = %why, "rejecting request");
        self.counters.validation_rejected.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_rejection) = Some(why);
        response
    }

    pub(super) fn model_known(&self, model: &str) -> bool {
        KNOWN_MODEL_IDS.contains(&model) || self.fixed.extra_models.iter().any(|m| m == model)
    }

    /// The HTTP answer of an injected fault that is answered with a status (not a stream fault).
    pub(super) fn fault_response(&self, kind: ErrorKind) -> Option<Response> {
        Some(match kind {
            ErrorKind::Status500 => aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                json!({"message": "Encountered unexpectedly high load when processing the request, please try again."}),
            ),
            ErrorKind::Throttle429 => {
                let mut response = aws_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ThrottlingException",
                    json!({"message": "Too many requests, please wait before trying again.", "reason": null}),
                );
                let secs =
                    self.fixed.retry_after.as_secs() + u64::from(self.fixed.retry_after.subsec_nanos() > 0);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                response
            }
            ErrorKind::Forbidden403 => bearer_invalid(),
            ErrorKind::Quota402 => quota_exhausted(),
            ErrorKind::Capacity400 => aws_error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                json!({"message": "I am experiencing high traffic, please try again shortly.", "reason": "INSUFFICIENT_MODEL_CAPACITY"}),
            ),
            ErrorKind::ClientStatus(code) => aws_error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::NOT_FOUND),
                "ResourceNotFoundException",
                json!({"message": format!("simulated {code}"), "reason": null}),
            ),
            ErrorKind::CutStream | ErrorKind::CorruptFrame | ErrorKind::Hang => return None,
        })
    }
}

/// Counts a chat request in flight until dropped (with the stream, when there is one).
pub(super) struct InFlight(Arc<Shared>);

impl InFlight {
    pub(super) fn new(shared: &Arc<Shared>) -> Self {
        shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

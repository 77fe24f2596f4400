//! [`SimUpstream`]: starting a simulated upstream and driving it (knobs, faults, power, logins,
//! counters) from tests, benches and the demo.

use super::auth::TokenStore;
use super::listener::{bind, supervise};
use super::options::{Endpoint, ErrorKind, Scenario, SimOptions};
use super::state::{
    Counters, Faults, Fixed, Knobs, LastRequests, Power, RecordedRequest, Shared, SimStats, lock,
};
use super::{SimCredentials, SimIdcCredentials};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running simulated upstream. Knob methods take `&self`; share it with `Arc` to drive it from
/// other tasks. Dropping it shuts the server down (listener closed, connections reset, every task
/// ends); [`SimUpstream::shutdown`] does the same and waits for it.
#[derive(Debug)]
pub struct SimUpstream {
    pub(super) shared: Arc<Shared>,
    pub(super) supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl SimUpstream {
    /// Bind `127.0.0.1:<opts.port>` (0 = any free port) and start serving.
    pub async fn start(opts: SimOptions) -> io::Result<SimUpstream> {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, opts.port)))?;
        let addr = listener.local_addr()?;
        let knobs = Knobs {
            latency: opts.latency,
            chunk_delay: opts.chunk_delay,
            error_rate: clamp_rate(opts.error_rate),
            error_kind: opts.error_kind,
            scenario: opts.scenario,
            refresh_fails: false,
            context_usage: opts.context_usage,
            metadata_event: opts.metadata_event,
            max_body_bytes: opts.max_body_bytes,
            cache_tokens: opts.cache_tokens,
        };
        let shared = Arc::new(Shared {
            name: opts.name,
            addr,
            fixed: Fixed {
                long_frames: opts.long_frames,
                retry_after: opts.retry_after,
                refreshed_token_ttl: opts.refreshed_token_ttl,
                usage_limit: opts.usage_limit,
                enforce_usage_limit: opts.enforce_usage_limit,
                accept_any_token: opts.accept_any_token,
                extra_models: opts.extra_models,
                seed: opts.seed,
                tier: opts.tier,
            },
            knobs: Mutex::new(knobs),
            faults: Mutex::new(Faults {
                generate_rng: StdRng::seed_from_u64(opts.seed),
                other_rng: StdRng::seed_from_u64(opts.seed ^ 0x6f74_6865_7273),
                scripted: VecDeque::new(),
            }),
            tokens: Mutex::new(TokenStore::new(opts.seed)),
            counters: Counters::default(),
            last: Mutex::new(LastRequests::default()),
            last_rejection: Mutex::new(None),
            mcp_failure: Mutex::new(None),
            power: watch::Sender::new(Power::default()),
            listening: watch::Sender::new(Some(0)),
            account: Mutex::new(None),
            oidc: super::oidc::OidcState::default(),
        });
        let supervisor = tokio::spawn(supervise(shared.clone(), listener));
        Ok(SimUpstream { shared, supervisor: Mutex::new(Some(supervisor)) })
    }

    /// Gives the sim an account with credits (see [`crate::demo::account`]); `None` goes back to
    /// the plain stream-counting usage.
    pub fn set_account(&self, account: Option<crate::demo::account::SimAccount>) {
        *super::state::lock(&self.shared.account) = account;
    }

    /// The account, as it stands now.
    pub fn account(&self) -> Option<crate::demo::account::SimAccount> {
        super::state::lock(&self.shared.account).clone()
    }

    /// Changes the account in place (no-op without one).
    pub fn update_account(&self, f: impl FnOnce(&mut crate::demo::account::SimAccount)) {
        if let Some(a) = super::state::lock(&self.shared.account).as_mut() {
            f(a);
        }
    }

    /// [`SimOptions::name`].
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The bound address (the same across down/up).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// Stop serving, reset every connection, and wait for the server task to end.
    pub async fn shutdown(&self) {
        self.shared.power.send_modify(|p| p.shutdown = true);
        let handle = lock(&self.supervisor).take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// Down: the listener is closed (new connections refused) and every open connection and
    /// in-flight stream is reset. Up: the same port is bound again. Takes effect asynchronously;
    /// use [`SimUpstream::wait_listening`] / [`SimUpstream::wait_closed`] to wait for it.
    pub fn set_down(&self, down: bool) {
        self.shared.power.send_modify(|p| {
            if down && !p.down {
                p.epoch += 1;
            }
            p.down = down;
        });
    }

    pub fn is_down(&self) -> bool {
        self.shared.power.borrow().down
    }

    /// Resolves once the sim is up and its listener accepts connections (or it shut down).
    pub async fn wait_listening(&self) {
        let mut listening = self.shared.listening.subscribe();
        let mut power = self.shared.power.subscribe();
        loop {
            let p = *power.borrow_and_update();
            if p.shutdown {
                return;
            }
            if !p.down && *listening.borrow_and_update() == Some(p.epoch) {
                return;
            }
            tokio::select! {
                r = listening.changed() => if r.is_err() { return },
                r = power.changed() => if r.is_err() { return },
            }
        }
    }

    /// Resolves once no listener is open (after `set_down(true)` or shutdown) and the server has
    /// finished closing its connections.
    pub async fn wait_closed(&self) {
        let mut listening = self.shared.listening.subscribe();
        let mut power = self.shared.power.subscribe();
        loop {
            let p = *power.borrow_and_update();
            if (p.down || p.shutdown) && listening.borrow_and_update().is_none() {
                return;
            }
            tokio::select! {
                r = listening.changed() => if r.is_err() { return },
                r = power.changed() => if r.is_err() { return },
            }
        }
    }

    /// Delay before the response headers of every endpoint.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.knobs).latency = latency;
    }

    /// Delay between two frames of a streamed answer (applies to streams already running).
    pub fn set_chunk_delay(&self, delay: Duration) {
        lock(&self.shared.knobs).chunk_delay = delay;
    }

    /// Probability (clamped to 0–1; NaN = 0) that a request gets the [`ErrorKind`] set by
    /// [`SimUpstream::set_error_kind`].
    pub fn set_error_rate(&self, rate: f64) {
        lock(&self.shared.knobs).error_rate = clamp_rate(rate);
    }

    pub fn set_error_kind(&self, kind: ErrorKind) {
        lock(&self.shared.knobs).error_kind = kind;
    }

    /// The next `n` chat requests that pass the bearer check get `kind`, before any random fault.
    pub fn fail_next(&self, n: usize, kind: ErrorKind) {
        lock(&self.shared.faults).scripted.extend(std::iter::repeat_n(kind, n));
    }

    /// Forget scripted failures not yet used.
    pub fn clear_scripted_failures(&self) {
        lock(&self.shared.faults).scripted.clear();
    }

    /// Scripted failures not yet used.
    pub fn pending_scripted_failures(&self) -> usize {
        lock(&self.shared.faults).scripted.len()
    }

    /// The answer for requests without a marker or tool results.
    pub fn set_scenario(&self, scenario: Scenario) {
        lock(&self.shared.knobs).scenario = scenario;
    }

    /// When true, both refresh endpoints answer `400 invalid_grant`.
    pub fn set_refresh_fails(&self, fails: bool) {
        lock(&self.shared.knobs).refresh_fails = fails;
    }

    /// Fixed `contextUsagePercentage` (e.g. 100 to test context overflow); `None` estimates it.
    pub fn set_context_usage(&self, percentage: Option<f64>) {
        lock(&self.shared.knobs).context_usage = percentage;
    }

    /// Send a `metadataEvent` with token usage at the end of each stream.
    pub fn set_metadata_event(&self, on: bool) {
        lock(&self.shared.knobs).metadata_event = on;
    }

    /// Make `/mcp` fail (see [`McpFailure`](super::McpFailure)); `None` answers with results again.
    pub fn set_mcp_failure(&self, failure: Option<super::McpFailure>) {
        *lock(&self.shared.mcp_failure) = failure;
    }

    /// `cacheReadInputTokens` and `cacheWriteInputTokens` of the `metadataEvent`.
    pub fn set_cache_tokens(&self, read: u64, write: u64) {
        lock(&self.shared.knobs).cache_tokens = (read, write);
    }

    /// Bodies above this get `400 Input is too long.`.
    pub fn set_max_body_bytes(&self, max: usize) {
        lock(&self.shared.knobs).max_body_bytes = max;
    }

    /// Counters since start.
    pub fn stats(&self) -> SimStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            requests: get(&c.requests),
            generate: get(&c.generate),
            refresh_social: get(&c.refresh_social),
            refresh_idc: get(&c.refresh_idc),
            usage_limits: get(&c.usage_limits),
            list_models: get(&c.list_models),
            health: get(&c.health),
            mcp: get(&c.mcp),
            unknown: get(&c.unknown),
            searches: get(&c.searches),
            in_flight: get(&c.in_flight),
            streams_started: get(&c.streams_started),
            streams_completed: get(&c.streams_completed),
            faults_injected: get(&c.faults_injected),
            auth_rejected: get(&c.auth_rejected),
            validation_rejected: get(&c.validation_rejected),
        }
    }

    /// The last request received, any endpoint.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.last).any.clone()
    }

    /// The last request received by `endpoint`.
    pub fn last_request_to(&self, endpoint: Endpoint) -> Option<RecordedRequest> {
        lock(&self.shared.last).by_endpoint.get(&endpoint).cloned()
    }

    /// Why the last rejected chat request was rejected (the validator's message), for debugging
    /// tests: the HTTP answer itself is as terse as Kiro's.
    pub fn last_rejection(&self) -> Option<String> {
        lock(&self.shared.last_rejection).clone()
    }

    /// A new social login valid for `ttl`; the sim accepts its access token until then (or
    /// until it is refreshed) and its refresh token at `/refreshToken`.
    pub fn issue_credentials(&self, ttl: Duration) -> SimCredentials {
        lock(&self.shared.tokens).issue(ttl, None)
    }

    /// A new IdC login plus its OIDC client registration; refresh at `/token`.
    pub fn issue_idc_credentials(&self, ttl: Duration) -> SimIdcCredentials {
        let mut tokens = lock(&self.shared.tokens);
        let (client_id, client_secret, client_expires_at) = tokens.register_client();
        let credentials = tokens.issue(ttl, Some(client_id.clone()));
        drop(tokens);
        let digest = Sha256::digest(client_id.as_bytes());
        let client_id_hash: String =
            digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..40].to_owned();
        SimIdcCredentials {
            credentials,
            client_id,
            client_secret,
            client_id_hash,
            client_expires_at,
            region: "us-east-1".to_owned(),
        }
    }

    /// Expire every access token issued so far (the bearer-invalid 403 path); refresh tokens
    /// stay valid.
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.tokens).expire_all();
    }

    /// Whether the sim would accept `token` as a bearer now.
    pub fn is_access_token_valid(&self, token: &str) -> bool {
        lock(&self.shared.tokens).access_valid(token)
    }
}

impl Drop for SimUpstream {
    fn drop(&mut self) {
        self.shared.power.send_modify(|p| p.shutdown = true);
    }
}

pub(super) fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) }
}

//! A simulated Kiro / CodeWhisperer upstream: a real HTTP server on `127.0.0.1` that speaks the
//! real protocol (REST-JSON requests, AWS event-stream responses, the token refresh endpoints),
//! used by `ccr demo`, the integration tests and the benchmarks.
//!
//! It is deliberately not a mock object: clients reach it over TCP exactly as they reach
//! `q.us-east-1.amazonaws.com`, so everything between the socket and the Anthropic client (body
//! conversion, framing, retries, failover, token refresh) runs for real.
//!
//! # Endpoints
//!
//! | path | does |
//! |---|---|
//! | `POST /generateAssistantResponse` | the chat call (REST-JSON): bearer check, [`check_kiro_body`], model check, size check, then a streamed `application/vnd.amazon.eventstream` answer |
//! | `POST /` with `x-amz-target: AmazonCodeWhispererStreamingService.GenerateAssistantResponse` | the same (awsJson flavour); another target → 400 `UnknownOperationException` |
//! | `POST /refreshToken` | social refresh: `{"refreshToken"}` → `{"accessToken","refreshToken","profileArn","expiresIn"}` |
//! | `POST /token` | IdC refresh: `{"clientId","clientSecret","refreshToken","grantType":"refresh_token"}` → `{"accessToken","refreshToken","expiresIn","tokenType":"Bearer"}` |
//! | `GET /getUsageLimits` | bearer required; the protocol notes' §7.1 JSON, usage = streams this sim served |
//! | `GET /ListAvailableModels` | bearer required; the known dotted model ids |
//! | `GET /health` | `200 {"status":"ok"}`, no auth |
//!
//! A refresh revokes every access token issued before it for the same login; the old refresh
//! token stays usable (a client can lose a write-back race), and a new one is returned.
//!
//! # Scenarios
//!
//! The answer is chosen by the first marker found in the current user message content, else by
//! the presence of `toolResults` (the answer then acknowledges them, so a tool loop ends), else by
//! the default [`Scenario`] knob. Markers: `[sim:text]`, `[sim:repeat]`, `[sim:tool]`,
//! `[sim:two-tools]`, `[sim:text-after-tool]`, `[sim:object-input]`, `[sim:thinking]`,
//! `[sim:split-utf8]`, `[sim:exception]`, `[sim:bracket]`, `[sim:long]`, `[sim:long:N]`. When the
//! prompt asked for thinking (`<thinking_mode>enabled` or `<thinking_mode>adaptive` in a user
//! message, the way proxies inject it), every answer starts with a `<thinking>…</thinking>\n\n`
//! block whose tags are split across frames. Every successful stream ends with `meteringEvent`
//! then `contextUsageEvent` (then `metadataEvent` when that knob is on), except the exception
//! scenario, which ends with the exception frame.
//!
//! # Faults
//!
//! Knobs are shared and adjustable at run time from any task (`&self` methods). Which injected
//! [`ErrorKind`]s apply where (a kind that does not apply to an endpoint leaves it answering
//! normally):
//!
//! | kind | generate | getUsageLimits, ListAvailableModels | health | refresh endpoints |
//! |---|---|---|---|---|
//! | `Status500`, `Throttle429`, `Hang` | yes | yes | yes | no |
//! | `Forbidden403` | yes | yes | no (no auth there) | no |
//! | `Quota402`, `Capacity400`, `CutStream`, `CorruptFrame` | yes | no | no | no |
//!
//! The refresh endpoints stand for other services (the Kiro auth host, AWS SSO-OIDC), so the Q
//! service's faults do not reach them; they have their own `set_refresh_fails` knob. Scripted
//! failures ([`SimUpstream::fail_next`]) are consumed only by generate requests that passed the
//! bearer check, so health probes cannot steal them. Latency and `down` apply to every endpoint.
//! Down means the listener is closed (connections refused) and every open connection, idle or
//! mid-stream, is reset; up rebinds the same port.

use crate::providers::codewhisperer::convert::check_kiro_body;
use crate::providers::codewhisperer::eventstream::{encode_event, encode_exception};
use crate::providers::codewhisperer::models;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Model ids the simulated service accepts; anything else is `400 INVALID_MODEL_ID`. Both id
/// styles the service has used (upper-case until mid-2025, dotted since), `auto`, the `-1m`
/// variants and a few non-Claude ids Kiro lists. [`SimOptions::extra_models`] adds more.
pub const KNOWN_MODEL_IDS: &[&str] = &[
    "auto",
    "claude-sonnet-4",
    "claude-sonnet-4.5",
    "claude-sonnet-4.5-1m",
    "claude-sonnet-4.6",
    "claude-sonnet-4.6-1m",
    "claude-sonnet-5",
    "claude-haiku-4.5",
    "claude-opus-4.5",
    "claude-opus-4.6",
    "claude-opus-4.6-1m",
    "claude-opus-4.7",
    "claude-opus-4.8",
    "claude-3.7-sonnet",
    "deepseek-3.2",
    "glm-5",
    "minimax-m2.5",
    "qwen3-coder-next",
    "CLAUDE_SONNET_4_20250514_V1_0",
    "CLAUDE_SONNET_4_5_20250929_V1_0",
    "CLAUDE_3_7_SONNET_20250219_V1_0",
    "CLAUDE_3_5_HAIKU_20241022_V1_0",
];

/// Default for [`SimOptions::max_body_bytes`]. The real limit is not documented (one gateway saw
/// "cryptic 400s" above ~615 KB); the sim is generous so that demo traffic modelled on Claude
/// Code (0.6–1.4 MB bodies) passes, and tests lower it to exercise the error.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The `x-amz-target` of the chat call in the awsJson flavour (`POST /`).
pub const GENERATE_TARGET: &str = "AmazonCodeWhispererStreamingService.GenerateAssistantResponse";

/// Text of the bearer-invalid error; clients match on it to decide to refresh.
pub const BEARER_INVALID_MESSAGE: &str = "The bearer token included in the request is invalid.";

/// Text of the generic validation error.
pub const MALFORMED_MESSAGE: &str = "Improperly formed request.";

/// Delay between the pieces of one frame in the split-UTF-8 scenario when no chunk delay is set,
/// so that the pieces leave in separate TCP writes.
const SPLIT_PIECE_DELAY: Duration = Duration::from_millis(1);

/// Namespace of the `__type` field of error bodies.
const ERROR_TYPE_PREFIX: &str = "com.amazon.aws.codewhisperer#";

// ------------------------------------------------------------------------------------------------
// Public types
// ------------------------------------------------------------------------------------------------

/// A fault the sim can inject (randomly with [`SimUpstream::set_error_rate`], or scripted with
/// [`SimUpstream::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `500` "Encountered unexpectedly high load when processing the request, please try again."
    Status500,
    /// `429` `ThrottlingException` with a `Retry-After` header ([`SimOptions::retry_after`]).
    Throttle429,
    /// `403` bearer token invalid (as if the token had been revoked).
    Forbidden403,
    /// `402` `MONTHLY_REQUEST_COUNT`: the account's quota is exhausted.
    Quota402,
    /// `400` `ThrottlingException` with reason `INSUFFICIENT_MODEL_CAPACITY`.
    Capacity400,
    /// `200`, a few frames, then the body ends cleanly in the middle of a frame.
    CutStream,
    /// `200`, the normal frames, but the third (or last) frame has a bad message CRC.
    CorruptFrame,
    /// The connection is accepted and the request read, but no answer ever comes (until the sim
    /// goes down or shuts down, which resets the connection).
    Hang,
}

impl ErrorKind {
    /// Every kind, in declaration order (for the demo's fault keys).
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Status500,
        ErrorKind::Throttle429,
        ErrorKind::Forbidden403,
        ErrorKind::Quota402,
        ErrorKind::Capacity400,
        ErrorKind::CutStream,
        ErrorKind::CorruptFrame,
        ErrorKind::Hang,
    ];

    /// A short label for logs and the dashboard.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Status500 => "500 high load",
            ErrorKind::Throttle429 => "429 throttled",
            ErrorKind::Forbidden403 => "403 bearer invalid",
            ErrorKind::Quota402 => "402 monthly quota",
            ErrorKind::Capacity400 => "400 model capacity",
            ErrorKind::CutStream => "stream cut mid-frame",
            ErrorKind::CorruptFrame => "corrupt frame",
            ErrorKind::Hang => "hang",
        }
    }

    /// Whether this kind is injected into requests to `endpoint` (see the module table).
    pub fn applies_to(self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::Generate => true,
            Endpoint::UsageLimits | Endpoint::ListModels => {
                matches!(
                    self,
                    ErrorKind::Status500 | ErrorKind::Throttle429 | ErrorKind::Hang | ErrorKind::Forbidden403
                )
            }
            Endpoint::Health => {
                matches!(self, ErrorKind::Status500 | ErrorKind::Throttle429 | ErrorKind::Hang)
            }
            Endpoint::RefreshSocial | Endpoint::RefreshIdc | Endpoint::Unknown => false,
        }
    }
}

/// What the sim answers to a successful chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// A sentence naming the upstream ([`SimOptions::name`]), split across frames mid-word.
    Text,
    /// Three identical frames `"6"`, `"6"`, `"6"` (text `666`): clients must not de-duplicate.
    Repeat,
    /// A short text, then one tool call whose input arrives in 3 fragments, then `stop`.
    Tool,
    /// A short text, then two tool calls one after the other, each with its own id.
    TwoTools,
    /// Text, a tool call, then more text.
    TextAfterTool,
    /// A short text, then a tool call whose `input` is a JSON object, not a string.
    ObjectInput,
    /// `<thinking>…</thinking>\n\n` (tags split across frames), then the [`Scenario::Text`] answer.
    Thinking,
    /// Text with multi-byte characters; every frame is written in two pieces split inside a
    /// UTF-8 sequence.
    SplitUtf8,
    /// A little text, then a `ContentLengthExceededException` exception frame; no trailer.
    Exception,
    /// A tool call written as text: `[Called <tool> with args: {…}]`.
    Bracket,
    /// N text frames (`word0 `, `word1 `, …) for load tests.
    Long(usize),
}

impl Scenario {
    /// Every scenario, `Long` with 200 frames (for the demo's traffic mix).
    pub const ALL: [Scenario; 11] = [
        Scenario::Text,
        Scenario::Repeat,
        Scenario::Tool,
        Scenario::TwoTools,
        Scenario::TextAfterTool,
        Scenario::ObjectInput,
        Scenario::Thinking,
        Scenario::SplitUtf8,
        Scenario::Exception,
        Scenario::Bracket,
        Scenario::Long(200),
    ];

    /// The marker that selects this scenario when it appears in the current user message.
    pub fn marker(self) -> String {
        match self {
            Scenario::Long(n) => format!("[sim:long:{n}]"),
            other => format!("[sim:{}]", other.marker_name()),
        }
    }

    fn marker_name(self) -> &'static str {
        match self {
            Scenario::Text => "text",
            Scenario::Repeat => "repeat",
            Scenario::Tool => "tool",
            Scenario::TwoTools => "two-tools",
            Scenario::TextAfterTool => "text-after-tool",
            Scenario::ObjectInput => "object-input",
            Scenario::Thinking => "thinking",
            Scenario::SplitUtf8 => "split-utf8",
            Scenario::Exception => "exception",
            Scenario::Bracket => "bracket",
            Scenario::Long(_) => "long",
        }
    }

    /// Parse a marker's inside (`tool`, `long:50`); `long` alone takes `default_long` frames.
    pub fn from_marker_name(name: &str, default_long: usize) -> Option<Scenario> {
        let name = name.trim();
        if let Some(count) = name.strip_prefix("long:") {
            return count.trim().parse().ok().map(Scenario::Long);
        }
        Some(match name {
            "text" => Scenario::Text,
            "repeat" => Scenario::Repeat,
            "tool" => Scenario::Tool,
            "two-tools" => Scenario::TwoTools,
            "text-after-tool" => Scenario::TextAfterTool,
            "object-input" => Scenario::ObjectInput,
            "thinking" => Scenario::Thinking,
            "split-utf8" => Scenario::SplitUtf8,
            "exception" => Scenario::Exception,
            "bracket" => Scenario::Bracket,
            "long" => Scenario::Long(default_long),
            _ => return None,
        })
    }

    /// The first recognised `[sim:…]` marker in `content`.
    pub fn find_marker(content: &str, default_long: usize) -> Option<Scenario> {
        let mut rest = content;
        while let Some(start) = rest.find("[sim:") {
            let after = &rest[start + 5..];
            let end = after.find(']')?;
            if let Some(scenario) = Scenario::from_marker_name(&after[..end], default_long) {
                return Some(scenario);
            }
            rest = after;
        }
        None
    }
}

/// The sim's endpoints, for counters and recorded requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /generateAssistantResponse` or `POST /` (with any `x-amz-target`).
    Generate,
    /// `POST /refreshToken`.
    RefreshSocial,
    /// `POST /token`.
    RefreshIdc,
    /// `GET /getUsageLimits`.
    UsageLimits,
    /// `GET /ListAvailableModels`.
    ListModels,
    /// `GET /health`.
    Health,
    /// Anything else (answered 404).
    Unknown,
}

/// Start-up settings of a [`SimUpstream`]. The knobs among them can also be changed at run time.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Echoed in text answers, so tests and the demo can tell upstreams apart.
    pub name: String,
    /// Port on 127.0.0.1; 0 picks a free one. The sim always rebinds the same port after `down`.
    pub port: u16,
    /// Seed of the fault dice and of the issued tokens: the same seed and the same request order
    /// give the same faults and tokens.
    pub seed: u64,
    /// Delay before the response headers (every endpoint).
    pub latency: Duration,
    /// Delay between two frames of a streamed answer.
    pub chunk_delay: Duration,
    /// Probability (0–1) that a request gets `error_kind`.
    pub error_rate: f64,
    /// The fault used by `error_rate`.
    pub error_kind: ErrorKind,
    /// Answer when the request carries no marker and no tool results.
    pub scenario: Scenario,
    /// Bodies above this size get `400 Input is too long.` (`CONTENT_LENGTH_EXCEEDS_THRESHOLD`).
    pub max_body_bytes: usize,
    /// Frames of `[sim:long]` without a count.
    pub long_frames: usize,
    /// Send a `metadataEvent` with token usage after `contextUsageEvent`.
    pub metadata_event: bool,
    /// Fixed `contextUsagePercentage`; `None` estimates it from the body size and the model's
    /// context window.
    pub context_usage: Option<f64>,
    /// `Retry-After` of injected 429s (whole seconds, rounded up).
    pub retry_after: Duration,
    /// `expiresIn` of tokens issued by the refresh endpoints.
    pub refreshed_token_ttl: Duration,
    /// `usageLimit` reported by `getUsageLimits`.
    pub usage_limit: u64,
    /// When true, once `usage_limit` streams were served every chat request gets the 402 quota error.
    pub enforce_usage_limit: bool,
    /// Accept any non-empty bearer token (for benchmarks that talk to the sim directly).
    pub accept_any_token: bool,
    /// Model ids accepted in addition to [`KNOWN_MODEL_IDS`].
    pub extra_models: Vec<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            name: "sim".to_owned(),
            port: 0,
            seed: 0,
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            error_rate: 0.0,
            error_kind: ErrorKind::Status500,
            scenario: Scenario::Text,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            long_frames: 200,
            metadata_event: false,
            context_usage: None,
            retry_after: Duration::from_secs(2),
            refreshed_token_ttl: Duration::from_secs(3600),
            usage_limit: 1000,
            enforce_usage_limit: false,
            accept_any_token: false,
            extra_models: Vec::new(),
        }
    }
}

impl SimOptions {
    /// Defaults with a name.
    pub fn named(name: impl Into<String>) -> Self {
        SimOptions { name: name.into(), ..SimOptions::default() }
    }
}

/// A login the sim issued: what a Kiro token file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCredentials {
    /// `aoa…`, valid until `expires_at` or the next refresh.
    pub access_token: String,
    /// `aor…`, at least 100 characters.
    pub refresh_token: String,
    /// `arn:aws:codewhisperer:us-east-1:<account>:profile/<ID>`.
    pub profile_arn: String,
    pub expires_at: DateTime<Utc>,
}

/// An IdC (Builder ID) login: the tokens plus the OIDC client registration `/token` requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimIdcCredentials {
    pub credentials: SimCredentials,
    pub client_id: String,
    pub client_secret: String,
    /// 40 hex characters; names the registration file `<clientIdHash>.json`.
    pub client_id_hash: String,
    /// Expiry of the client registration (90 days, like AWS).
    pub client_expires_at: DateTime<Utc>,
    pub region: String,
}

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
    pub unknown: u64,
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

// ------------------------------------------------------------------------------------------------
// Shared state
// ------------------------------------------------------------------------------------------------

/// Up/down/shutdown state watched by the listener, every connection and every handler.
#[derive(Debug, Clone, Copy, Default)]
struct Power {
    down: bool,
    shutdown: bool,
    /// Incremented every time the sim goes down: a connection or stream created in an earlier
    /// epoch is cut even if the sim came back up before it noticed.
    epoch: u64,
}

impl Power {
    fn cuts(&self, epoch: u64) -> bool {
        self.shutdown || self.down || self.epoch != epoch
    }
}

/// Run-time knobs, copied out under the lock (never held across an await).
#[derive(Debug, Clone)]
struct Knobs {
    latency: Duration,
    chunk_delay: Duration,
    error_rate: f64,
    error_kind: ErrorKind,
    scenario: Scenario,
    refresh_fails: bool,
    context_usage: Option<f64>,
    metadata_event: bool,
    max_body_bytes: usize,
}

/// Settings fixed at start.
#[derive(Debug)]
struct Fixed {
    long_frames: usize,
    retry_after: Duration,
    refreshed_token_ttl: Duration,
    usage_limit: u64,
    enforce_usage_limit: bool,
    accept_any_token: bool,
    extra_models: Vec<String>,
    seed: u64,
}

#[derive(Debug)]
struct Faults {
    /// Dice for chat requests, separate from the others so that health probes do not change the
    /// fault sequence chat requests see.
    generate_rng: StdRng,
    other_rng: StdRng,
    scripted: VecDeque<ErrorKind>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    generate: AtomicU64,
    refresh_social: AtomicU64,
    refresh_idc: AtomicU64,
    usage_limits: AtomicU64,
    list_models: AtomicU64,
    health: AtomicU64,
    unknown: AtomicU64,
    in_flight: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    faults_injected: AtomicU64,
    auth_rejected: AtomicU64,
    validation_rejected: AtomicU64,
    tool_ids: AtomicU64,
}

#[derive(Debug, Default)]
struct LastRequests {
    any: Option<RecordedRequest>,
    by_endpoint: HashMap<Endpoint, RecordedRequest>,
}

/// One login: refreshing it revokes its access tokens.
#[derive(Debug)]
struct Session {
    profile_arn: String,
    /// IdC logins are bound to their OIDC client; social logins have none.
    client_id: Option<String>,
    access_tokens: Vec<String>,
}

#[derive(Debug)]
struct OidcClient {
    secret: String,
    expires_at: DateTime<Utc>,
}

#[derive(Debug)]
struct TokenStore {
    rng: StdRng,
    sessions: Vec<Session>,
    /// access token → (session, expiry)
    access: HashMap<String, (usize, DateTime<Utc>)>,
    /// refresh token → session
    refresh: HashMap<String, usize>,
    clients: HashMap<String, OidcClient>,
}

/// Why a refresh failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshError {
    InvalidGrant,
    InvalidClient,
    ExpiredClient,
}

/// What a refresh returns.
struct Refreshed {
    access_token: String,
    refresh_token: String,
    profile_arn: String,
    expires_in: u64,
}

fn random_string(rng: &mut StdRng, prefix: &str, len: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    s.extend((0..len).map(|_| char::from(rng.sample(rand::distr::Alphanumeric))));
    s
}

fn random_upper(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

fn after(ttl: Duration) -> DateTime<Utc> {
    let delta = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX);
    Utc::now().checked_add_signed(delta).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl TokenStore {
    fn new(seed: u64) -> Self {
        TokenStore {
            rng: StdRng::seed_from_u64(seed ^ 0x746f_6b65_6e73_0001),
            sessions: Vec::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            clients: HashMap::new(),
        }
    }

    fn issue(&mut self, ttl: Duration, client_id: Option<String>) -> SimCredentials {
        let account: String = (0..12).map(|_| char::from(b'0' + self.rng.random_range(0..10u8))).collect();
        let profile_arn =
            format!("arn:aws:codewhisperer:us-east-1:{account}:profile/{}", random_upper(&mut self.rng, 12));
        let session = self.sessions.len();
        self.sessions.push(Session {
            profile_arn: profile_arn.clone(),
            client_id,
            access_tokens: Vec::new(),
        });
        let expires_at = after(ttl);
        let access_token = self.new_access(session, expires_at);
        let refresh_token = self.new_refresh(session);
        SimCredentials { access_token, refresh_token, profile_arn, expires_at }
    }

    fn new_access(&mut self, session: usize, expires_at: DateTime<Utc>) -> String {
        let token = random_string(&mut self.rng, "aoa", 157);
        self.access.insert(token.clone(), (session, expires_at));
        if let Some(s) = self.sessions.get_mut(session) {
            s.access_tokens.push(token.clone());
        }
        token
    }

    fn new_refresh(&mut self, session: usize) -> String {
        let token = random_string(&mut self.rng, "aor", 197);
        self.refresh.insert(token.clone(), session);
        token
    }

    fn register_client(&mut self) -> (String, String, DateTime<Utc>) {
        let id = random_string(&mut self.rng, "", 22);
        let secret = random_string(&mut self.rng, "eyJraWQiOiJzaW0i", 180);
        let expires_at = after(Duration::from_secs(90 * 24 * 3600));
        self.clients.insert(id.clone(), OidcClient { secret: secret.clone(), expires_at });
        (id, secret, expires_at)
    }

    fn access_valid(&self, token: &str) -> bool {
        self.access.get(token).is_some_and(|(_, expires_at)| *expires_at > Utc::now())
    }

    /// Refresh a login: revoke its access tokens, issue a new one and a new refresh token.
    /// `client` is `None` for the social endpoint and `(id, secret)` for IdC.
    fn refresh(
        &mut self,
        refresh_token: &str,
        client: Option<(&str, &str)>,
        ttl: Duration,
    ) -> Result<Refreshed, RefreshError> {
        if let Some((id, secret)) = client {
            let known = self.clients.get(id).ok_or(RefreshError::InvalidClient)?;
            if known.secret != secret {
                return Err(RefreshError::InvalidClient);
            }
            if known.expires_at <= Utc::now() {
                return Err(RefreshError::ExpiredClient);
            }
        }
        let session = *self.refresh.get(refresh_token).ok_or(RefreshError::InvalidGrant)?;
        let entry = self.sessions.get_mut(session).ok_or(RefreshError::InvalidGrant)?;
        if entry.client_id.as_deref() != client.map(|(id, _)| id) {
            // A social token on the IdC endpoint, another client's token, or the reverse.
            return Err(RefreshError::InvalidGrant);
        }
        let revoked = std::mem::take(&mut entry.access_tokens);
        let profile_arn = entry.profile_arn.clone();
        for token in revoked {
            self.access.remove(&token);
        }
        let access_token = self.new_access(session, after(ttl));
        let refresh_token = self.new_refresh(session);
        Ok(Refreshed { access_token, refresh_token, profile_arn, expires_in: ttl.as_secs() })
    }

    fn expire_all(&mut self) {
        let past = Utc::now() - TimeDelta::seconds(1);
        for (_, expires_at) in self.access.values_mut() {
            *expires_at = past;
        }
    }
}

/// Everything the server, its connections and the [`SimUpstream`] handle share.
#[derive(Debug)]
struct Shared {
    name: String,
    addr: SocketAddr,
    fixed: Fixed,
    knobs: Mutex<Knobs>,
    faults: Mutex<Faults>,
    tokens: Mutex<TokenStore>,
    counters: Counters,
    last: Mutex<LastRequests>,
    last_rejection: Mutex<Option<String>>,
    power: watch::Sender<Power>,
    /// `Some(epoch)` while a listener of that epoch accepts connections.
    listening: watch::Sender<Option<u64>>,
    /// The simulated account's credits, when set (see [`super::account`]).
    account: Mutex<Option<super::account::SimAccount>>,
}

/// Lock a mutex, ignoring poisoning: the sim's state stays usable after a panicking test thread.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The request's connection or stream was cut (down or shutdown): nothing can be sent.
#[derive(Debug)]
struct Cut;

impl Shared {
    fn knobs(&self) -> Knobs {
        lock(&self.knobs).clone()
    }

    fn epoch(&self) -> u64 {
        self.power.borrow().epoch
    }

    /// Count and remember a request; returns the epoch it belongs to.
    fn record(
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
    async fn pause(&self, d: Duration, epoch: u64) -> Result<(), Cut> {
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
    async fn hang(&self, epoch: u64) {
        let mut power = self.power.subscribe();
        let _ = power.wait_for(|p| p.cuts(epoch)).await;
    }

    /// The fault to inject into this request, if any: a scripted one first (chat only), else the dice.
    fn take_fault(&self, endpoint: Endpoint, knobs: &Knobs) -> Option<ErrorKind> {
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
    fn authorized(&self, headers: &HeaderMap) -> bool {
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

    fn reject(&self, response: Response, why: String) -> Response {
        tracing::debug!(sim = %self.name, reason = %why, "rejecting request");
        self.counters.validation_rejected.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_rejection) = Some(why);
        response
    }

    fn model_known(&self, model: &str) -> bool {
        KNOWN_MODEL_IDS.contains(&model) || self.fixed.extra_models.iter().any(|m| m == model)
    }

    /// The HTTP answer of an injected fault that is answered with a status (not a stream fault).
    fn fault_response(&self, kind: ErrorKind) -> Option<Response> {
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
            ErrorKind::CutStream | ErrorKind::CorruptFrame | ErrorKind::Hang => return None,
        })
    }
}

/// Counts a chat request in flight until dropped (with the stream, when there is one).
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------------------------------------
// Error bodies
// ------------------------------------------------------------------------------------------------

/// A JSON error the way AWS REST-JSON services send it: `x-amzn-errortype` header plus `__type`
/// in the body (the protocol notes §6.1: send both, clients rely on status + message).
fn aws_error(status: StatusCode, error_type: &str, mut body: Value) -> Response {
    if let Value::Object(map) = &mut body {
        map.insert("__type".to_owned(), Value::String(format!("{ERROR_TYPE_PREFIX}{error_type}")));
    }
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert(HeaderName::from_static("x-amzn-errortype"), value);
    }
    add_request_id(&mut response);
    response
}

fn add_request_id(response: &mut Response) {
    if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert(HeaderName::from_static("x-amzn-requestid"), value);
    }
}

fn bearer_invalid() -> Response {
    aws_error(StatusCode::FORBIDDEN, "AccessDeniedException", json!({"message": BEARER_INVALID_MESSAGE}))
}

fn malformed() -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        json!({"message": MALFORMED_MESSAGE, "reason": null}),
    )
}

fn invalid_model() -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        json!({"message": "Invalid model. Please select a different model to continue.", "reason": "INVALID_MODEL_ID"}),
    )
}

fn too_long() -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        json!({"message": "Input is too long.", "reason": "CONTENT_LENGTH_EXCEEDS_THRESHOLD"}),
    )
}

fn quota_exhausted() -> Response {
    aws_error(
        StatusCode::PAYMENT_REQUIRED,
        "ThrottlingException",
        json!({"message": "You have reached the limit.", "reason": "MONTHLY_REQUEST_COUNT"}),
    )
}

fn suspended() -> Response {
    aws_error(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        json!({"message": super::account::SUSPENDED_MESSAGE, "reason": "TEMPORARILY_SUSPENDED"}),
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response =
        (status, axum::Json(json!({"error": error, "error_description": description}))).into_response();
    add_request_id(&mut response);
    response
}

/// Placeholder answer for a request whose connection was cut: it is never written, because the
/// connection refuses writes once cut.
fn cut_response() -> Response {
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

// ------------------------------------------------------------------------------------------------
// Handlers
// ------------------------------------------------------------------------------------------------

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/generateAssistantResponse", post(generate_rest))
        .route("/", post(generate_target))
        .route("/refreshToken", post(refresh_social))
        .route("/token", post(refresh_idc))
        .route("/getUsageLimits", get(usage_limits))
        .route("/ListAvailableModels", get(list_models))
        .route("/health", get(health))
        .fallback(not_found)
        // The sim applies its own size rule (`max_body_bytes`, answered like Kiro does).
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn generate_rest(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    generate(sim, true, method, uri, headers, body).await
}

async fn generate_target(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target_ok = headers.get("x-amz-target").is_some_and(|v| v.as_bytes() == GENERATE_TARGET.as_bytes());
    generate(sim, target_ok, method, uri, headers, body).await
}

async fn generate(
    sim: Arc<Shared>,
    target_ok: bool,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let epoch = sim.record(Endpoint::Generate, &method, &uri, &headers, &body);
    let guard = InFlight::new(&sim);
    if !target_ok {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            json!({"message": "Unknown operation: the x-amz-target header does not name GenerateAssistantResponse."}),
        );
    }
    let knobs = sim.knobs();
    if sim.pause(knobs.latency, epoch).await.is_err() {
        return cut_response();
    }
    if !sim.authorized(&headers) {
        return bearer_invalid();
    }
    let fault = sim.take_fault(Endpoint::Generate, &knobs);
    if fault == Some(ErrorKind::Hang) {
        sim.hang(epoch).await;
        return cut_response();
    }
    if let Some(response) = fault.and_then(|kind| sim.fault_response(kind)) {
        return response;
    }

    if body.len() > knobs.max_body_bytes {
        let why = format!("body of {} bytes exceeds {} bytes", body.len(), knobs.max_body_bytes);
        return sim.reject(too_long(), why);
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return sim.reject(malformed(), format!("body is not JSON: {e}")),
    };
    if let Err(why) = check_kiro_body(&request) {
        return sim.reject(malformed(), why);
    }
    let view = RequestView::read(&request, body.len());
    let Some(model) = view.model_id else {
        return sim.reject(malformed(), "currentMessage modelId missing".to_owned());
    };
    if !sim.model_known(model) {
        return sim.reject(invalid_model(), format!("unknown modelId {model}"));
    }
    if sim.fixed.enforce_usage_limit
        && sim.counters.streams_started.load(Ordering::Relaxed) >= sim.fixed.usage_limit
    {
        return quota_exhausted();
    }
    match lock(&sim.account).as_ref() {
        Some(a) if a.suspended => return suspended(),
        Some(a) if a.exhausted() => return quota_exhausted(),
        _ => {}
    }

    let plan = Plan::choose(&view, &knobs, sim.fixed.long_frames);
    let mut script = Script::new(&sim, &view);
    script.play(plan, &view);
    script.trailer(&view, model, &knobs);
    let mut frames = script.frames;
    let end = match fault {
        Some(ErrorKind::CutStream) => cut_mid_frame(&mut frames),
        Some(ErrorKind::CorruptFrame) => {
            corrupt_a_frame(&mut frames);
            End::Complete
        }
        _ => End::Complete,
    };
    sim.counters.streams_started.fetch_add(1, Ordering::Relaxed);
    stream_response(sim, frames, end, epoch, guard)
}

async fn refresh_social(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) =
        refresh_preamble(&sim, Endpoint::RefreshSocial, &method, &uri, &headers, &body).await
    {
        return response;
    }
    let Some(refresh_token) = json_field(&body, "refreshToken") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refreshToken is required");
    };
    let result = lock(&sim.tokens).refresh(&refresh_token, None, sim.fixed.refreshed_token_ttl);
    match result {
        Ok(r) => refresh_answer(json!({
            "accessToken": r.access_token,
            "refreshToken": r.refresh_token,
            "profileArn": r.profile_arn,
            "expiresIn": r.expires_in,
        })),
        Err(e) => refresh_error(e),
    }
}

async fn refresh_idc(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = refresh_preamble(&sim, Endpoint::RefreshIdc, &method, &uri, &headers, &body).await
    {
        return response;
    }
    let (Some(client_id), Some(client_secret), Some(refresh_token)) =
        (json_field(&body, "clientId"), json_field(&body, "clientSecret"), json_field(&body, "refreshToken"))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "clientId, clientSecret and refreshToken are required",
        );
    };
    if json_field(&body, "grantType").as_deref() != Some("refresh_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grantType must be refresh_token",
        );
    }
    let result = lock(&sim.tokens).refresh(
        &refresh_token,
        Some((&client_id, &client_secret)),
        sim.fixed.refreshed_token_ttl,
    );
    match result {
        Ok(r) => refresh_answer(json!({
            "accessToken": r.access_token,
            "refreshToken": r.refresh_token,
            "expiresIn": r.expires_in,
            "tokenType": "Bearer",
        })),
        Err(e) => refresh_error(e),
    }
}

/// What both refresh endpoints do first: record the request, wait the configured latency, and
/// fail when the refresh-fails knob is set.
async fn refresh_preamble(
    sim: &Shared,
    endpoint: Endpoint,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), Response> {
    let epoch = sim.record(endpoint, method, uri, headers, body);
    let knobs = sim.knobs();
    if sim.pause(knobs.latency, epoch).await.is_err() {
        return Err(cut_response());
    }
    if knobs.refresh_fails {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid refresh token provided"));
    }
    Ok(())
}

/// A refresh answer with the request id header every sim answer carries.
fn refresh_answer(body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    add_request_id(&mut response);
    response
}

fn refresh_error(e: RefreshError) -> Response {
    match e {
        RefreshError::InvalidGrant => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid refresh token provided")
        }
        RefreshError::InvalidClient => {
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client credentials")
        }
        RefreshError::ExpiredClient => {
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Client is expired")
        }
    }
}

/// A top-level string field of a JSON body.
fn json_field(body: &[u8], name: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get(name)?.as_str().map(str::to_owned)
}

/// Common start of the JSON endpoints that sit behind the Q service's auth and faults: `Some`
/// is the answer to send instead of the endpoint's own (cut, bearer invalid, injected fault).
async fn guarded(
    sim: &Arc<Shared>,
    endpoint: Endpoint,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    needs_auth: bool,
) -> Option<Response> {
    let epoch = sim.record(endpoint, method, uri, headers, &Bytes::new());
    let knobs = sim.knobs();
    if sim.pause(knobs.latency, epoch).await.is_err() {
        return Some(cut_response());
    }
    if needs_auth && !sim.authorized(headers) {
        return Some(bearer_invalid());
    }
    match sim.take_fault(endpoint, &knobs) {
        Some(ErrorKind::Hang) => {
            sim.hang(epoch).await;
            Some(cut_response())
        }
        Some(kind) => sim.fault_response(kind),
        None => None,
    }
}

async fn usage_limits(
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
    if let Some(account) = lock(&sim.account).clone() {
        if account.suspended {
            return suspended();
        }
        let mut response = axum::Json(account.usage_json(&resource_type, now, &sim.name)).into_response();
        add_request_id(&mut response);
        return response;
    }
    let used = sim.counters.streams_started.load(Ordering::Relaxed);
    let limit = sim.fixed.usage_limit;
    let reset = crate::providers::codewhisperer::client::next_quota_reset(now);
    let reset_epoch = reset.timestamp() as f64;
    let days = (reset - now).num_days().max(0);
    let mut response = axum::Json(json!({
        "daysUntilReset": days,
        "nextDateReset": reset_epoch,
        "subscriptionInfo": {
            "subscriptionTitle": "KIRO FREE",
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

async fn list_models(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = guarded(&sim, Endpoint::ListModels, &method, &uri, &headers, true).await {
        return response;
    }
    let models: Vec<Value> = KNOWN_MODEL_IDS
        .iter()
        .copied()
        .chain(sim.fixed.extra_models.iter().map(String::as_str))
        .filter(|id| !id.contains('_'))
        .map(|id| {
            json!({
                "modelId": id,
                "modelName": id,
                "description": format!("{id} (simulated)"),
                "supportedInputTypes": ["TEXT", "IMAGE"],
                "tokenLimits": {"maxInputTokens": models::context_window(id), "maxOutputTokens": 64000},
                "promptCaching": {"supportsPromptCaching": true},
                "rateMultiplier": 1,
                "rateUnit": "Credit",
            })
        })
        .collect();
    let mut response =
        axum::Json(json!({"defaultModel": {"modelId": models::AUTO}, "models": models})).into_response();
    add_request_id(&mut response);
    response
}

async fn health(State(sim): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(response) = guarded(&sim, Endpoint::Health, &method, &uri, &headers, false).await {
        return response;
    }
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn not_found(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.record(Endpoint::Unknown, &method, &uri, &headers, &body);
    aws_error(StatusCode::NOT_FOUND, "UnknownOperationException", json!({"message": "Not Found"}))
}

// ------------------------------------------------------------------------------------------------
// Reading the request
// ------------------------------------------------------------------------------------------------

/// The parts of a (validated) request body the answer depends on.
struct RequestView<'a> {
    content: &'a str,
    model_id: Option<&'a str>,
    /// Declared tools: name and input schema.
    tools: Vec<(&'a str, Option<&'a Value>)>,
    /// Tool results in the current message: id and text.
    tool_results: Vec<(&'a str, String)>,
    thinking_requested: bool,
    body_len: usize,
}

impl<'a> RequestView<'a> {
    fn read(body: &'a Value, body_len: usize) -> Self {
        let current = body.pointer("/conversationState/currentMessage/userInputMessage");
        let content = current.and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or("");
        let model_id = current.and_then(|m| m.get("modelId")).and_then(Value::as_str);
        let context = current.and_then(|m| m.get("userInputMessageContext"));
        let tools = context
            .and_then(|c| c.get("tools"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let spec = t.get("toolSpecification")?;
                let name = spec.get("name")?.as_str()?;
                Some((name, spec.pointer("/inputSchema/json")))
            })
            .collect();
        let tool_results = context
            .and_then(|c| c.get("toolResults"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|r| {
                let id = r.get("toolUseId").and_then(Value::as_str).unwrap_or("");
                let text = r
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|block| match block.get("text").and_then(Value::as_str) {
                        Some(t) => t.to_owned(),
                        None => block.get("json").map(Value::to_string).unwrap_or_default(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                (id, text)
            })
            .collect();
        let history_contents = body
            .pointer("/conversationState/history")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.pointer("/userInputMessage/content").and_then(Value::as_str));
        let thinking_requested = std::iter::once(content).chain(history_contents).any(|c| {
            c.contains("<thinking_mode>enabled</thinking_mode>")
                || c.contains("<thinking_mode>adaptive</thinking_mode>")
        });
        RequestView { content, model_id, tools, tool_results, thinking_requested, body_len }
    }
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Scenario(Scenario),
    /// Acknowledge the current message's tool results.
    ToolResultAck,
}

impl Plan {
    fn choose(view: &RequestView<'_>, knobs: &Knobs, long_frames: usize) -> Plan {
        if let Some(s) = Scenario::find_marker(view.content, long_frames) {
            Plan::Scenario(s)
        } else if !view.tool_results.is_empty() {
            Plan::ToolResultAck
        } else {
            Plan::Scenario(knobs.scenario)
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Writing the answer
// ------------------------------------------------------------------------------------------------

/// One frame as the pieces it is written in (one piece, except in the split-UTF-8 scenario).
type FramePieces = Vec<Bytes>;

/// Chunk sizes (in characters) that text is cut into: uneven, so words are split mid-word.
const TEXT_CHUNKS: [usize; 6] = [4, 9, 6, 13, 3, 8];

fn split_chars(text: &str, sizes: &[usize]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < chars.len() {
        let size = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(8).max(1);
        let end = (at + size).min(chars.len());
        out.push(chars[at..end].iter().collect());
        at = end;
        i += 1;
    }
    out
}

/// Split a string into `parts` non-empty pieces (fewer when it is shorter) at char boundaries.
fn split_fragments(s: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let parts = parts.clamp(1, chars.len().max(1));
    (0..parts)
        .map(|i| chars[i * chars.len() / parts..(i + 1) * chars.len() / parts].iter().collect())
        .collect()
}

/// Sample arguments that satisfy a tool's schema well enough: each required property (or the
/// first property when none is required) gets a value of its type.
fn sample_input(schema: Option<&Value>) -> Value {
    let Some(props) = schema.and_then(|s| s.get("properties")).and_then(Value::as_object) else {
        return json!({});
    };
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|name| props.contains_key(*name))
        .collect();
    let names: Vec<&str> =
        if required.is_empty() { props.keys().take(1).map(String::as_str).collect() } else { required };
    let mut out = serde_json::Map::new();
    for name in names {
        let prop = &props[name];
        let value = if let Some(first) = prop.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
            first.clone()
        } else {
            match prop.get("type").and_then(Value::as_str) {
                Some("integer") | Some("number") => json!(1),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => json!("sim"),
            }
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// All frames written.
    Complete,
    /// Deliberately ended mid-frame (`CutStream`): not counted as completed.
    Cut,
}

/// Builds the frames of one answer.
struct Script<'s> {
    sim: &'s Shared,
    frames: Vec<FramePieces>,
    out_chars: usize,
    ended_by_exception: bool,
    default_tool: (String, Value),
}

impl<'s> Script<'s> {
    fn new(sim: &'s Shared, view: &RequestView<'_>) -> Self {
        let default_tool = match view.tools.first() {
            Some((name, schema)) => ((*name).to_owned(), sample_input(*schema)),
            None => ("get_weather".to_owned(), json!({"city": "Paris", "unit": "celsius"})),
        };
        Script { sim, frames: Vec::new(), out_chars: 0, ended_by_exception: false, default_tool }
    }

    fn event(&mut self, event_type: &str, payload: &Value) {
        self.frames.push(vec![encode_event(event_type, payload.to_string().as_bytes())]);
    }

    fn text_chunk(&mut self, chunk: &str) {
        self.out_chars += chunk.chars().count();
        self.event("assistantResponseEvent", &json!({"content": chunk}));
    }

    fn text(&mut self, text: &str) {
        for chunk in split_chars(text, &TEXT_CHUNKS) {
            self.text_chunk(&chunk);
        }
    }

    fn tool_id(&self) -> String {
        let n = self.sim.counters.tool_ids.fetch_add(1, Ordering::Relaxed);
        let mut x = self.sim.fixed.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut id = String::from("tooluse_");
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        for _ in 0..22 {
            // splitmix64 step: a deterministic, well-spread id from the counter.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            id.push(char::from(ALPHABET[(z % ALPHABET.len() as u64) as usize]));
        }
        id
    }

    /// A tool call whose input arrives as `fragments` string pieces, then a `stop` frame.
    fn tool(&mut self, name: &str, input: &Value, fragments: usize) {
        let id = self.tool_id();
        let input = input.to_string();
        self.out_chars += input.chars().count();
        for piece in split_fragments(&input, fragments) {
            self.event(
                "toolUseEvent",
                &json!({"name": name, "toolUseId": id, "input": piece, "stop": false}),
            );
        }
        self.event("toolUseEvent", &json!({"name": name, "toolUseId": id, "stop": true}));
    }

    /// A tool call whose input is one JSON object, then a `stop` frame.
    fn tool_object(&mut self, name: &str, input: &Value) {
        let id = self.tool_id();
        self.out_chars += input.to_string().chars().count();
        self.event("toolUseEvent", &json!({"name": name, "toolUseId": id, "input": input, "stop": false}));
        self.event("toolUseEvent", &json!({"name": name, "toolUseId": id, "stop": true}));
    }

    fn thinking(&mut self) {
        let name = &self.sim.name;
        let chunks = [
            "<thin".to_owned(),
            format!("king>\nThe user wants a simulated answer from {name}"),
            "; thinking it over.</thi".to_owned(),
            "nking>\n\n".to_owned(),
        ];
        for chunk in chunks {
            self.text_chunk(&chunk);
        }
    }

    fn plain_text(&self) -> String {
        format!("Hello from {}! This is a simulated Kiro answer, streamed in small pieces.", self.sim.name)
    }

    fn play(&mut self, plan: Plan, view: &RequestView<'_>) {
        if view.thinking_requested || plan == Plan::Scenario(Scenario::Thinking) {
            self.thinking();
        }
        let (tool, input) = self.default_tool.clone();
        let scenario = match plan {
            Plan::ToolResultAck => {
                let ids: Vec<&str> = view.tool_results.iter().map(|(id, _)| *id).collect();
                let first: String =
                    view.tool_results.first().map(|(_, t)| t.chars().take(60).collect()).unwrap_or_default();
                let text = format!(
                    "Received {} tool result(s) ({}). First result: \"{first}\". All done, answered by {}.",
                    ids.len(),
                    ids.join(", "),
                    self.sim.name
                );
                self.text(&text);
                return;
            }
            Plan::Scenario(s) => s,
        };
        match scenario {
            Scenario::Text | Scenario::Thinking => self.text(&self.plain_text()),
            Scenario::Repeat => {
                for _ in 0..3 {
                    self.text_chunk("6");
                }
            }
            Scenario::Tool => {
                self.text("Let me use a tool.");
                self.tool(&tool, &input, 3);
            }
            Scenario::TwoTools => {
                self.text("Two tools at once.");
                self.tool(&tool, &input, 3);
                let (second, second_input) = match view.tools.get(1) {
                    Some((name, schema)) => ((*name).to_owned(), sample_input(*schema)),
                    None => (tool.clone(), input.clone()),
                };
                self.tool(&second, &second_input, 2);
            }
            Scenario::TextAfterTool => {
                self.text("First a tool.");
                self.tool(&tool, &input, 3);
                self.text(&format!("The tool is done; {} continues the answer.", self.sim.name));
            }
            Scenario::ObjectInput => {
                self.text("Object input follows.");
                self.tool_object(&tool, &input);
            }
            Scenario::SplitUtf8 => {
                let text = format!("Grüße aus {}: 你好，世界！🦀 naïve café ✓", self.sim.name);
                for chunk in split_chars(&text, &TEXT_CHUNKS) {
                    self.text_chunk(&chunk);
                    if let Some(frame) = self.frames.pop() {
                        self.frames.push(split_inside_utf8(frame));
                    }
                }
            }
            Scenario::Exception => {
                self.text("This answer will be cut off because it is too lo");
                self.frames.push(vec![encode_exception(
                    "ContentLengthExceededException",
                    json!({"message": "Response exceeded length"}).to_string().as_bytes(),
                )]);
                self.ended_by_exception = true;
            }
            Scenario::Bracket => {
                self.text("I will look that up.\n");
                self.text(&format!("[Called {tool} with args: {input}]"));
            }
            Scenario::Long(n) => {
                for i in 0..n.max(1) {
                    self.text_chunk(&format!("word{i} "));
                }
            }
        }
    }

    /// `meteringEvent`, `contextUsageEvent`, optional `metadataEvent` (not after an exception).
    fn trailer(&mut self, view: &RequestView<'_>, model: &str, knobs: &Knobs) {
        if self.ended_by_exception {
            return;
        }
        let input_tokens = (view.body_len / 4).max(1) as u64;
        let output_tokens = (self.out_chars / 4).max(1) as u64;
        let window = models::context_window(model) as f64;
        let percentage = knobs.context_usage.unwrap_or_else(|| {
            let raw = input_tokens as f64 * 100.0 / window;
            (raw * 10_000.0).round() / 10_000.0
        });
        let credits = ((0.01 + output_tokens as f64 * 0.0001) * 1e6).round() / 1e6;
        self.event("meteringEvent", &json!({"unit": "credit", "unitPlural": "credits", "usage": credits}));
        if let Some(a) = lock(&self.sim.account).as_mut() {
            a.charge(credits);
        }
        self.event("contextUsageEvent", &json!({"contextUsagePercentage": percentage}));
        if knobs.metadata_event {
            self.event(
                "metadataEvent",
                &json!({"tokenUsage": {
                    "uncachedInputTokens": input_tokens,
                    "outputTokens": output_tokens,
                    "totalTokens": input_tokens + output_tokens,
                    "cacheReadInputTokens": 0,
                    "cacheWriteInputTokens": 0,
                }}),
            );
        }
    }
}

/// Split an encoded frame in two right after the first byte of its first multi-byte UTF-8
/// sequence (in the middle of the payload's character); in half when it has none.
fn split_inside_utf8(frame: FramePieces) -> FramePieces {
    let bytes: Vec<u8> = frame.iter().flat_map(|b| b.iter().copied()).collect();
    // Skip the prelude and headers: only split inside the JSON payload.
    let headers_len =
        bytes.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).unwrap_or(0);
    let payload_start = (12 + headers_len).min(bytes.len());
    let at = bytes[payload_start..]
        .iter()
        .position(|b| *b >= 0xC0)
        .map(|i| payload_start + i + 1)
        .unwrap_or(bytes.len() / 2)
        .clamp(1, bytes.len().saturating_sub(1).max(1));
    let bytes = Bytes::from(bytes);
    vec![bytes.slice(..at), bytes.slice(at..)]
}

/// `CutStream`: keep two whole frames (fewer for tiny answers), then half of the next one.
fn cut_mid_frame(frames: &mut Vec<FramePieces>) -> End {
    let keep = 2.min(frames.len().saturating_sub(1));
    frames.truncate(keep + 1);
    if let Some(last) = frames.pop() {
        let bytes: Vec<u8> = last.iter().flat_map(|b| b.iter().copied()).collect();
        let half = (bytes.len() / 2).max(1);
        frames.push(vec![Bytes::copy_from_slice(&bytes[..half.min(bytes.len())])]);
    }
    End::Cut
}

/// `CorruptFrame`: flip the message CRC of the third frame (or the last, for tiny answers).
fn corrupt_a_frame(frames: &mut [FramePieces]) {
    let index = 2.min(frames.len().saturating_sub(1));
    if let Some(frame) = frames.get_mut(index) {
        let mut bytes: Vec<u8> = frame.iter().flat_map(|b| b.iter().copied()).collect();
        if let Some(last) = bytes.last_mut() {
            *last ^= 0xFF;
        }
        *frame = vec![Bytes::from(bytes)];
    }
}

/// The streamed body: one write per piece, `chunk_delay` between frames (read live, so a change
/// applies mid-stream), cut with an error when the sim goes down or shuts down.
struct BodyState {
    sim: Arc<Shared>,
    writes: VecDeque<(Bytes, Duration)>,
    first: bool,
    epoch: u64,
    end: End,
    done: bool,
    _guard: InFlight,
}

fn stream_response(
    sim: Arc<Shared>,
    frames: Vec<FramePieces>,
    end: End,
    epoch: u64,
    guard: InFlight,
) -> Response {
    let mut writes = VecDeque::new();
    for frame in frames {
        for (i, piece) in frame.into_iter().enumerate() {
            // Pieces after the first of a frame follow at least `SPLIT_PIECE_DELAY` apart.
            writes.push_back((piece, if i == 0 { Duration::ZERO } else { SPLIT_PIECE_DELAY }));
        }
    }
    let state = BodyState { sim, writes, first: true, epoch, end, done: false, _guard: guard };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let Some((bytes, min_delay)) = st.writes.pop_front() else {
            st.done = true;
            if st.end == End::Complete {
                st.sim.counters.streams_completed.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        };
        let delay = if st.first { Duration::ZERO } else { st.sim.knobs().chunk_delay.max(min_delay) };
        st.first = false;
        if st.sim.pause(delay, st.epoch).await.is_err() {
            st.done = true;
            let err = io::Error::new(io::ErrorKind::ConnectionReset, "simulated upstream went down");
            return Some((Err(err), st));
        }
        Some((Ok::<Bytes, io::Error>(bytes), st))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.amazon.eventstream"));
    add_request_id(&mut response);
    response
}

// ------------------------------------------------------------------------------------------------
// Listener and connections that can be cut
// ------------------------------------------------------------------------------------------------

/// Accepts connections and wraps each in a [`CutOffIo`] tied to the current epoch.
struct SimListener {
    inner: TcpListener,
    power: watch::Receiver<Power>,
}

impl axum::serve::Listener for SimListener {
    type Io = CutOffIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CutOffIo, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Frames are small and must leave at once.
                    let _ = stream.set_nodelay(true);
                    let epoch = self.power.borrow().epoch;
                    return (CutOffIo::new(stream, self.power.clone(), epoch), addr);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "simulated upstream: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write once its epoch ends, and then resets (zero
/// linger) instead of closing politely: what clients see when a server dies.
struct CutOffIo {
    io: TcpStream,
    cut_signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    is_cut: bool,
}

impl CutOffIo {
    fn new(io: TcpStream, mut power: watch::Receiver<Power>, epoch: u64) -> Self {
        let cut_signal = Box::pin(async move {
            let _ = power.wait_for(|p| p.cuts(epoch)).await;
        });
        CutOffIo { io, cut_signal, is_cut: false }
    }

    fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_cut && self.cut_signal.as_mut().poll(cx).is_ready() {
            self.is_cut = true;
            let _ = self.io.set_zero_linger();
        }
        self.is_cut
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "simulated upstream went down")
}

impl AsyncRead for CutOffIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutOffIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Bind a listening socket with `SO_REUSEADDR`, so the same port can be bound again right after
/// going down.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Owns the listener: serves while up, drops the listener when down, rebinds the same port when
/// up again, returns at shutdown.
async fn supervise(shared: Arc<Shared>, first: TcpListener) {
    let app = router(shared.clone());
    let mut power = shared.power.subscribe();
    let mut ready = Some(first);
    loop {
        let now = *power.borrow_and_update();
        if now.shutdown {
            break;
        }
        if now.down {
            drop(ready.take());
            if power.wait_for(|p| p.shutdown || !p.down).await.is_err() {
                break;
            }
            continue;
        }
        let listener = match ready.take() {
            Some(l) => l,
            None => match bind(shared.addr) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(sim = %shared.name, addr = %shared.addr, error = %e, "simulated upstream: rebind failed, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = power.changed() => {}
                    }
                    continue;
                }
            },
        };
        let epoch = now.epoch;
        let listener = SimListener { inner: listener, power: shared.power.subscribe() };
        let mut stop = shared.power.subscribe();
        let signal = async move {
            let _ = stop.wait_for(|p| p.cuts(epoch)).await;
        };
        shared.listening.send_replace(Some(epoch));
        if let Err(e) = axum::serve(listener, app.clone()).with_graceful_shutdown(signal).await {
            tracing::warn!(sim = %shared.name, error = %e, "simulated upstream: server error");
        }
        shared.listening.send_replace(None);
    }
    shared.listening.send_replace(None);
}

// ------------------------------------------------------------------------------------------------
// The handle
// ------------------------------------------------------------------------------------------------

/// A running simulated upstream. Knob methods take `&self`; share it with `Arc` to drive it from
/// other tasks. Dropping it shuts the server down (listener closed, connections reset, every task
/// ends); [`SimUpstream::shutdown`] does the same and waits for it.
#[derive(Debug)]
pub struct SimUpstream {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
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
            power: watch::Sender::new(Power::default()),
            listening: watch::Sender::new(Some(0)),
            account: Mutex::new(None),
        });
        let supervisor = tokio::spawn(supervise(shared.clone(), listener));
        Ok(SimUpstream { shared, supervisor: Mutex::new(Some(supervisor)) })
    }

    /// Gives the sim an account with credits (see [`super::account`]); `None` goes back to the
    /// plain stream-counting usage.
    pub fn set_account(&self, account: Option<super::account::SimAccount>) {
        *lock(&self.shared.account) = account;
    }

    /// The account, as it stands now.
    pub fn account(&self) -> Option<super::account::SimAccount> {
        lock(&self.shared.account).clone()
    }

    /// Changes the account in place (no-op without one).
    pub fn update_account(&self, f: impl FnOnce(&mut super::account::SimAccount)) {
        if let Some(a) = lock(&self.shared.account).as_mut() {
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
            unknown: get(&c.unknown),
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

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) }
}

// ------------------------------------------------------------------------------------------------
// Token files
// ------------------------------------------------------------------------------------------------

fn rfc3339_ms(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Write a Kiro IDE social token file (`kiro-auth-token.json` shape: `accessToken`,
/// `refreshToken`, `expiresAt` RFC 3339 with milliseconds and `Z`, `profileArn`, `authMethod`
/// `social`, `provider` `Github`), mode 0600, atomically (temp file + rename, like an editor).
pub fn write_social_token_file(path: &Path, creds: &SimCredentials) -> io::Result<()> {
    let value = json!({
        "accessToken": creds.access_token,
        "refreshToken": creds.refresh_token,
        "expiresAt": rfc3339_ms(&creds.expires_at),
        "profileArn": creds.profile_arn,
        "authMethod": "social",
        "provider": "Github",
    });
    write_private_json(path, &value)
}

/// Write a Kiro IDE IdC token file (`clientIdHash`, `authMethod` `IdC`, `provider` `BuilderId`,
/// `region`, no `profileArn`) and, next to it, the `<clientIdHash>.json` registration file
/// (`clientId`, `clientSecret`, `expiresAt`). Both mode 0600. Returns the registration file's path.
pub fn write_idc_token_file(path: &Path, idc: &SimIdcCredentials) -> io::Result<PathBuf> {
    let creds = &idc.credentials;
    let token = json!({
        "accessToken": creds.access_token,
        "refreshToken": creds.refresh_token,
        "expiresAt": rfc3339_ms(&creds.expires_at),
        "clientIdHash": idc.client_id_hash,
        "authMethod": "IdC",
        "provider": "BuilderId",
        "region": idc.region,
    });
    let registration = json!({
        "clientId": idc.client_id,
        "clientSecret": idc.client_secret,
        "expiresAt": rfc3339_ms(&idc.client_expires_at),
    });
    let registration_path = path.with_file_name(format!("{}.json", idc.client_id_hash));
    write_private_json(&registration_path, &registration)?;
    write_private_json(path, &token)?;
    Ok(registration_path)
}

fn write_private_json(path: &Path, value: &Value) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "token file path has no file name"))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let write = || -> io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        io::Write::write_all(&mut file, &text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::codewhisperer::events::{KiroEvent, parse_frame};
    use crate::providers::codewhisperer::eventstream::{Frame, FrameDecoder, FrameError};

    const HOUR: Duration = Duration::from_secs(3600);

    async fn start(name: &str) -> SimUpstream {
        match SimUpstream::start(SimOptions { seed: 7, ..SimOptions::named(name) }).await {
            Ok(sim) => sim,
            Err(e) => panic!("sim did not start: {e}"),
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().expect("reqwest client")
    }

    /// A minimal body that passes the §3.5 validator.
    fn body(content: &str) -> Value {
        json!({
            "conversationState": {
                "conversationId": "5a1f0c4e-8a51-4a49-9f0a-1f1c2b3d4e5f",
                "chatTriggerType": "MANUAL",
                "currentMessage": {"userInputMessage": {
                    "content": content, "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"
                }}
            }
        })
    }

    fn with_tools(mut body: Value, tools: Value) -> Value {
        body["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"] =
            json!({"tools": tools});
        body
    }

    fn tool_spec(name: &str, schema: Value) -> Value {
        json!({"toolSpecification": {"name": name, "description": "a tool", "inputSchema": {"json": schema}}})
    }

    async fn generate(sim: &SimUpstream, token: &str, body: &Value) -> reqwest::Response {
        client()
            .post(format!("{}/generateAssistantResponse", sim.base_url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request reaches the sim")
    }

    /// All frames of a body, and the decoder's error if one stopped it, and the leftover bytes.
    fn decode(bytes: &[u8]) -> (Vec<Frame>, Option<FrameError>, usize) {
        let mut decoder = FrameDecoder::new();
        decoder.feed(bytes);
        let mut frames = Vec::new();
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, None, decoder.buffered_len()),
                Err(e) => return (frames, Some(e), decoder.buffered_len()),
            }
        }
    }

    fn events(frames: &[Frame]) -> Vec<KiroEvent> {
        frames.iter().map(|f| parse_frame(f).expect("frame parses")).collect()
    }

    fn event_types(frames: &[Frame]) -> Vec<String> {
        frames.iter().map(|f| f.event_type().or(f.exception_type()).unwrap_or("?").to_owned()).collect()
    }

    fn text_of(events: &[KiroEvent]) -> String {
        events
            .iter()
            .filter_map(|e| if let KiroEvent::Text(t) = e { Some(t.as_str()) } else { None })
            .collect()
    }

    /// Tool calls as (id, name, concatenated input, saw stop).
    fn tools_of(events: &[KiroEvent]) -> Vec<(String, String, String, bool)> {
        let mut calls: Vec<(String, String, String, bool)> = Vec::new();
        for e in events {
            if let KiroEvent::ToolUse { id, name, input, stop } = e {
                if calls.last().is_none_or(|c| &c.0 != id) {
                    calls.push((id.clone(), name.clone(), String::new(), false));
                }
                let call = calls.last_mut().expect("just pushed");
                call.2.push_str(input.as_deref().unwrap_or(""));
                call.3 |= *stop;
            }
        }
        calls
    }

    async fn answer(sim: &SimUpstream, token: &str, body: &Value) -> (Vec<Frame>, Vec<KiroEvent>) {
        let response = generate(sim, token, body).await;
        assert_eq!(response.status(), 200, "{:?}", sim.last_rejection());
        let bytes = response.bytes().await.expect("body");
        let (frames, err, left) = decode(&bytes);
        assert!(err.is_none() && left == 0, "clean stream: {err:?}, {left} bytes left");
        let events = events(&frames);
        (frames, events)
    }

    async fn error_body(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let value = response.json::<Value>().await.expect("JSON error body");
        (status, value)
    }

    #[tokio::test]
    async fn plain_text_streams_frames_in_order_with_kiro_headers() {
        let sim = start("sim-a").await;
        let creds = sim.issue_credentials(HOUR);
        let response = generate(&sim, &creds.access_token, &body("hello")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/vnd.amazon.eventstream");
        let (frames, err, left) = decode(&response.bytes().await.expect("body"));
        assert!(err.is_none() && left == 0);

        let types = event_types(&frames);
        let n = types.len();
        assert!(n > 4, "several text frames plus trailer: {types:?}");
        assert!(types[..n - 2].iter().all(|t| t == "assistantResponseEvent"), "{types:?}");
        assert_eq!(&types[n - 2..], ["meteringEvent", "contextUsageEvent"]);
        for frame in &frames {
            let names: Vec<&str> = frame.headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, [":event-type", ":content-type", ":message-type"]);
            assert_eq!(frame.header(":content-type"), Some("application/json"));
            assert_eq!(frame.message_type(), Some("event"));
        }
        let events = events(&frames);
        let text = text_of(&events);
        assert_eq!(text, "Hello from sim-a! This is a simulated Kiro answer, streamed in small pieces.");
        // Chunks split words: the first one is not a whole word.
        assert_eq!(events[0], KiroEvent::Text("Hell".to_owned()));
        assert!(matches!(events[n - 1], KiroEvent::ContextUsage { percentage } if percentage > 0.0));

        let stats = sim.stats();
        assert_eq!((stats.requests, stats.generate, stats.streams_started), (1, 1, 1));
        assert_eq!(stats.streams_completed, 1);
        let recorded = sim.last_request_to(Endpoint::Generate).expect("recorded");
        assert_eq!(recorded.header("authorization"), Some(format!("Bearer {}", creds.access_token).as_str()));
        assert_eq!(
            recorded.json().expect("json")["conversationState"]["currentMessage"]["userInputMessage"]["content"],
            "hello"
        );
    }

    #[tokio::test]
    async fn metadata_event_and_fixed_context_usage_when_configured() {
        let sim = start("sim-a").await;
        sim.set_metadata_event(true);
        sim.set_context_usage(Some(100.0));
        let token = sim.issue_credentials(HOUR).access_token;
        let (frames, events) = answer(&sim, &token, &body("hi")).await;
        let types = event_types(&frames);
        assert_eq!(&types[types.len() - 3..], ["meteringEvent", "contextUsageEvent", "metadataEvent"]);
        assert!(events.contains(&KiroEvent::ContextUsage { percentage: 100.0 }));
        assert!(
            matches!(events.last(), Some(KiroEvent::Usage { input_tokens, output_tokens, .. }) if *input_tokens > 0 && *output_tokens > 0)
        );
    }

    #[tokio::test]
    async fn tool_scenario_sends_three_fragments_then_stop() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        let schema = json!({"type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}}, "required": ["path"]});
        let request = with_tools(body("read it [sim:tool]"), json!([tool_spec("read_file", schema)]));
        let (frames, events) = answer(&sim, &token, &request).await;
        let types = event_types(&frames);
        let first_tool = types.iter().position(|t| t == "toolUseEvent").expect("a tool event");
        assert!(types[..first_tool].iter().all(|t| t == "assistantResponseEvent"));
        assert_eq!(types.iter().filter(|t| *t == "toolUseEvent").count(), 4, "3 fragments + stop");
        assert_eq!(&types[types.len() - 2..], ["meteringEvent", "contextUsageEvent"]);

        let calls = tools_of(&events);
        assert_eq!(calls.len(), 1);
        let (id, name, input, stopped) = &calls[0];
        assert!(id.starts_with("tooluse_") && id.len() == 30, "{id}");
        assert_eq!(name, "read_file");
        assert!(*stopped);
        assert_eq!(serde_json::from_str::<Value>(input).expect("input is JSON"), json!({"path": "sim"}));
        let fragments: Vec<&KiroEvent> =
            events.iter().filter(|e| matches!(e, KiroEvent::ToolUse { input: Some(_), .. })).collect();
        assert_eq!(fragments.len(), 3);
        assert!(matches!(
            events.iter().rfind(|e| matches!(e, KiroEvent::ToolUse { .. })),
            Some(KiroEvent::ToolUse { input: None, stop: true, .. })
        ));
    }

    #[tokio::test]
    async fn two_tools_text_after_tool_and_object_input() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        let tools = json!([
            tool_spec(
                "Bash",
                json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]})
            ),
            tool_spec(
                "Glob",
                json!({"type": "object", "properties": {"pattern": {"type": "string", "enum": ["*.rs"]}}})
            ),
        ]);

        let (_, events) = answer(&sim, &token, &with_tools(body("[sim:two-tools]"), tools.clone())).await;
        let calls = tools_of(&events);
        assert_eq!(calls.len(), 2);
        assert_ne!(calls[0].0, calls[1].0, "each call has its own id");
        assert_eq!((calls[0].1.as_str(), calls[1].1.as_str()), ("Bash", "Glob"));
        assert_eq!(serde_json::from_str::<Value>(&calls[1].2).expect("json"), json!({"pattern": "*.rs"}));
        assert!(calls.iter().all(|c| c.3));

        let (frames, events) =
            answer(&sim, &token, &with_tools(body("[sim:text-after-tool]"), tools.clone())).await;
        let types = event_types(&frames);
        let last_tool = types.iter().rposition(|t| t == "toolUseEvent").expect("tool");
        assert_eq!(types[last_tool + 1], "assistantResponseEvent", "text follows the tool call");
        assert!(text_of(&events).ends_with("The tool is done; sim-a continues the answer."));

        let (frames, events) = answer(&sim, &token, &with_tools(body("[sim:object-input]"), tools)).await;
        let object_frame =
            frames.iter().find(|f| f.event_type() == Some("toolUseEvent")).expect("tool frame");
        let payload: Value = serde_json::from_slice(&object_frame.payload).expect("json");
        assert_eq!(payload["input"], json!({"command": "sim"}), "input is an object on the wire");
        assert_eq!(tools_of(&events)[0].2, r#"{"command":"sim"}"#);
    }

    #[tokio::test]
    async fn repeat_thinking_split_utf8_exception_bracket_and_long() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;

        let (_, events) = answer(&sim, &token, &body("[sim:repeat]")).await;
        let texts: Vec<&KiroEvent> = events.iter().filter(|e| matches!(e, KiroEvent::Text(_))).collect();
        assert_eq!(
            texts,
            [&KiroEvent::Text("6".into()), &KiroEvent::Text("6".into()), &KiroEvent::Text("6".into())]
        );

        let (_, events) = answer(&sim, &token, &body("[sim:thinking]")).await;
        let text = text_of(&events);
        assert!(text.starts_with("<thinking>\nThe user wants a simulated answer from sim-a"), "{text}");
        assert!(text.contains("</thinking>\n\nHello from sim-a!"), "{text}");
        assert_eq!(events[0], KiroEvent::Text("<thin".into()), "the start tag is split across frames");

        // Thinking asked for in the prompt, the way proxies inject it: the answer thinks first.
        let (_, events) =
            answer(&sim, &token, &body("<thinking_mode>adaptive</thinking_mode> [sim:repeat]")).await;
        assert!(
            text_of(&events).starts_with("<thinking>") && text_of(&events).ends_with("</thinking>\n\n666")
        );

        // Split UTF-8: the frames decode to the full text, and the raw body splits a character
        // across two writes (checked by decoding each frame's bytes: the frames are intact).
        let (_, events) = answer(&sim, &token, &body("[sim:split-utf8]")).await;
        assert_eq!(text_of(&events), "Grüße aus sim-a: 你好，世界！🦀 naïve café ✓");

        let (frames, events) = answer(&sim, &token, &body("[sim:exception]")).await;
        let last = frames.last().expect("frames");
        assert_eq!(last.message_type(), Some("exception"));
        assert_eq!(last.exception_type(), Some("ContentLengthExceededException"));
        assert!(
            matches!(events.last(), Some(KiroEvent::Exception { kind, message }) if kind == "ContentLengthExceededException" && message == "Response exceeded length")
        );
        assert!(!event_types(&frames).contains(&"meteringEvent".to_owned()), "no trailer after an exception");

        let (_, events) = answer(&sim, &token, &body("[sim:bracket]")).await;
        assert!(
            text_of(&events).contains(r#"[Called get_weather with args: {"city":"Paris","unit":"celsius"}]"#)
        );

        let (frames, _) = answer(&sim, &token, &body("[sim:long:50]")).await;
        assert_eq!(frames.iter().filter(|f| f.event_type() == Some("assistantResponseEvent")).count(), 50);
    }

    #[test]
    fn split_utf8_pieces_cut_inside_a_character() {
        let frame = encode_event("assistantResponseEvent", json!({"content": "aé"}).to_string().as_bytes());
        let pieces = split_inside_utf8(vec![frame.clone()]);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].last(), Some(&0xC3), "first piece ends with the lead byte of é");
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(joined, frame.to_vec());
    }

    #[tokio::test]
    async fn tool_results_get_an_acknowledgement() {
        let sim = start("sim-b").await;
        let token = sim.issue_credentials(HOUR).access_token;
        sim.set_scenario(Scenario::Tool);
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let request = json!({
            "conversationState": {
                "conversationId": "c1",
                "chatTriggerType": "MANUAL",
                "history": [
                    {"userInputMessage": {"content": "weather?", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"}},
                    {"assistantResponseMessage": {"content": "checking", "toolUses": [
                        {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}]}}
                ],
                "currentMessage": {"userInputMessage": {
                    "content": "Tool results provided.", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR",
                    "userInputMessageContext": {
                        "tools": [tool_spec("get_weather", schema)],
                        "toolResults": [{"toolUseId": "tooluse_1", "content": [{"text": "sunny, 21C"}], "status": "success"}]
                    }
                }}
            }
        });
        let (_, events) = answer(&sim, &token, &request).await;
        assert!(tools_of(&events).is_empty(), "no further tool call: the loop ends");
        assert_eq!(
            text_of(&events),
            "Received 1 tool result(s) (tooluse_1). First result: \"sunny, 21C\". All done, answered by sim-b."
        );
    }

    #[tokio::test]
    async fn bad_or_missing_bearer_is_rejected_with_the_kiro_text() {
        let sim = start("sim-a").await;
        let response = generate(&sim, "aoa-not-issued", &body("hi")).await;
        assert_eq!(response.headers()["x-amzn-errortype"], "AccessDeniedException");
        let (status, value) = error_body(response).await;
        assert_eq!(status, 403);
        assert_eq!(value["message"], BEARER_INVALID_MESSAGE);
        assert_eq!(value["__type"], "com.amazon.aws.codewhisperer#AccessDeniedException");

        let response = client()
            .post(format!("{}/generateAssistantResponse", sim.base_url()))
            .json(&body("hi"))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 403);

        let creds = sim.issue_credentials(HOUR);
        sim.expire_access_tokens();
        assert_eq!(generate(&sim, &creds.access_token, &body("hi")).await.status(), 403);
        assert_eq!(sim.stats().auth_rejected, 3);
        assert_eq!(sim.stats().streams_started, 0);
    }

    #[tokio::test]
    async fn social_refresh_issues_a_working_token_and_revokes_the_old_one() {
        let sim = start("sim-a").await;
        let creds = sim.issue_credentials(HOUR);
        assert!(creds.access_token.starts_with("aoa") && creds.refresh_token.starts_with("aor"));
        assert!(creds.refresh_token.len() >= 100);
        let response = client()
            .post(format!("{}/refreshToken", sim.base_url()))
            .json(&json!({"refreshToken": creds.refresh_token}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        let refreshed: Value = response.json().await.expect("json");
        assert_eq!(refreshed["expiresIn"], 3600);
        assert_eq!(refreshed["profileArn"], creds.profile_arn.as_str());
        let new_access = refreshed["accessToken"].as_str().expect("accessToken").to_owned();
        assert!(
            refreshed["refreshToken"]
                .as_str()
                .is_some_and(|t| t.starts_with("aor") && t != creds.refresh_token)
        );
        assert_ne!(new_access, creds.access_token);

        assert_eq!(generate(&sim, &new_access, &body("hi")).await.status(), 200);
        assert_eq!(generate(&sim, &creds.access_token, &body("hi")).await.status(), 403);
        assert_eq!(sim.stats().refresh_social, 1);
    }

    #[tokio::test]
    async fn idc_refresh_needs_the_client_registration() {
        let sim = start("sim-a").await;
        let idc = sim.issue_idc_credentials(HOUR);
        let url = format!("{}/token", sim.base_url());
        let send = |body: Value| client().post(&url).json(&body).send();

        let ok = send(json!({"clientId": idc.client_id, "clientSecret": idc.client_secret,
            "refreshToken": idc.credentials.refresh_token, "grantType": "refresh_token"}))
        .await
        .expect("sent");
        assert_eq!(ok.status(), 200);
        let value: Value = ok.json().await.expect("json");
        assert_eq!(value["tokenType"], "Bearer");
        assert_eq!(value["expiresIn"], 3600);
        let access = value["accessToken"].as_str().expect("token");
        assert!(sim.is_access_token_valid(access));
        assert!(!sim.is_access_token_valid(&idc.credentials.access_token));

        let wrong_secret = send(json!({"clientId": idc.client_id, "clientSecret": "nope",
            "refreshToken": idc.credentials.refresh_token, "grantType": "refresh_token"}))
        .await
        .expect("sent");
        assert_eq!(
            error_body(wrong_secret).await,
            (401, json!({"error": "invalid_client", "error_description": "Invalid client credentials"}))
        );

        // An IdC refresh token is not accepted by the social endpoint.
        let social = client()
            .post(format!("{}/refreshToken", sim.base_url()))
            .json(&json!({"refreshToken": idc.credentials.refresh_token}))
            .send()
            .await
            .expect("sent");
        assert_eq!(social.status(), 400);
    }

    #[tokio::test]
    async fn unknown_refresh_token_and_failing_refresh_give_invalid_grant() {
        let sim = start("sim-a").await;
        let expected =
            json!({"error": "invalid_grant", "error_description": "Invalid refresh token provided"});
        let refresh = |token: String| {
            client()
                .post(format!("{}/refreshToken", sim.base_url()))
                .json(&json!({"refreshToken": token}))
                .send()
        };
        let response = refresh("aor-unknown".to_owned()).await.expect("sent");
        assert_eq!(error_body(response).await, (400, expected.clone()));

        let creds = sim.issue_credentials(HOUR);
        sim.set_refresh_fails(true);
        let response = refresh(creds.refresh_token.clone()).await.expect("sent");
        assert_eq!(error_body(response).await, (400, expected));
        assert!(sim.is_access_token_valid(&creds.access_token), "a failed refresh revokes nothing");
        sim.set_refresh_fails(false);
        assert_eq!(refresh(creds.refresh_token).await.expect("sent").status(), 200);
    }

    #[tokio::test]
    async fn invalid_bodies_get_the_generic_400() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        let generic = json!({"message": MALFORMED_MESSAGE, "reason": null, "__type": "com.amazon.aws.codewhisperer#ValidationException"});

        let mut consecutive = body("next");
        consecutive["conversationState"]["history"] = json!([
            {"userInputMessage": {"content": "a", "modelId": "claude-sonnet-4.5", "origin": "AI_EDITOR"}},
            {"assistantResponseMessage": {"content": "b"}},
            {"assistantResponseMessage": {"content": "c"}},
        ]);
        assert_eq!(error_body(generate(&sim, &token, &consecutive).await).await, (400, generic.clone()));
        assert!(sim.last_rejection().is_some_and(|r| r.contains("rule 2")), "{:?}", sim.last_rejection());

        let mut no_model = body("hi");
        no_model["conversationState"]["currentMessage"]["userInputMessage"]
            .as_object_mut()
            .expect("object")
            .remove("modelId");
        assert_eq!(error_body(generate(&sim, &token, &no_model).await).await, (400, generic.clone()));

        let not_json = client()
            .post(format!("{}/generateAssistantResponse", sim.base_url()))
            .bearer_auth(&token)
            .body("{not json")
            .send()
            .await
            .expect("sent");
        assert_eq!(error_body(not_json).await, (400, generic));
        assert_eq!(sim.stats().validation_rejected, 3);
    }

    #[tokio::test]
    async fn unknown_model_and_oversized_body_have_their_reasons() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        let mut request = body("hi");
        request["conversationState"]["currentMessage"]["userInputMessage"]["modelId"] =
            json!("claude-imaginary-9");
        let (status, value) = error_body(generate(&sim, &token, &request).await).await;
        assert_eq!((status, value["reason"].as_str()), (400, Some("INVALID_MODEL_ID")));

        for model in
            ["CLAUDE_SONNET_4_20250514_V1_0", "CLAUDE_3_7_SONNET_20250219_V1_0", "claude-opus-4.8", "auto"]
        {
            request["conversationState"]["currentMessage"]["userInputMessage"]["modelId"] = json!(model);
            assert_eq!(generate(&sim, &token, &request).await.status(), 200, "{model}");
        }

        sim.set_max_body_bytes(100);
        let (status, value) = error_body(generate(&sim, &token, &body(&"x".repeat(200))).await).await;
        assert_eq!(status, 400);
        assert_eq!(value["message"], "Input is too long.");
        assert_eq!(value["reason"], "CONTENT_LENGTH_EXCEEDS_THRESHOLD");
    }

    #[tokio::test]
    async fn scripted_failures_come_first_then_success() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        sim.fail_next(1, ErrorKind::Status500);
        sim.fail_next(1, ErrorKind::Throttle429);
        sim.fail_next(1, ErrorKind::Quota402);
        sim.fail_next(1, ErrorKind::Capacity400);
        sim.fail_next(1, ErrorKind::Forbidden403);
        // A health probe does not consume scripted failures.
        assert_eq!(
            client().get(format!("{}/health", sim.base_url())).send().await.expect("sent").status(),
            200
        );

        let (status, value) = error_body(generate(&sim, &token, &body("hi")).await).await;
        assert_eq!(status, 500);
        assert!(
            value["message"].as_str().is_some_and(|m| m.starts_with("Encountered unexpectedly high load"))
        );

        let throttled = generate(&sim, &token, &body("hi")).await;
        assert_eq!(throttled.headers()[header::RETRY_AFTER], "2");
        let (status, value) = error_body(throttled).await;
        assert_eq!(
            (status, value["__type"].as_str()),
            (429, Some("com.amazon.aws.codewhisperer#ThrottlingException"))
        );

        let (status, value) = error_body(generate(&sim, &token, &body("hi")).await).await;
        assert_eq!((status, value["reason"].as_str()), (402, Some("MONTHLY_REQUEST_COUNT")));
        let (status, value) = error_body(generate(&sim, &token, &body("hi")).await).await;
        assert_eq!((status, value["reason"].as_str()), (400, Some("INSUFFICIENT_MODEL_CAPACITY")));
        let (status, value) = error_body(generate(&sim, &token, &body("hi")).await).await;
        assert_eq!((status, value["message"].as_str()), (403, Some(BEARER_INVALID_MESSAGE)));

        assert_eq!(sim.pending_scripted_failures(), 0);
        assert_eq!(generate(&sim, &token, &body("hi")).await.status(), 200);
        assert_eq!(sim.stats().faults_injected, 5);
    }

    #[tokio::test]
    async fn random_faults_are_reproducible_from_the_seed() {
        async fn outcomes(seed: u64) -> Vec<u16> {
            let sim = SimUpstream::start(SimOptions { seed, error_rate: 0.5, ..SimOptions::default() })
                .await
                .expect("start");
            let token = sim.issue_credentials(HOUR).access_token;
            let mut out = Vec::new();
            for _ in 0..16 {
                out.push(generate(&sim, &token, &body("hi")).await.status().as_u16());
            }
            out
        }
        let a = outcomes(42).await;
        assert_eq!(a, outcomes(42).await);
        assert!(a.contains(&500) && a.contains(&200), "{a:?}");
    }

    #[tokio::test]
    async fn down_refuses_connections_and_up_serves_on_the_same_port() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        let port = sim.addr().port();
        let client = client();
        let health = format!("{}/health", sim.base_url());
        assert_eq!(client.get(&health).send().await.expect("up").status(), 200);

        sim.set_down(true);
        sim.wait_closed().await;
        assert!(sim.is_down());
        let err = client.get(&health).send().await.expect_err("down");
        assert!(err.is_connect() || err.is_request(), "{err:?}");
        assert!(TcpStream::connect(sim.addr()).await.is_err(), "connection refused while down");

        sim.set_down(false);
        sim.wait_listening().await;
        assert_eq!(sim.addr().port(), port);
        assert_eq!(client.get(&health).send().await.expect("up again").status(), 200);
        assert_eq!(generate(&sim, &token, &body("hi")).await.status(), 200);
    }

    #[tokio::test]
    async fn going_down_cuts_a_stream_in_flight() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        sim.set_chunk_delay(Duration::from_millis(20));
        let mut response = generate(&sim, &token, &body("[sim:long:1000]")).await;
        assert_eq!(response.status(), 200);
        let first = response.chunk().await.expect("first chunk").expect("some bytes");
        assert!(!first.is_empty());
        assert_eq!(sim.stats().in_flight, 1);
        sim.set_down(true);
        let mut result = Ok(None);
        for _ in 0..1000 {
            result = response.chunk().await;
            if !matches!(result, Ok(Some(_))) {
                break;
            }
        }
        assert!(result.is_err(), "the body ends with an error, not cleanly: {result:?}");
        sim.wait_closed().await;
        let stats = sim.stats();
        assert_eq!((stats.streams_completed, stats.in_flight), (0, 0), "the cut stream was dropped");
    }

    #[tokio::test]
    async fn hang_never_answers_until_the_sim_goes_down() {
        let sim = Arc::new(start("sim-a").await);
        let token = sim.issue_credentials(HOUR).access_token;
        sim.fail_next(1, ErrorKind::Hang);
        let request = tokio::spawn({
            let sim = sim.clone();
            async move {
                client()
                    .post(format!("{}/generateAssistantResponse", sim.base_url()))
                    .bearer_auth(token)
                    .json(&body("hi"))
                    .send()
                    .await
            }
        });
        while sim.pending_scripted_failures() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(!request.is_finished());
        sim.set_down(true);
        let result = request.await.expect("task");
        assert!(result.is_err(), "no answer, the connection is reset: {result:?}");
        sim.wait_closed().await;
        assert_eq!(sim.stats().in_flight, 0);
    }

    #[tokio::test]
    async fn corrupt_frame_is_rejected_by_the_decoder() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        sim.fail_next(1, ErrorKind::CorruptFrame);
        let bytes = generate(&sim, &token, &body("hi")).await.bytes().await.expect("body");
        let (frames, err, _) = decode(&bytes);
        assert_eq!(frames.len(), 2, "two good frames before the corrupt one");
        assert!(matches!(err, Some(FrameError::MessageCrc { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn cut_stream_ends_mid_frame() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        sim.fail_next(1, ErrorKind::CutStream);
        let response = generate(&sim, &token, &body("hi")).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.expect("the body ends cleanly at the HTTP level");
        let (frames, err, left) = decode(&bytes);
        assert_eq!(frames.len(), 2);
        assert!(err.is_none());
        assert!(left > 0, "a partial frame is left in the decoder");
    }

    #[tokio::test]
    async fn aws_json_target_endpoint() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        let post = |target: &'static str| {
            client()
                .post(format!("{}/", sim.base_url()))
                .bearer_auth(&token)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amz-target", target)
                .json(&body("hi"))
                .send()
        };
        let ok = post(GENERATE_TARGET).await.expect("sent");
        assert_eq!(ok.status(), 200);
        assert!(!ok.bytes().await.expect("body").is_empty());
        let wrong = post("CodeWhispererService.GenerateAssistantResponse").await.expect("sent");
        assert_eq!(wrong.status(), 400);
        assert_eq!(wrong.headers()["x-amzn-errortype"], "UnknownOperationException");
    }

    #[tokio::test]
    async fn usage_limits_models_and_health() {
        let sim = start("sim-a").await;
        let token = sim.issue_credentials(HOUR).access_token;
        let client = client();
        answer(&sim, &token, &body("hi")).await;
        answer(&sim, &token, &body("hi")).await;

        let url = format!("{}/getUsageLimits?origin=AI_EDITOR&resourceType=AGENTIC_REQUEST", sim.base_url());
        assert_eq!(client.get(&url).send().await.expect("sent").status(), 403, "bearer required");
        let usage: Value =
            client.get(&url).bearer_auth(&token).send().await.expect("sent").json().await.expect("json");
        assert_eq!(usage["subscriptionInfo"]["subscriptionTitle"], "KIRO FREE");
        let entry = &usage["usageBreakdownList"][0];
        assert_eq!(entry["resourceType"], "AGENTIC_REQUEST");
        assert_eq!(entry["currentUsage"], 2);
        assert_eq!(entry["usageLimit"], 1000);
        assert!(entry["currentUsageWithPrecision"].is_f64() && entry["nextDateReset"].is_f64());
        assert!(usage["daysUntilReset"].as_i64().is_some_and(|d| (0..=31).contains(&d)));
        assert!(usage["nextDateReset"].as_f64().is_some_and(|t| t > 1.7e9));

        let models: Value = client
            .get(format!("{}/ListAvailableModels?origin=AI_EDITOR", sim.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(models["defaultModel"]["modelId"], "auto");
        let ids: Vec<&str> = models["models"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|m| m["modelId"].as_str())
            .collect();
        assert!(ids.contains(&"claude-opus-4.8") && ids.contains(&"claude-sonnet-4.5"));
        assert!(models["models"][0]["tokenLimits"]["maxInputTokens"].is_u64());

        let health = client.get(format!("{}/health", sim.base_url())).send().await.expect("sent");
        assert_eq!(health.status(), 200);
        assert_eq!(health.json::<Value>().await.expect("json"), json!({"status": "ok"}));

        // Faults reach the usage and health endpoints too (but not refresh).
        sim.set_error_kind(ErrorKind::Status500);
        sim.set_error_rate(1.0);
        assert_eq!(
            client.get(format!("{}/health", sim.base_url())).send().await.expect("sent").status(),
            500
        );
        assert_eq!(client.get(&url).bearer_auth(&token).send().await.expect("sent").status(), 500);
        let stats = sim.stats();
        assert_eq!((stats.usage_limits, stats.list_models, stats.health), (3, 1, 2));
    }

    #[tokio::test]
    async fn shutdown_closes_the_port() {
        let sim = start("sim-a").await;
        let addr = sim.addr();
        assert!(TcpStream::connect(addr).await.is_ok());
        sim.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn token_files_have_the_kiro_ide_shape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = SimCredentials {
            access_token: "aoaAAA".into(),
            refresh_token: format!("aor{}", "B".repeat(120)),
            profile_arn: "arn:aws:codewhisperer:us-east-1:123456789012:profile/ABCDEFGHIJKL".into(),
            expires_at: DateTime::parse_from_rfc3339("2030-01-02T03:04:05.678Z")
                .expect("date")
                .with_timezone(&Utc),
        };
        let path = dir.path().join("sso/cache/kiro-auth-token.json");
        write_social_token_file(&path, &creds).expect("written");
        let value: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(
            value,
            json!({"accessToken": "aoaAAA", "refreshToken": creds.refresh_token, "expiresAt": "2030-01-02T03:04:05.678Z",
                   "profileArn": creds.profile_arn, "authMethod": "social", "provider": "Github"})
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }

        let idc = SimIdcCredentials {
            credentials: creds,
            client_id: "client123".into(),
            client_secret: "secret456".into(),
            client_id_hash: "e87895ae36d9539303a0bcd27feb465a60aeb433".into(),
            client_expires_at: DateTime::parse_from_rfc3339("2030-03-01T00:00:00Z")
                .expect("date")
                .with_timezone(&Utc),
            region: "us-east-1".into(),
        };
        let idc_path = dir.path().join("idc/kiro-auth-token.json");
        let registration = write_idc_token_file(&idc_path, &idc).expect("written");
        assert_eq!(registration, dir.path().join("idc/e87895ae36d9539303a0bcd27feb465a60aeb433.json"));
        let token: Value = serde_json::from_slice(&std::fs::read(&idc_path).expect("read")).expect("json");
        assert_eq!(token["authMethod"], "IdC");
        assert_eq!(token["clientIdHash"], idc.client_id_hash.as_str());
        assert!(token.get("profileArn").is_none());
        let reg: Value = serde_json::from_slice(&std::fs::read(&registration).expect("read")).expect("json");
        assert_eq!(
            reg,
            json!({"clientId": "client123", "clientSecret": "secret456", "expiresAt": "2030-03-01T00:00:00.000Z"})
        );
        let leftovers = std::fs::read_dir(dir.path().join("idc")).expect("dir").count();
        assert_eq!(leftovers, 2, "no temp files left behind");
    }

    #[test]
    fn markers_parse() {
        assert_eq!(Scenario::find_marker("please [sim:two-tools] now", 9), Some(Scenario::TwoTools));
        assert_eq!(Scenario::find_marker("[sim:nope] [sim:long]", 9), Some(Scenario::Long(9)));
        assert_eq!(Scenario::find_marker("[sim:long:12]", 9), Some(Scenario::Long(12)));
        assert_eq!(Scenario::find_marker("[sim:tool", 9), None);
        assert_eq!(Scenario::find_marker("no marker", 9), None);
        for s in Scenario::ALL {
            assert_eq!(Scenario::find_marker(&s.marker(), 1), Some(s), "{s:?}");
        }
    }

    #[test]
    fn sample_input_follows_the_schema() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "string", "enum": ["x", "y"]}, "d": {"type": "array"}
        }, "required": ["a", "b", "c", "d", "missing"]});
        assert_eq!(sample_input(Some(&schema)), json!({"a": 1, "b": true, "c": "x", "d": []}));
        assert_eq!(sample_input(Some(&json!({"type": "object"}))), json!({}));
        assert_eq!(sample_input(None), json!({}));
    }
}

//! What a simulated upstream can be told: start-up settings ([`SimOptions`]), the faults it can
//! inject ([`ErrorKind`]), the answers it can give ([`Scenario`]), and its endpoints
//! ([`Endpoint`]).

use super::DEFAULT_MAX_BODY_BYTES;
use std::time::Duration;

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
    /// An unexpected client-error status (404, 409, 413, 422, 431, 451, …) with an AWS-shaped
    /// body, as a misconfigured endpoint or gateway answers. Not part of [`ErrorKind::ALL`].
    ClientStatus(u16),
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
            ErrorKind::ClientStatus(_) => "4xx client status",
        }
    }

    /// Whether this kind is injected into requests to `endpoint` (see the module table).
    pub fn applies_to(self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::Generate => true,
            Endpoint::UsageLimits | Endpoint::ListModels | Endpoint::Mcp => {
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
    /// `POST /mcp` (web search).
    Mcp,
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
    /// The account's subscription: decides the `ListAvailableModels` answer and the title in
    /// `getUsageLimits`.
    pub tier: SimTier,
    /// `cacheReadInputTokens` / `cacheWriteInputTokens` of the `metadataEvent` (when on).
    pub cache_tokens: (u64, u64),
}

/// A Kiro subscription tier, as `getUsageLimits` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimTier {
    /// `KIRO FREE`: no Opus models (removed from the free tier in January 2026).
    Free,
    /// `KIRO PRO`: every model (the default).
    #[default]
    Pro,
    /// `KIRO PRO+`: every model.
    ProPlus,
}

impl SimTier {
    /// `subscriptionInfo.subscriptionTitle`.
    pub fn title(self) -> &'static str {
        match self {
            SimTier::Free => "KIRO FREE",
            SimTier::Pro => "KIRO PRO",
            SimTier::ProPlus => "KIRO PRO+",
        }
    }

    /// Whether `ListAvailableModels` lists `model_id` for this tier.
    pub fn lists(self, model_id: &str) -> bool {
        self != SimTier::Free || !model_id.contains("opus")
    }
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
            tier: SimTier::Pro,
            cache_tokens: (0, 0),
        }
    }
}

impl SimOptions {
    /// Defaults with a name.
    pub fn named(name: impl Into<String>) -> Self {
        SimOptions { name: name.into(), ..SimOptions::default() }
    }
}

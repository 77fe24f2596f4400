//! The HTTP side of one Kiro account: `generateAssistantResponse`, health probes, and the
//! classification of upstream failures (protocol notes §6).
//!
//! One `reqwest::Client` is shared by every provider with the same connect timeout (normally
//! all of them). It never uses an environment proxy (`no_proxy`), and has connect and per-read
//! timeouts but no whole-request timeout, which would cut long answers. The first-event and
//! idle timeouts are applied by [`EventStream`] around each read.

mod json_call;

pub use json_call::JsonCall;

use super::convert::{Converted, request_body};
use super::events::{KiroEvent, parse_frame};
use super::eventstream::FrameDecoder;
use super::token::{Credential, TokenError, TokenManager, TokenStatus, describe_transport};
use crate::anthropic::{ApiError, ErrorKind};
use crate::config::{Provider, expand_tilde, ms};
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod usage;

/// Kiro IDE version imitated in `user-agent` headers (protocol notes §3.2).
const KIRO_VERSION: &str = "0.11.107";

/// Builds and shares HTTP clients, one per distinct connect timeout.
#[derive(Default)]
pub struct HttpClients {
    by_connect_timeout: Mutex<HashMap<Duration, reqwest::Client>>,
}

impl HttpClients {
    pub fn get(&self, connect_timeout: Duration) -> reqwest::Client {
        let mut map = self.by_connect_timeout.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(connect_timeout)
            .or_insert_with(|| {
                reqwest::Client::builder()
                    .no_proxy()
                    .connect_timeout(connect_timeout)
                    .tcp_nodelay(true)
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .unwrap_or_else(|_| reqwest::Client::new())
            })
            .clone()
    }
}

/// What went wrong talking to the upstream, classified once.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamErrorKind {
    /// Could not connect (refused, DNS, TLS).
    Connect,
    /// No answer or no first event in time, or silence mid-stream.
    Timeout,
    /// 400 "Improperly formed request" and friends: the request's fault. Never retried.
    Validation,
    /// 400 `Input is too long.` / `CONTENT_LENGTH_EXCEEDS_THRESHOLD`. Never retried.
    ContextTooLong,
    /// 400 `INVALID_MODEL_ID`. Never retried.
    InvalidModel,
    /// 429, or a ThrottlingException.
    Throttled { retry_after: Option<Duration> },
    /// `INSUFFICIENT_MODEL_CAPACITY`.
    Capacity,
    /// `MONTHLY_REQUEST_COUNT` and other quota reasons: out until the quota resets.
    QuotaExhausted,
    /// 401/403 that a token refresh did not cure, or no usable token.
    Auth,
    /// 403 account suspended.
    Suspended,
    /// The token refresh was refused (`invalid_grant`, 4xx): the account needs a new login.
    LoginExpired,
    /// 5xx.
    Server(u16),
    /// 413 from the upstream: the request is too large. Never retried.
    TooLarge,
    /// Any other 4xx (404, 409, 422, 431, 451, …): not the request's fault but the account's or
    /// the endpoint's, so the request fails over and the provider is charged with it.
    Rejected(u16),
    /// A corrupt frame, a cut stream, an upstream exception event.
    Protocol,
}

/// An upstream failure with a message safe to show (no tokens).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub kind: UpstreamErrorKind,
    pub message: String,
}

impl UpstreamError {
    pub fn new(kind: UpstreamErrorKind, message: impl Into<String>) -> Self {
        UpstreamError { kind, message: message.into() }
    }

    /// True when the request may move to another provider (before its first byte went out):
    /// everything except the request's own faults.
    pub fn is_provider_fault(&self) -> bool {
        !matches!(
            self.kind,
            UpstreamErrorKind::Validation
                | UpstreamErrorKind::ContextTooLong
                | UpstreamErrorKind::InvalidModel
                | UpstreamErrorKind::TooLarge
        )
    }

    /// The error the client sees when no provider could answer.
    pub fn to_api_error(&self) -> ApiError {
        use UpstreamErrorKind as K;
        match &self.kind {
            K::Validation => {
                ApiError::invalid_request(format!("upstream rejected the request: {}", self.message))
            }
            K::ContextTooLong => ApiError::invalid_request(format!(
                "prompt is too long: the conversation exceeds the model's context window ({})",
                self.message
            )),
            K::InvalidModel => {
                ApiError::invalid_request(format!("model not available upstream: {}", self.message))
            }
            K::Throttled { retry_after } => ApiError::new(ErrorKind::RateLimitError, self.message.clone())
                .with_retry_after(retry_after.unwrap_or(Duration::from_secs(5))),
            K::Capacity => ApiError::new(ErrorKind::OverloadedError, self.message.clone())
                .with_retry_after(Duration::from_secs(10)),
            K::QuotaExhausted => ApiError::new(ErrorKind::RateLimitError, self.message.clone())
                .with_retry_after(Duration::from_secs(3600)),
            K::Auth | K::LoginExpired => ApiError::new(ErrorKind::AuthenticationError, self.message.clone()),
            K::Suspended => ApiError::new(ErrorKind::PermissionError, self.message.clone()),
            K::TooLarge => ApiError::new(
                ErrorKind::RequestTooLarge,
                format!("upstream refused the request as too large: {}", self.message),
            ),
            K::Connect | K::Server(_) | K::Rejected(_) | K::Protocol => {
                ApiError::new(ErrorKind::ApiError, self.message.clone())
            }
            K::Timeout => ApiError::new(ErrorKind::ApiError, self.message.clone())
                .with_status(StatusCode::GATEWAY_TIMEOUT),
        }
    }

    fn from_token(e: &TokenError) -> Self {
        let kind = match e {
            TokenError::Rejected { .. } => UpstreamErrorKind::LoginExpired,
            _ => UpstreamErrorKind::Auth,
        };
        UpstreamError::new(kind, format!("no usable token: {e}"))
    }
}

/// Classify a non-200 upstream answer by status and body (protocol notes §6.1).
pub fn classify_status(status: u16, body: &str, retry_after: Option<Duration>) -> UpstreamError {
    use UpstreamErrorKind as K;
    let reason = error_message(body);
    let has = |needle: &str| body.contains(needle);
    let kind = if has("INSUFFICIENT_MODEL_CAPACITY") {
        K::Capacity
    } else if status == 402
        || has("MONTHLY_REQUEST_COUNT")
        || has("DAILY_REQUEST_COUNT")
        || has("OVERAGE_REQUEST_LIMIT_EXCEEDED")
    {
        K::QuotaExhausted
    } else if has("CONTENT_LENGTH_EXCEEDS_THRESHOLD") || has("Input is too long") {
        K::ContextTooLong
    } else if has("INVALID_MODEL_ID") {
        K::InvalidModel
    } else if status == 429 || has("ThrottlingException") {
        K::Throttled { retry_after }
    } else if (status == 401 || status == 403)
        && (has("temporarily is suspended") || has("TEMPORARILY_SUSPENDED"))
    {
        K::Suspended
    } else if status == 401 || status == 403 {
        K::Auth
    } else if status == 408 {
        K::Timeout
    } else if status >= 500 {
        K::Server(status)
    } else if status == 413 {
        K::TooLarge
    } else if status == 400 {
        K::Validation
    } else {
        K::Rejected(status)
    };
    UpstreamError::new(kind, format!("upstream answered {status}: {reason}"))
}

/// When Kiro's monthly request quota (`MONTHLY_REQUEST_COUNT`) resets: the first of the next
/// month, 00:00 UTC.
pub fn next_quota_reset(now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::{Datelike, TimeZone};
    let (year, month) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
    chrono::Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single().unwrap_or(now)
}

/// True for the "bearer token invalid" answer that a refresh can cure.
pub fn is_bearer_invalid(status: u16, body: &str) -> bool {
    (status == 401 || status == 403)
        && (body.contains("bearer token included in the request is invalid")
            || body.contains("access token has expired"))
}

/// The `message` of an upstream error body, shortened; the raw text when it is not JSON.
fn error_message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    let reason = v.get("reason").and_then(|r| r.as_str());
    let mut s: String = message.chars().take(300).collect();
    if let Some(r) = reason {
        s.push_str(&format!(" ({r})"));
    }
    if s.is_empty() { "no body".into() } else { s }
}

/// One Kiro / CodeWhisperer account.
pub struct CodeWhispererClient {
    id: String,
    api_base: String,
    http: reqwest::Client,
    tokens: TokenManager,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    health_path: Option<String>,
    health_timeout: Duration,
}

impl CodeWhispererClient {
    pub fn new(id: &str, provider: &Provider, clients: &HttpClients) -> Arc<CodeWhispererClient> {
        let http = clients.get(ms(provider.connect_timeout));
        let idc_base = match &provider.auth_endpoint {
            Some(base) => base.clone(),
            None => format!("https://oidc.{}.amazonaws.com", provider.region),
        };
        let tokens = TokenManager::new(
            expand_tilde(&provider.token_path),
            &provider.auth_base(),
            &idc_base,
            http.clone(),
        );
        Arc::new(CodeWhispererClient {
            id: id.to_string(),
            api_base: provider.api_base(),
            http,
            tokens,
            first_byte_timeout: ms(provider.first_byte_timeout),
            idle_timeout: ms(provider.idle_timeout),
            health_path: provider.health_check.as_ref().and_then(|h| h.endpoint.clone()),
            health_timeout: provider
                .health_check
                .as_ref()
                .map(|h| h.timeout())
                .unwrap_or(Duration::from_secs(5)),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The account's token manager.
    pub fn tokens(&self) -> &TokenManager {
        &self.tokens
    }

    pub fn token_status(&self) -> TokenStatus {
        self.tokens.status()
    }

    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
    }

    /// Send one conversation and wait for the first event. A "bearer token invalid" answer
    /// refreshes the token once and retries. On success the stream is positioned after the
    /// first event, which is returned with it.
    pub async fn send(&self, converted: &Converted) -> Result<(KiroEvent, EventStream), UpstreamError> {
        let started = Instant::now();
        let attempt = async {
            let credential = self.tokens.credential().await.map_err(|e| UpstreamError::from_token(&e))?;
            let response = match self.post(converted, &credential).await? {
                Answer::Ok(response) => response,
                Answer::Failed { status, body, .. } if is_bearer_invalid(status, &body) => {
                    tracing::info!(provider = %self.id, "upstream rejected the token; refreshing once");
                    let fresh = self
                        .tokens
                        .refresh_after_rejection(&credential.access_token)
                        .await
                        .map_err(|e| UpstreamError::from_token(&e))?;
                    match self.post(converted, &fresh).await? {
                        Answer::Ok(response) => response,
                        failed => return Err(failed.classify()),
                    }
                }
                failed => return Err(failed.classify()),
            };
            let mut stream = EventStream::new(response.bytes_stream().boxed(), self.idle_timeout);
            match stream.next_event().await? {
                Some(first) => Ok((first, stream)),
                None => Err(UpstreamError::new(
                    UpstreamErrorKind::Protocol,
                    "upstream ended the answer before any event",
                )),
            }
        };
        match tokio::time::timeout(self.first_byte_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::new(
                UpstreamErrorKind::Timeout,
                format!("no answer within {} ms", started.elapsed().as_millis()),
            )),
        }
    }

    /// POST the body once.
    async fn post(&self, converted: &Converted, credential: &Credential) -> Result<Answer, UpstreamError> {
        let body = request_body(converted, credential.profile_arn.as_deref());
        let url = format!("{}/generateAssistantResponse", self.api_base);
        let request = self
            .decorate(self.http.post(&url), credential)
            .header("content-type", "application/json")
            .body(body);
        let response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(Answer::Ok(response));
        }
        let retry_after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        Ok(Answer::Failed { status, body, retry_after })
    }

    /// The headers Kiro IDE sends (protocol notes §3.2).
    fn decorate(&self, request: reqwest::RequestBuilder, credential: &Credential) -> reqwest::RequestBuilder {
        let machine = machine_id(&credential.refresh_token);
        request
            .bearer_auth(&credential.access_token)
            .header("x-amzn-codewhisperer-optout", "true")
            .header("x-amzn-kiro-agent-mode", "vibe")
            .header("x-amz-user-agent", format!("aws-sdk-js/1.0.34 KiroIDE-{KIRO_VERSION}-{machine}"))
            .header(
                "user-agent",
                format!(
                    "aws-sdk-js/1.0.34 ua/2.1 os/{} lang/js md/nodejs#22.22.0 api/codewhispererstreaming#1.0.34 m/E KiroIDE-{KIRO_VERSION}-{machine}",
                    std::env::consts::OS
                ),
            )
            .header("amz-sdk-invocation-id", uuid::Uuid::new_v4().to_string())
            .header("amz-sdk-request", "attempt=1; max=3")
    }

    /// One health probe: `GET {endpoint}{healthCheck.endpoint}` (2xx healthy) when a path is
    /// configured, else the authenticated `getUsageLimits` call. Returns the probe's latency.
    pub async fn probe(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let work = async {
            let credential = self.tokens.credential().await.map_err(|e| e.to_string())?;
            let (status, body) = self.probe_once(&credential).await?;
            if (200..300).contains(&status) {
                return Ok(());
            }
            if is_bearer_invalid(status, &body) {
                let fresh = self
                    .tokens
                    .refresh_after_rejection(&credential.access_token)
                    .await
                    .map_err(|e| e.to_string())?;
                let (status, body) = self.probe_once(&fresh).await?;
                if (200..300).contains(&status) {
                    return Ok(());
                }
                return Err(classify_status(status, &body, None).message);
            }
            Err(classify_status(status, &body, None).message)
        };
        match tokio::time::timeout(self.health_timeout, work).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("health probe timed out after {} ms", self.health_timeout.as_millis())),
        }
    }

    async fn probe_once(&self, credential: &Credential) -> Result<(u16, String), String> {
        let request = match &self.health_path {
            Some(path) => {
                self.http.get(format!("{}{path}", self.api_base)).bearer_auth(&credential.access_token)
            }
            None => {
                let mut query = vec![("origin", "AI_EDITOR"), ("resourceType", "AGENTIC_REQUEST")];
                if let Some(arn) = credential.profile_arn.as_deref() {
                    query.push(("profileArn", arn));
                }
                self.decorate(self.http.get(format!("{}/getUsageLimits", self.api_base)), credential)
                    .query(&query)
            }
        };
        let response = request.send().await.map_err(|e| describe_transport(&e))?;
        let status = response.status().as_u16();
        let body = if (200..300).contains(&status) {
            String::new()
        } else {
            response.text().await.unwrap_or_default()
        };
        Ok((status, body))
    }
}

/// One upstream answer: a 200 stream, or a failure to classify.
enum Answer {
    Ok(reqwest::Response),
    Failed { status: u16, body: String, retry_after: Option<Duration> },
}

impl Answer {
    fn classify(self) -> UpstreamError {
        match self {
            Answer::Ok(_) => UpstreamError::new(UpstreamErrorKind::Protocol, "unexpected success"),
            Answer::Failed { status, body, retry_after } => classify_status(status, &body, retry_after),
        }
    }
}

fn transport_error(e: &reqwest::Error) -> UpstreamError {
    let kind = if e.is_timeout() { UpstreamErrorKind::Timeout } else { UpstreamErrorKind::Connect };
    UpstreamError::new(kind, format!("upstream {}", describe_transport(e)))
}

/// `Retry-After` in seconds (the HTTP-date form is rare upstream and ignored).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The 64-hex machine id Kiro IDE sends, derived from the refresh token (never the token itself).
fn machine_id(refresh_token: &str) -> String {
    let digest = Sha256::digest(format!("KotlinNativeAPI/{refresh_token}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The upstream answer as a stream of Kiro events, decoded as bytes arrive.
///
/// `next_event` is cancel-safe (a caller may race it against a ping timer): bytes are only
/// consumed once they arrived, and the idle deadline counts from the last bytes received, not
/// from the call.
pub struct EventStream {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: FrameDecoder,
    idle_timeout: Duration,
    last_progress: tokio::time::Instant,
    done: bool,
}

impl EventStream {
    pub fn new(body: BoxStream<'static, reqwest::Result<Bytes>>, idle_timeout: Duration) -> Self {
        EventStream {
            body,
            decoder: FrameDecoder::new(),
            idle_timeout,
            last_progress: tokio::time::Instant::now(),
            done: false,
        }
    }

    /// The next event if a whole frame of it has already arrived: decoded from what is buffered,
    /// or from body chunks that are ready now. Never waits. `Ok(None)` means nothing complete
    /// has arrived yet (or the body ended: [`EventStream::next_event`] then says how).
    ///
    /// The proxy uses it to send frames that are already here in one write to the client. (The
    /// upstream sends each frame as its own HTTP chunk and the HTTP client decodes the next one
    /// only when asked, so under light load there is rarely more than one.)
    pub fn buffered_event(&mut self) -> Result<Option<KiroEvent>, UpstreamError> {
        loop {
            if let Some(event) = self.decoded_event()? {
                return Ok(Some(event));
            }
            if self.done {
                return Ok(None);
            }
            match self.body.next().now_or_never() {
                None => return Ok(None),
                Some(None) => self.done = true,
                Some(Some(Ok(chunk))) => {
                    self.last_progress = tokio::time::Instant::now();
                    self.decoder.feed(&chunk);
                }
                Some(Some(Err(e))) => return Err(broken(&e)),
            }
        }
    }

    /// The next event from the bytes already fed to the decoder.
    fn decoded_event(&mut self) -> Result<Option<KiroEvent>, UpstreamError> {
        match self.decoder.next_frame() {
            Ok(Some(frame)) => parse_frame(&frame).map(Some).map_err(|e| {
                UpstreamError::new(UpstreamErrorKind::Protocol, format!("bad upstream event: {e}"))
            }),
            Ok(None) => Ok(None),
            Err(e) => {
                Err(UpstreamError::new(UpstreamErrorKind::Protocol, format!("corrupt upstream frame: {e}")))
            }
        }
    }

    /// The next event; `Ok(None)` at a clean end of the answer.
    pub async fn next_event(&mut self) -> Result<Option<KiroEvent>, UpstreamError> {
        loop {
            if let Some(event) = self.decoded_event()? {
                return Ok(Some(event));
            }
            if self.done {
                if self.decoder.buffered_len() > 0 {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::Protocol,
                        format!(
                            "upstream stream cut inside a frame ({} bytes pending)",
                            self.decoder.buffered_len()
                        ),
                    ));
                }
                return Ok(None);
            }
            match tokio::time::timeout_at(self.last_progress + self.idle_timeout, self.body.next()).await {
                Err(_) => {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::Timeout,
                        format!("upstream silent for {} ms", self.idle_timeout.as_millis()),
                    ));
                }
                Ok(None) => self.done = true,
                Ok(Some(Ok(chunk))) => {
                    self.last_progress = tokio::time::Instant::now();
                    self.decoder.feed(&chunk);
                }
                Ok(Some(Err(e))) => return Err(broken(&e)),
            }
        }
    }
}

/// A read error on the upstream body.
fn broken(e: &reqwest::Error) -> UpstreamError {
    UpstreamError::new(
        UpstreamErrorKind::Protocol,
        format!("upstream stream broke: {}", describe_transport(e)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_documented_error_bodies() {
        use UpstreamErrorKind as K;
        let cases: &[(u16, &str, UpstreamErrorKind)] = &[
            (400, r#"{"message":"Improperly formed request.","reason":null}"#, K::Validation),
            (
                400,
                r#"{"message":"Input is too long.","reason":"CONTENT_LENGTH_EXCEEDS_THRESHOLD"}"#,
                K::ContextTooLong,
            ),
            (
                400,
                r#"{"__type":"com.amazon.aws.codewhisperer#ThrottlingException","message":"I am experiencing high traffic, please try again shortly.","reason":"INSUFFICIENT_MODEL_CAPACITY"}"#,
                K::Capacity,
            ),
            (
                402,
                r#"{"message":"You have reached the limit.","reason":"MONTHLY_REQUEST_COUNT"}"#,
                K::QuotaExhausted,
            ),
            (400, r#"{"message":"x","reason":"INVALID_MODEL_ID"}"#, K::InvalidModel),
            (413, r#"{"message":"Request entity too large"}"#, K::TooLarge),
            (404, r#"{"message":"not found"}"#, K::Rejected(404)),
            (409, r#"{"message":"conflict"}"#, K::Rejected(409)),
            (422, "", K::Rejected(422)),
            (431, "", K::Rejected(431)),
            (451, "", K::Rejected(451)),
            (429, r#"{"message":"Too many requests"}"#, K::Throttled { retry_after: None }),
            (403, r#"{"message":"The bearer token included in the request is invalid."}"#, K::Auth),
            (403, r#"{"message":"Your account temporarily is suspended"}"#, K::Suspended),
            (
                500,
                r#"{"message":"Encountered unexpectedly high load when processing the request, please try again."}"#,
                K::Server(500),
            ),
            (503, "", K::Server(503)),
        ];
        for (status, body, kind) in cases {
            assert_eq!(&classify_status(*status, body, None).kind, kind, "{status} {body}");
        }
        assert!(is_bearer_invalid(
            403,
            r#"{"message":"The bearer token included in the request is invalid."}"#
        ));
        assert!(!is_bearer_invalid(400, "bearer token included in the request is invalid"));
    }

    #[test]
    fn request_faults_are_not_provider_faults() {
        let v = classify_status(400, r#"{"message":"Improperly formed request.","reason":null}"#, None);
        assert!(!v.is_provider_fault());
        assert_eq!(v.to_api_error().status, StatusCode::BAD_REQUEST);
        let ctx = classify_status(
            400,
            r#"{"message":"Input is too long.","reason":"CONTENT_LENGTH_EXCEEDS_THRESHOLD"}"#,
            None,
        );
        assert!(ctx.to_api_error().message.starts_with("prompt is too long"));
        let t = classify_status(429, "{}", Some(Duration::from_secs(7)));
        assert!(t.is_provider_fault());
        let api = t.to_api_error();
        assert_eq!(api.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(api.retry_after_secs(), Some(7));
    }

    #[test]
    fn machine_id_is_64_hex_and_hides_the_token() {
        let id = machine_id("aor-secret");
        assert_eq!(id.len(), 64);
        assert!(!id.contains("secret"));
    }

    #[tokio::test]
    async fn frames_already_received_are_available_without_waiting() {
        use super::super::eventstream::encode_event;
        let text =
            |t: &str| encode_event("assistantResponseEvent", format!(r#"{{"content":"{t}"}}"#).as_bytes());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<reqwest::Result<Bytes>>();
        let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let mut events = EventStream::new(body.boxed(), Duration::from_secs(5));
        assert_eq!(events.buffered_event(), Ok(None), "nothing received yet");

        // Two frames in one chunk, then a frame in a chunk of its own: all there already.
        let mut two = text("a").to_vec();
        two.extend_from_slice(&text("b"));
        tx.send(Ok(Bytes::from(two))).unwrap();
        tx.send(Ok(text("c"))).unwrap();
        for expected in ["a", "b", "c"] {
            assert_eq!(events.buffered_event(), Ok(Some(KiroEvent::Text(expected.into()))));
        }
        assert_eq!(events.buffered_event(), Ok(None), "the next frame has not arrived");

        // Half a frame is not an event yet; the rest makes it one.
        let d = text("d");
        tx.send(Ok(d.slice(..10))).unwrap();
        assert_eq!(events.buffered_event(), Ok(None));
        tx.send(Ok(d.slice(10..))).unwrap();
        assert_eq!(events.next_event().await, Ok(Some(KiroEvent::Text("d".into()))));

        drop(tx);
        assert_eq!(events.buffered_event(), Ok(None), "the end is not an event");
        assert_eq!(events.next_event().await, Ok(None), "and next_event reports a clean end");
    }
}

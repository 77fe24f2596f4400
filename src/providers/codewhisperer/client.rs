//! The HTTP side of one Kiro account: `generateAssistantResponse` and health probes (the
//! classification of upstream failures is [`super::error`]).
//!
//! One `reqwest::Client` is shared by every provider with the same connect timeout (normally
//! all of them). It never uses an environment proxy (`no_proxy`), and has connect and per-read
//! timeouts but no whole-request timeout, which would cut long answers. The first-event and
//! idle timeouts are applied by [`EventStream`](super::decode::EventStream) around each read.

mod json_call;

pub use json_call::JsonCall;

use super::Prepared;
use super::answer::Answer;
use super::convert::{Converted, request_parts};
pub(crate) use super::decode::EventStream;
pub(crate) use super::error::{UpstreamError, UpstreamErrorKind, classify_status, is_bearer_invalid};
use super::event::KiroEvent;
use super::token::{Credential, TokenError, TokenManager, TokenStatus, describe_transport};
use crate::config::{Provider, expand_tilde, ms};
use futures_util::StreamExt;
use reqwest::header::{self, HeaderValue};
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
    /// `{api_base}/generateAssistantResponse`, parsed once (as written if it does not parse: the
    /// request then fails as reqwest reports it).
    generate_url: Result<reqwest::Url, String>,
    identity: Mutex<Option<Arc<Identity>>>,
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
        let api_base = provider.api_base();
        Arc::new(CodeWhispererClient {
            id: id.to_string(),
            generate_url: {
                let url = format!("{api_base}/generateAssistantResponse");
                reqwest::Url::parse(&url).map_err(|_| url)
            },
            identity: Mutex::new(None),
            api_base,
            http,
            tokens,
            first_byte_timeout: ms(provider.first_byte_timeout),
            idle_timeout: ms(provider.idle_timeout),
            health_path: provider.health_probe_path().map(str::to_owned),
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

    /// Read the token file now and record whether it is usable (see [`TokenManager::check_file`]).
    pub async fn check_token_file(&self) -> Result<(), TokenError> {
        self.tokens.check_file().await
    }

    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
    }

    /// Send one prepared request and wait for the first event. A "bearer token invalid" answer
    /// refreshes the token once and retries.
    pub async fn send(&self, prepared: &Prepared) -> Result<Answer, UpstreamError> {
        let (first, events) = self.send_converted(prepared.converted()).await?;
        Ok(Answer::new(first, events, prepared.response_options().clone()))
    }

    /// [`send`](Self::send) for a conversation built by the caller (the web search rounds),
    /// giving the first event and the rest of the decoded answer.
    pub(crate) async fn send_converted(
        &self,
        converted: &Converted,
    ) -> Result<(KiroEvent, EventStream), UpstreamError> {
        let started = Instant::now();
        let attempt = async {
            let credential = self.tokens.credential().await.map_err(|e| UpstreamError::from_token(&e))?;
            let response = match self.post(converted, &credential).await? {
                Posted::Ok(response) => response,
                Posted::Failed { status, body, .. } if is_bearer_invalid(status, &body) => {
                    tracing::info!(provider = %self.id, "upstream rejected the token; refreshing once");
                    let fresh = self
                        .tokens
                        .refresh_after_rejection(&credential.access_token)
                        .await
                        .map_err(|e| UpstreamError::from_token(&e))?;
                    match self.post(converted, &fresh).await? {
                        Posted::Ok(response) => response,
                        failed => return Err(failed.classify()),
                    }
                }
                failed => return Err(failed.classify()),
            };
            let body = response.bytes_stream().map(|chunk| chunk.map_err(|e| broken(&e)));
            EventStream::new(body.boxed(), self.idle_timeout).first_event().await
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
    ///
    /// The body is streamed from its parts ([`PartsBody`]), so reqwest cannot replay it by itself
    /// (its own retry of an HTTP/2 stream the server refused needs a body it can clone): such a
    /// refusal comes back as a transport error and ccr's attempt loop retries it, on this account
    /// or the next, with the same parts.
    async fn post(&self, converted: &Converted, credential: &Credential) -> Result<Posted, UpstreamError> {
        let body = PartsBody::new(request_parts(converted, credential.profile_arn.as_deref()));
        let post = match &self.generate_url {
            Ok(url) => self.http.post(url.clone()),
            Err(unparsed) => self.http.post(unparsed.as_str()),
        };
        let request = self
            .decorate(post, credential)
            .header("content-type", "application/json")
            .header("content-length", body.remaining)
            .body(reqwest::Body::wrap(body));
        let response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(Posted::Ok(response));
        }
        let retry_after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        Ok(Posted::Failed { status, body, retry_after })
    }

    /// The headers Kiro IDE sends (protocol notes §3.2).
    fn decorate(&self, request: reqwest::RequestBuilder, credential: &Credential) -> reqwest::RequestBuilder {
        let request = match self.identity(credential) {
            Some(id) => request
                .header(header::AUTHORIZATION, id.authorization.clone())
                .header("x-amzn-codewhisperer-optout", "true")
                .header("x-amzn-kiro-agent-mode", "vibe")
                .header("x-amz-user-agent", id.amz_user_agent.clone())
                .header(header::USER_AGENT, id.user_agent.clone()),
            // A token that cannot be a header value: reqwest reports it when the request is sent.
            None => request.bearer_auth(&credential.access_token),
        };
        request
            .header("amz-sdk-invocation-id", uuid::Uuid::new_v4().to_string())
            .header("amz-sdk-request", "attempt=1; max=3")
    }

    /// The headers built from the credential, kept while its tokens stay the same (they are the
    /// same on nearly every request, and building them costs a SHA-256 and three formats).
    fn identity(&self, credential: &Credential) -> Option<Arc<Identity>> {
        let mut cached = self.identity.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = cached.as_ref()
            && id.access_token == credential.access_token
            && id.refresh_token == credential.refresh_token
        {
            return Some(id.clone());
        }
        let id = Arc::new(Identity::new(credential)?);
        *cached = Some(id.clone());
        Some(id)
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

/// What one POST brought: a 200 stream, or a failure to classify.
enum Posted {
    Ok(reqwest::Response),
    Failed { status: u16, body: String, retry_after: Option<Duration> },
}

impl Posted {
    fn classify(self) -> UpstreamError {
        match self {
            Posted::Ok(_) => UpstreamError::new(UpstreamErrorKind::Protocol, "unexpected success"),
            Posted::Failed { status, body, retry_after } => classify_status(status, &body, retry_after),
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

/// The headers that carry the credential: the bearer, and the user agents naming the machine.
struct Identity {
    access_token: String,
    refresh_token: String,
    authorization: HeaderValue,
    amz_user_agent: HeaderValue,
    user_agent: HeaderValue,
}

impl Identity {
    fn new(credential: &Credential) -> Option<Identity> {
        let machine = machine_id(&credential.refresh_token);
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", credential.access_token)).ok()?;
        authorization.set_sensitive(true);
        let amz_user_agent =
            HeaderValue::try_from(format!("aws-sdk-js/1.0.34 KiroIDE-{KIRO_VERSION}-{machine}")).ok()?;
        let user_agent = HeaderValue::try_from(format!(
            "aws-sdk-js/1.0.34 ua/2.1 os/{} lang/js md/nodejs#22.22.0 api/codewhispererstreaming#1.0.34 m/E KiroIDE-{KIRO_VERSION}-{machine}",
            std::env::consts::OS
        ))
        .ok()?;
        Some(Identity {
            access_token: credential.access_token.clone(),
            refresh_token: credential.refresh_token.clone(),
            authorization,
            amz_user_agent,
            user_agent,
        })
    }
}

/// The 64-hex machine id Kiro IDE sends, derived from the refresh token (never the token itself).
fn machine_id(refresh_token: &str) -> String {
    let digest = Sha256::digest(format!("KotlinNativeAPI/{refresh_token}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A read error on the upstream body.
fn broken(e: &reqwest::Error) -> UpstreamError {
    UpstreamError::new(
        UpstreamErrorKind::Protocol,
        format!("upstream stream broke: {}", describe_transport(e)),
    )
}

/// A request body sent as a few shared buffers, one after the other, with its exact length (so
/// the request carries a `Content-Length`, and hyper writes the parts with one vectored write
/// instead of copying them into one buffer).
struct PartsBody {
    parts: std::collections::VecDeque<bytes::Bytes>,
    remaining: u64,
}

impl PartsBody {
    fn new(parts: [bytes::Bytes; 3]) -> PartsBody {
        let remaining = parts.iter().map(|p| p.len() as u64).sum();
        PartsBody { parts: parts.into_iter().filter(|p| !p.is_empty()).collect(), remaining }
    }
}

impl http_body::Body for PartsBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let next = self.parts.pop_front();
        if let Some(part) = &next {
            self.remaining -= part.len() as u64;
        }
        std::task::Poll::Ready(next.map(|part| Ok(http_body::Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A credential as read from a token file with these tokens.
    fn credential(dir: &std::path::Path, access: &str, refresh: &str) -> Credential {
        let path = dir.join("kiro-auth-token.json");
        let file = serde_json::json!({"accessToken": access, "refreshToken": refresh, "expiresAt": "2099-01-01T00:00:00Z"});
        std::fs::write(&path, file.to_string()).expect("token file");
        super::super::token::read_token_file(&path).expect("a token file").0
    }

    /// A client for an upstream at 127.0.0.1:9 (nothing is sent to it).
    fn local_client() -> Arc<CodeWhispererClient> {
        let provider: Provider =
            serde_json::from_value(serde_json::json!({"type": "aws", "endpoint": "http://127.0.0.1:9"}))
                .expect("a provider");
        CodeWhispererClient::new("a", &provider, &HttpClients::default())
    }

    #[test]
    fn the_credential_headers_are_built_once_per_token_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = local_client();
        assert_eq!(
            client.generate_url.as_ref().map(reqwest::Url::as_str),
            Ok("http://127.0.0.1:9/generateAssistantResponse")
        );
        let first = credential(dir.path(), "access-1", "refresh-1");
        let id = client.identity(&first).expect("headers");
        assert_eq!(id.authorization, "Bearer access-1");
        assert!(id.authorization.is_sensitive(), "the bearer is never logged");
        let machine = machine_id("refresh-1");
        assert_eq!(id.amz_user_agent, format!("aws-sdk-js/1.0.34 KiroIDE-{KIRO_VERSION}-{machine}").as_str());
        assert!(
            id.user_agent.to_str().expect("ascii").ends_with(&format!("KiroIDE-{KIRO_VERSION}-{machine}"))
        );
        assert!(Arc::ptr_eq(&id, &client.identity(&first).expect("headers")), "the same tokens reuse them");

        let refreshed = credential(dir.path(), "access-2", "refresh-1");
        let id2 = client.identity(&refreshed).expect("headers");
        assert_eq!(id2.authorization, "Bearer access-2", "a new access token is sent at once");
        assert_eq!(id2.amz_user_agent, id.amz_user_agent);
        let rotated = credential(dir.path(), "access-2", "refresh-2");
        let id3 = client.identity(&rotated).expect("headers");
        assert_ne!(id3.amz_user_agent, id2.amz_user_agent, "the machine id follows the refresh token");

        let broken = credential(dir.path(), "bad\naccess", "refresh-2");
        assert!(client.identity(&broken).is_none(), "no header value with a line break in it");
        let refused = client.decorate(client.http.post("http://127.0.0.1:9/x"), &broken).build();
        assert!(refused.is_err(), "such a token fails the request before it is sent");
    }

    #[test]
    fn requests_carry_the_headers_kiro_ide_sends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = local_client();
        let credential = credential(dir.path(), "access-1", "refresh-1");
        let machine = machine_id("refresh-1");
        // Twice: built the first time, reused the second.
        let mut invocations = Vec::new();
        for _ in 0..2 {
            let request = client
                .decorate(client.http.post("http://127.0.0.1:9/x"), &credential)
                .build()
                .expect("a request");
            let header =
                |name: &str| request.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned());
            assert_eq!(header("authorization").as_deref(), Some("Bearer access-1"));
            assert!(request.headers()["authorization"].is_sensitive());
            assert_eq!(header("x-amzn-codewhisperer-optout").as_deref(), Some("true"));
            assert_eq!(header("x-amzn-kiro-agent-mode").as_deref(), Some("vibe"));
            assert_eq!(
                header("x-amz-user-agent"),
                Some(format!("aws-sdk-js/1.0.34 KiroIDE-0.11.107-{machine}"))
            );
            assert_eq!(
                header("user-agent"),
                Some(format!(
                    "aws-sdk-js/1.0.34 ua/2.1 os/{} lang/js md/nodejs#22.22.0 api/codewhispererstreaming#1.0.34 m/E KiroIDE-0.11.107-{machine}",
                    std::env::consts::OS
                ))
            );
            let invocation = header("amz-sdk-invocation-id").expect("an invocation id");
            assert!(uuid::Uuid::parse_str(&invocation).is_ok(), "{invocation}");
            invocations.push(invocation);
            assert_eq!(header("amz-sdk-request").as_deref(), Some("attempt=1; max=3"));
        }
        assert_ne!(invocations[0], invocations[1], "each request has an invocation id of its own");
    }

    #[test]
    fn machine_id_is_64_hex_and_hides_the_token() {
        let id = machine_id("aor-secret");
        assert_eq!(id.len(), 64);
        assert!(!id.contains("secret"));
    }
}

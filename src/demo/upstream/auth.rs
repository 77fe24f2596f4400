//! Logins and the token refresh endpoints: the token store (sessions, access and refresh tokens,
//! OIDC client registrations) and `POST /refreshToken` (social) / `POST /token` (IdC).

use super::errors::{add_request_id, cut_response, oauth_error};
use super::options::Endpoint;
use super::state::{Shared, lock};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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

/// One login: refreshing it revokes its access tokens.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) profile_arn: String,
    /// IdC logins are bound to their OIDC client; social logins have none.
    pub(super) client_id: Option<String>,
    pub(super) access_tokens: Vec<String>,
}

#[derive(Debug)]
pub(super) struct OidcClient {
    pub(super) secret: String,
    pub(super) expires_at: DateTime<Utc>,
}

#[derive(Debug)]
pub(super) struct TokenStore {
    pub(super) rng: StdRng,
    pub(super) sessions: Vec<Session>,
    /// access token → (session, expiry)
    pub(super) access: HashMap<String, (usize, DateTime<Utc>)>,
    /// refresh token → session
    pub(super) refresh: HashMap<String, usize>,
    pub(super) clients: HashMap<String, OidcClient>,
}

/// Why a refresh failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshError {
    InvalidGrant,
    InvalidClient,
    ExpiredClient,
}

/// What a refresh returns.
pub(super) struct Refreshed {
    pub(super) access_token: String,
    pub(super) refresh_token: String,
    pub(super) profile_arn: String,
    pub(super) expires_in: u64,
}

pub(super) fn random_string(rng: &mut StdRng, prefix: &str, len: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    s.extend((0..len).map(|_| char::from(rng.sample(rand::distr::Alphanumeric))));
    s
}

pub(super) fn random_upper(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

pub(super) fn after(ttl: Duration) -> DateTime<Utc> {
    let delta = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX);
    Utc::now().checked_add_signed(delta).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl TokenStore {
    pub(super) fn new(seed: u64) -> Self {
        TokenStore {
            rng: StdRng::seed_from_u64(seed ^ 0x746f_6b65_6e73_0001),
            sessions: Vec::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            clients: HashMap::new(),
        }
    }

    pub(super) fn issue(&mut self, ttl: Duration, client_id: Option<String>) -> SimCredentials {
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

    pub(super) fn new_access(&mut self, session: usize, expires_at: DateTime<Utc>) -> String {
        let token = random_string(&mut self.rng, "aoa", 157);
        self.access.insert(token.clone(), (session, expires_at));
        if let Some(s) = self.sessions.get_mut(session) {
            s.access_tokens.push(token.clone());
        }
        token
    }

    pub(super) fn new_refresh(&mut self, session: usize) -> String {
        let token = random_string(&mut self.rng, "aor", 197);
        self.refresh.insert(token.clone(), session);
        token
    }

    pub(super) fn register_client(&mut self) -> (String, String, DateTime<Utc>) {
        let id = random_string(&mut self.rng, "", 22);
        let secret = random_string(&mut self.rng, "eyJraWQiOiJzaW0i", 180);
        let expires_at = after(Duration::from_secs(90 * 24 * 3600));
        self.clients.insert(id.clone(), OidcClient { secret: secret.clone(), expires_at });
        (id, secret, expires_at)
    }

    pub(super) fn access_valid(&self, token: &str) -> bool {
        self.access.get(token).is_some_and(|(_, expires_at)| *expires_at > Utc::now())
    }

    /// Refresh a login: revoke its access tokens, issue a new one and a new refresh token.
    /// `client` is `None` for the social endpoint and `(id, secret)` for IdC.
    pub(super) fn refresh(
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

    pub(super) fn expire_all(&mut self) {
        let past = Utc::now() - TimeDelta::seconds(1);
        for (_, expires_at) in self.access.values_mut() {
            *expires_at = past;
        }
    }
}

pub(super) async fn refresh_social(
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

pub(super) async fn refresh_idc(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if json_field(&body, "grantType").as_deref() == Some(super::oidc::DEVICE_CODE_GRANT) {
        return super::oidc::device_token(&sim, &serde_json::from_slice(&body).unwrap_or_default()).await;
    }
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
pub(super) async fn refresh_preamble(
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
pub(super) fn refresh_answer(body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    add_request_id(&mut response);
    response
}

pub(super) fn refresh_error(e: RefreshError) -> Response {
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
pub(super) fn json_field(body: &[u8], name: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get(name)?.as_str().map(str::to_owned)
}

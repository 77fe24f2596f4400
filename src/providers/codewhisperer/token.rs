//! Kiro credentials: the token file, refresh (social and IdC), write-back.
//!
//! - The file is re-read whenever its modification time or size changes (Kiro IDE refreshes it
//!   on its own), checked with one `stat` per request.
//! - A token is refreshed ahead of `expiresAt` ([`REFRESH_AHEAD`]) and once on a "bearer token
//!   invalid" answer. One refresh is in flight per provider: callers wait on an async mutex and
//!   re-check after acquiring it, so a burst of requests causes one refresh, not a storm.
//! - The refreshed fields are merged into the existing JSON and written atomically (temp file +
//!   rename) with mode 0600; every other field of the file is kept.
//! - Tokens never appear in errors or logs: messages name the file and the failure only.
//! - With a shared pool ([`TokenShare`], `state` backend `redis`) one instance of the pool
//!   refreshes at a time (a lock with expiry); the others wait for its published token and use it
//!   (only the refresher writes its token file).

use crate::fsio::{ReadError, TOKEN_FILE_CAP, read_text_capped};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::{Duration, SystemTime};

/// A refreshed token as the instances of a shared pool hand it to each other.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedToken {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub profile_arn: Option<String>,
}

/// A boxed future (the trait is object safe).
pub type ShareFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The token store of a shared pool (implemented on Redis in `crate::state`).
pub trait TokenShare: Send + Sync {
    /// The token last published for `account`, if any.
    fn fetch(&self, account: &str) -> ShareFuture<'_, Option<SharedToken>>;
    /// Takes the pool's refresh lock for `account`: `Some(true)` taken, `Some(false)` another
    /// instance holds it, `None` the store is away (refresh locally).
    fn lock(&self, account: &str) -> ShareFuture<'_, Option<bool>>;
    /// Publishes a refreshed token and gives the lock back.
    fn publish(&self, account: &str, token: SharedToken) -> ShareFuture<'_, ()>;
    /// Gives the lock back after a failed refresh.
    fn unlock(&self, account: &str) -> ShareFuture<'_, ()>;
}

/// How long an instance waits for another instance's refresh before it refreshes itself.
pub const SHARED_REFRESH_WAIT: Duration = Duration::from_secs(15);

/// Refresh this long before `expiresAt`.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(10 * 60);

/// How a credential refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// Google / GitHub login: `{authEndpoint}/refreshToken`.
    Social,
    /// Builder ID / IAM Identity Center: the OIDC `/token` endpoint with client id and secret.
    IdC,
}

/// One usable credential, as read from (or refreshed into) the token file.
#[derive(Clone)]
pub struct Credential {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub profile_arn: Option<String>,
    pub kind: AuthKind,
    pub region: Option<String>,
    client: Option<(String, String)>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("expires_at", &self.expires_at)
            .field("profile_arn", &self.profile_arn)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// True when the token must be refreshed before use: expiring within [`REFRESH_AHEAD`], or
    /// with no parseable expiry.
    pub fn needs_refresh(&self, now: DateTime<Utc>) -> bool {
        match self.expires_at {
            Some(t) => t - chrono::Duration::from_std(REFRESH_AHEAD).unwrap_or_default() <= now,
            None => true,
        }
    }
}

/// Why no usable credential is available. Never carries token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token file {0} not found")]
    Missing(String),
    #[error("token file {file} unreadable: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("token file {file} malformed: {reason}")]
    Malformed { file: String, reason: String },
    #[error("token refresh rejected ({status}): {reason}; log in again with Kiro")]
    Rejected { status: u16, reason: String },
    #[error("token refresh failed: {0}")]
    RefreshFailed(String),
    #[error("cannot write refreshed token to {file}: {reason}")]
    WriteBack { file: String, reason: String },
}

impl TokenError {
    /// True when only the user can cure it: the file is missing, unreadable or not a token
    /// file, or the login was refused (a new login is needed).
    pub fn needs_login(&self) -> bool {
        matches!(
            self,
            TokenError::Missing(_)
                | TokenError::Unreadable { .. }
                | TokenError::Malformed { .. }
                | TokenError::Rejected { .. }
        )
    }
}

/// A provider's token, as far as the proxy knows it (never the token itself): what the
/// snapshot, the dashboard and the health endpoints show.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenStatus {
    /// When the access token expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last refreshed by this process.
    pub last_refresh: Option<DateTime<Utc>>,
    /// Why the last attempt to get a credential failed (e.g. the token file is missing).
    pub error: Option<String>,
    /// The error needs the user (a missing or bad file, a refused login), not a retry.
    #[serde(default)]
    pub needs_login: bool,
}

struct Loaded {
    credential: Arc<Credential>,
    /// The file's JSON, for merge on write-back.
    raw: Map<String, Value>,
    stamp: Option<(SystemTime, u64)>,
}

/// The token of one provider.
pub struct TokenManager {
    path: PathBuf,
    social_url: String,
    idc_url: String,
    http: reqwest::Client,
    loaded: StdMutex<Option<Loaded>>,
    refresh_lock: tokio::sync::Mutex<()>,
    status: StdMutex<TokenStatus>,
    /// The pool's token store and this account's name in it, when shared.
    share: OnceLock<(String, Arc<dyn TokenShare>)>,
}

impl TokenManager {
    /// `auth_base` is the social refresh base URL (`/refreshToken` is appended). The IdC refresh
    /// goes to `idc_base` + `/token` (default `https://oidc.{region}.amazonaws.com`).
    pub fn new(path: PathBuf, auth_base: &str, idc_base: &str, http: reqwest::Client) -> TokenManager {
        TokenManager {
            path,
            social_url: format!("{}/refreshToken", auth_base.trim_end_matches('/')),
            idc_url: format!("{}/token", idc_base.trim_end_matches('/')),
            http,
            loaded: StdMutex::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            status: StdMutex::new(TokenStatus::default()),
            share: OnceLock::new(),
        }
    }

    /// Shares refreshes with the other instances of a pool, as `account`. Set once.
    pub fn share_with(&self, account: &str, share: Arc<dyn TokenShare>) {
        let _ = self.share.set((account.to_owned(), share));
    }

    pub fn status(&self) -> TokenStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set_error(&self, error: Option<&TokenError>) {
        if let Ok(mut s) = self.status.lock() {
            s.error = error.map(|e| e.to_string());
            s.needs_login = error.is_some_and(TokenError::needs_login);
        }
    }

    /// Read the token file now (if it changed) and record the outcome in [`TokenManager::status`],
    /// without refreshing: the start-time check that makes a missing file visible at once.
    pub async fn check_file(&self) -> Result<(), TokenError> {
        let result = self.current().await.map(|_| ());
        self.set_error(result.as_ref().err());
        result
    }

    /// A credential ready to use: re-read if the file changed, refreshed if near expiry.
    pub async fn credential(&self) -> Result<Arc<Credential>, TokenError> {
        let result = self.credential_inner().await;
        self.set_error(result.as_ref().err());
        result
    }

    async fn credential_inner(&self) -> Result<Arc<Credential>, TokenError> {
        let current = self.current().await?;
        if !current.needs_refresh(Utc::now()) {
            return Ok(current);
        }
        self.refresh_if(|c| c.needs_refresh(Utc::now())).await
    }

    /// Refresh because the upstream rejected `rejected_access` as invalid. If another request
    /// already refreshed it, the newer credential is returned without a second refresh.
    pub async fn refresh_after_rejection(
        &self,
        rejected_access: &str,
    ) -> Result<Arc<Credential>, TokenError> {
        let result = self.refresh_if(|c| c.access_token == rejected_access).await;
        self.set_error(result.as_ref().err());
        result
    }

    async fn refresh_if(
        &self,
        still_needed: impl Fn(&Credential) -> bool,
    ) -> Result<Arc<Credential>, TokenError> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let current = self.current().await?;
        if !still_needed(&current) {
            return Ok(current);
        }
        let fresh = match self.share.get() {
            Some((account, share)) => {
                self.refresh_shared(account, share.as_ref(), &current, &still_needed).await?
            }
            None => self.refresh(&current).await?,
        };
        if let Ok(mut s) = self.status.lock() {
            s.last_refresh = Some(Utc::now());
            s.expires_at = fresh.expires_at;
        }
        Ok(fresh)
    }

    /// A refresh in a shared pool: another instance's fresh token if there is one, else one
    /// refresh for the pool (under its lock); a store that is away means a local refresh.
    async fn refresh_shared(
        &self,
        account: &str,
        share: &dyn TokenShare,
        current: &Credential,
        still_needed: &impl Fn(&Credential) -> bool,
    ) -> Result<Arc<Credential>, TokenError> {
        let adopt = |token: Option<SharedToken>| {
            let token = token.filter(|t| t.access_token != current.access_token)?;
            let mut fresh = current.clone();
            fresh.access_token = token.access_token;
            fresh.refresh_token = token.refresh_token;
            fresh.expires_at = token.expires_at;
            if token.profile_arn.is_some() {
                fresh.profile_arn = token.profile_arn;
            }
            (!still_needed(&fresh)).then_some(fresh)
        };
        if let Some(fresh) = adopt(share.fetch(account).await) {
            return self.adopt(fresh);
        }
        if share.lock(account).await == Some(false) {
            // Another instance is refreshing: wait for its token.
            let deadline = tokio::time::Instant::now() + SHARED_REFRESH_WAIT;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(fresh) = adopt(share.fetch(account).await) {
                    return self.adopt(fresh);
                }
                if share.lock(account).await != Some(false) {
                    break;
                }
            }
        }
        match self.refresh(current).await {
            Ok(fresh) => {
                let token = SharedToken {
                    access_token: fresh.access_token.clone(),
                    refresh_token: fresh.refresh_token.clone(),
                    expires_at: fresh.expires_at,
                    profile_arn: fresh.profile_arn.clone(),
                };
                share.publish(account, token).await;
                Ok(fresh)
            }
            Err(e) => {
                share.unlock(account).await;
                Err(e)
            }
        }
    }

    /// Uses a token another instance of the pool refreshed (its file is the refresher's to write).
    fn adopt(&self, fresh: Credential) -> Result<Arc<Credential>, TokenError> {
        let fresh = Arc::new(fresh);
        let mut loaded = self.loaded.lock().map_err(|_| poisoned())?;
        if let Some(l) = loaded.as_mut() {
            l.raw.insert("accessToken".into(), Value::String(fresh.access_token.clone()));
            l.raw.insert("refreshToken".into(), Value::String(fresh.refresh_token.clone()));
            if let Some(at) = fresh.expires_at {
                l.raw.insert(
                    "expiresAt".into(),
                    Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                );
            }
            l.credential = fresh.clone();
        }
        tracing::info!(file = %self.path.display(), "token refreshed by another instance of the pool: using it");
        Ok(fresh)
    }

    /// The loaded credential, re-reading the file when it changed on disk. The read runs on a
    /// blocking thread and no lock is held across it.
    async fn current(&self) -> Result<Arc<Credential>, TokenError> {
        let stamp = file_stamp(&self.path);
        if let Some(loaded) = self.loaded.lock().map_err(|_| poisoned())?.as_ref()
            && loaded.stamp == stamp
            && stamp.is_some()
        {
            return Ok(loaded.credential.clone());
        }
        let path = self.path.clone();
        let (credential, raw) =
            tokio::task::spawn_blocking(move || read_token_file(&path)).await.map_err(|e| {
                TokenError::Unreadable { file: self.path.display().to_string(), reason: e.to_string() }
            })??;
        let credential = Arc::new(credential);
        if let Ok(mut s) = self.status.lock() {
            s.expires_at = credential.expires_at;
        }
        *self.loaded.lock().map_err(|_| poisoned())? =
            Some(Loaded { credential: credential.clone(), raw, stamp });
        Ok(credential)
    }

    async fn refresh(&self, current: &Credential) -> Result<Arc<Credential>, TokenError> {
        let (url, body) = match current.kind {
            AuthKind::Social => {
                (self.social_url.clone(), serde_json::json!({ "refreshToken": current.refresh_token }))
            }
            AuthKind::IdC => {
                let (id, secret) = current.client.clone().ok_or_else(|| TokenError::Malformed {
                    file: self.path.display().to_string(),
                    reason: "IdC credential without clientId/clientSecret (registration file missing?)"
                        .into(),
                })?;
                let url = match current.region.as_deref() {
                    Some(region) if self.idc_url.contains("{region}") => {
                        self.idc_url.replace("{region}", region)
                    }
                    _ => self.idc_url.replace("{region}", "us-east-1"),
                };
                (
                    url,
                    serde_json::json!({
                        "clientId": id, "clientSecret": secret,
                        "refreshToken": current.refresh_token, "grantType": "refresh_token",
                    }),
                )
            }
        };
        let response =
            self.http.post(&url).json(&body).timeout(Duration::from_secs(30)).send().await.map_err(|e| {
                TokenError::RefreshFailed(format!("cannot reach {url}: {}", describe_transport(&e)))
            })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| TokenError::RefreshFailed(describe_transport(&e)))?;
        if !status.is_success() {
            let reason = refresh_error_reason(&text);
            return Err(if status.is_client_error() {
                TokenError::Rejected { status: status.as_u16(), reason }
            } else {
                TokenError::RefreshFailed(format!("{url} answered {status}: {reason}"))
            });
        }
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| TokenError::RefreshFailed(format!("refresh answer is not JSON: {e}")))?;
        let access = answer
            .get("accessToken")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TokenError::RefreshFailed("refresh answer has no accessToken".into()))?;
        let expires_in = answer.get("expiresIn").and_then(Value::as_i64).unwrap_or(3600).max(60);
        let expires_at = Utc::now() + chrono::Duration::seconds(expires_in);

        let mut raw =
            self.loaded.lock().map_err(|_| poisoned())?.as_ref().map(|l| l.raw.clone()).unwrap_or_default();
        raw.insert("accessToken".into(), Value::String(access.to_string()));
        if let Some(r) = answer.get("refreshToken").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            raw.insert("refreshToken".into(), Value::String(r.to_string()));
        }
        if let Some(arn) = answer.get("profileArn").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            raw.insert("profileArn".into(), Value::String(arn.to_string()));
        }
        raw.insert(
            "expiresAt".into(),
            Value::String(expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        // Written (and the registration file re-read) on a blocking thread, no lock held.
        let path = self.path.clone();
        let (credential, raw, stamp) = tokio::task::spawn_blocking(move || {
            write_atomically(&path, &raw)?;
            let (credential, raw) = credential_from(&path, raw)?;
            Ok::<_, TokenError>((credential, raw, file_stamp(&path)))
        })
        .await
        .map_err(|e| TokenError::WriteBack {
            file: self.path.display().to_string(),
            reason: e.to_string(),
        })??;
        let credential = Arc::new(credential);
        *self.loaded.lock().map_err(|_| poisoned())? =
            Some(Loaded { credential: credential.clone(), raw, stamp });
        tracing::info!(file = %self.path.display(), expires_at = %expires_at, "token refreshed");
        Ok(credential)
    }
}

fn poisoned() -> TokenError {
    TokenError::RefreshFailed("token state poisoned".into())
}

/// A short description of a transport error (no URL: the caller names the endpoint).
pub fn describe_transport(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(src) => format!("{what}: {src}"),
        None => what.to_string(),
    }
}

/// `error_description`, `message` or `error` of a refresh error body, shortened; never echoes
/// anything that looks like a token.
fn refresh_error_reason(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let reason = ["error_description", "message", "error"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or("no reason given");
    reason.chars().take(200).collect()
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Read and interpret a Kiro token file (and, for IdC, its `<clientIdHash>.json` registration).
pub fn read_token_file(path: &Path) -> Result<(Credential, Map<String, Value>), TokenError> {
    let file = path.display().to_string();
    let text = read_text_capped(path, TOKEN_FILE_CAP).map_err(|e| match e {
        ReadError::NotFound => TokenError::Missing(file.clone()),
        e => TokenError::Unreadable { file: file.clone(), reason: e.to_string() },
    })?;
    let raw: Map<String, Value> = match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(TokenError::Malformed { file, reason: "not a JSON object".into() }),
        Err(e) => return Err(TokenError::Malformed { file, reason: format!("invalid JSON: {e}") }),
    };
    credential_from(path, raw)
}

fn credential_from(
    path: &Path,
    raw: Map<String, Value>,
) -> Result<(Credential, Map<String, Value>), TokenError> {
    let file = path.display().to_string();
    let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_string).filter(|s| !s.is_empty());
    let access_token = text("accessToken").unwrap_or_default();
    let refresh_token = text("refreshToken")
        .ok_or_else(|| TokenError::Malformed { file: file.clone(), reason: "no refreshToken".into() })?;
    if refresh_token.contains("...") {
        return Err(TokenError::Malformed {
            file,
            reason: "refreshToken is truncated (contains `...`)".into(),
        });
    }
    let expires_at =
        text("expiresAt").and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.with_timezone(&Utc));
    let mut client = match (text("clientId"), text("clientSecret")) {
        (Some(id), Some(secret)) => Some((id, secret)),
        _ => None,
    };
    if client.is_none()
        && let Some(hash) = text("clientIdHash")
        && let Some(dir) = path.parent()
    {
        client = read_registration(&dir.join(format!("{hash}.json")));
    }
    let method = text("authMethod").map(|m| m.to_ascii_lowercase());
    let kind = match method.as_deref() {
        Some("social") => AuthKind::Social,
        Some("idc" | "builder-id" | "iam") => AuthKind::IdC,
        _ if client.is_some() => AuthKind::IdC,
        _ => AuthKind::Social,
    };
    let credential = Credential {
        access_token,
        refresh_token,
        expires_at,
        profile_arn: text("profileArn"),
        kind,
        region: text("region"),
        client,
    };
    Ok((credential, raw))
}

fn read_registration(path: &Path) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(&read_text_capped(path, TOKEN_FILE_CAP).ok()?).ok()?;
    Some((v.get("clientId")?.as_str()?.to_string(), v.get("clientSecret")?.as_str()?.to_string()))
}

/// Write JSON to `path` atomically (temp file beside the file, then rename; through a symlink to
/// its target, so the link stays a link), mode 0600.
pub fn write_atomically(path: &Path, map: &Map<String, Value>) -> Result<(), TokenError> {
    let fail = |reason: String| TokenError::WriteBack { file: path.display().to_string(), reason };
    let text = serde_json::to_vec_pretty(map).map_err(|e| fail(e.to_string()))?;
    crate::atomic_file::write(path, &text, crate::atomic_file::Permissions::Private)
        .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, v: Value) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
        p
    }

    #[test]
    fn reads_a_social_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.json",
            serde_json::json!({"accessToken":"aoaX","refreshToken":"aorY","expiresAt":"2025-12-31T02:32:45.144Z",
                "profileArn":"arn:aws:codewhisperer:us-east-1:1:profile/X","authMethod":"social","provider":"Google"}),
        );
        let (c, _) = read_token_file(&p).unwrap();
        assert_eq!(c.kind, AuthKind::Social);
        assert_eq!(c.profile_arn.as_deref(), Some("arn:aws:codewhisperer:us-east-1:1:profile/X"));
        assert!(c.needs_refresh(Utc::now()), "2025 token is expired now");
    }

    #[test]
    fn reads_an_idc_file_with_its_registration() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "abc123.json",
            serde_json::json!({"clientId":"cid","clientSecret":"sec","expiresAt":"2099-01-01T00:00:00Z"}),
        );
        let p = write(
            dir.path(),
            "t.json",
            serde_json::json!({"accessToken":"a","refreshToken":"r","expiresAt":"2099-01-01T00:00:00.000Z",
                "clientIdHash":"abc123","authMethod":"IdC","provider":"BuilderId","region":"us-east-1"}),
        );
        let (c, _) = read_token_file(&p).unwrap();
        assert_eq!(c.kind, AuthKind::IdC);
        assert_eq!(c.client, Some(("cid".into(), "sec".into())));
        assert!(!c.needs_refresh(Utc::now()));
    }

    #[test]
    fn bad_files_give_reasons_without_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_token_file(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(missing, TokenError::Missing(_)));
        let p = dir.path().join("bad.json");
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(read_token_file(&p).unwrap_err(), TokenError::Malformed { .. }));
        let p = write(
            dir.path(),
            "trunc.json",
            serde_json::json!({"accessToken":"secret-access","refreshToken":"aor..."}),
        );
        let e = read_token_file(&p).unwrap_err().to_string();
        assert!(e.contains("truncated") && !e.contains("secret-access"), "{e}");
        let p = write(dir.path(), "norefresh.json", serde_json::json!({"accessToken":"secret-access"}));
        let e = read_token_file(&p).unwrap_err().to_string();
        assert!(e.contains("no refreshToken") && !e.contains("secret-access"), "{e}");
    }

    #[test]
    fn unparseable_expiry_counts_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.json",
            serde_json::json!({"accessToken":"a","refreshToken":"r","expiresAt":"2026/01/23 15:30:00"}),
        );
        let (c, _) = read_token_file(&p).unwrap();
        assert!(c.needs_refresh(Utc::now()));
    }

    #[cfg(unix)]
    #[test]
    fn write_back_is_atomic_merged_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.json",
            serde_json::json!({"accessToken":"a","refreshToken":"r","provider":"Github"}),
        );
        let (_, mut raw) = read_token_file(&p).unwrap();
        raw.insert("accessToken".into(), Value::String("b".into()));
        write_atomically(&p, &raw).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(back["accessToken"], "b");
        assert_eq!(back["provider"], "Github");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

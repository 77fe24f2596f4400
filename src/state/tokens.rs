//! The token store of a shared pool on Redis ([`TokenShare`]).
//!
//! `token:{id}` holds the last refreshed token (JSON, until it expires); `token-lock:{id}` is the
//! pool's refresh lock (`SET NX` with [`LOCK_TTL`], so a refresher that dies frees it). Tokens in
//! Redis are the same secrets as the token files: Redis must be private (docs/shared-state.md).
//! While Redis is down every call answers at once ("away"): the instance refreshes alone.

use super::RedisLink;
use crate::providers::codewhisperer::token::{ShareFuture, SharedToken, TokenShare};
use std::sync::Arc;
use std::time::Duration;

/// Longest a refresh may hold the pool's lock.
pub const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a published token is kept when its expiry is unknown.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Tokens shared through one Redis.
#[derive(Debug)]
pub struct RedisTokens {
    link: Arc<RedisLink>,
    /// This instance, as the lock's holder.
    instance: String,
}

impl RedisTokens {
    pub fn new(link: Arc<RedisLink>) -> Arc<RedisTokens> {
        Arc::new(RedisTokens { link, instance: uuid::Uuid::new_v4().simple().to_string() })
    }
}

impl TokenShare for RedisTokens {
    fn fetch(&self, account: &str) -> ShareFuture<'_, Option<SharedToken>> {
        let key = self.link.key(&format!("token:{account}"));
        Box::pin(async move {
            if !self.link.is_connected() {
                return None;
            }
            let text = self
                .link
                .run_background(|mut c| async move {
                    redis::cmd("GET").arg(&key).query_async::<Option<String>>(&mut c).await
                })
                .await
                .flatten()?;
            serde_json::from_str(&text).ok()
        })
    }

    fn lock(&self, account: &str) -> ShareFuture<'_, Option<bool>> {
        let key = self.link.key(&format!("token-lock:{account}"));
        let me = self.instance.clone();
        Box::pin(async move {
            if !self.link.is_connected() {
                // Redis away: refresh alone, as a single instance does.
                return None;
            }
            let set = self
                .link
                .run_background(|mut c| async move {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&me)
                        .arg("NX")
                        .arg("PX")
                        .arg(LOCK_TTL.as_millis() as u64)
                        .query_async::<Option<String>>(&mut c)
                        .await
                })
                .await?;
            Some(set.is_some())
        })
    }

    fn publish(&self, account: &str, token: SharedToken) -> ShareFuture<'_, ()> {
        let key = self.link.key(&format!("token:{account}"));
        let lock = self.link.key(&format!("token-lock:{account}"));
        let ttl = token
            .expires_at
            .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(TOKEN_TTL);
        let text = serde_json::to_string(&token).unwrap_or_default();
        Box::pin(async move {
            if !self.link.is_connected() {
                return;
            }
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            self.link
                .run_background(|mut c| async move {
                    redis::pipe()
                        .cmd("SET")
                        .arg(&key)
                        .arg(&text)
                        .arg("PX")
                        .arg(ttl_ms)
                        .ignore()
                        .cmd("DEL")
                        .arg(&lock)
                        .ignore()
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        })
    }

    fn unlock(&self, account: &str) -> ShareFuture<'_, ()> {
        let lock = self.link.key(&format!("token-lock:{account}"));
        Box::pin(async move {
            if !self.link.is_connected() {
                return;
            }
            self.link
                .run_background(|mut c| async move {
                    redis::cmd("DEL").arg(&lock).query_async::<()>(&mut c).await
                })
                .await;
        })
    }
}

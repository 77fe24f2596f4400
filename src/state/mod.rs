//! Where the pool's shared state lives (issue #16, docs/shared-state.md).
//!
//! `"state": {"backend": "memory"}` (the default): every instance keeps its own breakers,
//! cooldowns, leases, bindings, usage and tokens, exactly as a single ccr always has.
//! `"state": {"backend": "redis", "url": …, "keyPrefix": …}`: instances using the same Redis and
//! prefix share them. The balancer's and the token manager's local state stays the source of
//! truth for each decision; Redis is a shared layer on top that is consulted within a bounded
//! time and skipped when it does not answer (no request fails because Redis did).
//!
//! This module is the foundation other modules build on:
//! - [`SharedState`]: the backend chosen by the config, with its [`StateStatus`] for `/health`,
//!   `/status` and the dashboard;
//! - [`RedisLink`]: the connection (key prefix, bounded timeouts, local fallback, reconnects).
//!
//! On top of it: [`pool::RedisPool`] (the balancer's shared pool: bindings, exclusions, breakers,
//! leases, usage) , [`tokens::RedisTokens`] (one token refresh for the pool) and
//! [`models::RedisModels`] (the accounts' model lists).

mod link;
pub mod models;
pub mod pool;
pub mod tokens;

pub use link::{BACKGROUND_TIMEOUT, LinkError, LinkHealth, PING_INTERVAL, RedisLink, redact_url};

use crate::config::StateSettings;
use crate::config::schema::ms;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The shared-state backend of one instance. Cheap to share as `Arc`.
#[derive(Debug)]
pub struct SharedState {
    redis: Option<Arc<RedisLink>>,
    lease_ttl: Duration,
    pool: Option<Arc<pool::RedisPool>>,
    tokens: Option<Arc<tokens::RedisTokens>>,
}

/// What `/health`, `/status` and the dashboard header show about the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateStatus {
    /// `memory` or `redis`.
    pub backend: String,
    /// Redis only: whether the last operation succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// Redis only: when `connected` last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Redis only: the URL, its password shown as `***`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Redis only: the key prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// Redis only: which values are the pool's (the same on every instance); every other value
    /// (counters, latency, health checks, queue) is this instance's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool_wide: Vec<String>,
}

impl Default for StateStatus {
    fn default() -> Self {
        StateStatus {
            backend: "memory".into(),
            connected: None,
            since: None,
            url: None,
            key_prefix: None,
            pool_wide: Vec::new(),
        }
    }
}

/// What `/status` lists as pool-wide with the Redis backend.
pub const POOL_WIDE: [&str; 7] = [
    "providers[].blocked: cooling_down, quota_exhausted, suspended, needs_login, drained, breaker_open seen by any instance",
    "maxConcurrentRequests: counted over every instance's leases (providers[].inFlight is this instance's share)",
    "conversation bindings (providers[].sessions counts those this instance has served)",
    "the breaker's half-open probe: one for the pool; its success closes the breaker on every instance",
    "token refreshes: one for the pool",
    "providers[].usage: the latest usage poll by any instance (fresh for usage.refreshInterval), used and metered counting every instance's metered credits",
    "the accounts' model lists behind /v1/models: fetched by one instance, used by all for 10 minutes",
];

impl SharedState {
    /// Memory only: nothing shared.
    pub fn memory() -> Arc<SharedState> {
        Arc::new(SharedState { redis: None, lease_ttl: ms(30_000), pool: None, tokens: None })
    }

    /// The backend the config asks for. A Redis URL that does not parse (validation rejects it
    /// first) falls back to memory with an error in the log.
    pub fn from_settings(settings: &StateSettings) -> Arc<SharedState> {
        if !settings.is_redis() {
            return SharedState::memory();
        }
        let url = settings.url.as_deref().unwrap_or_default();
        match RedisLink::new(url, &settings.key_prefix, ms(settings.timeout)) {
            Ok(link) => {
                let link = Arc::new(link);
                let lease_ttl = ms(settings.lease_ttl);
                Arc::new(SharedState {
                    pool: Some(pool::RedisPool::new(link.clone(), lease_ttl)),
                    tokens: Some(tokens::RedisTokens::new(link.clone())),
                    redis: Some(link),
                    lease_ttl,
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "shared state: keeping the state in memory");
                SharedState::memory()
            }
        }
    }

    /// The Redis link, when the backend is Redis.
    pub fn redis(&self) -> Option<&Arc<RedisLink>> {
        self.redis.as_ref()
    }

    /// Whether the state is shared (backend Redis), connected or not.
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// How long a concurrency lease lives without renewal.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Whether `settings` describe this same backend (a reload with other settings needs a
    /// restart to take effect).
    pub fn matches(&self, settings: &StateSettings) -> bool {
        match (&self.redis, settings.is_redis()) {
            (None, false) => true,
            (Some(link), true) => {
                settings.url.as_deref().map(redact_url).as_deref() == Some(link.url())
                    && settings.key_prefix == link.prefix()
                    && ms(settings.timeout) == link.timeout()
                    && ms(settings.lease_ttl) == self.lease_ttl
            }
            _ => false,
        }
    }

    /// Shares `balancer`'s pool (Redis backend; nothing for memory).
    pub fn attach_balancer(&self, balancer: &crate::balancer::Balancer) {
        if let Some(pool) = &self.pool {
            balancer.set_shared(pool.clone());
        }
    }

    /// Shares the token refreshes of `clients` (Redis backend; nothing for memory). Clients that
    /// already share keep doing so.
    pub fn attach_clients<'a>(
        &self,
        clients: impl IntoIterator<
            Item = (&'a String, &'a Arc<crate::providers::codewhisperer::client::CodeWhispererClient>),
        >,
    ) {
        if let Some(tokens) = &self.tokens {
            for (id, client) in clients {
                client.tokens().share_with(id, tokens.clone());
            }
        }
    }

    /// The pool's background work (sync of shared states, lease renewal) until `shutdown`.
    /// Returns at once for the memory backend.
    pub async fn run_pool(
        &self,
        balancer: std::sync::Weak<crate::balancer::Balancer>,
        shutdown: watch::Receiver<bool>,
    ) {
        if let Some(pool) = &self.pool {
            pool.clone().run(balancer, shutdown).await;
        }
    }

    /// The status for display.
    pub fn status(&self) -> StateStatus {
        match &self.redis {
            None => StateStatus::default(),
            Some(link) => {
                let health = link.health();
                StateStatus {
                    backend: "redis".into(),
                    connected: Some(health.connected),
                    since: Some(health.since),
                    url: Some(link.url().to_owned()),
                    key_prefix: Some(link.prefix().to_owned()),
                    pool_wide: POOL_WIDE.iter().map(|s| (*s).to_owned()).collect(),
                }
            }
        }
    }

    /// Keeps the Redis link watched (pings, reconnects) until `shutdown`; `on_up` runs each time
    /// it comes (back) up. Returns at once for the memory backend.
    pub async fn watch(&self, shutdown: watch::Receiver<bool>, on_up: impl Fn()) {
        if let Some(link) = &self.redis {
            link.watch(shutdown, on_up).await;
        }
    }
}

impl StateStatus {
    /// One line for the dashboard header and `ccr status`: `memory`, `redis ✓` or
    /// `redis ✗ since 12:00:03`.
    pub fn short(&self) -> String {
        match (self.connected, self.since) {
            (Some(true), _) => "redis ✓".to_owned(),
            (Some(false), Some(since)) => format!("redis ✗ since {}", since.format("%H:%M:%S")),
            (Some(false), None) => "redis ✗".to_owned(),
            (None, _) => self.backend.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_the_default_and_shows_nothing_else() {
        let state = SharedState::from_settings(&StateSettings::default());
        assert!(!state.is_shared());
        assert_eq!(serde_json::to_value(state.status()).unwrap(), serde_json::json!({"backend": "memory"}));
        assert!(state.matches(&StateSettings::default()));
    }

    #[test]
    fn redis_status_redacts_the_password() {
        let settings = StateSettings {
            backend: "redis".into(),
            url: Some("redis://:s3cret@127.0.0.1:1/0".into()),
            ..StateSettings::default()
        };
        let state = SharedState::from_settings(&settings);
        assert!(state.is_shared());
        let status = state.status();
        let json = serde_json::to_string(&status).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert_eq!(status.url.as_deref(), Some("redis://:***@127.0.0.1:1/0"));
        assert_eq!(status.connected, Some(false));
        assert!(status.short().starts_with("redis ✗"));
        assert!(state.matches(&settings));
        assert!(!state.matches(&StateSettings::default()));
    }
}

//! The connection to Redis: one lazily created [`ConnectionManager`] (it reconnects by itself), a
//! key prefix, bounded timeouts, and the connected / since status every reader shows.
//!
//! Every operation goes through [`RedisLink::run`] (request path: the short `state.timeout`) or
//! [`RedisLink::run_background`] (background tasks: a second). Both answer `None` when Redis
//! cannot answer in time: the caller then goes on with its local state. A failure marks the link
//! down (logged once); while it is down the request path does not even try, so a dead Redis costs
//! nothing. The watcher ([`RedisLink::watch`]) pings every [`PING_INTERVAL`] and marks it up again.

use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// How often the watcher checks the connection.
pub const PING_INTERVAL: Duration = Duration::from_millis(500);
/// The timeout of background operations (pings, state sync, token publication).
pub const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a Redis link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The URL does not parse. The URL itself is not repeated: it may hold a password.
    #[error("state.url is not a usable Redis URL")]
    BadUrl,
}

/// Connected or not, since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkHealth {
    pub connected: bool,
    pub since: DateTime<Utc>,
}

/// A shared handle on one Redis. Cheap to share as `Arc`.
pub struct RedisLink {
    client: redis::Client,
    manager: OnceLock<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    url_shown: String,
    /// The fast check on the request path.
    up: AtomicBool,
    health: Mutex<LinkHealth>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("url", &self.url_shown)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("health", &self.health())
            .finish()
    }
}

impl RedisLink {
    /// A link to `url` (not contacted yet: [`RedisLink::watch`] connects). `timeout` bounds each
    /// request-path operation.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisLink, LinkError> {
        let client = redis::Client::open(url).map_err(|_| LinkError::BadUrl)?;
        Ok(RedisLink {
            client,
            manager: OnceLock::new(),
            prefix: prefix.to_owned(),
            timeout,
            url_shown: redact_url(url),
            up: AtomicBool::new(false),
            health: Mutex::new(LinkHealth { connected: false, since: Utc::now() }),
        })
    }

    /// The URL with its password replaced by `***` (for display).
    pub fn url(&self) -> &str {
        &self.url_shown
    }

    /// The key prefix, e.g. `ccr:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix` + `suffix`: every key this link writes is named through here.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The request-path timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the last operation (or ping) succeeded.
    pub fn is_connected(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Connected or not, and since when.
    pub fn health(&self) -> LinkHealth {
        *self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` on the request path: `None` at once while the link is down, else `op`'s value
    /// if it answers within the request timeout; `None` (and the link marked down) otherwise.
    pub async fn run<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_connected() {
            return None;
        }
        self.run_within(self.timeout, op).await
    }

    /// Runs `op` off the request path (background tasks), with [`BACKGROUND_TIMEOUT`]. Tried
    /// even while the link is down (a success marks it up).
    pub async fn run_background<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.run_within(BACKGROUND_TIMEOUT, op).await
    }

    async fn run_within<T, F, Fut>(&self, limit: Duration, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.manager()?;
        match tokio::time::timeout(limit, op(conn)).await {
            Ok(Ok(value)) => {
                self.mark(true, "");
                Some(value)
            }
            Ok(Err(e)) => {
                // A script or type error is our bug, not an outage: report it, keep the link up.
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
                {
                    self.mark(false, &e.to_string());
                } else {
                    tracing::warn!(error = %e, "shared state: Redis refused an operation; using local state for it");
                }
                None
            }
            Err(_) => {
                self.mark(false, &format!("no answer within {} ms", limit.as_millis()));
                None
            }
        }
    }

    /// The connection manager, created on first use (it needs a Tokio runtime). `None` when it
    /// cannot be created (it does not connect here, so this is rare).
    fn manager(&self) -> Option<ConnectionManager> {
        if let Some(m) = self.manager.get() {
            return Some(m.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(BACKGROUND_TIMEOUT))
            .set_response_timeout(Some(BACKGROUND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        match ConnectionManager::new_lazy_with_config(self.client.clone(), config) {
            Ok(m) => Some(self.manager.get_or_init(|| m).clone()),
            Err(e) => {
                self.mark(false, &e.to_string());
                None
            }
        }
    }

    /// Records an operation's success or failure; logs only the transitions (once per outage).
    fn mark(&self, ok: bool, why: &str) {
        if self.up.load(Ordering::Relaxed) == ok {
            return;
        }
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if health.connected == ok {
            return;
        }
        *health = LinkHealth { connected: ok, since: Utc::now() };
        self.up.store(ok, Ordering::Relaxed);
        drop(health);
        if ok {
            tracing::info!(url = %self.url_shown, "shared state: connected to Redis; sharing the pool's state");
        } else {
            tracing::warn!(
                url = %self.url_shown,
                error = %redact_text(why),
                "shared state: Redis unreachable; serving from local state until it is back"
            );
        }
    }

    /// One ping (background timeout). Marks the link up or down.
    pub async fn ping(&self) -> bool {
        self.run_background(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .is_some()
    }

    /// Pings every [`PING_INTERVAL`] until `shutdown` turns true; `on_up` runs each time the link
    /// comes (back) up, so owners can re-publish what Redis may have lost.
    pub async fn watch(&self, mut shutdown: watch::Receiver<bool>, on_up: impl Fn()) {
        loop {
            let was_up = self.is_connected();
            if self.ping().await && !was_up {
                on_up();
            }
            tokio::select! {
                _ = tokio::time::sleep(PING_INTERVAL) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

pub use crate::config::schema::redact_url;

/// An error text with anything that looks like `user:password@` inside a URL masked.
fn redact_text(text: &str) -> String {
    text.split(' ')
        .map(
            |word| {
                if word.contains("://") && word.contains('@') { redact_url(word) } else { word.to_owned() }
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact_url("redis://:s3cret@cache.lan:6379/0"), "redis://:***@cache.lan:6379/0");
        assert_eq!(redact_url("rediss://pool:s3cret@cache.lan/1"), "rediss://pool:***@cache.lan/1");
        assert_eq!(redact_url("redis://cache.lan:6379"), "redis://cache.lan:6379");
        assert_eq!(redact_url("not a url :s3cret@"), "(unparsable URL)");
        assert_eq!(
            redact_text("failed for redis://u:s3cret@h:1/0 (refused)"),
            "failed for redis://u:***@h:1/0 (refused)"
        );
        let link = RedisLink::new("redis://:s3cret@127.0.0.1:1/0", "t:", Duration::from_millis(5)).unwrap();
        assert!(!format!("{link:?}").contains("s3cret"));
        assert_eq!(link.key("lease:a"), "t:lease:a");
    }

    #[tokio::test]
    async fn a_dead_redis_answers_none_and_is_reported_down() {
        // Port 1 on loopback: nothing listens there.
        let link = RedisLink::new("redis://127.0.0.1:1/0", "t:", Duration::from_millis(50)).unwrap();
        assert!(!link.ping().await);
        assert!(!link.health().connected);
        // The request path does not even try while the link is down.
        let got =
            link.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await;
        assert_eq!(got, None);
    }
}

//! Developers' keys (issue #17): who may use the pool, how much, and what they used.
//!
//! With `server.keys` configured, every `/v1/*` request must present one of the keys
//! (`x-api-key` or `Authorization: Bearer`) or the operator's `server.apiKey`. A key is known
//! only by its SHA-256: the presented key is hashed and compared with every configured digest in
//! constant time. Then, before anything reaches an upstream, [`Keys::admit`] checks the key's
//! limits against its [`KeyCounters`]: the month's credits (UTC calendar month), the
//! requests-per-minute bucket and the requests in flight; a refused request costs nothing. The
//! [`Ticket`] an admitted request gets holds its concurrency slot until the answer has been sent
//! (streaming or not), and charges the answer's metered credits (protocol notes §7.6) to the key
//! as they arrive, by account and category. The model check needs the parsed body: the
//! `/v1/messages` handler calls [`check_model`].
//!
//! The counters are per instance ([`MemoryCounters`]) unless the shared state backend is Redis
//! (`state.backend`): then [`RedisCounters`] makes every limit pool-wide and the month's credits
//! survive restarts; while Redis does not answer, each instance counts in memory.
//!
//! The operator key is accepted on `/v1/*` too (it is the pool owner's, and `ccr code` sends
//! it); its requests are not limited or counted per key.
//!
//! Nothing here logs or returns a key: views carry names and the first 8 hex digits of the
//! digest.

pub mod args;
pub mod counters;
mod redis_counters;
mod view;

pub use counters::{Admit, CountersError, KeyCounters, Limits, MemoryCounters, Refused};
pub use redis_counters::{RedisCounters, SLOT_TTL};
pub use view::{KeyLimitsView, KeyView, KeysView};

use crate::anthropic::{ApiError, ErrorKind};
use crate::config::{Config, KeyEntry};
use axum::http::{HeaderMap, header};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use subtle::{ConditionallySelectable, ConstantTimeEq};

pub use crate::config::keys::sha256_hex;

/// The reasons a known key's request is refused, as metrics labels.
pub const LIMIT_REASONS: [&str; 4] = ["budget", "rate", "concurrency", "model"];

/// The API key a request presents: `x-api-key`, else `Authorization: Bearer`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Constant-time comparison of a presented key with the operator key.
pub fn key_matches(presented: Option<&str>, expected: &str) -> bool {
    presented
        .is_some_and(|p| p.len() == expected.len() && bool::from(p.as_bytes().ct_eq(expected.as_bytes())))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn digest_of_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The calendar month (UTC) of `now`, as `YYYY-MM`: the period a budget counts.
pub fn month_of(now: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", now.year(), now.month())
}

/// When the month of `now` ends: the first of the next month, 00:00 UTC.
pub fn month_end(now: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(now)
}

/// Whether a key limited to `allowed` may ask for `model`: the same name (case ignored), the
/// name with a date suffix (`claude-sonnet-4-5` allows `claude-sonnet-4-5-20250929`), or a
/// prefix pattern ending in `*` (`claude-haiku-*`).
pub fn model_allowed(allowed: &[String], model: &str) -> bool {
    let model = model.trim().to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        if let Some(prefix) = a.strip_suffix('*') {
            return model.starts_with(prefix);
        }
        model == a
            || model
                .strip_prefix(a.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|date| date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// One configured key, ready to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    digest: [u8; 32],
    pub limits: Limits,
    pub models: Option<Vec<String>>,
}

impl Entry {
    fn from_config(k: &KeyEntry) -> Option<Entry> {
        let digest = match (&k.key, &k.key_sha256) {
            (Some(key), _) => sha256(key.as_bytes()),
            (None, Some(hex)) => digest_of_hex(hex)?,
            (None, None) => return None,
        };
        let limit = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        Some(Entry {
            name: k.name.clone(),
            digest,
            limits: Limits {
                monthly_credits: k.monthly_credits,
                requests_per_minute: limit(k.requests_per_minute),
                max_concurrent: limit(k.max_concurrent),
            },
            models: k.models.clone(),
        })
    }

    /// The first 8 hex digits of the key's digest: enough to tell keys apart, useless to an attacker.
    pub fn hash_prefix(&self) -> String {
        self.digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Who a `/v1/*` request is.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No key is needed (no `server.keys`, no `server.apiKey`).
    Anyone,
    /// The operator key (`server.apiKey`): not limited, not counted per key.
    Operator,
    /// A developer's key.
    Developer(Arc<Entry>),
}

impl Caller {
    /// The name for log lines: the key's name, `operator`, or `-`.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anyone => "-",
            Caller::Operator => "operator",
            Caller::Developer(e) => &e.name,
        }
    }
}

/// Why a request was refused. Each maps to one Anthropic error ([`KeyError::api_error`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid or missing API key (x-api-key or Authorization: Bearer)")]
    Unauthenticated,
    #[error(
        "key {name} has used {used} of its {budget} monthly credits (server.keys: monthlyCredits); \
         the budget resets at {resets}"
    )]
    Budget { name: String, used: String, budget: String, resets: String, retry_after: Duration },
    #[error("key {name} is over its limit of {per_minute} requests per minute; retry in {wait}")]
    Rate { name: String, per_minute: u32, wait: String, retry_after: Duration },
    #[error(
        "key {name} already has {max} requests in flight, its limit (maxConcurrent); retry when one ends"
    )]
    Concurrency { name: String, max: u32 },
    #[error("key {name} may not use model {model} (allowed: {allowed})")]
    Model { name: String, model: String, allowed: String },
}

impl KeyError {
    /// The reason label of a limit refusal (`None` for a missing key).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            KeyError::Unauthenticated => None,
            KeyError::Budget { .. } => Some("budget"),
            KeyError::Rate { .. } => Some("rate"),
            KeyError::Concurrency { .. } => Some("concurrency"),
            KeyError::Model { .. } => Some("model"),
        }
    }

    /// The client's answer: 401 `authentication_error`, 429 `rate_limit_error` (with
    /// `Retry-After`) or 403 `permission_error`.
    pub fn api_error(&self) -> ApiError {
        let message = self.to_string();
        match self {
            KeyError::Unauthenticated => ApiError::new(ErrorKind::AuthenticationError, message),
            KeyError::Budget { retry_after, .. } | KeyError::Rate { retry_after, .. } => {
                ApiError::new(ErrorKind::RateLimitError, message).with_retry_after(*retry_after)
            }
            KeyError::Concurrency { .. } => {
                ApiError::new(ErrorKind::RateLimitError, message).with_retry_after(Duration::from_secs(1))
            }
            KeyError::Model { .. } => ApiError::new(ErrorKind::PermissionError, message),
        }
    }
}

/// Credits for people: two decimals from 1 up, four below (one answer costs about 0.01), no
/// trailing zeros (`287.4`, `300`, `0.0123`).
pub fn credits_text(v: f64) -> String {
    let s = if v.abs() >= 1.0 { format!("{v:.2}") } else { format!("{v:.4}") };
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What this instance saw of one key (counters shared with other instances are in the
/// [`KeyCounters`]; these are per instance).
#[derive(Debug, Clone, Default)]
struct Stats {
    requests: u64,
    limited: BTreeMap<&'static str, u64>,
    last_seen: Option<DateTime<Utc>>,
    live: u32,
    /// The month the fields below count.
    month: String,
    /// Credits this month as last read from (or charged to) the counters.
    credits: f64,
    by_account: BTreeMap<String, f64>,
    by_category: BTreeMap<String, f64>,
}

impl Stats {
    fn roll(&mut self, month: &str) {
        if self.month != month {
            self.month = month.to_owned();
            self.credits = 0.0;
            self.by_account.clear();
            self.by_category.clear();
        }
    }
}

struct Inner {
    entries: RwLock<Arc<Vec<Arc<Entry>>>>,
    counters: RwLock<Arc<dyn KeyCounters>>,
    /// Used while the shared counters cannot answer.
    fallback: Arc<MemoryCounters>,
    stats: Mutex<HashMap<String, Stats>>,
    /// Whether the shared counters' failure was logged already (log once per outage).
    outage_logged: std::sync::atomic::AtomicBool,
}

/// The keys of a running instance: the configured entries (replaced on reload), their counters,
/// and what this instance saw. Cheap to clone.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("keys", &self.entries().len()).finish()
    }
}

impl Keys {
    /// Keys from `config`, counted in memory.
    pub fn new(config: &Config) -> Keys {
        let fallback = Arc::new(MemoryCounters::default());
        let keys = Keys {
            inner: Arc::new(Inner {
                entries: RwLock::new(Arc::new(Vec::new())),
                counters: RwLock::new(fallback.clone()),
                fallback,
                stats: Mutex::new(HashMap::new()),
                outage_logged: Default::default(),
            }),
        };
        keys.apply_config(config);
        keys
    }

    /// Take the keys of a new config (hot reload). Counters and stats of keys that stay are kept.
    pub fn apply_config(&self, config: &Config) {
        let entries: Vec<Arc<Entry>> =
            config.server.keys.iter().filter_map(Entry::from_config).map(Arc::new).collect();
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        *self.inner.entries.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(entries);
        self.stats().retain(|name, _| names.contains(name));
    }

    /// Count with `counters` from now on (a shared backend); in-flight tickets release where
    /// they were admitted.
    pub fn set_counters(&self, counters: Arc<dyn KeyCounters>) {
        *self.inner.counters.write().unwrap_or_else(|e| e.into_inner()) = counters;
    }

    fn counters(&self) -> Arc<dyn KeyCounters> {
        self.inner.counters.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The configured keys.
    pub fn entries(&self) -> Arc<Vec<Arc<Entry>>> {
        self.inner.entries.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether any key is configured (then `/v1/*` needs one).
    pub fn enabled(&self) -> bool {
        !self.entries().is_empty()
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stats>> {
        self.inner.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who presents these headers. With no keys configured only the operator key (when set) is
    /// checked, as before keys existed.
    pub fn authenticate(&self, headers: &HeaderMap, operator_key: Option<&str>) -> Result<Caller, KeyError> {
        let presented = presented_key(headers);
        if operator_key.is_some_and(|k| key_matches(presented, k)) {
            return Ok(Caller::Operator);
        }
        let entries = self.entries();
        if entries.is_empty() {
            return if operator_key.is_some() { Err(KeyError::Unauthenticated) } else { Ok(Caller::Anyone) };
        }
        let Some(presented) = presented else { return Err(KeyError::Unauthenticated) };
        let digest = sha256(presented.as_bytes());
        // Compare with every digest, whichever matches, without branching on the bytes.
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, e) in entries.iter().enumerate() {
            let same = e.digest.ct_eq(&digest);
            index.conditional_assign(&u32::try_from(i).unwrap_or(u32::MAX), same);
            found |= same;
        }
        if bool::from(found) {
            let entry = entries.get(index as usize).cloned().ok_or(KeyError::Unauthenticated)?;
            Ok(Caller::Developer(entry))
        } else {
            Err(KeyError::Unauthenticated)
        }
    }

    /// Check `entry`'s limits and count the request: a [`Ticket`] to hold until the answer is
    /// sent, or the refusal (counted under its reason).
    pub async fn admit(&self, entry: &Arc<Entry>) -> Result<Ticket, KeyError> {
        let now = Utc::now();
        let month = month_of(now);
        let mut counters = self.counters();
        let decision = match counters.admit(&entry.name, &month, entry.limits).await {
            Ok(d) => {
                self.inner.outage_logged.store(false, std::sync::atomic::Ordering::Relaxed);
                d
            }
            Err(e) => {
                if !self.inner.outage_logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!("{e}; counting keys in this instance until it is back");
                }
                counters = self.inner.fallback.clone();
                self.inner.fallback.admit_at(&entry.name, &month, entry.limits, tokio::time::Instant::now())
            }
        };
        let slot = {
            let mut stats = self.stats();
            let s = stats.entry(entry.name.clone()).or_default();
            s.requests += 1;
            s.last_seen = Some(now);
            s.roll(&month);
            match decision {
                Admit::Yes { used, slot } => {
                    s.credits = s.credits.max(used);
                    s.live += 1;
                    slot
                }
                Admit::No(refused) => {
                    let err = refusal(&entry.name, refused, now);
                    if let Some(reason) = err.reason() {
                        *s.limited.entry(reason).or_default() += 1;
                    }
                    return Err(err);
                }
            }
        };
        Ok(Ticket {
            inner: Arc::new(TicketInner { keys: self.clone(), entry: entry.clone(), month, counters, slot }),
        })
    }

    /// Count a refusal the key's own counters did not decide (the model check).
    fn count_limited(&self, name: &str, reason: &'static str) {
        let mut stats = self.stats();
        *stats.entry(name.to_owned()).or_default().limited.entry(reason).or_default() += 1;
    }

    /// Read the month's credits of every key from the counters (shared ones may have moved on
    /// other instances), for views that must be exact (`/admin/keys`).
    pub async fn refresh(&self) {
        let month = month_of(Utc::now());
        let names: Vec<String> = self.entries().iter().map(|e| e.name.clone()).collect();
        let read = self.counters().credits(&names, &month).await;
        if let Ok(credits) = read {
            let mut stats = self.stats();
            for name in names {
                let s = stats.entry(name.clone()).or_default();
                s.roll(&month);
                s.credits = credits.get(&name).copied().unwrap_or(0.0);
            }
        }
    }

    /// Plain data for the snapshot, `/admin/keys`, the metrics and the dashboard.
    pub fn view(&self) -> KeysView {
        view::build(self, Utc::now())
    }
}

/// The 429 for a limit the counters refused.
fn refusal(name: &str, refused: Refused, now: DateTime<Utc>) -> KeyError {
    match refused {
        Refused::Budget { used, budget } => {
            let end = month_end(now);
            KeyError::Budget {
                name: name.to_owned(),
                used: credits_text(used),
                budget: credits_text(budget),
                resets: end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                retry_after: (end - now).to_std().unwrap_or(Duration::from_secs(1)),
            }
        }
        Refused::Rate { per_minute, retry_after } => {
            let secs = retry_after.as_secs_f64().ceil().max(1.0);
            KeyError::Rate {
                name: name.to_owned(),
                per_minute,
                wait: format!("{secs} s"),
                retry_after: Duration::from_secs_f64(secs),
            }
        }
        Refused::Concurrency { max } => KeyError::Concurrency { name: name.to_owned(), max },
    }
}

/// The model check for a request already admitted: 403 when the key's `models` do not allow it.
pub fn check_model(ticket: Option<&Ticket>, model: &str) -> Result<(), ApiError> {
    let Some(ticket) = ticket else { return Ok(()) };
    let entry = &ticket.inner.entry;
    match &entry.models {
        Some(allowed) if !model_allowed(allowed, model) => {
            ticket.inner.keys.count_limited(&entry.name, "model");
            let err = KeyError::Model {
                name: entry.name.clone(),
                model: model.chars().take(100).collect(),
                allowed: allowed.join(", "),
            };
            tracing::info!(key = %entry.name, "refused: {err}");
            Err(err.api_error())
        }
        _ => Ok(()),
    }
}

struct TicketInner {
    keys: Keys,
    entry: Arc<Entry>,
    month: String,
    counters: Arc<dyn KeyCounters>,
    slot: u64,
}

impl Drop for TicketInner {
    fn drop(&mut self) {
        self.counters.release(&self.entry.name, self.slot);
        if let Some(s) = self.keys.stats().get_mut(&self.entry.name) {
            s.live = s.live.saturating_sub(1);
        }
    }
}

/// An admitted request of a developer key. Its clones share one concurrency slot, given back
/// when the last is dropped (after the answer's last byte).
#[derive(Clone)]
pub struct Ticket {
    inner: Arc<TicketInner>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("key", &self.inner.entry.name).finish()
    }
}

impl Ticket {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.inner.entry.name
    }

    /// Charge an answer's metered credits to the key (by account and category).
    pub fn charge(&self, provider: &str, category: &str, credits: f64) {
        if !(credits.is_finite() && credits > 0.0) {
            return;
        }
        let t = &self.inner;
        t.counters.charge(&t.entry.name, &t.month, credits);
        let mut stats = t.keys.stats();
        let s = stats.entry(t.entry.name.clone()).or_default();
        s.roll(&t.month);
        s.credits += credits;
        *s.by_account.entry(provider.to_owned()).or_default() += credits;
        *s.by_category.entry(category.to_owned()).or_default() += credits;
    }

    /// The metering tap that charges this ticket (see [`crate::balancer::with_meter_tap`]).
    pub fn meter_tap(&self) -> crate::balancer::MeterTap {
        let ticket = self.clone();
        Arc::new(move |provider: &str, category: &str, credits: f64| {
            ticket.charge(provider, category, credits)
        })
    }
}

#[cfg(test)]
mod tests;

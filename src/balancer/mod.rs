//! The load balancer core (design §6–§7): strategies, peak-EWMA latency, circuit breakers, active
//! health checks, concurrency caps with a bounded wait queue, operator commands and snapshots.
//!
//! It knows nothing about HTTP, the terminal or the JSON config: the caller maps its config into a
//! [`BalancerSpec`], asks [`Balancer::select`] for a [`Lease`] per attempt, reports the attempt's
//! outcome on the lease, and reads [`Balancer::snapshot`] for display.
//!
//! All runtime state sits behind one `std::sync::Mutex`, held for a few microseconds and never
//! across an `.await`. All timing uses `tokio::time`, so every behaviour here is tested on paused
//! time.
//!
//! Eligibility, in the order the checks are made: not drained, not cooling down after a 429, not
//! out of quota, breaker admits (half-open: one probe), in-flight below the cap, and — for rules
//! with `health_check` — not marked unhealthy by active checks. When nothing is eligible:
//!
//! 1. if some candidates are blocked *only* by health checks and none merely by capacity, they are
//!    used anyway (a broken probe must not black-hole traffic), with a warning;
//! 2. else if some are blocked only by capacity, the request waits (bounded queue) for a release,
//!    then fails with [`SelectError::Overloaded`];
//! 3. else if every candidate's breaker refuses: [`SelectError::AllOpen`] with a retry hint;
//! 4. else [`SelectError::Unavailable`].

mod account;
mod affinity;
mod breaker;
mod command;
mod credits;
mod ewma;
mod health;
pub mod shared;
mod snapshot;
mod spec;
mod state;
mod strategy;
mod tap;
mod util;
pub(crate) use util::{jittered, schedule_rng};

pub use account::{
    DEFAULT_USAGE_REFRESH, MIN_USAGE_REFRESH, UsageParams, UsageProblem, UsageSnapshot, until_wall,
};
pub use affinity::{Affinity, DEFAULT_MAX_SESSIONS, DEFAULT_STICKY_TTL, SessionInfo, Sessions};
pub use breaker::{Admission, Breaker, BreakerState};
pub use command::{Command, CommandError};
pub use credits::{CREDITS_FLOOR, credit_weights};
pub use ewma::PeakEwma;
pub use health::{MIN_HEALTH_INTERVAL, ProbeFn, spawn_health_loop};
pub use snapshot::{
    BalancerSnapshot, BlockReason, BreakerSnapshot, Counters, ErrorSnapshot, HealthSnapshot, HealthStatus,
    LatencySample, LatencySnapshot, ProviderSnapshot, QueueSnapshot, RuleProviderSnapshot, RuleSnapshot,
    SampleSource,
};
pub use spec::{
    BalancerSpec, BreakerParams, DEFAULT_LATENCY_DECAY, DEFAULT_MAX_QUEUE, DEFAULT_QUEUE_TIMEOUT,
    DEFAULT_TTFB, HealthParams, ProviderSpec, RuleSpec, StrategyKind,
};
pub use state::{
    DEFAULT_CATEGORY, DEFAULT_COOLDOWN, DEFAULT_QUOTA_BACKOFF, HALF_OPEN_RETRY, MAX_COOLDOWN, MIN_COOLDOWN,
};
pub use strategy::{Candidate, StrategyState, response_time_cost};
pub use tap::{MeterTap, with_meter_tap};

use command::Effect;
use shared::{AcquireRequest, Acquired, Facts, PoolView, ProbeEnd, Publication, SharedPool};
use state::{Attempt, Outcome, Picked, State};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Why an attempt failed, as the caller reports it on the [`Lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// Could not connect (refused, reset, DNS, TLS).
    Connect,
    /// No first byte (or no progress) within the timeout.
    Timeout,
    /// The upstream answered 5xx.
    Status5xx(u16),
    /// The upstream answered a 4xx that is not the request's fault (404, 409, 422, …): the
    /// account or the endpoint is wrong.
    Status4xx(u16),
    /// The upstream answered 429; the provider cools down for `retry_after` (clamped to
    /// [`MIN_COOLDOWN`]..=[`MAX_COOLDOWN`], [`DEFAULT_COOLDOWN`] when absent).
    RateLimited { retry_after: Option<Duration> },
    /// Credentials rejected even after a refresh.
    Auth,
    /// The account's quota is used up; it is out until `until` (or [`DEFAULT_QUOTA_BACKOFF`]).
    /// Not a breaker failure: the exclusion already keeps it out.
    QuotaExhausted { until: Option<Instant> },
    /// The upstream broke the protocol (corrupt frame, unexpected event).
    Protocol,
    /// 403 "temporarily is suspended": out of rotation until the operator resets it.
    Suspended,
    /// The token refresh was refused (`invalid_grant`): the account needs a new login.
    NeedsLogin,
}

impl FailureKind {
    /// Whether this failure counts toward opening the breaker (design §7).
    pub fn counts_against_breaker(&self) -> bool {
        !matches!(self, FailureKind::QuotaExhausted { .. } | FailureKind::Suspended | FailureKind::NeedsLogin)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Connect => f.write_str("connect error"),
            FailureKind::Timeout => f.write_str("timeout"),
            FailureKind::Status5xx(code) | FailureKind::Status4xx(code) => {
                write!(f, "upstream status {code}")
            }
            FailureKind::RateLimited { .. } => f.write_str("rate limited"),
            FailureKind::Auth => f.write_str("authentication failed"),
            FailureKind::QuotaExhausted { .. } => f.write_str("quota exhausted"),
            FailureKind::Protocol => f.write_str("protocol error"),
            FailureKind::Suspended => f.write_str("account suspended"),
            FailureKind::NeedsLogin => f.write_str("login expired"),
        }
    }
}

/// Why [`Balancer::select`] found no provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// Neither the category nor `default` has a rule.
    #[error("no routing rule for category {0:?} and no default rule")]
    NoRule(String),
    /// Every provider of the rule has already been tried by this request (or the rule has none).
    #[error("no untried provider left for category {category:?}")]
    NoCandidates { category: String },
    /// Every usable provider stayed at its concurrency cap for the whole queue timeout, or the
    /// wait queue was full. Maps to 529 `overloaded_error`.
    #[error("all providers are at capacity (waited {} ms)", waited.as_millis())]
    Overloaded { waited: Duration },
    /// Every remaining provider's circuit breaker is open. Maps to 503 with `Retry-After`.
    #[error("all circuit breakers are open; retry in {} ms", retry_after.as_millis())]
    AllOpen { retry_after: Duration },
    /// Nothing can serve now: drained, cooling down, out of quota, or a mix with open breakers.
    /// `retry_after` is when one of them comes back by itself, if any will.
    #[error("no provider is available (drained, cooling down or out of quota)")]
    Unavailable { retry_after: Option<Duration> },
}

/// What a request tells the balancer about itself besides its category.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement<'a> {
    /// The conversation's session key, for affinity.
    pub session: Option<&'a str>,
    /// The Kiro model id it will send: accounts that cannot serve it are skipped.
    pub model: Option<&'a str>,
}

/// The load balancer: shared runtime state plus the signals around it. Cheap to share as `Arc`.
#[derive(Debug)]
pub struct Balancer {
    state: Mutex<State>,
    /// Signalled when a lease ends or a provider may have become eligible: wakes queued selects.
    released: Notify,
    /// The change counter published to snapshot readers.
    changes: watch::Sender<u64>,
    /// Bumped on every reconfigure, for the health loop.
    reconfigured: watch::Sender<u64>,
    /// Wakes the health loop when the operator asks for a check.
    health_wake: Notify,
    /// Wakes the usage poller when a check is wanted now.
    usage_wake: Notify,
    started: Instant,
    started_at_unix_ms: u64,
    /// The store shared with the other instances of the pool, if any (see [`shared`]).
    shared: RwLock<Option<Arc<dyn SharedPool>>>,
    /// The facts last published per provider.
    published: Mutex<HashMap<String, Facts>>,
}

/// Refusals by the shared pool (binding elsewhere, exclusion) after which a pick goes on with the
/// local decision: a pool that keeps contradicting itself must not stall a request.
const MAX_POOL_REFUSALS: u32 = 4;

impl Balancer {
    /// A balancer for `spec`, with fresh state.
    pub fn new(spec: BalancerSpec) -> Arc<Balancer> {
        let now = Instant::now();
        let started_at_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Arc::new(Balancer {
            state: Mutex::new(State::new(spec, now)),
            released: Notify::new(),
            changes: watch::channel(0).0,
            reconfigured: watch::channel(0).0,
            health_wake: Notify::new(),
            usage_wake: Notify::new(),
            started: now,
            started_at_unix_ms,
            shared: RwLock::new(None),
            published: Mutex::new(HashMap::new()),
        })
    }

    /// The state, even if a panic elsewhere poisoned the lock (the state stays consistent: every
    /// critical section is a handful of field updates).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the state changed.
    fn bump(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Picks a provider for `category`'s rule (else the `default` rule), skipping `excluded`
    /// (providers this request already tried). See the module docs for eligibility and the
    /// order of fallbacks. Waits only when every usable candidate is at capacity: at most
    /// `queue_timeout`, and only if fewer than `max_queue` requests are already waiting.
    pub async fn select(self: &Arc<Self>, category: &str, excluded: &[String]) -> Result<Lease, SelectError> {
        self.select_for(category, excluded, Placement::default()).await
    }

    /// [`Balancer::select`] for a request with a session key and a model: a sticky rule keeps
    /// the conversation on its bound provider while that is eligible (waiting for it while it is
    /// only at capacity, up to the queue timeout), else places it anew and binds it there.
    pub async fn select_for(
        self: &Arc<Self>,
        category: &str,
        excluded: &[String],
        place: Placement<'_>,
    ) -> Result<Lease, SelectError> {
        let start = Instant::now();
        let mut deadline: Option<Instant> = None;
        let mut slot: Option<QueueSlot<'_>> = None;
        let mut patience = true;
        let mut refusals = 0;
        loop {
            // Register for a release before looking, so one that happens in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();

            let now = Instant::now();
            let attempt = {
                let mut st = self.lock();
                let attempt = st.try_pick(category, excluded, &place, patience, now);
                if matches!(attempt, Attempt::Wait) && slot.is_none() {
                    if st.waiting >= st.spec.max_queue {
                        return Err(SelectError::Overloaded { waited: now - start });
                    }
                    st.waiting += 1;
                    slot = Some(QueueSlot { balancer: self });
                }
                if deadline.is_none() {
                    deadline = Some(util::later(start, st.spec.queue_timeout));
                }
                attempt
            };
            match attempt {
                Attempt::Picked(mut picked) => {
                    let (ticket, pool_probe) = match self.shared_pool() {
                        None => (None, false),
                        Some(pool) => match pool.acquire(acquire_request(&picked, place.session)).await {
                            Acquired::Granted { ticket, probe, kept } => {
                                if kept && picked.affinity == Some(Affinity::New) {
                                    // New here, but the pool had it bound to this account.
                                    picked.affinity = Some(Affinity::Kept);
                                }
                                (Some(ticket), probe)
                            }
                            Acquired::Local => (None, false),
                            refusal => {
                                let counts = !matches!(refusal, Acquired::Full { .. });
                                if counts && refusals >= MAX_POOL_REFUSALS {
                                    (None, false)
                                } else {
                                    refusals += u32::from(counts);
                                    self.refused(&picked, category, place.session, refusal);
                                    continue;
                                }
                            }
                        },
                    };
                    drop(slot);
                    self.bump();
                    return Ok(Lease {
                        ticket,
                        pool_probe,
                        balancer: Arc::clone(self),
                        picked,
                        category: category.to_owned(),
                        attempt: excluded.len() + 1,
                        started: now,
                        queued: now - start,
                        first_byte: None,
                        done: false,
                        tap: tap::Attached::current(),
                    });
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Wait => {
                    let deadline = deadline.unwrap_or(now);
                    if now >= deadline {
                        if patience && place.session.is_some() {
                            // Waited as long as allowed for the bound provider: move.
                            patience = false;
                            continue;
                        }
                        return Err(SelectError::Overloaded { waited: now - start });
                    }
                    self.bump();
                    // Either a release wakes us or the deadline passes; both lead to one more look.
                    let _ = tokio::time::timeout_at(deadline, released).await;
                }
            }
        }
    }

    fn shared_pool(&self) -> Option<Arc<dyn SharedPool>> {
        self.shared.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Shares this balancer's pool with other instances through `pool`.
    pub fn set_shared(&self, pool: Arc<dyn SharedPool>) {
        *self.shared.write().unwrap_or_else(|e| e.into_inner()) = Some(pool);
        self.published.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.publish_changes();
    }

    /// Every configured provider id.
    pub fn provider_ids(&self) -> Vec<String> {
        self.lock().providers.iter().map(|p| p.spec.id.clone()).collect()
    }

    /// Sets what the pool's other instances know about provider `id`, as read from the shared
    /// store at `read_at` (the store's sync). A view a pick learnt after `read_at` is newer and
    /// kept.
    pub fn set_pool_view(&self, id: &str, view: PoolView, read_at: Instant) {
        let mut st = self.lock();
        let Some(p) = st.provider_mut(id) else { return };
        if p.pool == view || p.pool_learnt.is_some_and(|t| t > read_at) {
            return;
        }
        p.pool = view;
        drop(st);
        self.bump();
        // A lease given back or an exclusion lifted elsewhere: queued picks look again.
        self.released.notify_waiters();
    }

    /// Publishes all facts again on the next change (the shared store lost its data), and the
    /// usage reports this instance knows (an older one than the pool's is not taken).
    pub fn republish(&self) {
        self.published.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.publish_changes();
        for id in self.provider_ids() {
            self.publish_usage(&id);
        }
    }

    /// Hands the providers' changed local facts to the shared pool, if any.
    fn publish_changes(&self) {
        let Some(pool) = self.shared_pool() else { return };
        let now = Instant::now();
        let facts: Vec<(String, Facts)> =
            self.lock().providers.iter().map(|p| (p.spec.id.clone(), p.facts(now))).collect();
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        for (id, after) in facts {
            let before = published.get(&id).cloned().unwrap_or_default();
            if before == after {
                continue;
            }
            let publication = Publication::diff(&id, &before, &after, now);
            published.insert(id, after);
            if !publication.is_empty() {
                pool.publish(publication);
            }
        }
    }

    /// Applies the shared pool's refusal of `picked` and takes the local pick back.
    fn refused(&self, picked: &state::Picked, category: &str, session: Option<&str>, refusal: Acquired) {
        let now = Instant::now();
        let mut st = self.lock();
        st.unpick(picked, category);
        match refusal {
            Acquired::Bound(account) => {
                if let Some(s) = session {
                    st.sessions.bind(s, &picked.rule, category, &account, false, now);
                }
            }
            Acquired::Excluded(view) => {
                if let Some(p) = st.provider_mut(&picked.provider) {
                    p.pool = PoolView { others_in_flight: p.pool.others_in_flight, ..view };
                    p.pool_learnt = Some(now);
                }
            }
            Acquired::Full { others } => {
                if let Some(p) = st.provider_mut(&picked.provider) {
                    p.pool.others_in_flight = others.saturating_sub(p.in_flight);
                    p.pool_learnt = Some(now);
                }
            }
            Acquired::Granted { .. } | Acquired::Local => {}
        }
    }

    /// How many providers `category`'s rule can pick from: the bound for failover attempts.
    pub fn rule_provider_count(&self, category: &str) -> usize {
        self.lock().rule_for(category).map_or(0, |r| r.candidates.len())
    }

    /// Whether a failed attempt for `category` may be retried on another provider: the rule has
    /// `failover`, or it is `single` with a fallback.
    pub fn rule_failover(&self, category: &str) -> bool {
        self.lock().rule_for(category).is_some_and(|r| {
            r.spec.failover || (r.spec.strategy == StrategyKind::Single && r.spec.fallback.is_some())
        })
    }

    /// How many providers one request for `category` may try: all of its rule's providers when a
    /// failed attempt may move on ([`Balancer::rule_failover`]), else one. One look at the rule.
    pub fn max_attempts(&self, category: &str) -> usize {
        self.lock().rule_for(category).map_or(1, |r| {
            let failover =
                r.spec.failover || (r.spec.strategy == StrategyKind::Single && r.spec.fallback.is_some());
            if failover { r.candidates.len().max(1) } else { 1 }
        })
    }

    /// The strategy of the rule serving `category`.
    pub fn rule_strategy(&self, category: &str) -> Option<StrategyKind> {
        self.lock().rule_kind(category)
    }

    /// The category whose rule serves `category` (itself, else `default`), if any.
    pub fn rule_category(&self, category: &str) -> Option<String> {
        self.lock().rule_for(category).map(|r| r.spec.category.clone())
    }

    /// Applies an operator command: the one path for the dashboard and the admin API. Returns a
    /// one-line description of what changed.
    pub fn apply(&self, cmd: Command) -> Result<String, CommandError> {
        let explicit = match &cmd {
            Command::ResetBreaker(id) => Some((Publication::reset(id), shared::OperatorWord::Reset)),
            Command::Undrain(id) => Some((
                Publication { provider: id.clone(), drained: Some(false), ..Publication::default() },
                shared::OperatorWord::Undrain,
            )),
            _ => None,
        };
        let pool_drained = match &cmd {
            Command::Undrain(id) => self.lock().provider(id).is_some_and(|p| p.pool.drained),
            _ => false,
        };
        let (mut message, effect) = self.lock().apply(cmd, Instant::now())?;
        if let Some((publication, word)) = explicit {
            if pool_drained && message.ends_with("was not drained") {
                // Drained through another instance of the pool.
                message = format!("{}: back in rotation", publication.provider);
            }
            // The operator's word clears what the pool knows too, here and for the others.
            if let Some(p) = self.lock().provider_mut(&publication.provider) {
                p.pool = PoolView { others_in_flight: p.pool.others_in_flight, ..PoolView::default() };
            }
            if let Some(pool) = self.shared_pool() {
                let id = publication.provider.clone();
                pool.publish(publication);
                pool.operator_word(&id, word);
                message.push_str(" (for every instance of the pool)");
            }
        }
        self.publish_changes();
        self.bump();
        match effect {
            Effect::None => {}
            Effect::WakeWaiters => self.released.notify_waiters(),
            Effect::WakeHealth => self.health_wake.notify_one(),
            Effect::WakeUsage => self.usage_wake.notify_one(),
        }
        Ok(message)
    }

    /// Applies an operator's command given through another instance of the shared pool to this
    /// instance's own state (its local cooldown, drain, breaker…), without telling the pool again.
    pub fn apply_pool_word(&self, id: &str, word: shared::OperatorWord) {
        let cmd = match word {
            shared::OperatorWord::Reset => Command::ResetBreaker(id.to_owned()),
            shared::OperatorWord::Undrain => Command::Undrain(id.to_owned()),
            shared::OperatorWord::Closed => {
                // Only the breaker: its cooldowns and other states are its own.
                let closed = {
                    let mut st = self.lock();
                    st.provider_mut(id).and_then(|p| p.breaker.as_mut()).is_some_and(|b| {
                        let open = b.current_state() != BreakerState::Closed;
                        if open {
                            b.reset();
                        }
                        open
                    })
                };
                if closed {
                    tracing::info!(provider = %id, "breaker closed: the pool's probe succeeded on another instance");
                    self.publish_changes();
                    self.bump();
                    self.released.notify_waiters();
                }
                return;
            }
        };
        let applied = {
            let mut st = self.lock();
            let applied = st.apply(cmd, Instant::now()).is_ok();
            if applied && let Some(p) = st.provider_mut(id) {
                p.pool = PoolView { others_in_flight: p.pool.others_in_flight, ..PoolView::default() };
            }
            applied
        };
        if applied {
            tracing::info!(provider = %id, word = word.kind(), "operator's command from another instance of the pool");
            self.publish_changes();
            self.bump();
            self.released.notify_waiters();
        }
    }

    /// Hot reload: swaps providers and rules in one step. Providers that persist keep their live
    /// state (latency estimate, breaker, health, in-flight, counters, drain, cooldowns) and their
    /// weight override unless their configured weight changed; rules that persist keep pick
    /// counts, strategy state (when strategy and candidates are unchanged) and per-provider
    /// overrides (unless the rule's configured weight for that provider changed).
    pub fn reconfigure(&self, spec: BalancerSpec) {
        self.lock().reconfigure(spec, Instant::now());
        self.reconfigured.send_modify(|v| *v = v.wrapping_add(1));
        self.usage_wake.notify_one();
        self.bump();
        self.released.notify_waiters();
    }

    /// Records an active health-check result for provider `id`: `retries` consecutive failures
    /// mark it unhealthy, one success marks it healthy. A success's latency joins the provider's
    /// latency history (tagged as a probe; it does not feed the request latency estimate).
    pub fn record_probe(&self, id: &str, result: Result<Duration, String>) {
        let known = self.lock().record_probe(id, result, Instant::now());
        if known {
            self.bump();
            self.released.notify_waiters();
        } else {
            tracing::debug!(provider = %id, "health result for a provider no longer configured: ignored");
        }
    }

    /// Records a usage check's result (see the usage poller).
    pub fn record_usage(&self, id: &str, result: Result<crate::usage::UsageReport, UsageProblem>) {
        let polled = result.is_ok();
        if self.lock().record_usage(id, result, Instant::now()) {
            if polled {
                self.publish_usage(id);
            }
            self.publish_changes();
            self.bump();
            self.released.notify_waiters();
        }
    }

    /// Adds the credits an answer's `meteringEvent` reported to provider `id`'s usage (and to
    /// the pool's, when shared).
    pub fn record_metering(&self, id: &str, credits: f64) {
        let counted = self.lock().record_metering(id, credits, Instant::now());
        if counted && let Some(pool) = self.shared_pool() {
            pool.meter(id, credits);
        }
        self.publish_changes();
        self.bump();
    }

    /// Hands provider `id`'s usage report to the shared pool, fresh for its poll interval.
    fn publish_usage(&self, id: &str) {
        let Some(pool) = self.shared_pool() else { return };
        let usage = {
            let st = self.lock();
            st.provider(id).and_then(|p| {
                let fresh_for = p.spec.usage?.refresh_interval;
                let u = p.account.usage.as_ref()?;
                Some((
                    shared::PoolUsage {
                        report: u.report.clone(),
                        checked_at: u.checked_at,
                        metered: u.metered,
                    },
                    fresh_for,
                ))
            })
        };
        if let Some((usage, fresh_for)) = usage {
            pool.publish_usage(id, usage, fresh_for);
        }
    }

    /// Sets provider `id`'s usage as the shared pool knows it (the store's sync): a newer poll
    /// than this instance's replaces it, and the pool's metered credits since the same poll
    /// count when they are more than this instance's own.
    pub fn set_pool_usage(&self, id: &str, usage: shared::PoolUsage) {
        if self.lock().adopt_pool_usage(id, usage, Instant::now()) {
            self.publish_changes();
            self.bump();
            self.released.notify_waiters();
        }
    }

    /// Shared pools only: how long provider `id`'s last usage report (polled by any instance)
    /// stays fresh, so that the usage poller need not ask again. `None`: poll as usual.
    pub fn pool_usage_fresh_for(&self, id: &str) -> Option<Duration> {
        self.shared_pool()?;
        let st = self.lock();
        let p = st.provider(id)?;
        let interval = p.spec.usage?.refresh_interval;
        let age = (chrono::Utc::now() - p.account.usage.as_ref()?.checked_at).to_std().unwrap_or_default();
        interval.checked_sub(age).filter(|left| !left.is_zero())
    }

    /// Sets provider `id`'s model list (protocol notes §7.2); `None` falls back to the tier rule.
    pub fn set_models(&self, id: &str, models: Option<Vec<String>>) {
        self.lock().set_models(id, models);
        self.bump();
    }

    /// What is known about conversation `session`.
    pub fn session(&self, session: &str) -> Option<SessionInfo> {
        self.lock().sessions.info(session, Instant::now())
    }

    /// Providers with usage polling, with their settings.
    pub fn usage_targets(&self) -> Vec<(String, UsageParams)> {
        self.lock().providers.iter().filter_map(|p| p.spec.usage.map(|u| (p.spec.id.clone(), u))).collect()
    }

    /// Providers whose usage should be checked now (taken: each request is served once).
    pub fn take_usage_check_now(&self) -> BTreeSet<String> {
        std::mem::take(&mut self.lock().usage_check_now)
    }

    /// Resolves when a usage check is wanted now (or the config changed).
    pub async fn usage_wanted(&self) {
        self.usage_wake.notified().await;
    }

    /// A plain-data copy of the whole state.
    pub fn snapshot(&self) -> BalancerSnapshot {
        let version = *self.changes.borrow();
        let mut st = self.lock();
        snapshot::build(&mut st, Instant::now(), self.started, self.started_at_unix_ms, version)
    }

    /// A version counter bumped on every state change, for a publisher that rate-limits snapshots.
    /// Time-driven changes (a breaker's reset timeout ending, a cooldown ending) bump nothing: see
    /// [`Balancer::next_timed_change`].
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The next instant at which state changes by the passage of time alone (a breaker turning
    /// half-open, a cooldown or quota exclusion ending): a publisher should also refresh then.
    pub fn next_timed_change(&self) -> Option<Instant> {
        self.lock().next_timed_change(Instant::now())
    }

    /// When the balancer was created.
    pub fn started(&self) -> Instant {
        self.started
    }

    // --- for the health loop ---

    fn health_targets(&self) -> Vec<(String, HealthParams)> {
        self.lock().health_targets()
    }

    fn take_check_now(&self) -> BTreeSet<String> {
        std::mem::take(&mut self.lock().check_now)
    }

    fn set_next_check(&self, id: &str, at: Option<Instant>) {
        if let Some(p) = self.lock().provider_mut(id) {
            p.health.next_check = at;
        }
    }

    fn subscribe_reconfigured(&self) -> watch::Receiver<u64> {
        self.reconfigured.subscribe()
    }

    fn finish_lease(&self, lease: &Lease, outcome: Outcome) {
        // For a pool probe: true = succeeded, false = failed against the breaker, None = neither.
        let outcome_kind = match &outcome {
            Outcome::Success { .. } => Some(true),
            Outcome::Failure { kind, .. } if kind.counts_against_breaker() => Some(false),
            _ => None,
        };
        let now = Instant::now();
        let mut st = self.lock();
        st.finish(
            &lease.picked.provider,
            lease.picked.uid,
            &lease.category,
            lease.picked.probe,
            lease.first_byte.is_some(),
            now.saturating_duration_since(lease.started),
            outcome,
            now,
        );
        let wake_usage = !st.usage_check_now.is_empty();
        let reopen =
            st.provider(&lease.picked.provider).and_then(|p| p.spec.breaker).map(|b| b.reset_timeout);
        drop(st);
        if let (Some(ticket), Some(pool)) = (lease.ticket, self.shared_pool()) {
            // The pool's half-open probe decides the breaker for every instance.
            let probe = match (lease.pool_probe, outcome_kind, reopen) {
                (false, _, _) => ProbeEnd::NotProbe,
                (true, Some(true), _) => ProbeEnd::Closed,
                (true, Some(false), Some(reset)) => ProbeEnd::Reopen(reset),
                (true, _, _) => ProbeEnd::Abandoned,
            };
            pool.release(&lease.picked.provider, ticket, probe);
        }
        self.publish_changes();
        if wake_usage {
            self.usage_wake.notify_one();
        }
        self.bump();
        self.released.notify_waiters();
    }
}

/// A place in the capacity queue, given back on drop (also when the waiting select is cancelled).
struct QueueSlot<'a> {
    balancer: &'a Balancer,
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        let mut st = self.balancer.lock();
        st.waiting = st.waiting.saturating_sub(1);
    }
}

/// One attempt's hold on a provider: counts it in flight from [`Balancer::select`] until the
/// outcome is reported or the lease is dropped (the client went away), exactly once either way.
///
/// Report the first upstream byte with [`Lease::first_byte`] (this decides a half-open probe and
/// feeds the latency estimate), then end with [`Lease::success`], [`Lease::failure`] or
/// [`Lease::neutral`]. Dropping it without an outcome counts as neutral.
#[derive(Debug)]
pub struct Lease {
    balancer: Arc<Balancer>,
    picked: Picked,
    /// The shared pool's lease, given back when this one ends.
    ticket: Option<u64>,
    /// This request is the pool's one half-open probe of the account.
    pool_probe: bool,
    category: String,
    attempt: usize,
    started: Instant,
    queued: Duration,
    first_byte: Option<Duration>,
    done: bool,
    /// Who else hears the answer's metering (see [`with_meter_tap`]).
    tap: Option<tap::Attached>,
}

impl Lease {
    /// The provider's id.
    pub fn id(&self) -> &str {
        &self.picked.provider
    }

    /// The category the request was classified as.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The category of the rule that picked (the category's own, or `default`).
    pub fn rule(&self) -> &str {
        &self.picked.rule
    }

    /// Which attempt of the request this is (1 for the first; one more per excluded provider).
    pub fn attempt(&self) -> usize {
        self.attempt
    }

    /// What happened to the conversation's binding, when the request has a session key and
    /// its rule is sticky.
    pub fn affinity(&self) -> Option<Affinity> {
        self.picked.affinity
    }

    /// Reports credits an answer's `meteringEvent` said it cost.
    pub fn metered(&self, credits: f64) {
        self.balancer.record_metering(&self.picked.provider, credits);
        if let Some(tap) = &self.tap {
            tap.call(&self.picked.provider, &self.category, credits);
        }
    }

    /// Whether this request is its provider's half-open breaker probe.
    pub fn is_probe(&self) -> bool {
        self.picked.probe.is_some()
    }

    /// Whether the provider was used although health checks mark it unhealthy, because every
    /// remaining candidate was.
    pub fn health_override(&self) -> bool {
        self.picked.health_override
    }

    /// How long the selection waited for capacity.
    pub fn queued(&self) -> Duration {
        self.queued
    }

    /// When the lease was granted.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The reported time to first byte, if any.
    pub fn ttfb(&self) -> Option<Duration> {
        self.first_byte
    }

    /// Reports the first upstream frame, `ttfb` after the request was sent. Feeds the latency
    /// estimate and, for a half-open probe, closes the breaker. Later calls are ignored.
    pub fn first_byte(&mut self, ttfb: Duration) {
        if self.first_byte.is_some() || self.done {
            return;
        }
        self.first_byte = Some(ttfb);
        self.balancer.lock().first_byte(
            &self.picked.provider,
            self.picked.uid,
            self.picked.probe,
            ttfb,
            Instant::now(),
        );
        self.balancer.bump();
    }

    /// The answer completed. `total` is the whole request time (used as the latency sample when
    /// no first byte was reported).
    pub fn success(mut self, total: Duration) {
        self.end(Outcome::Success { total });
    }

    /// The attempt failed for the provider's reasons. `detail` is a short description for the
    /// dashboard; it must not contain credentials.
    pub fn failure(mut self, kind: FailureKind, detail: &str) {
        self.end(Outcome::Failure { kind, detail: detail.to_owned() });
    }

    /// The attempt ended without saying anything about the provider (a 400 validation error, a
    /// client that went away).
    pub fn neutral(mut self) {
        self.end(Outcome::Neutral);
    }

    fn end(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let balancer = Arc::clone(&self.balancer);
        balancer.finish_lease(self, outcome);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.end(Outcome::Neutral);
    }
}

#[cfg(test)]
mod tests;

/// The shared pool's question about a local pick.
fn acquire_request(picked: &Picked, session: Option<&str>) -> AcquireRequest {
    AcquireRequest {
        provider: picked.provider.clone(),
        cap: picked.cap,
        session: picked.sticky.and(session).map(|s| (s.to_owned(), picked.rule.clone())),
        previous: picked.previous.clone(),
        sticky_ttl: picked.sticky.unwrap_or_default(),
    }
}

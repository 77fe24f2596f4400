//! The balancer's runtime state, kept behind one mutex in [`super::Balancer`]: per provider its
//! in-flight count, latency estimate, breaker, health, operator overrides, exclusions and counters;
//! per rule its strategy state and pick counts. Everything here is synchronous and takes `now` as
//! an argument; the async parts (queueing, the health loop) live outside.

use super::account::{AccountState, Usage, UsageProblem, until_wall};
use super::affinity::{Affinity, DEFAULT_STICKY_TTL, Sessions};
use super::breaker::{Admission, Breaker, BreakerState};
use super::ewma::PeakEwma;
use super::shared::{Facts, PoolView};
use super::snapshot::{BlockReason, Counters, HealthStatus, SampleSource};
use super::spec::{BalancerSpec, ProviderSpec, RuleSpec, StrategyKind};
use super::strategy::{Candidate, StrategyState};
use super::util::later;
use super::{FailureKind, Placement, SelectError};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// Cooldown after a 429 without a usable `Retry-After`.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);
/// Shortest cooldown after a 429.
pub const MIN_COOLDOWN: Duration = Duration::from_secs(1);
/// Longest cooldown after a 429: a bogus header must not take a provider out for hours.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);
/// How long a provider stays out after `MONTHLY_REQUEST_COUNT` when the upstream names no reset
/// time. The operator's reset command brings it back sooner.
pub const DEFAULT_QUOTA_BACKOFF: Duration = Duration::from_secs(3600);
/// `Retry-After` given while every breaker is half-open with its probe out: the probe is decided
/// at its first frame, which usually comes within a second or two.
pub const HALF_OPEN_RETRY: Duration = Duration::from_secs(1);
/// The category whose rule serves categories that have none.
pub const DEFAULT_CATEGORY: &str = "default";

/// Health as seen by active checks.
#[derive(Debug, Clone)]
pub(crate) struct HealthState {
    pub status: HealthStatus,
    pub consecutive_failures: u32,
    pub last_check: Option<Instant>,
    pub next_check: Option<Instant>,
    pub last_latency: Option<Duration>,
    pub last_error: Option<String>,
}

impl HealthState {
    fn new() -> Self {
        HealthState {
            status: HealthStatus::Unknown,
            consecutive_failures: 0,
            last_check: None,
            next_check: None,
            last_latency: None,
            last_error: None,
        }
    }
}

/// One latency sample kept for the dashboard's history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub at: Instant,
    pub latency: Duration,
    pub source: SampleSource,
}

/// Why a provider cannot take a request now. Several may hold at once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Blocks {
    pub drained: bool,
    pub cooling_until: Option<Instant>,
    pub quota_until: Option<Instant>,
    /// `Some(retry_at)` when the breaker refuses; `retry_at` is unknown while a probe is out.
    pub breaker: Option<Option<Instant>>,
    pub unhealthy: bool,
    pub at_capacity: bool,
    /// Suspended by the upstream (403 "temporarily is suspended").
    pub suspended: bool,
    /// Its login is dead (refresh answered `invalid_grant`).
    pub needs_login: bool,
    /// Its tier or model list does not include the request's model: skipped while another can
    /// serve (when none can, the upstream has the last word).
    pub model_not_served: bool,
    /// At or below its credit reserve: skipped while another can serve.
    pub below_reserve: bool,
}

impl Blocks {
    /// Blocked by something other than health checks and capacity?
    fn hard(&self) -> bool {
        self.drained
            || self.cooling_until.is_some()
            || self.quota_until.is_some()
            || self.breaker.is_some()
            || self.suspended
            || self.needs_login
    }

    /// The reasons, for snapshots.
    pub fn reasons(&self) -> Vec<BlockReason> {
        let mut out = Vec::new();
        if self.drained {
            out.push(BlockReason::Drained);
        }
        if self.cooling_until.is_some() {
            out.push(BlockReason::CoolingDown);
        }
        if self.quota_until.is_some() {
            out.push(BlockReason::QuotaExhausted);
        }
        if self.breaker.is_some() {
            out.push(BlockReason::BreakerOpen);
        }
        if self.unhealthy {
            out.push(BlockReason::Unhealthy);
        }
        if self.at_capacity {
            out.push(BlockReason::AtCapacity);
        }
        if self.suspended {
            out.push(BlockReason::Suspended);
        }
        if self.needs_login {
            out.push(BlockReason::NeedsLogin);
        }
        out
    }

    /// When every time-bounded block has lifted, if the provider has only time-bounded blocks.
    fn free_at(&self, now: Instant) -> Option<Instant> {
        if self.drained || self.unhealthy || self.at_capacity || self.suspended || self.needs_login {
            return None;
        }
        let breaker = match self.breaker {
            Some(Some(t)) => Some(t),
            Some(None) => Some(later(now, HALF_OPEN_RETRY)),
            None => None,
        };
        [self.cooling_until, self.quota_until, breaker].into_iter().flatten().max()
    }
}

/// Runtime state of one provider.
#[derive(Debug)]
pub(crate) struct ProviderState {
    /// Unique per incarnation: a provider removed and re-added by hot reload gets a new one, so a
    /// lease from before cannot decrement the new incarnation's counters.
    pub uid: u64,
    pub spec: ProviderSpec,
    pub in_flight: u32,
    pub ewma: PeakEwma,
    pub breaker: Option<Breaker>,
    pub health: HealthState,
    pub drained: bool,
    pub weight_override: Option<u32>,
    pub cooldown_until: Option<Instant>,
    pub quota_until: Option<Instant>,
    pub totals: Counters,
    pub by_category: BTreeMap<String, Counters>,
    pub last_error: Option<(Instant, String)>,
    pub samples: VecDeque<Sample>,
    /// Credits, tier, model list, suspension, login.
    pub account: AccountState,
    /// What the other instances of a shared pool know about this account (empty alone).
    pub pool: PoolView,
    /// When a pick learnt `pool` from the store directly: a sync read before then is older.
    pub pool_learnt: Option<Instant>,
}

impl ProviderState {
    fn new(uid: u64, spec: ProviderSpec, balancer: &BalancerSpec, now: Instant) -> Self {
        ProviderState {
            uid,
            breaker: spec.breaker.map(Breaker::new),
            ewma: PeakEwma::new(balancer.default_ttfb, balancer.latency_decay, now),
            spec,
            in_flight: 0,
            health: HealthState::new(),
            drained: false,
            weight_override: None,
            cooldown_until: None,
            quota_until: None,
            totals: Counters::default(),
            by_category: BTreeMap::new(),
            last_error: None,
            samples: VecDeque::new(),
            account: AccountState::default(),
            pool: PoolView::default(),
            pool_learnt: None,
        }
    }

    /// This instance's own facts about the account, for publication to a shared pool.
    pub fn facts(&self, now: Instant) -> Facts {
        let open_until = self.breaker.as_ref().and_then(|b| match b.current_state() {
            BreakerState::Closed => None,
            _ => b.opened_at().map(|t| later(t, b.params().reset_timeout)),
        });
        Facts {
            cooling_until: self.cooldown_until.filter(|t| *t > now),
            quota_until: self.quota_until.filter(|t| *t > now),
            suspended: self.account.suspended.is_some(),
            needs_login: self.account.needs_login.is_some(),
            drained: self.drained,
            open_until,
        }
    }

    /// Why this provider cannot take a request now (with time-driven transitions applied).
    pub fn blocks(&mut self, now: Instant) -> Blocks {
        self.blocks_for(now, None)
    }

    /// [`ProviderState::blocks`] for a request of `model` (a Kiro model id), when known.
    pub fn blocks_for(&mut self, now: Instant, model: Option<&str>) -> Blocks {
        if self.cooldown_until.is_some_and(|t| t <= now) {
            self.cooldown_until = None;
        }
        if self.quota_until.is_some_and(|t| t <= now) {
            self.quota_until = None;
        }
        let breaker = match self.breaker.as_mut().map(|b| b.check(now)) {
            Some(Admission::Reject { retry_at }) => Some(retry_at),
            _ => None,
        };
        // The pool's view (other instances of a shared pool) adds to this instance's own.
        let pool = &mut self.pool;
        for t in [&mut pool.cooling_until, &mut pool.quota_until, &mut pool.open_until] {
            if t.is_some_and(|t| t <= now) {
                *t = None;
            }
        }
        let later_of = |a: Option<Instant>, b: Option<Instant>| a.max(b);
        let breaker = breaker.or(pool.open_until.map(Some));
        let in_flight = self.in_flight.saturating_add(pool.others_in_flight);
        Blocks {
            drained: self.drained || pool.drained,
            cooling_until: later_of(self.cooldown_until, pool.cooling_until),
            quota_until: later_of(self.quota_until, pool.quota_until),
            breaker,
            unhealthy: self.health.status == HealthStatus::Unhealthy,
            at_capacity: self.spec.max_concurrent > 0 && in_flight >= self.spec.max_concurrent,
            suspended: self.account.suspended.is_some() || pool.suspended,
            needs_login: self.account.needs_login.is_some() || pool.needs_login,
            model_not_served: !self.account.serves(model),
            below_reserve: self.account.below_reserve(self.spec.usage.map_or(0.0, |u| u.reserve)),
        }
    }

    /// The weight outside any rule: the operator's override, else the configured weight.
    pub fn base_weight(&self) -> u32 {
        self.weight_override.unwrap_or(self.spec.weight)
    }

    pub fn push_sample(&mut self, sample: Sample) {
        let window = self.spec.latency_window;
        if window == 0 {
            return;
        }
        while self.samples.len() >= window {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Applies `f` to the totals and to `category`'s counters.
    fn count(&mut self, category: &str, f: impl Fn(&mut Counters)) {
        f(&mut self.totals);
        f(self.by_category.entry(category.to_owned()).or_default());
    }
}

/// Runtime state of one rule.
#[derive(Debug)]
pub(crate) struct RuleState {
    pub spec: RuleSpec,
    /// Provider ids this rule may pick, in order, all known providers.
    pub candidates: Vec<String>,
    pub strategy: StrategyState,
    /// Picks per candidate.
    pub picks: Vec<u64>,
    /// Operator weight overrides for this rule, by provider id.
    pub overrides: HashMap<String, u32>,
}

impl RuleState {
    /// The weight this rule gives `provider`, before the rule's own run-time override.
    pub fn base_weight(&self, provider: &ProviderState) -> u32 {
        match provider.weight_override {
            Some(w) => w,
            None => self.spec.weights.get(&provider.spec.id).copied().unwrap_or(provider.spec.weight),
        }
    }

    /// The weight this rule uses for `provider`: rule override, provider override, rule weight,
    /// provider weight, in that order.
    pub fn weight(&self, provider: &ProviderState) -> u32 {
        self.overrides.get(&provider.spec.id).copied().unwrap_or_else(|| self.base_weight(provider))
    }
}

/// What the balancer hands to a new lease.
#[derive(Debug, Clone)]
pub(crate) struct Picked {
    pub provider: String,
    pub uid: u64,
    pub rule: String,
    pub probe: Option<u64>,
    pub health_override: bool,
    /// What happened to the conversation's binding (none without a session key or stickiness).
    pub affinity: Option<Affinity>,
    /// The account the conversation was bound to before this pick (sticky rules only).
    pub previous: Option<String>,
    /// The rule's binding lifetime, when the conversation is bound by this pick.
    pub sticky: Option<Duration>,
    /// The provider's concurrency cap (0: none).
    pub cap: u32,
}

/// Result of one synchronous selection attempt.
#[derive(Debug)]
pub(crate) enum Attempt {
    Picked(Picked),
    /// Every usable candidate is at capacity: wait for a release.
    Wait,
    Fail(SelectError),
}

/// How a lease ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Success { total: Duration },
    Failure { kind: FailureKind, detail: String },
    Neutral,
}

/// The whole runtime state.
#[derive(Debug)]
pub(crate) struct State {
    pub spec: BalancerSpec,
    pub providers: Vec<ProviderState>,
    pub provider_index: HashMap<String, usize>,
    pub rules: Vec<RuleState>,
    pub rule_index: HashMap<String, usize>,
    next_uid: u64,
    /// Requests waiting for capacity.
    pub waiting: usize,
    /// Providers whose health check the operator asked to run now.
    pub check_now: BTreeSet<String>,
    /// Providers whose usage should be checked now (after a 429 / 402, or asked for).
    pub usage_check_now: BTreeSet<String>,
    /// Conversation bindings.
    pub sessions: Sessions,
}

impl State {
    pub fn new(spec: BalancerSpec, now: Instant) -> Self {
        let mut state = State {
            spec: BalancerSpec { providers: Vec::new(), rules: Vec::new(), ..spec.clone() },
            providers: Vec::new(),
            provider_index: HashMap::new(),
            rules: Vec::new(),
            rule_index: HashMap::new(),
            next_uid: 1,
            waiting: 0,
            check_now: BTreeSet::new(),
            usage_check_now: BTreeSet::new(),
            sessions: Sessions::new(spec.max_sessions, DEFAULT_STICKY_TTL),
        };
        state.reconfigure(spec, now);
        state
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderState> {
        self.provider_index.get(id).and_then(|&i| self.providers.get(i))
    }

    pub fn provider_mut(&mut self, id: &str) -> Option<&mut ProviderState> {
        let i = *self.provider_index.get(id)?;
        self.providers.get_mut(i)
    }

    /// The provider with this id, if it is still the incarnation `uid`.
    fn incarnation_mut(&mut self, id: &str, uid: u64) -> Option<&mut ProviderState> {
        self.provider_mut(id).filter(|p| p.uid == uid)
    }

    /// The rule serving `category`: its own, else `default`'s.
    pub fn rule_for(&self, category: &str) -> Option<&RuleState> {
        self.rule_index
            .get(category)
            .or_else(|| self.rule_index.get(DEFAULT_CATEGORY))
            .and_then(|&i| self.rules.get(i))
    }

    fn rule_pos(&self, category: &str) -> Option<usize> {
        self.rule_index.get(category).or_else(|| self.rule_index.get(DEFAULT_CATEGORY)).copied()
    }

    /// One synchronous selection attempt for `category`, skipping `excluded`.
    ///
    /// With a session key and a sticky rule, the conversation's bound provider is used while it
    /// is eligible; while it is only at capacity and `patience` holds, the request waits for it.
    pub fn try_pick(
        &mut self,
        category: &str,
        excluded: &[String],
        place: &Placement<'_>,
        patience: bool,
        now: Instant,
    ) -> Attempt {
        let Some(rule_pos) = self.rule_pos(category) else {
            return Attempt::Fail(SelectError::NoRule(category.to_owned()));
        };
        let State { providers, provider_index, rules, sessions, .. } = self;
        let rule = &mut rules[rule_pos];

        // Evaluate every candidate of the rule (the strategy state is indexed by rule position).
        let mut entries: Vec<(usize, Option<Blocks>)> = Vec::with_capacity(rule.candidates.len());
        for id in &rule.candidates {
            let Some(&pi) = provider_index.get(id) else {
                entries.push((usize::MAX, None));
                continue;
            };
            let blocks = if excluded.iter().any(|e| e == id) {
                None
            } else {
                Some(providers[pi].blocks_for(now, place.model))
            };
            entries.push((pi, blocks));
        }
        let live: Vec<&Blocks> = entries.iter().filter_map(|(_, b)| b.as_ref()).collect();
        if live.is_empty() {
            return Attempt::Fail(SelectError::NoCandidates { category: category.to_owned() });
        }

        let health_counts = rule.spec.health_check;
        let health_blocks = |b: &Blocks| health_counts && b.unhealthy;
        let eligible = |b: &Blocks| !(b.hard() || b.at_capacity || health_blocks(b));
        let health_only = |b: &Blocks| health_blocks(b) && !b.hard() && !b.at_capacity;
        let capacity_only = |b: &Blocks| b.at_capacity && !b.hard() && !health_blocks(b);

        let mut health_override = false;
        let mut usable: Vec<bool> = entries.iter().map(|(_, b)| b.as_ref().is_some_and(eligible)).collect();
        if !usable.iter().any(|&u| u) {
            let any_capacity = live.iter().any(|b| capacity_only(b));
            let unhealthy: Vec<bool> =
                entries.iter().map(|(_, b)| b.as_ref().is_some_and(health_only)).collect();
            if !any_capacity && unhealthy.iter().any(|&u| u) {
                let names: Vec<&str> = rule
                    .candidates
                    .iter()
                    .zip(&unhealthy)
                    .filter(|(_, u)| **u)
                    .map(|(id, _)| id.as_str())
                    .collect();
                tracing::warn!(
                    rule = %rule.spec.category,
                    providers = ?names,
                    "every remaining provider is marked unhealthy by health checks; using them anyway"
                );
                usable = unhealthy;
                health_override = true;
            } else if any_capacity {
                return Attempt::Wait;
            } else {
                return Attempt::Fail(unavailable(&live, now));
            }
        }

        // Accounts whose tier lacks the model, then accounts at or below their credit reserve,
        // only serve when nothing else can.
        let soft: [fn(&Blocks) -> bool; 2] = [|b| b.model_not_served, |b| b.below_reserve];
        for skip in soft {
            let preferred: Vec<bool> =
                entries.iter().zip(&usable).map(|((_, b), &u)| u && !b.as_ref().is_some_and(skip)).collect();
            if preferred.iter().any(|&u| u) {
                usable = preferred;
            }
        }

        // Conversation affinity: the bound provider while it is eligible.
        // Not for `single`: it already names the account, and its fallback only stands in while
        // the first provider cannot serve (conversations go back to it).
        let session =
            place.session.filter(|_| rule.spec.sticky && rule.spec.strategy != StrategyKind::Single);
        let previous = session
            .and_then(|s| sessions.bound_to(s, &rule.spec.category, rule.spec.sticky_ttl, now))
            .map(str::to_owned);
        let bound_pos = previous.as_ref().and_then(|bound| rule.candidates.iter().position(|c| c == bound));
        let mut affinity = session.map(|_| if bound_pos.is_some() { Affinity::Moved } else { Affinity::New });
        let kept = bound_pos.filter(|&i| usable[i]);
        if kept.is_none()
            && patience
            && let Some(i) = bound_pos
            && entries[i].1.as_ref().is_some_and(capacity_only)
        {
            return Attempt::Wait;
        }

        let pos = match kept {
            Some(i) => {
                affinity = Some(Affinity::Kept);
                i
            }
            None => {
                let credits_now = (rule.spec.strategy == StrategyKind::Credits).then(chrono::Utc::now);
                let cands: Vec<Candidate> = entries
                    .iter()
                    .zip(&usable)
                    .map(|(&(pi, _), &ok)| match providers.get(pi) {
                        Some(p) => Candidate {
                            eligible: ok,
                            weight: rule.weight(p),
                            in_flight: p.in_flight,
                            latency_ms: p.ewma.value_ms(now),
                            credits: credits_now.and_then(|t| p.account.credits_rate(t)),
                        },
                        None => Candidate {
                            eligible: false,
                            weight: 0,
                            in_flight: 0,
                            latency_ms: 0.0,
                            credits: None,
                        },
                    })
                    .collect();
                let Some(pos) = rule.strategy.pick(&cands) else {
                    return Attempt::Fail(unavailable(&live, now));
                };
                pos
            }
        };
        let pi = entries[pos].0;
        let Some(p) = providers.get_mut(pi) else {
            return Attempt::Fail(unavailable(&live, now));
        };
        let probe = match p.breaker.as_mut().map(|b| b.admit(now)) {
            Some(Admission::Admit { probe }) => probe,
            Some(Admission::Reject { .. }) => return Attempt::Fail(unavailable(&live, now)),
            None => None,
        };
        if probe.is_some() {
            tracing::info!(provider = %p.spec.id, "circuit breaker half-open: sending one probe request");
        }
        p.in_flight += 1;
        p.count(category, |c| c.requests += 1);
        if let Some(n) = rule.picks.get_mut(pos) {
            *n += 1;
        }
        if let Some(s) = session {
            sessions.bind(s, &rule.spec.category, category, &p.spec.id, excluded.is_empty(), now);
        }
        Attempt::Picked(Picked {
            provider: p.spec.id.clone(),
            uid: p.uid,
            rule: rule.spec.category.clone(),
            probe,
            health_override,
            affinity,
            previous,
            sticky: session.map(|_| rule.spec.sticky_ttl),
            cap: p.spec.max_concurrent,
        })
    }

    /// Takes back a pick the shared pool refused: the in-flight slot, the request count, the
    /// rule's pick count and a half-open probe slot.
    pub fn unpick(&mut self, picked: &Picked, category: &str) {
        if let Some(rule) = self.rule_pos(category).and_then(|i| self.rules.get_mut(i))
            && let Some(pos) = rule.candidates.iter().position(|c| *c == picked.provider)
            && let Some(n) = rule.picks.get_mut(pos)
        {
            *n = n.saturating_sub(1);
        }
        let Some(p) = self.incarnation_mut(&picked.provider, picked.uid) else { return };
        p.in_flight = p.in_flight.saturating_sub(1);
        p.count(category, |c| c.requests = c.requests.saturating_sub(1));
        if let Some(b) = p.breaker.as_mut() {
            b.on_neutral(picked.probe);
        }
    }

    /// Records a lease's first upstream byte: feeds the latency estimate and decides a probe.
    pub fn first_byte(&mut self, id: &str, uid: u64, probe: Option<u64>, ttfb: Duration, now: Instant) {
        let Some(p) = self.incarnation_mut(id, uid) else { return };
        p.ewma.observe(ttfb, now);
        p.push_sample(Sample { at: now, latency: ttfb, source: SampleSource::Request });
        if let Some(b) = p.breaker.as_mut() {
            b.on_success(probe, now);
        }
    }

    /// Records how a lease ended and releases its in-flight slot (exactly once per lease; the
    /// lease guarantees that).
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &mut self,
        id: &str,
        uid: u64,
        category: &str,
        probe: Option<u64>,
        first_byte_seen: bool,
        elapsed: Duration,
        outcome: Outcome,
        now: Instant,
    ) {
        let mut check_usage = false;
        let Some(p) = self.incarnation_mut(id, uid) else { return };
        p.in_flight = p.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Success { total } => {
                p.count(category, |c| c.successes += 1);
                if !first_byte_seen {
                    // No first byte was reported: the whole answer time bounds the first byte.
                    p.ewma.observe(total, now);
                    p.push_sample(Sample { at: now, latency: total, source: SampleSource::Request });
                }
                if let Some(b) = p.breaker.as_mut() {
                    b.on_success(probe, now);
                }
            }
            Outcome::Neutral => {
                p.count(category, |c| c.neutral += 1);
                if let Some(b) = p.breaker.as_mut() {
                    b.on_neutral(probe);
                }
            }
            Outcome::Failure { kind, detail } => {
                p.count(category, |c| c.failures += 1);
                p.last_error = Some((now, format!("{kind}: {detail}")));
                match kind {
                    FailureKind::RateLimited { retry_after } => {
                        let wait = retry_after.unwrap_or(DEFAULT_COOLDOWN).clamp(MIN_COOLDOWN, MAX_COOLDOWN);
                        let until = later(now, wait);
                        p.cooldown_until = Some(p.cooldown_until.map_or(until, |t| t.max(until)));
                        tracing::warn!(provider = %p.spec.id, cooldown_secs = wait.as_secs(), "rate limited: cooling down");
                        // Many Kiro 429s are exhausted credits: ask the account.
                        if p.spec.usage.is_some() {
                            check_usage = true;
                        }
                    }
                    FailureKind::QuotaExhausted { until } => {
                        // The reset the account reported wins over the caller's estimate.
                        let reported = p
                            .account
                            .usage
                            .as_ref()
                            .and_then(|u| u.report.reset_at)
                            .map(|at| later(now, until_wall(at, chrono::Utc::now())));
                        let until = reported.or(until).unwrap_or_else(|| later(now, DEFAULT_QUOTA_BACKOFF));
                        p.quota_until = Some(until);
                        tracing::warn!(provider = %p.spec.id, "quota exhausted: out until the quota resets");
                        if p.spec.usage.is_some() {
                            check_usage = true;
                        }
                    }
                    FailureKind::Suspended => {
                        tracing::error!(provider = %p.spec.id, "account suspended by the upstream: out of rotation until reset by the operator");
                        p.account.suspended = Some(detail.clone());
                    }
                    FailureKind::NeedsLogin => {
                        tracing::error!(provider = %p.spec.id, "the account's login is no longer valid: log in again");
                        p.account.needs_login = Some(detail.clone());
                    }
                    FailureKind::Timeout if !first_byte_seen => {
                        // No first byte within the timeout: that is a (lower bound of a) slow sample.
                        p.ewma.observe(elapsed, now);
                    }
                    _ => {}
                }
                if let Some(b) = p.breaker.as_mut() {
                    if kind.counts_against_breaker() {
                        if b.on_failure(probe, now) {
                            tracing::warn!(
                                provider = %p.spec.id,
                                failures = b.failure_count(),
                                "circuit breaker opened"
                            );
                        }
                    } else {
                        b.on_neutral(probe);
                    }
                }
            }
        }
        if check_usage {
            self.usage_check_now.insert(id.to_owned());
        }
    }

    /// Records an active health-check result. Returns false when the provider is unknown.
    pub fn record_probe(&mut self, id: &str, result: Result<Duration, String>, now: Instant) -> bool {
        let Some(p) = self.provider_mut(id) else { return false };
        let retries = p.spec.health.map_or(1, |h| h.retries.max(1));
        p.health.last_check = Some(now);
        match result {
            Ok(latency) => {
                if p.health.status == HealthStatus::Unhealthy {
                    tracing::info!(provider = %p.spec.id, "health check passed: healthy again");
                }
                p.health.status = HealthStatus::Healthy;
                p.health.consecutive_failures = 0;
                p.health.last_latency = Some(latency);
                p.health.last_error = None;
                p.push_sample(Sample { at: now, latency, source: SampleSource::Probe });
            }
            Err(error) => {
                p.health.consecutive_failures = p.health.consecutive_failures.saturating_add(1);
                if p.health.consecutive_failures >= retries && p.health.status != HealthStatus::Unhealthy {
                    tracing::warn!(
                        provider = %p.spec.id,
                        failures = p.health.consecutive_failures,
                        error = %error,
                        "health check failed: marked unhealthy"
                    );
                    p.health.status = HealthStatus::Unhealthy;
                }
                p.last_error = Some((now, format!("health check: {error}")));
                p.health.last_error = Some(error);
            }
        }
        true
    }

    /// Swaps in a new spec in one step, keeping the live state of providers and rules that persist.
    pub fn reconfigure(&mut self, spec: BalancerSpec, now: Instant) {
        let mut old: HashMap<String, ProviderState> =
            self.providers.drain(..).map(|p| (p.spec.id.clone(), p)).collect();
        let mut providers = Vec::with_capacity(spec.providers.len());
        let mut provider_index = HashMap::new();
        for ps in &spec.providers {
            if provider_index.contains_key(&ps.id) {
                continue;
            }
            let state = match old.remove(&ps.id) {
                Some(mut p) => {
                    if p.spec.weight != ps.weight {
                        p.weight_override = None;
                    }
                    p.breaker = match (p.breaker.take(), ps.breaker) {
                        (Some(mut b), Some(params)) => {
                            b.set_params(params);
                            Some(b)
                        }
                        (_, params) => params.map(Breaker::new),
                    };
                    if ps.health.is_none() {
                        p.health = HealthState::new();
                    }
                    p.ewma.retune(spec.default_ttfb, spec.latency_decay);
                    p.spec = ps.clone();
                    while p.samples.len() > p.spec.latency_window {
                        p.samples.pop_front();
                    }
                    p
                }
                None => {
                    let uid = self.next_uid;
                    self.next_uid += 1;
                    ProviderState::new(uid, ps.clone(), &spec, now)
                }
            };
            provider_index.insert(ps.id.clone(), providers.len());
            providers.push(state);
        }

        let mut old_rules: HashMap<String, RuleState> =
            self.rules.drain(..).map(|r| (r.spec.category.clone(), r)).collect();
        let mut rules = Vec::with_capacity(spec.rules.len());
        let mut rule_index = HashMap::new();
        for rs in &spec.rules {
            if rule_index.contains_key(&rs.category) {
                continue;
            }
            let candidates: Vec<String> =
                rs.candidates().into_iter().filter(|id| provider_index.contains_key(id)).collect();
            let fresh = StrategyState::new(rs.strategy, candidates.len());
            let state = match old_rules.remove(&rs.category) {
                Some(old) => {
                    let picks = candidates
                        .iter()
                        .map(|id| old.candidates.iter().position(|o| o == id).map_or(0, |i| old.picks[i]))
                        .collect();
                    let strategy = if old.candidates == candidates && old.strategy.kind() == rs.strategy {
                        old.strategy
                    } else {
                        fresh
                    };
                    let overrides = old
                        .overrides
                        .into_iter()
                        .filter(|(id, _)| {
                            candidates.contains(id) && old.spec.weights.get(id) == rs.weights.get(id)
                        })
                        .collect();
                    RuleState { spec: rs.clone(), candidates, strategy, picks, overrides }
                }
                None => RuleState {
                    spec: rs.clone(),
                    picks: vec![0; candidates.len()],
                    candidates,
                    strategy: fresh,
                    overrides: HashMap::new(),
                },
            };
            rule_index.insert(rs.category.clone(), rules.len());
            rules.push(state);
        }

        self.check_now.retain(|id| provider_index.contains_key(id));
        self.usage_check_now.retain(|id| provider_index.contains_key(id));
        let ttl = rules
            .iter()
            .filter(|r: &&RuleState| r.spec.sticky)
            .map(|r| r.spec.sticky_ttl)
            .max()
            .unwrap_or(DEFAULT_STICKY_TTL);
        self.sessions.set_limits(spec.max_sessions, ttl);
        self.sessions.sweep(now);
        self.providers = providers;
        self.provider_index = provider_index;
        self.rules = rules;
        self.rule_index = rule_index;
        self.spec = BalancerSpec { providers: Vec::new(), rules: Vec::new(), ..spec };
    }

    /// Providers with active health checks, with their parameters.
    pub fn health_targets(&self) -> Vec<(String, super::spec::HealthParams)> {
        self.providers.iter().filter_map(|p| p.spec.health.map(|h| (p.spec.id.clone(), h))).collect()
    }

    /// The earliest instant at which a time-driven change happens (a breaker's reset timeout, a
    /// cooldown or quota exclusion ending), for publishers that refresh snapshots.
    pub fn next_timed_change(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t.filter(|&t| t > now) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for p in &mut self.providers {
            consider(p.cooldown_until);
            consider(p.quota_until);
            if let Some(b) = p.breaker.as_mut() {
                b.poll(now);
                if b.current_state() == super::breaker::BreakerState::Open {
                    consider(b.next_probe_at(now));
                }
            }
        }
        next
    }

    pub fn rule_kind(&self, category: &str) -> Option<StrategyKind> {
        self.rule_for(category).map(|r| r.spec.strategy)
    }
}

/// The error when no live candidate can serve and waiting would not help.
fn unavailable(live: &[&Blocks], now: Instant) -> SelectError {
    let retry_after =
        |t: Option<Instant>| t.unwrap_or(later(now, HALF_OPEN_RETRY)).saturating_duration_since(now);
    if !live.is_empty() && live.iter().all(|b| b.breaker.is_some()) {
        let soonest = live.iter().filter_map(|b| b.breaker).map(retry_after).min().unwrap_or(HALF_OPEN_RETRY);
        return SelectError::AllOpen { retry_after: soonest };
    }
    let soonest = live.iter().filter_map(|b| b.free_at(now)).min().map(|t| t.saturating_duration_since(now));
    SelectError::Unavailable { retry_after: soonest }
}

impl State {
    /// Records a usage check's result for provider `id`. Returns false when it is unknown.
    ///
    /// A report replaces the metered credits counted since the last one. Credits used up make
    /// the account `quota_exhausted` until the reset it reports (else the first of next month,
    /// UTC). A success also ends `needs_login` (the token works again).
    pub fn record_usage(
        &mut self,
        id: &str,
        result: Result<crate::usage::UsageReport, UsageProblem>,
        now: Instant,
    ) -> bool {
        let Some(p) = self.provider_mut(id) else { return false };
        let wall = chrono::Utc::now();
        match result {
            Ok(report) => {
                p.account.usage = Some(Usage { report, metered: 0.0, checked_at: wall });
                p.account.usage_error = None;
                if p.account.needs_login.take().is_some() {
                    tracing::info!(provider = %id, "login works again");
                }
                mark_exhausted(p, now, wall);
            }
            Err(UsageProblem::Suspended(reason)) => {
                tracing::error!(provider = %id, "account suspended by the upstream: out of rotation until reset by the operator");
                p.account.suspended = Some(reason.clone());
                p.account.usage_error = Some(reason);
            }
            Err(UsageProblem::NeedsLogin(reason)) => {
                tracing::error!(provider = %id, "the account's login is no longer valid: log in again");
                p.account.needs_login = Some(reason.clone());
                p.account.usage_error = Some(reason);
            }
            Err(UsageProblem::Other(reason)) => {
                tracing::warn!(provider = %id, "usage check failed: {reason}");
                p.account.usage_error = Some(reason);
            }
        }
        true
    }

    /// Adds the credits one answer's `meteringEvent` reported.
    /// Returns whether they were counted (a known account with a usage report).
    pub fn record_metering(&mut self, id: &str, credits: f64, now: Instant) -> bool {
        let Some(p) = self.provider_mut(id) else { return false };
        let Some(u) = p.account.usage.as_mut() else { return false };
        if credits.is_finite() && credits > 0.0 {
            u.metered += credits;
            mark_exhausted(p, now, chrono::Utc::now());
            return true;
        }
        false
    }

    /// Takes the shared pool's usage of provider `id` when it is newer than this instance's (a
    /// later poll), or the same poll with more credits metered since. Returns whether anything
    /// changed.
    pub fn adopt_pool_usage(&mut self, id: &str, pool: super::shared::PoolUsage, now: Instant) -> bool {
        let Some(p) = self.provider_mut(id) else { return false };
        let pool_at = pool.checked_at.timestamp_millis();
        match p.account.usage.as_mut() {
            Some(u) if u.checked_at.timestamp_millis() > pool_at => return false,
            Some(u) if u.checked_at.timestamp_millis() == pool_at => {
                if pool.metered <= u.metered || !pool.metered.is_finite() {
                    return false;
                }
                u.metered = pool.metered;
            }
            _ => {
                let metered = if pool.metered.is_finite() { pool.metered.max(0.0) } else { 0.0 };
                p.account.usage = Some(Usage { report: pool.report, metered, checked_at: pool.checked_at });
            }
        }
        mark_exhausted(p, now, chrono::Utc::now());
        true
    }

    /// Sets the account's model list (§7.2), replacing the tier rule.
    pub fn set_models(&mut self, id: &str, models: Option<Vec<String>>) {
        if let Some(p) = self.provider_mut(id) {
            p.account.models = models;
        }
    }
}

/// Credits used up: out until the reported reset.
fn mark_exhausted(p: &mut ProviderState, now: Instant, wall: chrono::DateTime<chrono::Utc>) {
    if !p.account.exhausted() || p.quota_until.is_some_and(|t| t > now) {
        return;
    }
    let reset = p
        .account
        .usage
        .as_ref()
        .and_then(|u| u.report.reset_at)
        .filter(|t| *t > wall)
        .unwrap_or_else(|| crate::usage::next_quota_reset(wall));
    p.quota_until = Some(later(now, until_wall(reset, wall)));
    tracing::warn!(provider = %p.spec.id, reset = %reset, "credits used up: out until the reset");
}

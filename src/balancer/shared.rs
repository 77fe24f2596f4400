//! The balancer's side of a pool shared between instances (issue #16): what it asks of the shared
//! store and what it is told. The store itself (Redis) lives in `crate::state`, which implements
//! [`SharedPool`]; without one the balancer is exactly the single-instance balancer.
//!
//! - **On each pick** the balancer picks locally (its view includes the pool's exclusions, kept
//!   fresh by the store's background sync), then calls [`SharedPool::acquire`] once: one round
//!   trip that checks the conversation's pool-wide binding and the account's shared exclusions and
//!   takes a pool-wide concurrency lease. A refusal is applied locally and the pick is made again.
//! - **After a change** of an account's own local facts (a 429 cooldown, a quota exclusion, a
//!   suspension, a dead login, a drain, an open breaker) the balancer hands them to
//!   [`SharedPool::publish`] (fire and forget).
//! - **When a lease ends** its pool lease is given back with [`SharedPool::release`].
//! - **Usage**: a usage poll's report goes to [`SharedPool::publish_usage`], an answer's metered
//!   credits to [`SharedPool::meter`] (both fire and forget); the store's background sync hands
//!   the pool's usage back with [`crate::balancer::Balancer::set_pool_usage`].

use crate::usage::UsageReport;
use chrono::{DateTime, Utc};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

/// What the pool knows about one account besides this instance's own state (merged into the
/// account's blocks: the later of two cooldowns wins, any suspension counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolView {
    pub cooling_until: Option<Instant>,
    pub quota_until: Option<Instant>,
    pub suspended: bool,
    pub needs_login: bool,
    pub drained: bool,
    /// An open breaker elsewhere: no request until then (then one probe for the pool).
    pub open_until: Option<Instant>,
    /// Leases other instances hold on it.
    pub others_in_flight: u32,
}

/// An account's usage as the pool knows it: the latest usage poll by any instance, and the
/// credits every instance metered since that poll.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolUsage {
    pub report: UsageReport,
    /// When the poll was made.
    pub checked_at: DateTime<Utc>,
    /// Credits metered by every instance since the poll.
    pub metered: f64,
}

/// An account's facts as this instance sees them, for publication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub cooling_until: Option<Instant>,
    pub quota_until: Option<Instant>,
    pub suspended: bool,
    pub needs_login: bool,
    pub drained: bool,
    /// The breaker is open until this instant (then half-open).
    pub open_until: Option<Instant>,
}

/// One account's facts to publish: what to set (with time left) and what to clear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publication {
    pub provider: String,
    pub cooling_for: Option<Duration>,
    pub quota_for: Option<Duration>,
    pub suspended: Option<bool>,
    pub needs_login: Option<bool>,
    pub drained: Option<bool>,
    /// `Some(Some(d))`: open for `d`; `Some(None)`: closed (clear it); `None`: unchanged.
    pub open_for: Option<Option<Duration>>,
    pub clear_cooling: bool,
    pub clear_quota: bool,
}

impl Publication {
    /// Whether there is anything to send.
    pub fn is_empty(&self) -> bool {
        self.cooling_for.is_none()
            && self.quota_for.is_none()
            && self.suspended.is_none()
            && self.needs_login.is_none()
            && self.drained.is_none()
            && self.open_for.is_none()
            && !self.clear_cooling
            && !self.clear_quota
    }

    /// The difference between `before` and `after` at `now`. A time-bounded fact that ends
    /// before its time was cleared on purpose (operator reset) and is cleared for the pool too;
    /// one that ran out needs nothing (its key expires by itself).
    pub fn diff(provider: &str, before: &Facts, after: &Facts, now: Instant) -> Publication {
        let left = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now)).filter(|d| !d.is_zero());
        let set = |b: Option<Instant>, a: Option<Instant>| if a != b { left(a) } else { None };
        let cleared = |b: Option<Instant>, a: Option<Instant>| a.is_none() && b.is_some_and(|t| t > now);
        let flag = |b: bool, a: bool| (a != b).then_some(a);
        let open_for = if after.open_until != before.open_until {
            match after.open_until {
                Some(_) => left(after.open_until).map(Some),
                None => Some(None),
            }
        } else {
            None
        };
        Publication {
            provider: provider.to_owned(),
            cooling_for: set(before.cooling_until, after.cooling_until),
            quota_for: set(before.quota_until, after.quota_until),
            suspended: flag(before.suspended, after.suspended),
            needs_login: flag(before.needs_login, after.needs_login),
            drained: flag(before.drained, after.drained),
            open_for,
            clear_cooling: cleared(before.cooling_until, after.cooling_until),
            clear_quota: cleared(before.quota_until, after.quota_until),
        }
    }

    /// Everything cleared (the operator's reset of a provider).
    pub fn reset(provider: &str) -> Publication {
        Publication {
            provider: provider.to_owned(),
            suspended: Some(false),
            needs_login: Some(false),
            open_for: Some(None),
            clear_cooling: true,
            clear_quota: true,
            ..Publication::default()
        }
    }
}

/// An operator's command that must reach every instance's own state, not only the pool's keys:
/// the instance that saw a 429 or drained an account keeps its local fact until told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorWord {
    /// `ResetBreaker`: cooldown, quota exclusion, suspension, dead login and breaker cleared.
    Reset,
    /// `Undrain`: back in rotation.
    Undrain,
    /// Not the operator's: the pool's half-open probe succeeded, so an instance's own open
    /// breaker of the account closes too.
    Closed,
}

impl OperatorWord {
    /// The key kind it is published under.
    pub fn kind(self) -> &'static str {
        match self {
            OperatorWord::Reset => "reset",
            OperatorWord::Undrain => "undrain",
            OperatorWord::Closed => "closed",
        }
    }
}

/// One pick, as the shared pool is asked about it.
#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub provider: String,
    /// The account's `maxConcurrentRequests` (0: no cap).
    pub cap: u32,
    /// Conversation key and rule, when the rule is sticky.
    pub session: Option<(String, String)>,
    /// The account the conversation was bound to here before this pick, if any (a deliberate
    /// move away from it is not overruled).
    pub previous: Option<String>,
    /// The rule's binding lifetime.
    pub sticky_ttl: Duration,
}

/// The pool's answer to a pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// Go ahead; give `ticket` back on [`SharedPool::release`]. `probe`: this request is the
    /// pool's one half-open probe of the account. `kept`: the conversation was already bound
    /// to this account in the pool.
    Granted { ticket: u64, probe: bool, kept: bool },
    /// The pool did not answer (Redis down or slow): go on with the local decision.
    Local,
    /// The conversation is bound to another account in the pool.
    Bound(String),
    /// The account is excluded pool-wide: apply this view and pick again.
    Excluded(PoolView),
    /// The account's pool-wide concurrency cap is reached; others hold this many leases.
    Full { others: u32 },
}

/// How a granted lease that was the pool's half-open probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEnd {
    /// The lease was not a probe.
    NotProbe,
    /// It succeeded: the breaker closes for the pool.
    Closed,
    /// It failed: the breaker opens again for the pool, for this long.
    Reopen(Duration),
    /// It ended without a verdict: another instance may probe.
    Abandoned,
}

/// A boxed future (the trait is object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store shared by the instances of one pool.
pub trait SharedPool: Send + Sync + fmt::Debug {
    /// One round trip for a local pick (bounded; `Acquired::Local` when the store is away).
    fn acquire(&self, req: AcquireRequest) -> BoxFuture<'_, Acquired>;
    /// Gives a granted lease back (does not wait), with how the pool's probe ended if it was one.
    fn release(&self, provider: &str, ticket: u64, probe: ProbeEnd);
    /// Publishes changed local facts (does not wait).
    fn publish(&self, publication: Publication);
    /// Publishes a usage poll's report (metered credits start again from 0); it stays the pool's
    /// for `fresh_for` (does not wait).
    fn publish_usage(&self, provider: &str, usage: PoolUsage, fresh_for: Duration);
    /// Adds credits an answer's metering reported to the pool's count (does not wait).
    fn meter(&self, provider: &str, credits: f64);
    /// Tells the other instances an operator's command (does not wait); each applies it to its
    /// own state ([`crate::balancer::Balancer::apply_pool_word`]).
    fn operator_word(&self, provider: &str, word: OperatorWord);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_published_and_early_ends_are_clears() {
        let now = Instant::now();
        let cooling = Facts { cooling_until: Some(now + Duration::from_secs(30)), ..Facts::default() };
        let p = Publication::diff("a", &Facts::default(), &cooling, now);
        assert_eq!(p.cooling_for, Some(Duration::from_secs(30)));
        assert!(!p.clear_cooling && p.open_for.is_none() && p.suspended.is_none());
        assert!(Publication::diff("a", &cooling, &cooling, now).is_empty());
        // Ended before its time (operator reset): cleared for the pool.
        let cleared = Publication::diff("a", &cooling, &Facts::default(), now);
        assert!(cleared.clear_cooling);
        // Ran out: its key expires by itself, nothing to send.
        let later = now + Duration::from_secs(31);
        assert!(Publication::diff("a", &cooling, &Facts::default(), later).is_empty());
        // A breaker: open publishes the time left, closing clears.
        let open = Facts { open_until: Some(now + Duration::from_secs(60)), ..Facts::default() };
        assert_eq!(
            Publication::diff("a", &Facts::default(), &open, now).open_for,
            Some(Some(Duration::from_secs(60)))
        );
        assert_eq!(Publication::diff("a", &open, &Facts::default(), now).open_for, Some(None));
        let flags = Facts { suspended: true, drained: true, ..Facts::default() };
        let p = Publication::diff("a", &Facts::default(), &flags, now);
        assert_eq!((p.suspended, p.drained, p.needs_login), (Some(true), Some(true), None));
        assert!(Publication::reset("a").clear_quota);
    }
}

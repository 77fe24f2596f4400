//! Where a key's counters live: credits spent this month, the requests-per-minute bucket and the
//! requests in flight. [`KeyCounters`] is the seam: [`MemoryCounters`] keeps them in this
//! process (limits per instance); a shared backend keeps them where every instance sees them
//! (limits pool-wide, counters surviving a restart).

use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The limits one request is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Credits per calendar month (UTC).
    pub monthly_credits: Option<f64>,
    /// Requests per minute (token bucket of that size, refilled evenly over a minute).
    pub requests_per_minute: Option<u32>,
    /// Requests in flight at once.
    pub max_concurrent: Option<u32>,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refused {
    /// The month's credits are spent: `used` of `budget`.
    Budget { used: f64, budget: f64 },
    /// The bucket is empty; one request's worth is back after `retry_after`.
    Rate { per_minute: u32, retry_after: Duration },
    /// `max` requests are in flight already.
    Concurrency { max: u32 },
}

/// What [`KeyCounters::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admit {
    /// Counted (one token taken, one slot held until [`KeyCounters::release`] of `slot`); the
    /// credits spent this month so far.
    Yes { used: f64, slot: u64 },
    /// Refused; nothing was taken.
    No(Refused),
}

/// A backend that could not answer (a shared store that is down). Callers fall back to their
/// local counters; no request fails because of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key counters unavailable: {0}")]
pub struct CountersError(pub String);

/// The counters of every key, by key name; `month` is `YYYY-MM` (UTC).
///
/// `admit` checks every limit and, only if all pass, takes a rate token and a concurrency slot
/// in one step (so a refused request costs nothing). `charge` and `release` never wait: a
/// backend that needs I/O does it in the background.
pub trait KeyCounters: Send + Sync + 'static {
    fn admit<'a>(
        &'a self,
        key: &'a str,
        month: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Admit, CountersError>>;

    /// Give back the concurrency slot `admit` took.
    fn release(&self, key: &str, slot: u64);

    /// Add `credits` to the key's month.
    fn charge(&self, key: &str, month: &str, credits: f64);

    /// Credits spent in `month`, per key asked for (absent: none).
    fn credits<'a>(
        &'a self,
        keys: &'a [String],
        month: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, f64>, CountersError>>;

    /// A word for `/admin/keys`: `memory` (per instance) or the shared backend's name.
    fn backend(&self) -> &'static str;
}

/// One key's counters in memory.
#[derive(Debug, Default)]
struct KeyState {
    month: String,
    credits: f64,
    /// Tokens left and when they were last topped up (`None`: never used, so full).
    bucket: Option<(f64, Instant)>,
    in_flight: u32,
}

impl KeyState {
    fn credits_in(&self, month: &str) -> f64 {
        if self.month == month { self.credits } else { 0.0 }
    }

    fn tokens(&self, per_minute: u32, now: Instant) -> f64 {
        let cap = f64::from(per_minute);
        match self.bucket {
            None => cap,
            Some((tokens, at)) => (tokens + now.duration_since(at).as_secs_f64() * cap / 60.0).min(cap),
        }
    }
}

/// The counters in this process: limits hold per instance; a restart forgets them.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    keys: Mutex<HashMap<String, KeyState>>,
}

impl MemoryCounters {
    /// The decision of [`KeyCounters::admit`], at `now` (tokio's clock: paused in tests).
    pub fn admit_at(&self, key: &str, month: &str, limits: Limits, now: Instant) -> Admit {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let state = keys.entry(key.to_owned()).or_default();
        let used = state.credits_in(month);
        if let Some(budget) = limits.monthly_credits
            && used >= budget
        {
            return Admit::No(Refused::Budget { used, budget });
        }
        let tokens = limits.requests_per_minute.map(|rpm| (rpm, state.tokens(rpm, now)));
        if let Some((per_minute, tokens)) = tokens
            && tokens < 1.0
        {
            let secs = (1.0 - tokens) * 60.0 / f64::from(per_minute);
            let retry_after = Duration::from_secs_f64(secs.max(0.001));
            return Admit::No(Refused::Rate { per_minute, retry_after });
        }
        if let Some(max) = limits.max_concurrent
            && state.in_flight >= max
        {
            return Admit::No(Refused::Concurrency { max });
        }
        if let Some((_, tokens)) = tokens {
            state.bucket = Some((tokens - 1.0, now));
        }
        state.in_flight += 1;
        Admit::Yes { used, slot: 0 }
    }

    fn charge_now(&self, key: &str, month: &str, credits: f64) {
        if !(credits.is_finite() && credits > 0.0) {
            return;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let state = keys.entry(key.to_owned()).or_default();
        if state.month != month {
            state.month = month.to_owned();
            state.credits = 0.0;
        }
        state.credits += credits;
    }

    fn credits_now(&self, keys: &[String], month: &str) -> HashMap<String, f64> {
        let all = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter().filter_map(|k| all.get(k).map(|s| (k.clone(), s.credits_in(month)))).collect()
    }
}

impl KeyCounters for MemoryCounters {
    fn admit<'a>(
        &'a self,
        key: &'a str,
        month: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Admit, CountersError>> {
        let decision = self.admit_at(key, month, limits, Instant::now());
        Box::pin(async move { Ok(decision) })
    }

    fn release(&self, key: &str, _slot: u64) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = keys.get_mut(key) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }

    fn charge(&self, key: &str, month: &str, credits: f64) {
        self.charge_now(key, month, credits);
    }

    fn credits<'a>(
        &'a self,
        keys: &'a [String],
        month: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, f64>, CountersError>> {
        let found = self.credits_now(keys, month);
        Box::pin(async move { Ok(found) })
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "2026-11";

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_one_request_per_share_of_the_minute() {
        let c = MemoryCounters::default();
        let limits = Limits { requests_per_minute: Some(3), ..Limits::default() };
        for _ in 0..3 {
            assert!(matches!(c.admit("a", M, limits).await, Ok(Admit::Yes { .. })));
            c.release("a", 0);
        }
        match c.admit("a", M, limits).await.unwrap() {
            Admit::No(Refused::Rate { per_minute: 3, retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(20))
            }
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_secs(15)).await;
        match c.admit("a", M, limits).await.unwrap() {
            Admit::No(Refused::Rate { retry_after, .. }) => {
                assert_eq!(retry_after.as_millis(), 5000)
            }
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(matches!(c.admit("a", M, limits).await, Ok(Admit::Yes { .. })));
        // Another key has its own bucket.
        assert!(matches!(c.admit("b", M, limits).await, Ok(Admit::Yes { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_slots_come_back_on_release_and_a_refusal_takes_no_token() {
        let c = MemoryCounters::default();
        let limits = Limits { max_concurrent: Some(2), requests_per_minute: Some(3), ..Limits::default() };
        assert!(matches!(c.admit("a", M, limits).await, Ok(Admit::Yes { .. })));
        assert!(matches!(c.admit("a", M, limits).await, Ok(Admit::Yes { .. })));
        assert_eq!(c.admit("a", M, limits).await, Ok(Admit::No(Refused::Concurrency { max: 2 })));
        c.release("a", 0);
        // The refused request took no token: the third one is still there.
        assert!(matches!(c.admit("a", M, limits).await, Ok(Admit::Yes { .. })));
    }

    #[tokio::test]
    async fn the_budget_counts_per_month_and_stops_at_the_limit() {
        let c = MemoryCounters::default();
        let limits = Limits { monthly_credits: Some(1.0), ..Limits::default() };
        assert_eq!(c.admit("a", M, limits).await, Ok(Admit::Yes { used: 0.0, slot: 0 }));
        c.charge("a", M, 0.75);
        c.charge("a", M, f64::NAN);
        c.charge("a", M, -3.0);
        assert_eq!(c.admit("a", M, limits).await, Ok(Admit::Yes { used: 0.75, slot: 0 }));
        c.charge("a", M, 0.25);
        assert_eq!(c.admit("a", M, limits).await, Ok(Admit::No(Refused::Budget { used: 1.0, budget: 1.0 })));
        // A new month starts from nothing.
        assert_eq!(c.admit("a", "2026-12", limits).await, Ok(Admit::Yes { used: 0.0, slot: 0 }));
        let spent = c.credits(&["a".into(), "nobody".into()], M).await.unwrap();
        assert_eq!(spent, HashMap::from([("a".to_string(), 1.0)]));
    }
}

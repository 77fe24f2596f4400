//! Per-provider circuit breaker (design §7), after linkerd's one-probe breaker.
//!
//! - **Closed**: requests flow. Each failure's instant goes into a sliding window; when
//!   `failure_threshold` failures lie within the last `monitoring_period`, the breaker opens.
//! - **Open**: nothing is admitted until `reset_timeout` has passed since it opened.
//! - **HalfOpen**: exactly one request (the *probe*) is admitted. Its outcome is decided at its
//!   first upstream frame, because answers stream for minutes: a first frame (or a success) closes
//!   the breaker and clears the window; a failure before it reopens with a fresh timer. A probe
//!   that ends without an outcome (the client went away) frees the slot for another probe.
//!
//! Probes carry a ticket, so that a probe from an earlier half-open period, or one that outlived an
//! operator's reset, cannot decide the current state.

use super::spec::BreakerParams;
use super::util::later;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use tokio::time::Instant;

/// The breaker's state, spelled as in the seed's dashboard (`CLOSED`, `OPEN`, `HALF_OPEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Requests flow; failures are counted.
    Closed,
    /// Requests are refused until the reset timeout has passed.
    Open,
    /// One probe request may pass.
    HalfOpen,
}

impl BreakerState {
    /// `CLOSED`, `OPEN` or `HALF_OPEN`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
        }
    }
}

/// The answer to "may a request go through now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes; `probe` is the ticket when this request is the half-open probe.
    Admit { probe: Option<u64> },
    /// No; `retry_at` is when a probe will be admitted, if known (unknown while a probe is out).
    Reject { retry_at: Option<Instant> },
}

/// A circuit breaker's state machine. Time is passed in, so it is testable on paused time.
#[derive(Debug, Clone)]
pub struct Breaker {
    params: BreakerParams,
    state: BreakerState,
    /// Failure instants within the monitoring period (pruned lazily).
    failures: VecDeque<Instant>,
    /// When the breaker last opened (kept while open or half-open).
    opened_at: Option<Instant>,
    /// The ticket of the probe currently out, in half-open.
    probe_out: Option<u64>,
    /// Next ticket to hand out.
    next_ticket: u64,
    /// How many times the breaker has opened (for the dashboard).
    times_opened: u64,
    /// What opened it last (kept while open or half-open).
    open_reason: Option<String>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(params: BreakerParams) -> Self {
        Breaker {
            params,
            state: BreakerState::Closed,
            failures: VecDeque::new(),
            opened_at: None,
            probe_out: None,
            next_ticket: 1,
            times_opened: 0,
            open_reason: None,
        }
    }

    /// The parameters in force.
    pub fn params(&self) -> BreakerParams {
        self.params
    }

    /// Replaces the parameters, keeping the state (hot reload).
    pub fn set_params(&mut self, params: BreakerParams) {
        self.params = params;
    }

    fn threshold(&self) -> usize {
        self.params.failure_threshold.max(1) as usize
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&first) = self.failures.front() {
            if later(first, self.params.monitoring_period) <= now {
                self.failures.pop_front();
            } else {
                break;
            }
        }
    }

    /// Applies the time-driven transition Open → HalfOpen once the reset timeout has passed.
    pub fn poll(&mut self, now: Instant) {
        let reset_due = self.opened_at.is_some_and(|opened| later(opened, self.params.reset_timeout) <= now);
        if self.state == BreakerState::Open && reset_due {
            self.state = BreakerState::HalfOpen;
            self.probe_out = None;
            tracing::debug!("circuit breaker half-open: one probe request may pass");
        }
        self.prune(now);
    }

    /// The state at `now` (after the time-driven transition).
    pub fn state(&mut self, now: Instant) -> BreakerState {
        self.poll(now);
        self.state
    }

    /// The state as last polled.
    pub fn current_state(&self) -> BreakerState {
        self.state
    }

    /// Whether a request would be admitted now, without taking the probe slot.
    pub fn check(&mut self, now: Instant) -> Admission {
        self.poll(now);
        match self.state {
            BreakerState::Closed => Admission::Admit { probe: None },
            BreakerState::HalfOpen if self.probe_out.is_none() => {
                Admission::Admit { probe: Some(self.next_ticket) }
            }
            BreakerState::HalfOpen => Admission::Reject { retry_at: None },
            BreakerState::Open => Admission::Reject { retry_at: self.next_probe_at(now) },
        }
    }

    /// Admits a request if possible; in half-open this takes the one probe slot.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let admission = self.check(now);
        if let Admission::Admit { probe: Some(ticket) } = admission {
            self.probe_out = Some(ticket);
            self.next_ticket += 1;
        }
        admission
    }

    fn is_current_probe(&self, ticket: Option<u64>) -> bool {
        self.state == BreakerState::HalfOpen && ticket.is_some() && self.probe_out == ticket
    }

    /// Records a success (or a probe's first frame). The current probe closes the breaker.
    pub fn on_success(&mut self, ticket: Option<u64>, now: Instant) {
        self.poll(now);
        if self.is_current_probe(ticket) {
            self.close();
            tracing::info!("circuit breaker closed: the probe request succeeded");
        }
    }

    /// Records a failure. Returns true when this failure opened (or reopened) the breaker.
    pub fn on_failure(&mut self, ticket: Option<u64>, now: Instant) -> bool {
        self.poll(now);
        self.failures.push_back(now);
        if self.is_current_probe(ticket) {
            self.open(now, "the half-open probe request failed".to_owned());
            return true;
        }
        if self.state == BreakerState::Closed && self.failures.len() >= self.threshold() {
            let reason = format!(
                "{} failures in {}s (threshold {})",
                self.failures.len(),
                self.params.monitoring_period.as_secs_f64().round(),
                self.threshold()
            );
            self.open(now, reason);
            return true;
        }
        false
    }

    /// Records a request that ended without an outcome; a probe's slot is freed for the next one.
    pub fn on_neutral(&mut self, ticket: Option<u64>) {
        if self.is_current_probe(ticket) {
            self.probe_out = None;
        }
    }

    /// Forces the breaker closed and clears the failure window (operator command).
    pub fn reset(&mut self) {
        self.close();
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.failures.clear();
        self.opened_at = None;
        self.probe_out = None;
        self.open_reason = None;
    }

    fn open(&mut self, now: Instant, reason: String) {
        self.open_reason = Some(reason);
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.probe_out = None;
        self.times_opened += 1;
    }

    /// Failures within the monitoring period.
    pub fn failure_count(&self) -> u32 {
        u32::try_from(self.failures.len()).unwrap_or(u32::MAX)
    }

    /// When the breaker last opened, while it is open or half-open.
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    /// When a probe will next be admitted: the end of the reset timeout while open, `now` while
    /// half-open with the slot free, unknown while a probe is out, none while closed.
    pub fn next_probe_at(&self, now: Instant) -> Option<Instant> {
        match self.state {
            BreakerState::Closed => None,
            BreakerState::Open => self.opened_at.map(|t| later(t, self.params.reset_timeout)),
            BreakerState::HalfOpen if self.probe_out.is_none() => Some(now),
            BreakerState::HalfOpen => None,
        }
    }

    /// Whether the half-open probe is out.
    pub fn probe_in_flight(&self) -> bool {
        self.probe_out.is_some()
    }

    /// What opened the breaker, while it is open or half-open ("3 failures in 10s (threshold
    /// 3)"): the window decays while it is open, so the count at that moment is kept.
    pub fn open_reason(&self) -> Option<&str> {
        self.open_reason.as_deref()
    }

    /// How many times the breaker has opened.
    pub fn times_opened(&self) -> u64 {
        self.times_opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::advance;

    fn params() -> BreakerParams {
        BreakerParams {
            failure_threshold: 3,
            monitoring_period: Duration::from_secs(10),
            reset_timeout: Duration::from_secs(30),
        }
    }

    fn now() -> Instant {
        Instant::now()
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_failures_within_the_period() {
        let mut b = Breaker::new(params());
        assert!(!b.on_failure(None, now()));
        advance(Duration::from_secs(1)).await;
        assert!(!b.on_failure(None, now()));
        assert_eq!(b.state(now()), BreakerState::Closed);
        assert_eq!(b.failure_count(), 2);
        advance(Duration::from_secs(1)).await;
        assert!(b.on_failure(None, now()));
        assert_eq!(b.state(now()), BreakerState::Open);
        assert_eq!(b.opened_at(), Some(now()));
        assert_eq!(b.times_opened(), 1);
        assert_eq!(b.check(now()), Admission::Reject { retry_at: Some(now() + Duration::from_secs(30)) });
        // The window decays while open; what opened it is kept as it was.
        advance(Duration::from_secs(20)).await;
        b.poll(now());
        assert_eq!(b.failure_count(), 0);
        assert_eq!(b.open_reason(), Some("3 failures in 10s (threshold 3)"));
        b.reset();
        assert_eq!(b.open_reason(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_outside_the_window_do_not_count() {
        let mut b = Breaker::new(params());
        b.on_failure(None, now());
        b.on_failure(None, now());
        advance(Duration::from_secs(10)).await;
        // The two earlier failures are exactly one period old: out of the window.
        assert!(!b.on_failure(None, now()));
        assert_eq!(b.failure_count(), 1);
        assert_eq!(b.state(now()), BreakerState::Closed);
        advance(Duration::from_secs(9)).await;
        assert!(!b.on_failure(None, now()));
        assert!(b.on_failure(None, now()));
        assert_eq!(b.state(now()), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_in_closed_do_not_reset_the_window() {
        let mut b = Breaker::new(params());
        b.on_failure(None, now());
        b.on_failure(None, now());
        b.on_success(None, now());
        assert!(b.on_failure(None, now()));
    }

    #[tokio::test(start_paused = true)]
    async fn open_turns_half_open_after_reset_timeout() {
        let mut b = Breaker::new(params());
        for _ in 0..3 {
            b.on_failure(None, now());
        }
        let opened = now();
        advance(Duration::from_secs(29)).await;
        assert_eq!(b.state(now()), BreakerState::Open);
        assert_eq!(b.next_probe_at(now()), Some(opened + Duration::from_secs(30)));
        advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(now()), BreakerState::HalfOpen);
        assert_eq!(b.next_probe_at(now()), Some(now()));
        assert_eq!(b.opened_at(), Some(opened));
    }

    fn half_open() -> Breaker {
        let mut b = Breaker::new(params());
        for _ in 0..3 {
            b.on_failure(None, now());
        }
        b
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_exactly_one_probe() {
        let mut b = half_open();
        advance(Duration::from_secs(30)).await;
        let Admission::Admit { probe: Some(ticket) } = b.admit(now()) else {
            panic!("the first request in half-open is the probe");
        };
        assert!(b.probe_in_flight());
        assert_eq!(b.admit(now()), Admission::Reject { retry_at: None });
        assert_eq!(b.check(now()), Admission::Reject { retry_at: None });
        assert_eq!(b.next_probe_at(now()), None);
        b.on_success(Some(ticket), now());
        assert_eq!(b.state(now()), BreakerState::Closed);
        assert_eq!(b.failure_count(), 0);
        assert_eq!(b.opened_at(), None);
        assert_eq!(b.admit(now()), Admission::Admit { probe: None });
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_with_a_fresh_timer() {
        let mut b = half_open();
        advance(Duration::from_secs(30)).await;
        let Admission::Admit { probe } = b.admit(now()) else { panic!("probe admitted") };
        advance(Duration::from_secs(2)).await;
        assert!(b.on_failure(probe, now()));
        let reopened = now();
        assert_eq!(b.state(now()), BreakerState::Open);
        assert_eq!(b.opened_at(), Some(reopened));
        assert_eq!(b.times_opened(), 2);
        advance(Duration::from_secs(29)).await;
        assert_eq!(b.state(now()), BreakerState::Open);
        advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(now()), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn neutral_probe_frees_the_slot() {
        let mut b = half_open();
        advance(Duration::from_secs(30)).await;
        let Admission::Admit { probe } = b.admit(now()) else { panic!("probe admitted") };
        b.on_neutral(probe);
        assert_eq!(b.state(now()), BreakerState::HalfOpen);
        assert!(!b.probe_in_flight());
        let Admission::Admit { probe: second } = b.admit(now()) else { panic!("second probe admitted") };
        assert_ne!(second, probe);
    }

    #[tokio::test(start_paused = true)]
    async fn non_probe_outcomes_do_not_decide_half_open() {
        let mut b = half_open();
        advance(Duration::from_secs(30)).await;
        let Admission::Admit { probe } = b.admit(now()) else { panic!("probe admitted") };
        // A request admitted while closed finishes now: it decides nothing.
        b.on_success(None, now());
        assert!(!b.on_failure(None, now()));
        assert_eq!(b.state(now()), BreakerState::HalfOpen);
        b.on_success(probe, now());
        assert_eq!(b.state(now()), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_probe_after_reset_decides_nothing() {
        let mut b = half_open();
        advance(Duration::from_secs(30)).await;
        let Admission::Admit { probe } = b.admit(now()) else { panic!("probe admitted") };
        b.reset();
        assert_eq!(b.state(now()), BreakerState::Closed);
        assert!(!b.on_failure(probe, now()));
        assert_eq!(b.state(now()), BreakerState::Closed);
        assert_eq!(b.failure_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_closes_an_open_breaker() {
        let mut b = half_open();
        assert_eq!(b.state(now()), BreakerState::Open);
        b.reset();
        assert_eq!(b.state(now()), BreakerState::Closed);
        assert_eq!(b.failure_count(), 0);
        assert_eq!(b.next_probe_at(now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_threshold_opens_on_first_failure() {
        let mut b = Breaker::new(BreakerParams { failure_threshold: 0, ..params() });
        assert!(b.on_failure(None, now()));
    }
}

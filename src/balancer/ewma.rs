//! Peak-EWMA of time to first byte, after tower's `load::peak_ewma` and linkerd's `ewma`, written
//! small so the dashboard can read it.
//!
//! - A sample above the current estimate replaces it at once (the *peak*): a provider that turns
//!   slow is avoided immediately.
//! - A sample below it pulls the estimate down with a time-based weight: `value = value·w +
//!   sample·(1−w)`, `w = exp(−Δt/τ)`, Δt being the time since the previous update. Frequent samples
//!   move it little each; a sample after a long gap nearly replaces it.
//! - An estimate that no sample has refreshed for longer than τ is stale: from then on it decays
//!   toward the default (unmeasured) value with the same τ, so a provider that was slow once and
//!   then received no traffic is tried again. (A grace period of τ, rather than decaying from the
//!   first instant, keeps a steadily sampled estimate at its samples instead of pulling it toward
//!   the default.)

use std::time::Duration;
use tokio::time::Instant;

/// A peak-sensitive, time-decaying latency estimate in milliseconds.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    /// Estimate at `updated`, in ms.
    value_ms: f64,
    /// When `value_ms` was last set by a sample.
    updated: Instant,
    /// Decay time constant, in seconds (> 0).
    tau_secs: f64,
    /// The value assumed when unmeasured and decayed back to when idle, in ms.
    default_ms: f64,
    /// Whether any sample has been seen.
    measured: bool,
    /// The most recent sample, in ms.
    last_sample_ms: Option<f64>,
}

/// Smallest τ accepted; a zero τ would make every sample replace the estimate.
const MIN_TAU: Duration = Duration::from_millis(1);

impl PeakEwma {
    /// An unmeasured estimate that reads as `default` until the first sample.
    pub fn new(default: Duration, tau: Duration, now: Instant) -> Self {
        let default_ms = duration_ms(default);
        PeakEwma {
            value_ms: default_ms,
            updated: now,
            tau_secs: tau.max(MIN_TAU).as_secs_f64(),
            default_ms,
            measured: false,
            last_sample_ms: None,
        }
    }

    /// Changes τ and the default (hot reload), keeping the last sample-driven value and its age.
    pub fn retune(&mut self, default: Duration, tau: Duration) {
        self.tau_secs = tau.max(MIN_TAU).as_secs_f64();
        self.default_ms = duration_ms(default);
        if !self.measured {
            self.value_ms = self.default_ms;
        }
    }

    /// The weight `exp(−Δt/τ)` of the old estimate after `since` has passed.
    fn keep_weight(&self, since: Duration) -> f64 {
        (-since.as_secs_f64() / self.tau_secs).exp()
    }

    /// The estimate at `now`, in ms: the last value, decayed toward the default for the time it
    /// has been stale (unrefreshed for more than τ).
    pub fn value_ms(&self, now: Instant) -> f64 {
        if !self.measured {
            return self.default_ms;
        }
        let idle = now.saturating_duration_since(self.updated).as_secs_f64();
        let stale = idle - self.tau_secs;
        if stale <= 0.0 || self.value_ms <= self.default_ms {
            return self.value_ms;
        }
        let w = (-stale / self.tau_secs).exp();
        self.default_ms + (self.value_ms - self.default_ms) * w
    }

    /// Records one sample observed at `now`.
    pub fn observe(&mut self, sample: Duration, now: Instant) {
        let sample_ms = duration_ms(sample);
        self.last_sample_ms = Some(sample_ms);
        if !self.measured {
            self.measured = true;
            self.value_ms = sample_ms;
            self.updated = now;
            return;
        }
        let current = self.value_ms(now);
        self.value_ms = if sample_ms > current {
            sample_ms
        } else {
            let w = self.keep_weight(now.saturating_duration_since(self.updated));
            current * w + sample_ms * (1.0 - w)
        };
        self.updated = now;
    }

    /// Whether any sample has been seen.
    pub fn is_measured(&self) -> bool {
        self.measured
    }

    /// The most recent sample, in ms.
    pub fn last_sample_ms(&self) -> Option<f64> {
        self.last_sample_ms
    }

    /// The unmeasured / idle value, in ms.
    pub fn default_ms(&self) -> f64 {
        self.default_ms
    }
}

/// A duration as fractional milliseconds.
pub(crate) fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAU: Duration = Duration::from_secs(10);
    const DEFAULT: Duration = Duration::from_millis(250);

    #[tokio::test(start_paused = true)]
    async fn unmeasured_reads_default() {
        let e = PeakEwma::new(DEFAULT, TAU, Instant::now());
        assert!(!e.is_measured());
        assert_eq!(e.value_ms(Instant::now()), 250.0);
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(e.value_ms(Instant::now()), 250.0);
    }

    #[tokio::test(start_paused = true)]
    async fn first_sample_replaces_default() {
        let mut e = PeakEwma::new(DEFAULT, TAU, Instant::now());
        e.observe(Duration::from_millis(100), Instant::now());
        assert!(e.is_measured());
        assert_eq!(e.value_ms(Instant::now()), 100.0);
        assert_eq!(e.last_sample_ms(), Some(100.0));
    }

    #[tokio::test(start_paused = true)]
    async fn rises_at_once_on_a_slow_sample_and_decays_back() {
        let mut e = PeakEwma::new(DEFAULT, TAU, Instant::now());
        e.observe(Duration::from_millis(100), Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        e.observe(Duration::from_millis(2000), Instant::now());
        // Peak: the slow sample is the estimate immediately.
        assert_eq!(e.value_ms(Instant::now()), 2000.0);

        // Fast samples every second pull it back down; each step keeps exp(−0.1) of the gap.
        let mut previous = 2000.0;
        for _ in 0..60 {
            tokio::time::advance(Duration::from_secs(1)).await;
            e.observe(Duration::from_millis(100), Instant::now());
            let v = e.value_ms(Instant::now());
            assert!(v < previous, "{v} should be below {previous}");
            previous = v;
        }
        assert!(previous < 110.0, "after 60 s of fast samples the estimate is {previous}");
        assert!(previous > 100.0);
    }

    #[tokio::test(start_paused = true)]
    async fn one_step_of_decay_matches_the_formula() {
        let mut e = PeakEwma::new(DEFAULT, TAU, Instant::now());
        e.observe(Duration::from_millis(1000), Instant::now());
        tokio::time::advance(TAU).await;
        // Not yet stale (refreshed within τ): still 1000.
        assert_eq!(e.value_ms(Instant::now()), 1000.0);
        e.observe(Duration::from_millis(250), Instant::now());
        let w = (-1.0f64).exp();
        let expected = 1000.0 * w + 250.0 * (1.0 - w);
        assert!((e.value_ms(Instant::now()) - expected).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn steady_samples_converge_to_the_sample_not_the_default() {
        let mut e = PeakEwma::new(DEFAULT, TAU, Instant::now());
        e.observe(Duration::from_millis(1000), Instant::now());
        for _ in 0..300 {
            tokio::time::advance(Duration::from_millis(500)).await;
            e.observe(Duration::from_millis(600), Instant::now());
        }
        assert!((e.value_ms(Instant::now()) - 600.0).abs() < 0.01);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_estimate_decays_toward_default() {
        let mut e = PeakEwma::new(DEFAULT, TAU, Instant::now());
        e.observe(Duration::from_millis(5000), Instant::now());
        tokio::time::advance(TAU).await;
        assert_eq!(e.value_ms(Instant::now()), 5000.0);
        tokio::time::advance(TAU).await;
        let after_stale_tau = e.value_ms(Instant::now());
        assert!((after_stale_tau - (250.0 + 4750.0 * (-1.0f64).exp())).abs() < 1e-9);
        tokio::time::advance(Duration::from_secs(200)).await;
        assert!((e.value_ms(Instant::now()) - 250.0).abs() < 0.01);
        // A sample after the long gap nearly replaces the (default-like) estimate.
        e.observe(Duration::from_millis(300), Instant::now());
        assert_eq!(e.value_ms(Instant::now()), 300.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_estimate_below_the_default_does_not_rise() {
        let mut e = PeakEwma::new(DEFAULT, TAU, Instant::now());
        e.observe(Duration::from_millis(120), Instant::now());
        for _ in 0..5 {
            tokio::time::advance(TAU * 10).await;
            assert_eq!(e.value_ms(Instant::now()), 120.0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn samples_at_the_same_instant_below_the_estimate_do_not_move_it() {
        let mut e = PeakEwma::new(DEFAULT, TAU, Instant::now());
        e.observe(Duration::from_millis(800), Instant::now());
        e.observe(Duration::from_millis(100), Instant::now());
        assert_eq!(e.value_ms(Instant::now()), 800.0);
        e.observe(Duration::from_millis(900), Instant::now());
        assert_eq!(e.value_ms(Instant::now()), 900.0);
    }

    #[tokio::test(start_paused = true)]
    async fn retune_keeps_the_current_estimate() {
        let mut e = PeakEwma::new(DEFAULT, TAU, Instant::now());
        e.observe(Duration::from_millis(700), Instant::now());
        e.retune(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(e.value_ms(Instant::now()), 700.0);
        assert_eq!(e.default_ms(), 100.0);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(e.value_ms(Instant::now()), 700.0);
        tokio::time::advance(Duration::from_secs(5)).await;
        let expected = 100.0 + 600.0 * (-1.0f64).exp();
        assert!((e.value_ms(Instant::now()) - expected).abs() < 1e-9);
    }
}

//! Small time helpers shared by the balancer's parts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use tokio::time::Instant;

/// Longest span added to an instant: durations from config or upstream headers are capped here so
/// that instant arithmetic can never overflow (and so never panic).
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `t + d`, saturating at a far-future instant instead of overflowing.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d.min(FAR_FUTURE)).unwrap_or(t)
}

/// Milliseconds from `base` to `t` (0 when `t` is earlier), for snapshots.
pub(crate) fn ms_since(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX)
}

/// Spread of a background schedule: each wait is its interval × a random factor in [0.9, 1.1],
/// so accounts do not align.
pub(crate) const JITTER: f64 = 0.1;

/// `interval` (at least `floor`) scaled by a random factor in [1 − JITTER, 1 + JITTER].
pub(crate) fn jittered(interval: Duration, floor: Duration, rng: &mut StdRng) -> Duration {
    interval.max(floor).mul_f64(rng.random_range((1.0 - JITTER)..=(1.0 + JITTER)))
}

/// The random source of a background schedule: seeded for reproducible tests, else from the OS.
pub(crate) fn schedule_rng(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

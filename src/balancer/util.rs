//! Small time helpers shared by the balancer's parts.

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

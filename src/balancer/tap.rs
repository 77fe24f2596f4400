//! Who else hears what an answer cost: a per-request metering tap.
//!
//! The proxy's key enforcement (`crate::keys`) has to charge each answer's credits to the
//! developer who asked, but the answer's metering reaches only the [`Lease`](super::Lease).
//! Rather than thread the developer through every handler, the key middleware runs the request
//! inside [`with_meter_tap`]; every lease granted while it runs (on that task) carries the tap
//! and calls it from [`Lease::metered`](super::Lease::metered), wherever the lease is later
//! used (a streaming answer outlives the handler). The balancer knows nothing of keys.

use std::sync::Arc;

/// Called with `(provider, category, credits)` for each metered answer.
pub type MeterTap = Arc<dyn Fn(&str, &str, f64) + Send + Sync>;

tokio::task_local! {
    static METER_TAP: MeterTap;
}

/// Run `future` with `tap` attached to every lease it is granted.
pub async fn with_meter_tap<F: Future>(tap: MeterTap, future: F) -> F::Output {
    METER_TAP.scope(tap, future).await
}

/// The tap of the request running on this task, if any.
pub(super) fn current() -> Option<MeterTap> {
    METER_TAP.try_with(Clone::clone).ok()
}

/// A lease's tap (a newtype so that `Lease` stays `Debug`).
#[derive(Clone)]
pub(super) struct Attached(MeterTap);

impl Attached {
    /// The tap of the request running on this task, if any.
    pub(super) fn current() -> Option<Attached> {
        current().map(Attached)
    }

    pub(super) fn call(&self, provider: &str, category: &str, credits: f64) {
        (self.0)(provider, category, credits);
    }
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeterTap")
    }
}

//! The usage poller: asks every account with `usage.enabled` for its `getUsageLimits` on start,
//! then every `usage.refreshInterval` (±10 % jitter so accounts do not align), and at once when
//! the balancer wants a check (after a 429 or a 402, or the operator's `usage-check`). Results go
//! to [`Balancer::record_usage`]. One task; checks run concurrently; it follows hot reloads and
//! ends on shutdown.

use crate::balancer::{Balancer, MIN_USAGE_REFRESH};
use crate::usage::{UsageProblem, UsageReport};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// One usage check of the provider with this id.
pub(super) type UsageFn =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<UsageReport, UsageProblem>> + Send + Sync>;

/// `interval` scaled by a random factor in [0.9, 1.1].
fn jittered(interval: Duration, rng: &mut StdRng) -> Duration {
    crate::balancer::jittered(interval, MIN_USAGE_REFRESH, rng)
}

/// Spawns the poller; `rng_seed` makes the jitter reproducible (tests).
pub(super) fn spawn_usage_poller(
    balancer: Arc<Balancer>,
    check: UsageFn,
    shutdown: watch::Receiver<bool>,
    rng_seed: Option<u64>,
) -> JoinHandle<()> {
    tokio::spawn(run(balancer, check, shutdown, crate::balancer::schedule_rng(rng_seed)))
}

struct Target {
    interval: Duration,
    due: Instant,
    checking: bool,
    /// A check was asked for while one was running: run another when it ends.
    again: bool,
    /// The next check was asked for: it runs even if the pool's report is fresh.
    forced: bool,
}

async fn run(balancer: Arc<Balancer>, check: UsageFn, mut shutdown: watch::Receiver<bool>, mut rng: StdRng) {
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let mut running = FuturesUnordered::new();
    loop {
        let now = Instant::now();
        // Follow the config: new providers are checked at once.
        let current = balancer.usage_targets();
        targets.retain(|id, _| current.iter().any(|(c, _)| c == id));
        for (id, params) in current {
            let t = targets.entry(id).or_insert(Target {
                interval: params.refresh_interval,
                due: now,
                checking: false,
                again: false,
                forced: false,
            });
            if t.interval != params.refresh_interval {
                t.interval = params.refresh_interval;
                t.due = t.due.min(now + jittered(t.interval, &mut rng));
            }
        }
        for id in balancer.take_usage_check_now() {
            if let Some(t) = targets.get_mut(&id) {
                if t.checking {
                    t.again = true;
                } else {
                    t.due = now;
                    t.forced = true;
                }
            }
        }
        for (id, t) in targets.iter_mut() {
            if !t.checking && t.due <= now {
                if !std::mem::take(&mut t.forced)
                    && let Some(fresh) = balancer.pool_usage_fresh_for(id)
                {
                    // Another instance polled it lately: its report is the pool's.
                    t.due = now + fresh + jittered(t.interval, &mut rng) / 20;
                    continue;
                }
                t.checking = true;
                let check = check.clone();
                let id = id.clone();
                running.push(async move {
                    let result = check(id.clone()).await;
                    (id, result)
                });
            }
        }
        let next_due = targets.values().filter(|t| !t.checking).map(|t| t.due).min();
        let sleep = sleep_until(next_due.unwrap_or(now + Duration::from_secs(3600)));
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
            }
            Some((id, result)) = running.next(), if !running.is_empty() => {
                balancer.record_usage(&id, result);
                if let Some(t) = targets.get_mut(&id) {
                    t.checking = false;
                    t.due = if std::mem::take(&mut t.again) {
                        t.forced = true;
                        Instant::now()
                    } else {
                        Instant::now() + jittered(t.interval, &mut rng)
                    };
                }
            }
            () = balancer.usage_wanted() => {}
            () = sleep => {}
        }
        if shutdown.has_changed().is_err() {
            return;
        }
    }
}

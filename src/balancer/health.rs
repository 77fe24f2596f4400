//! The active health-check loop (design §7), after pingora's background service: one task that
//! sleeps until the next probe is due, runs probes concurrently under their timeout, records each
//! result on the balancer and reschedules with ±10 % jitter. It follows hot reloads, runs a probe
//! at once when the operator asks, and ends promptly on shutdown (in-flight probes are dropped).

use super::Balancer;
use super::spec::HealthParams;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use rand::Rng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// A health probe: given a provider id, checks it and returns the probe's latency or an error
/// description (which must not contain credentials). The error is a `String` on purpose: the
/// balancer only stores and shows it (`health.last_error`); it never branches on its kind, and the
/// probe belongs to a provider the balancer must not know.
pub type ProbeFn = Arc<dyn Fn(String) -> BoxFuture<'static, Result<Duration, String>> + Send + Sync>;

/// Shortest interval between probes of one provider: a zero interval in a config must not turn
/// the loop into a busy spin.
pub const MIN_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// Jitter applied to each interval, as a fraction (±10 %), so providers' probes do not align.
use super::util::JITTER;

/// Schedule of one provider's probes.
#[derive(Debug)]
struct Target {
    params: HealthParams,
    due: Instant,
    probing: bool,
}

/// Spawns the health loop. It probes every provider that has [`HealthParams`], follows
/// [`Balancer::reconfigure`], answers [`super::Command::CheckNow`], and returns when `shutdown`
/// becomes true or its sender is dropped. `rng_seed` makes the jitter reproducible (tests).
pub fn spawn_health_loop(
    balancer: Arc<Balancer>,
    probe: ProbeFn,
    shutdown: watch::Receiver<bool>,
    rng_seed: Option<u64>,
) -> JoinHandle<()> {
    tokio::spawn(run(balancer, probe, shutdown, super::util::schedule_rng(rng_seed)))
}

/// `interval` (at least [`MIN_HEALTH_INTERVAL`]) scaled by a random factor in [0.9, 1.1].
fn jittered(interval: Duration, rng: &mut StdRng) -> Duration {
    super::util::jittered(interval, MIN_HEALTH_INTERVAL, rng)
}

/// First probe: within the first 10 % of the interval, spread across providers.
fn initial_delay(interval: Duration, rng: &mut StdRng) -> Duration {
    interval.max(MIN_HEALTH_INTERVAL).mul_f64(rng.random_range(0.0..=JITTER))
}

/// Brings the schedule in line with the balancer's current providers.
fn sync_targets(balancer: &Balancer, targets: &mut BTreeMap<String, Target>, rng: &mut StdRng, now: Instant) {
    let current = balancer.health_targets();
    targets.retain(|id, _| current.iter().any(|(c, _)| c == id));
    for (id, params) in current {
        match targets.get_mut(&id) {
            Some(t) => {
                if t.params.interval != params.interval && !t.probing {
                    t.due = t.due.min(super::util::later(now, jittered(params.interval, rng)));
                    balancer.set_next_check(&id, Some(t.due));
                }
                t.params = params;
            }
            None => {
                let due = super::util::later(now, initial_delay(params.interval, rng));
                balancer.set_next_check(&id, Some(due));
                targets.insert(id, Target { params, due, probing: false });
            }
        }
    }
}

/// Runs one probe under its timeout.
async fn probe_one(probe: ProbeFn, id: String, timeout: Duration) -> (String, Result<Duration, String>) {
    let result = match tokio::time::timeout(timeout, probe(id.clone())).await {
        Ok(result) => result,
        Err(_) => Err(format!("health check timed out after {} ms", timeout.as_millis())),
    };
    (id, result)
}

async fn run(balancer: Arc<Balancer>, probe: ProbeFn, mut shutdown: watch::Receiver<bool>, mut rng: StdRng) {
    let mut reconfigured = balancer.subscribe_reconfigured();
    reconfigured.mark_unchanged();
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    sync_targets(&balancer, &mut targets, &mut rng, Instant::now());
    let mut running = FuturesUnordered::new();

    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        let now = Instant::now();
        for (id, t) in targets.iter_mut() {
            if !t.probing && t.due <= now {
                t.probing = true;
                balancer.set_next_check(id, None);
                running.push(probe_one(Arc::clone(&probe), id.clone(), t.params.timeout));
            }
        }
        let next_due = targets.values().filter(|t| !t.probing).map(|t| t.due).min();
        let wait_due = async move {
            match next_due {
                Some(t) => sleep_until(t).await,
                None => std::future::pending().await,
            }
        };

        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some((id, result)) = running.next(), if !running.is_empty() => {
                balancer.record_probe(&id, result);
                if let Some(t) = targets.get_mut(&id) {
                    t.probing = false;
                    t.due = super::util::later(Instant::now(), jittered(t.params.interval, &mut rng));
                    balancer.set_next_check(&id, Some(t.due));
                }
            }
            () = balancer.health_wake.notified() => {
                let now = Instant::now();
                for id in balancer.take_check_now() {
                    if let Some(t) = targets.get_mut(&id).filter(|t| !t.probing) {
                        t.due = now;
                    }
                }
            }
            changed = reconfigured.changed() => {
                if changed.is_ok() {
                    sync_targets(&balancer, &mut targets, &mut rng, Instant::now());
                }
            }
            () = wait_due => {}
        }
    }
    tracing::debug!("health loop stopped");
}

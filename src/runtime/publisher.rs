//! The snapshot publisher: builds the [`crate::snapshot`] view of the instance and publishes it
//! on a watch channel, when the balancer reports a change (coalesced to at most one per
//! [`MIN_PUBLISH_INTERVAL`]), when a time-driven transition is due, when the instance signals a
//! change the balancer does not see ([`Runtime::snapshot_changed`]: a reload), and at least every
//! [`REFRESH_INTERVAL`]; never once per request.

use super::Runtime;
use crate::snapshot::{Inputs, Snapshot, SnapshotBuilder};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Shortest time between two published snapshots: a burst of balancer changes (every request
/// start and end is one) is coalesced into at most ten snapshots a second.
pub(super) const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// Longest time between two published snapshots, so that clocks, the request rate, decaying
/// latency estimates and token expiry stay current while nothing "changes".
pub(super) const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The publishing side of the snapshot channel and the builder's memory. One per [`Runtime`].
#[derive(Debug)]
pub(super) struct Publisher {
    tx: watch::Sender<Arc<Snapshot>>,
    /// Wakes the publisher for changes the balancer does not see (reload results).
    poke: Notify,
    builder: SnapshotBuilder,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher {
            tx: watch::channel(Arc::new(Snapshot::empty())).0,
            poke: Notify::new(),
            builder: SnapshotBuilder::default(),
        }
    }
}

impl Runtime {
    /// A snapshot built now (for request-driven readers such as the monitoring endpoints, which
    /// must show the effect of an admin call made just before).
    pub(crate) fn snapshot_now(&self) -> Snapshot {
        let live = self.live();
        let token = |id: &str| live.clients.get(id).map(|c| c.token_status());
        self.publisher.builder.build(Inputs {
            balancer: self.balancer.snapshot(),
            state: self.state.status(),
            config: &live.config,
            token: &token,
            reload: self.reload_status(),
            started_at: self.started_at,
            listen: self.listen_addr(),
            config_path: self.source.label(),
            requests_total: self.requests_total.load(Ordering::Relaxed),
            now: Instant::now(),
            keys: self.keys.view(),
        })
    }

    /// The published snapshots. The first call before the publisher has run publishes one, so a
    /// reader never starts from an empty snapshot. Clone the `Arc` out of `borrow()` and drop the
    /// guard before awaiting or drawing.
    pub(crate) fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        if self.publisher.tx.borrow().seq == 0 {
            self.publish_snapshot();
        }
        self.publisher.tx.subscribe()
    }

    /// The latest published snapshot.
    #[cfg(test)]
    pub(crate) fn latest_snapshot(&self) -> Arc<Snapshot> {
        self.publisher.tx.borrow().clone()
    }

    /// Build and publish a snapshot now.
    pub(crate) fn publish_snapshot(&self) {
        let snapshot = Arc::new(self.snapshot_now());
        self.publisher.tx.send_if_modified(|current| {
            // A concurrent build may have published a newer one: keep the newest.
            if snapshot.seq > current.seq {
                *current = snapshot;
                true
            } else {
                false
            }
        });
    }

    /// Ask the publisher for a fresh snapshot soon: for changes the balancer does not count
    /// (a reload's result). Called once per reload, by [`Runtime::reload`].
    pub(super) fn snapshot_changed(&self) {
        self.publisher.poke.notify_one();
    }
}

/// Publishes snapshots of `rt` until `shutdown` turns true (see the module docs for when).
pub(super) fn spawn_publisher(rt: Arc<Runtime>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = rt.balancer.subscribe_changes();
        loop {
            if *shutdown.borrow() {
                break;
            }
            changes.borrow_and_update();
            rt.publish_snapshot();
            let published = Instant::now();

            let refresh = published + REFRESH_INTERVAL;
            let wake = rt.balancer.next_timed_change().map_or(refresh, |t| t.min(refresh));
            tokio::select! {
                _ = shutdown.changed() => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = rt.publisher.poke.notified() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
            // Coalesce a burst: wait out the rest of the minimum interval.
            tokio::select! {
                _ = shutdown.changed() => {}
                () = tokio::time::sleep_until(published + MIN_PUBLISH_INTERVAL) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::Command;
    use crate::config::{ConfigSource, parse_config};
    use crate::snapshot::ProviderStatus;

    const CONFIG: &str = r#"{
      "name": "test",
      "routing": {"rules": {
        "default": {"providers": ["a", "b"], "model": "M1",
                    "loadBalancing": {"strategy": "weighted-round-robin", "weights": {"a": 3, "b": 1}}}
      }},
      "providers": {
        "a": {"name": "Account A", "weight": 3, "endpoint": "http://127.0.0.1:9",
              "tokenPath": "/nonexistent/ccr-test/a.json"},
        "b": {"endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/ccr-test/b.json",
              "healthCheck": {"interval": 30000, "timeout": 1000, "retries": 2}}
      }
    }"#;

    fn runtime() -> Arc<Runtime> {
        Runtime::new(parse_config(CONFIG).expect("test config"), ConfigSource::Embedded)
    }

    #[test]
    fn snapshot_combines_balancer_and_runtime() {
        let rt = runtime();
        let s = rt.snapshot_now();
        assert_eq!(s.config_name.as_deref(), Some("test"));
        assert_eq!(s.config_path, "built-in default");
        let a = s.provider("a").expect("a");
        assert_eq!(a.name, "Account A");
        assert_eq!(a.status, ProviderStatus::Healthy);
        assert_eq!(a.effective_weight, 3);
        assert!(a.available);
        let b = s.provider("b").expect("b");
        assert_eq!(b.name, "b");
        assert_eq!(b.status, ProviderStatus::Unknown, "health checks on, none finished");
        assert_eq!(s.rule("default").and_then(|r| r.model.as_deref()), Some("M1"));
        assert!(s.any_available());
        assert!(s.reload.ok);
        // Round trip: what `ccr status` reads back.
        let json = serde_json::to_string(&s).expect("serialise");
        let back: Snapshot = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, s);
    }

    #[test]
    fn status_follows_the_most_severe_condition() {
        let rt = runtime();
        rt.balancer.apply(Command::Drain("a".into())).expect("drain");
        rt.balancer
            .apply(Command::SetWeight { provider: "b".into(), rule: None, weight: 5 })
            .expect("weight");
        let s = rt.snapshot_now();
        let a = s.provider("a").expect("a");
        assert_eq!(a.status, ProviderStatus::Draining);
        assert!(a.status_reason.as_deref().is_some_and(|r| r.contains("drained")));
        assert!(!a.available);
        assert_eq!(s.provider("b").map(|b| b.effective_weight), Some(5));
        rt.balancer.apply(Command::Drain("b".into())).expect("drain");
        assert!(!rt.snapshot_now().any_available());
    }

    #[tokio::test(start_paused = true)]
    async fn publisher_is_rate_limited_and_follows_changes() {
        let rt = runtime();
        let (stop, stop_rx) = watch::channel(false);
        let mut rx = rt.snapshots();
        let first = rx.borrow_and_update().clone();
        assert!(first.seq >= 1);
        let task = spawn_publisher(rt.clone(), stop_rx);
        tokio::task::yield_now().await;

        // A burst of 200 changes within one second publishes at most ~ten snapshots.
        let start_seq = rt.latest_snapshot().seq;
        for i in 0..200u32 {
            let cmd = if i % 2 == 0 { Command::Drain("a".into()) } else { Command::Undrain("a".into()) };
            rt.balancer.apply(cmd).expect("command");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let published = rt.latest_snapshot().seq - start_seq;
        assert!((5..=12).contains(&published), "published {published} snapshots for 200 changes in 1 s");

        // A change shows within the minimum interval.
        rt.balancer.apply(Command::Drain("b".into())).expect("drain");
        tokio::time::sleep(MIN_PUBLISH_INTERVAL + Duration::from_millis(10)).await;
        let s = rx.borrow_and_update().clone();
        assert_eq!(s.provider("b").map(|b| b.status), Some(ProviderStatus::Draining));

        // Quiet: refreshed every second, not more.
        let quiet_start = rt.latest_snapshot().seq;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let refreshed = rt.latest_snapshot().seq - quiet_start;
        assert!((9..=11).contains(&refreshed), "{refreshed} refreshes in 10 quiet seconds");

        stop.send(true).expect("stop");
        task.await.expect("publisher ends on shutdown");
    }
}

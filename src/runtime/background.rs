//! The instance's background tasks: the health loop, the usage poller, the snapshot publisher,
//! the config file watcher and the idle trim of the buffer pools, started together and stopped by
//! one shutdown signal.

use super::Runtime;
use super::publisher::spawn_publisher;
use crate::balancer::{ProbeFn, spawn_health_loop};
use crate::config::watch::{DEBOUNCE, spawn_watcher};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The running background tasks of one instance. Stop them by sending `true` on the shutdown
/// channel they were started with, then [`join`](Background::join).
pub(crate) struct Background {
    health: JoinHandle<()>,
    usage: JoinHandle<()>,
    publisher: JoinHandle<()>,
    watcher: Option<JoinHandle<()>>,
    state: JoinHandle<()>,
    buffers: JoinHandle<()>,
}

impl Background {
    /// Start the health loop, the snapshot publisher and (when the config is a file) the config
    /// watcher; each ends when `shutdown` turns true.
    pub(crate) fn start(rt: &Arc<Runtime>, shutdown: &watch::Receiver<bool>) -> Background {
        let health = spawn_health_loop(rt.balancer.clone(), probe_fn(rt), shutdown.clone(), None);
        let usage = super::usage_poller::spawn_usage_poller(
            rt.balancer.clone(),
            usage_fn(rt),
            shutdown.clone(),
            None,
        );
        let publisher = spawn_publisher(rt.clone(), shutdown.clone());
        let watcher = spawn_config_watcher(rt, shutdown.clone());
        let state = spawn_state_watch(rt, shutdown.clone());
        let buffers = crate::buffers::spawn_idle_trim(shutdown.clone());
        Background { health, usage, publisher, watcher, state, buffers }
    }

    /// Wait for every task to end (after the shutdown signal).
    pub(crate) async fn join(self) {
        let _ = self.health.await;
        let _ = self.usage.await;
        let _ = self.publisher.await;
        let _ = self.state.await;
        let _ = self.buffers.await;
        if let Some(watcher) = self.watcher {
            let _ = watcher.await;
        }
    }
}

/// Keeps the shared-state backend's connection watched (Redis: pings, reconnects, status); a
/// change of connection refreshes the snapshot so `/health` and the dashboard show it.
fn spawn_state_watch(rt: &Arc<Runtime>, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let state = rt.state.clone();
    let weak = Arc::downgrade(rt);
    let balancer = Arc::downgrade(&rt.balancer);
    tokio::spawn(async move {
        let watch = state.watch(shutdown.clone(), move || {
            if let Some(rt) = weak.upgrade() {
                rt.snapshot_changed();
            }
        });
        tokio::join!(watch, state.run_pool(balancer, shutdown));
    })
}

/// Hot reload: re-read the config file when it changes. Without a file (the built-in default)
/// or when the OS refuses the watch, the proxy runs on without it (`POST /admin/reload` works).
fn spawn_config_watcher(rt: &Arc<Runtime>, shutdown: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let path = rt.source.path()?;
    let weak = Arc::downgrade(rt);
    let reload = move || {
        if let Some(rt) = weak.upgrade() {
            // The outcome is logged, kept for the snapshot and signalled by `reload` itself.
            let _ = rt.reload();
        }
    };
    match spawn_watcher(path, DEBOUNCE, shutdown, reload) {
        Ok(task) => Some(task),
        Err(e) => {
            tracing::warn!("{e}; hot reload is off (POST /admin/reload still works)");
            None
        }
    }
}

/// The health probe: the provider's own client, looked up in the live config each time so that
/// reloads are followed.
fn probe_fn(rt: &Arc<Runtime>) -> ProbeFn {
    let rt = Arc::downgrade(rt);
    Arc::new(move |id: String| {
        let rt = rt.clone();
        Box::pin(async move {
            let rt = rt.upgrade().ok_or_else(|| "shutting down".to_string())?;
            let client = rt.live().clients.get(&id).cloned().ok_or_else(|| format!("no provider {id}"))?;
            client.probe().await
        })
    })
}

/// The usage check: the provider's own client's `getUsageLimits`, looked up in the live config.
fn usage_fn(rt: &Arc<Runtime>) -> super::usage_poller::UsageFn {
    use crate::balancer::UsageProblem;
    let rt = Arc::downgrade(rt);
    Arc::new(move |id: String| {
        let rt = rt.clone();
        Box::pin(async move {
            let rt = rt.upgrade().ok_or_else(|| UsageProblem::Other("shutting down".into()))?;
            let client = rt
                .live()
                .clients
                .get(&id)
                .cloned()
                .ok_or_else(|| UsageProblem::Other(format!("no provider {id}")))?;
            client.usage_limits().await
        })
    })
}

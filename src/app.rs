//! Assembling a running instance: runtime, health loop, HTTP server, and a shutdown switch
//! that stops them all. Used by `ccr start`, `ccr tui`, `ccr demo`, the tests and the benchmarks.

use crate::balancer::{ProbeFn, spawn_health_loop};
use crate::config::{Config, ConfigSource};
use crate::server::{self, Runtime};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "refusing to listen on {host} without server.apiKey: anyone who can reach it could use your Kiro accounts. \
         Set server.apiKey in the config, or listen on 127.0.0.1"
    )]
    OpenWithoutKey { host: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// Where to listen, overriding the config's `server` block.
#[derive(Debug, Clone, Default)]
pub struct ListenOverride {
    pub host: Option<String>,
    pub port: Option<u16>,
}

/// A running instance. Dropping it does not stop it: call [`Running::shutdown`].
pub struct Running {
    pub runtime: Arc<Runtime>,
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    health: JoinHandle<()>,
    usage: JoinHandle<()>,
    publisher: JoinHandle<()>,
    watcher: Option<JoinHandle<()>>,
}

/// True for addresses only this machine can reach.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Start the proxy, its health checks, the snapshot publisher and the config file watcher.
pub async fn launch(
    config: Config,
    source: ConfigSource,
    listen: ListenOverride,
) -> Result<Running, LaunchError> {
    let host = listen.host.unwrap_or_else(|| config.server.host.clone());
    let port =
        listen.port.unwrap_or(u16::try_from(config.server.port).unwrap_or(crate::config::DEFAULT_PORT));
    if !is_loopback(&host) && config.server.api_key.is_none() {
        return Err(LaunchError::OpenWithoutKey { host });
    }
    let listener = server::bind(&host, port)
        .await
        .map_err(|e| LaunchError::Bind { addr: format!("{host}:{port}"), source: e })?;
    let addr =
        listener.local_addr().map_err(|e| LaunchError::Bind { addr: format!("{host}:{port}"), source: e })?;
    let runtime = Runtime::new(config, source);
    runtime.set_listen_addr(addr);
    let (shutdown, rx) = watch::channel(false);

    let health = spawn_health_loop(runtime.balancer.clone(), probe_fn(&runtime), rx.clone(), None);
    let usage = crate::usage::poller::spawn_usage_poller(
        runtime.balancer.clone(),
        usage_fn(&runtime),
        rx.clone(),
        None,
    );
    let publisher = crate::snapshot::spawn_publisher(runtime.clone(), rx.clone());
    let watcher = spawn_config_watcher(&runtime, rx.clone());
    let mut server_rx = rx.clone();
    let server = tokio::spawn(server::serve(listener, runtime.clone(), async move {
        let _ = server_rx.wait_for(|stop| *stop).await;
    }));
    Ok(Running { runtime, addr, shutdown, server, health, usage, publisher, watcher })
}

/// Hot reload: re-read the config file when it changes. Without a file (the built-in default)
/// or when the OS refuses the watch, the proxy runs on without it (`POST /admin/reload` works).
fn spawn_config_watcher(rt: &Arc<Runtime>, shutdown: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let path = rt.source.path()?;
    let weak = Arc::downgrade(rt);
    let reload = move || {
        if let Some(rt) = weak.upgrade() {
            // The outcome is logged and kept in the snapshot by `reload` itself.
            let _ = rt.reload();
            rt.snapshot_changed();
        }
    };
    match crate::config::watch::spawn_watcher(path, crate::config::watch::DEBOUNCE, shutdown, reload) {
        Ok(task) => Some(task),
        Err(e) => {
            tracing::warn!("{e}; hot reload is off (POST /admin/reload still works)");
            None
        }
    }
}

/// The health probe: the provider's own client, looked up in the live config each time so that
/// reloads are followed.
pub fn probe_fn(rt: &Arc<Runtime>) -> ProbeFn {
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
pub fn usage_fn(rt: &Arc<Runtime>) -> crate::usage::poller::UsageFn {
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

impl Running {
    /// The base URL clients use, e.g. `http://127.0.0.1:3456`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A receiver that turns true when the instance is shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stop accepting, let in-flight answers finish, stop the background tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.health.await;
        let _ = self.usage.await;
        let _ = self.publisher.await;
        if let Some(watcher) = self.watcher {
            let _ = watcher.await;
        }
        match self.server.await {
            Ok(Err(e)) => tracing::warn!("server ended with an error: {e}"),
            Err(e) => tracing::warn!("server task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "192.168.1.2", "::", "example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}

//! The application glue, on top of everything else: a running instance ([`crate::runtime`]) with
//! its HTTP server ([`crate::server`]) on a socket, and a shutdown switch that stops them all
//! (used by `ccr start`, `ccr tui`, `ccr demo`, the tests and the benchmarks); and the dashboard
//! wired to an instance ([`dashboard`]).
//!
//! Launching lives here rather than in the runtime because it starts the HTTP server, and the
//! server depends on the runtime: the runtime knows nothing of HTTP.

pub mod dashboard;

pub use crate::config::origin::is_loopback;
use crate::config::{Config, ConfigSource};
use crate::runtime::{Background, Runtime};
use crate::server;
use std::net::SocketAddr;
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
    background: Background,
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
    // Read every token file now: a missing one shows as `needs_login` at once (dashboard,
    // `/health`), not after the first request.
    for client in runtime.live().clients.values() {
        let _ = client.check_token_file().await;
    }
    runtime.set_listen_addr(addr);
    let (shutdown, rx) = watch::channel(false);
    let background = Background::start(&runtime, &rx);
    let mut server_rx = rx;
    let server = tokio::spawn(server::serve(listener, runtime.clone(), async move {
        let _ = server_rx.wait_for(|stop| *stop).await;
    }));
    Ok(Running { runtime, addr, shutdown, server, background })
}

impl Running {
    /// The base URL clients use, e.g. `http://127.0.0.1:3456`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The published snapshots of the instance.
    pub fn snapshots(&self) -> watch::Receiver<Arc<crate::snapshot::Snapshot>> {
        self.runtime.snapshots()
    }

    /// A receiver that turns true when the instance is shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stop accepting, let in-flight answers finish, stop the background tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.background.join().await;
        match self.server.await {
            Ok(Err(e)) => tracing::warn!("server ended with an error: {e}"),
            Err(e) => tracing::warn!("server task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

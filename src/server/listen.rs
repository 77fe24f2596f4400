//! The listening socket and the connection loop.
//!
//! - The listen backlog is [`LISTEN_BACKLOG`] (the OS caps it at `net.core.somaxconn`), so a burst
//!   of connects queues instead of seeing SYN-retry stalls.
//! - At most `server.maxConnections` client connections are open at once: at the cap ccr stops
//!   accepting, and further connects wait in the backlog until one closes.
//! - A client must send a whole request head within `server.requestHeadTimeout` (also between
//!   requests on a kept-alive connection), else the connection is closed.
//! - Shutdown: stop accepting, let every connection finish its in-flight answer, close idle ones.
//!   When `server.shutdownTimeout` passes first, streaming answers are told to end with an SSE
//!   `error` event ([`Drain`](crate::runtime::Drain)); connections still open [`FLUSH_GRACE`] later are dropped.
//!
//! These limits are read when the server starts; a reload does not change them.

use super::Runtime;
use crate::config::ms;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Connects the OS may queue before ccr accepts them.
pub const LISTEN_BACKLOG: u32 = 1024;

/// How long streams get to write their closing `error` event after the shutdown deadline.
pub const FLUSH_GRACE: Duration = Duration::from_secs(2);

/// Bind `host:port` with [`LISTEN_BACKLOG`].
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let addrs = tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port)).await?;
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to bind");
    for addr in addrs {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Serve `app` on `listener` until `shutdown` resolves, then shut down as the module docs say.
pub async fn serve(
    listener: TcpListener,
    rt: Arc<Runtime>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = rt.config().server.clone();
    let max_connections = usize::try_from(server.max_connections.max(1)).unwrap_or(usize::MAX);
    let head_timeout = ms(server.request_head_timeout);
    let shutdown_timeout = ms(server.shutdown_timeout);
    let slots = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = loop {
            tokio::select! {
                () = &mut shutdown => break None,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok(pair) => break Some(pair),
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        };
        let Some((tcp, remote)) = accepted else { break };
        // Answers stream as many small writes: with Nagle on, each one after the first would
        // wait for the client's delayed ACK (40 ms on Linux).
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                app.clone().oneshot(request.map(axum::body::Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(head_timeout);
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_connection_end(result),
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    log_connection_end(conn.await);
                }
            }
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!("waiting up to {} ms for {open} open connection(s)", shutdown_timeout.as_millis());
    }
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(shutdown_timeout, all_done).await.is_err() {
        tracing::warn!(
            "shutdown deadline of {} ms passed with {} connection(s) open: ending their streams",
            shutdown_timeout.as_millis(),
            connections.len()
        );
        rt.drain.abort_streams();
        let flushed = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(FLUSH_GRACE, flushed).await.is_err() {
            tracing::warn!("dropping {} connection(s) that did not close", connections.len());
            connections.abort_all();
        }
    }
    Ok(())
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!("client connection ended: {e}");
    }
}

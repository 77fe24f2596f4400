//! A listener whose connections can be cut: going down closes the listener and resets every open
//! connection (idle or mid-stream); coming back up rebinds the same port.

use super::router;
use super::state::{Power, Shared};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// Accepts connections and wraps each in a [`CutOffIo`] tied to the current epoch.
pub(super) struct SimListener {
    pub(super) inner: TcpListener,
    pub(super) power: watch::Receiver<Power>,
}

impl axum::serve::Listener for SimListener {
    type Io = CutOffIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CutOffIo, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Frames are small and must leave at once.
                    let _ = stream.set_nodelay(true);
                    let epoch = self.power.borrow().epoch;
                    return (CutOffIo::new(stream, self.power.clone(), epoch), addr);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "simulated upstream: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write once its epoch ends, and then resets (zero
/// linger) instead of closing politely: what clients see when a server dies.
pub(super) struct CutOffIo {
    pub(super) io: TcpStream,
    pub(super) cut_signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    pub(super) is_cut: bool,
}

impl CutOffIo {
    pub(super) fn new(io: TcpStream, mut power: watch::Receiver<Power>, epoch: u64) -> Self {
        let cut_signal = Box::pin(async move {
            let _ = power.wait_for(|p| p.cuts(epoch)).await;
        });
        CutOffIo { io, cut_signal, is_cut: false }
    }

    pub(super) fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_cut && self.cut_signal.as_mut().poll(cx).is_ready() {
            self.is_cut = true;
            let _ = self.io.set_zero_linger();
        }
        self.is_cut
    }
}

pub(super) fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "simulated upstream went down")
}

impl AsyncRead for CutOffIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutOffIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Bind a listening socket with `SO_REUSEADDR`, so the same port can be bound again right after
/// going down.
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Owns the listener: serves while up, drops the listener when down, rebinds the same port when
/// up again, returns at shutdown.
pub(super) async fn supervise(shared: Arc<Shared>, first: TcpListener) {
    let app = router(shared.clone());
    let mut power = shared.power.subscribe();
    let mut ready = Some(first);
    loop {
        let now = *power.borrow_and_update();
        if now.shutdown {
            break;
        }
        if now.down {
            drop(ready.take());
            if power.wait_for(|p| p.shutdown || !p.down).await.is_err() {
                break;
            }
            continue;
        }
        let listener = match ready.take() {
            Some(l) => l,
            None => match bind(shared.addr) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(sim = %shared.name, addr = %shared.addr, error = %e, "simulated upstream: rebind failed, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = power.changed() => {}
                    }
                    continue;
                }
            },
        };
        let epoch = now.epoch;
        let listener = SimListener { inner: listener, power: shared.power.subscribe() };
        let mut stop = shared.power.subscribe();
        let signal = async move {
            let _ = stop.wait_for(|p| p.cuts(epoch)).await;
        };
        shared.listening.send_replace(Some(epoch));
        if let Err(e) = axum::serve(listener, app.clone()).with_graceful_shutdown(signal).await {
            tracing::warn!(sim = %shared.name, error = %e, "simulated upstream: server error");
        }
        shared.listening.send_replace(None);
    }
    shared.listening.send_replace(None);
}

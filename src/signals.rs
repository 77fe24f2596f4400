//! Stop signals: Ctrl-C (SIGINT) and SIGTERM (what `kill`, systemd and docker send) mean the
//! same thing, a graceful stop. A second signal while stopping forces the exit.

/// The process's stop signals, installed once.
pub struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Install the handlers (call from inside the tokio runtime).
    pub fn install() -> StopSignals {
        #[cfg(unix)]
        {
            let term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    None
                }
            };
            StopSignals { term }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Wait for the next stop signal; returns its name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let term = async {
                match self.term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                () = term => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Stop `running` gracefully; a second signal exits the process at once (status 130).
pub async fn shut_down_on(
    signals: &mut StopSignals,
    first: &str,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tracing::info!("{first}: shutting down (send it again to exit at once)");
    tokio::select! {
        () = shutdown => {}
        second = signals.next() => {
            tracing::warn!("{second} during shutdown: exiting now");
            eprintln!("ccr: {second} during shutdown: exiting now");
            std::process::exit(130);
        }
    }
}

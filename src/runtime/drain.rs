//! The shutdown deadline as the running instance's streams see it.

use tokio::sync::watch;

/// Tells in-flight streaming answers that the shutdown deadline has passed.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain { tx: watch::channel(false).0 }
    }
}

impl Drain {
    /// A receiver that turns true when streams must end now.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// End every stream now (each writes an `error` event and closes).
    pub fn abort_streams(&self) {
        self.tx.send_replace(true);
    }
}

//! The headless status table (`ccr start --show-lb-status`, `ccr status`) (in progress).

use crate::app::Running;
use tokio::task::JoinHandle;

/// Print the status table at start, on every health / breaker / drain change, and every few seconds.
pub fn spawn_printer(_running: &Running) -> JoinHandle<()> {
    tokio::spawn(async {})
}

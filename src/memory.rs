//! Giving memory back to the OS after a burst.
//!
//! The binary runs on jemalloc (`tikv-jemallocator`, declared in `main.rs`) rather than glibc's
//! malloc. glibc keeps what a burst freed: its per-thread arenas only return the top of their
//! heaps, and after 32 concurrent 1 MB Claude Code turns ccr stayed at ~100 MiB resident for
//! good, ten times its idle size. jemalloc returns freed pages on its own after a decay time
//! (`dirty_decay_ms`, 10 s by default); [`release_after_bursts`] turns on its background thread so
//! that this happens while the proxy is idle too, not only on the next allocation.
//!
//! Everything here goes through `tikv-jemalloc-ctl`'s safe API (the crate forbids `unsafe`).

/// Turn on jemalloc's background purging thread. Call once at start; a failure (an allocator
/// built without background threads) is logged and costs only the memory return.
pub fn release_after_bursts() {
    #[cfg(not(target_env = "msvc"))]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!("jemalloc background thread not available: {e}");
    }
}

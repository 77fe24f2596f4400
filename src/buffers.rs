//! Byte buffers kept for reuse on the request path, and given back when the burst is over.
//!
//! Claude Code sends 0.6–1.4 MB on every turn, and each turn needs three buffers of about that
//! size: the client's body, the converted `conversationState`, and the upstream request body. A
//! fresh buffer that large is fresh memory each time (the allocator hands big blocks back to the
//! kernel when they are freed), and faulting its pages in cost more than the copy into it: in the
//! load harness, reusing warm buffers took about 2 ms off a 1 MB request.
//!
//! A pool is bounded three ways: how many buffers it keeps, how big one may be, and how many
//! bytes it keeps in all; anything beyond is simply freed. And it is emptied when it has not been
//! used for [`IDLE_AFTER`]: [`spawn_idle_trim`] looks every [`TRIM_EVERY`], so the memory a
//! burst of large turns left in the pools goes back to the allocator (and, from there, to the
//! OS: see [`crate::memory`]) a few seconds after the burst.

use bytes::Bytes;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A pool not used for this long is emptied.
pub const IDLE_AFTER: Duration = Duration::from_secs(5);

/// How often [`spawn_idle_trim`] looks at the pools.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// A bounded set of reusable byte buffers.
#[derive(Debug)]
pub struct BufferPool {
    kept: Mutex<Kept>,
    max_kept: usize,
    max_capacity: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Kept {
    bufs: Vec<Vec<u8>>,
    /// Sum of the kept buffers' capacities.
    bytes: usize,
    /// When a buffer was last taken or given back; `None` before the first use.
    last_used: Option<Instant>,
}

/// Client request bodies (read in [`crate::server::messages`]).
pub static REQUEST_BODIES: BufferPool = BufferPool::new(4, 2 * 1024 * 1024, 6 * 1024 * 1024);

/// Converted conversations and the upstream bodies built from them.
pub static UPSTREAM_BODIES: BufferPool = BufferPool::new(6, 2 * 1024 * 1024, 8 * 1024 * 1024);

impl BufferPool {
    /// A pool that keeps at most `max_kept` buffers of at most `max_capacity` bytes each, and at
    /// most `max_bytes` bytes in all.
    pub const fn new(max_kept: usize, max_capacity: usize, max_bytes: usize) -> BufferPool {
        BufferPool {
            kept: Mutex::new(Kept { bufs: Vec::new(), bytes: 0, last_used: None }),
            max_kept,
            max_capacity,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer, warm if one is free, with room for at least `capacity` bytes.
    pub fn take(&'static self, capacity: usize) -> PooledBuf {
        let reused = {
            let mut kept = self.lock();
            kept.last_used = Some(Instant::now());
            let buf = kept.bufs.pop();
            if let Some(buf) = &buf {
                kept.bytes -= buf.capacity();
            }
            buf
        };
        let mut buf = reused.unwrap_or_default();
        buf.reserve(capacity);
        PooledBuf { buf, pool: self }
    }

    /// Buffers waiting for reuse, and their bytes.
    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let kept = self.lock();
        (kept.bufs.len(), kept.bytes)
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity == 0 || capacity > self.max_capacity {
            return;
        }
        buf.clear();
        let mut kept = self.lock();
        kept.last_used = Some(Instant::now());
        if kept.bufs.len() < self.max_kept && kept.bytes + capacity <= self.max_bytes {
            kept.bytes += capacity;
            kept.bufs.push(buf);
        }
    }

    /// Free every kept buffer if the pool has not been used for `idle_for` by `now`; returns the
    /// bytes freed.
    pub fn trim_if_idle(&self, now: Instant, idle_for: Duration) -> usize {
        let freed = {
            let mut kept = self.lock();
            let idle = kept.last_used.is_none_or(|t| now.saturating_duration_since(t) >= idle_for);
            if !idle || kept.bufs.is_empty() {
                return 0;
            }
            kept.bytes = 0;
            std::mem::take(&mut kept.bufs)
        };
        // Freed outside the lock: returning a few MB to the allocator is not free.
        freed.iter().map(Vec::capacity).sum()
    }
}

/// The request path's pools.
static POOLS: [&BufferPool; 2] = [&REQUEST_BODIES, &UPSTREAM_BODIES];

/// Every [`TRIM_EVERY`] until `shutdown` turns true: empty the request path's pools that have
/// been idle for [`IDLE_AFTER`].
pub fn spawn_idle_trim(shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    spawn_trim(&POOLS, shutdown)
}

fn spawn_trim(pools: &'static [&'static BufferPool], mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = Instant::now();
                    let freed: usize = pools.iter().map(|p| p.trim_if_idle(now, IDLE_AFTER)).sum();
                    if freed > 0 {
                        tracing::debug!(freed, "idle buffer pools emptied");
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
    })
}

/// A buffer from a [`BufferPool`]; it goes back to the pool when dropped (directly, or as the
/// owner of the [`Bytes`] made by [`PooledBuf::into_bytes`]).
#[derive(Debug)]
pub struct PooledBuf {
    buf: Vec<u8>,
    pool: &'static BufferPool,
}

impl PooledBuf {
    /// Zero-copy `Bytes` over this buffer; the buffer returns to its pool when the last clone of
    /// the `Bytes` is dropped.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl Deref for PooledBuf {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_warm_and_empty() {
        static POOL: BufferPool = BufferPool::new(2, 1024, 4096);
        let mut a = POOL.take(100);
        a.extend_from_slice(b"hello");
        let ptr = a.as_ptr();
        let capacity = a.capacity();
        drop(a);
        assert_eq!(POOL.kept(), (1, capacity));
        let b = POOL.take(10);
        assert!(b.is_empty(), "a reused buffer starts empty");
        assert!(b.capacity() >= 100, "and keeps its capacity");
        assert_eq!(b.as_ptr(), ptr, "the same allocation");
        assert_eq!(POOL.kept(), (0, 0));
    }

    #[test]
    fn bytes_return_the_buffer_when_the_last_clone_goes() {
        static POOL: BufferPool = BufferPool::new(2, 1024, 4096);
        let mut a = POOL.take(16);
        a.extend_from_slice(b"payload");
        let bytes = a.into_bytes();
        let clone = bytes.clone();
        assert_eq!(&clone[..], b"payload");
        drop(bytes);
        assert_eq!(POOL.kept().0, 0, "a clone still holds it");
        drop(clone);
        assert_eq!(POOL.kept().0, 1);
    }

    #[test]
    fn the_pool_is_bounded_in_count_and_size() {
        static POOL: BufferPool = BufferPool::new(2, 1024, 4096);
        let big = POOL.take(4096);
        drop(big);
        assert_eq!(POOL.kept().0, 0, "buffers over the size bound are freed");
        let bufs: Vec<PooledBuf> = (0..3).map(|_| POOL.take(64)).collect();
        drop(bufs);
        assert_eq!(POOL.kept().0, 2, "at most max_kept are kept");
    }

    #[test]
    fn the_pool_is_bounded_in_total_bytes() {
        static POOL: BufferPool = BufferPool::new(8, 1000, 2500);
        let bufs: Vec<PooledBuf> = (0..5).map(|_| POOL.take(1000)).collect();
        let each = bufs[0].capacity();
        assert!((1000..=1250).contains(&each));
        drop(bufs);
        let (count, bytes) = POOL.kept();
        assert_eq!(count, 2500 / each, "only as many as fit in the byte bound");
        assert_eq!(bytes, count * each);
        assert!(bytes <= 2500);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_pool_is_emptied_and_a_busy_one_is_not() {
        static POOL: BufferPool = BufferPool::new(4, 4096, 16384);
        assert_eq!(POOL.trim_if_idle(Instant::now(), IDLE_AFTER), 0, "nothing kept, nothing freed");
        drop(POOL.take(1000));
        drop(POOL.take(2000));
        let (count, bytes) = POOL.kept();
        assert_eq!(count, 1, "the second take reused the first buffer");
        tokio::time::advance(IDLE_AFTER / 2).await;
        assert_eq!(POOL.trim_if_idle(Instant::now(), IDLE_AFTER), 0, "still in use recently");
        drop(POOL.take(10));
        tokio::time::advance(IDLE_AFTER - Duration::from_millis(1)).await;
        assert_eq!(POOL.trim_if_idle(Instant::now(), IDLE_AFTER), 0, "a take renews the pool");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(POOL.trim_if_idle(Instant::now(), IDLE_AFTER), bytes, "idle: all freed");
        assert_eq!(POOL.kept(), (0, 0));
        let again = POOL.take(100);
        assert!(again.capacity() >= 100, "an emptied pool still hands out buffers");
    }

    #[tokio::test(start_paused = true)]
    async fn the_trim_task_empties_idle_pools_and_stops_on_shutdown() {
        static POOL: BufferPool = BufferPool::new(4, 1 << 20, 1 << 22);
        static ONE: [&BufferPool; 1] = [&POOL];
        drop(POOL.take(64 * 1024));
        assert_eq!(POOL.kept().0, 1);
        let (stop, shutdown) = watch::channel(false);
        let task = spawn_trim(&ONE, shutdown);
        tokio::time::sleep(IDLE_AFTER - TRIM_EVERY).await;
        assert_eq!(POOL.kept().0, 1, "kept while recently used");
        tokio::time::sleep(TRIM_EVERY * 3).await;
        assert_eq!(POOL.kept(), (0, 0), "emptied a few seconds after the last use");
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}

//! Conversation affinity: which account serves which conversation, per rule.
//!
//! A conversation (a Claude Code session) is placed by its rule's strategy on its first turn and
//! kept on that account while it stays eligible; when it is not, the conversation moves to a new
//! pick and stays there. Bindings expire after the rule's `stickyTtl` of idleness and the table
//! holds at most `cap` conversations (least recently seen evicted first), so memory is bounded.
//!
//! One entry per conversation, holding its binding in each rule it used (main turns and
//! background turns of one session usually go through different rules). Entries are kept in
//! least-recently-seen order (an [`lru::LruCache`]), so TTL eviction pops from the old end and
//! costs nothing while nothing expires.

use lru::LruCache;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Default of the rule's `stickyTtl`: a conversation idle this long is placed afresh.
pub const DEFAULT_STICKY_TTL: Duration = Duration::from_secs(3600);
/// Most conversations remembered at once; the least recently seen go first.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// What happened to a request's conversation binding: the `x-ccr-affinity` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Affinity {
    /// First turn (or the old binding expired): placed by the strategy.
    New,
    /// Served by the account it is bound to.
    Kept,
    /// Its account could not serve: placed anew, and bound there from now on.
    Moved,
}

impl Affinity {
    /// `new`, `kept` or `moved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Affinity::New => "new",
            Affinity::Kept => "kept",
            Affinity::Moved => "moved",
        }
    }
}

#[derive(Debug, Clone)]
struct RuleBinding {
    rule: String,
    provider: String,
    last_seen: Instant,
}

#[derive(Debug, Clone)]
struct Entry {
    bindings: Vec<RuleBinding>,
    turns: u64,
    last_category: String,
    last_provider: String,
    last_seen: Instant,
}

impl Entry {
    fn providers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.bindings.iter().map(|b| b.provider.as_str()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// What `/sessions/{id}` tells about one conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The account that served its last request.
    pub provider: String,
    /// The category of its last request.
    pub category: String,
    /// Requests (turns) seen for it, any rule.
    pub turns: u64,
    /// How long ago its last request was placed.
    pub idle_ms: u64,
    /// Its binding per rule: rule category → provider id.
    pub bindings: Vec<(String, String)>,
}

/// The binding table. Not thread-safe by itself: it lives in the balancer's state.
#[derive(Debug)]
pub struct Sessions {
    entries: LruCache<String, Entry>,
    cap: usize,
    /// Longest TTL of any sticky rule: an entry idle longer than this is dropped.
    ttl: Duration,
    /// Conversations bound (in any rule) to each provider.
    bound: HashMap<String, usize>,
}

impl Sessions {
    /// An empty table holding at most `cap` conversations (at least 1), each at most `ttl` idle.
    pub fn new(cap: usize, ttl: Duration) -> Self {
        Sessions { entries: LruCache::unbounded(), cap: cap.max(1), ttl, bound: HashMap::new() }
    }

    /// Changes the limits (hot reload); the next [`Sessions::sweep`] applies them.
    pub fn set_limits(&mut self, cap: usize, ttl: Duration) {
        self.cap = cap.max(1);
        self.ttl = ttl;
    }

    /// Conversations remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The provider `session` is bound to in `rule`, unless the binding is older than `ttl`.
    pub fn bound_to(&self, session: &str, rule: &str, ttl: Duration, now: Instant) -> Option<&str> {
        let entry = self.entries.peek(session)?;
        let b = entry.bindings.iter().find(|b| b.rule == rule)?;
        (now.saturating_duration_since(b.last_seen) < ttl).then_some(b.provider.as_str())
    }

    /// Records that `session`'s request in `rule` (category `category`) went to `provider`, now.
    /// `turn` is false for a failover attempt of a request already counted.
    pub fn bind(
        &mut self,
        session: &str,
        rule: &str,
        category: &str,
        provider: &str,
        turn: bool,
        now: Instant,
    ) {
        let before: Vec<String> = match self.entries.get_mut(session) {
            Some(e) => e.providers().into_iter().map(str::to_owned).collect(),
            None => {
                self.entries.put(
                    session.to_owned(),
                    Entry {
                        bindings: Vec::new(),
                        turns: 0,
                        last_category: String::new(),
                        last_provider: String::new(),
                        last_seen: now,
                    },
                );
                Vec::new()
            }
        };
        let Some(entry) = self.entries.get_mut(session) else { return };
        match entry.bindings.iter_mut().find(|b| b.rule == rule) {
            Some(b) => {
                b.provider.clear();
                b.provider.push_str(provider);
                b.last_seen = now;
            }
            None => entry.bindings.push(RuleBinding {
                rule: rule.to_owned(),
                provider: provider.to_owned(),
                last_seen: now,
            }),
        }
        if turn {
            entry.turns += 1;
        }
        entry.last_category.clear();
        entry.last_category.push_str(category);
        entry.last_provider.clear();
        entry.last_provider.push_str(provider);
        entry.last_seen = now;
        let after: Vec<String> = entry.providers().into_iter().map(str::to_owned).collect();
        if before != after {
            for p in &before {
                self.unbound(p);
            }
            for p in after {
                *self.bound.entry(p).or_default() += 1;
            }
        }
        self.sweep(now);
    }

    fn unbound(&mut self, provider: &str) {
        if let Some(n) = self.bound.get_mut(provider) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.bound.remove(provider);
            }
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, entry)) = self.entries.pop_lru() {
            for p in entry.providers() {
                self.unbound(p);
            }
        }
    }

    /// Drops conversations idle for the TTL or more, then the least recently seen past the cap.
    pub fn sweep(&mut self, now: Instant) {
        while let Some((_, oldest)) = self.entries.peek_lru() {
            if now.saturating_duration_since(oldest.last_seen) < self.ttl {
                break;
            }
            self.evict_oldest();
        }
        while self.entries.len() > self.cap {
            self.evict_oldest();
        }
    }

    /// Conversations bound to `provider` (in any rule).
    pub fn bound_count(&self, provider: &str) -> usize {
        self.bound.get(provider).copied().unwrap_or(0)
    }

    /// What is known about `session`.
    pub fn info(&self, session: &str, now: Instant) -> Option<SessionInfo> {
        let e = self.entries.peek(session)?;
        Some(SessionInfo {
            provider: e.last_provider.clone(),
            category: e.last_category.clone(),
            turns: e.turns,
            idle_ms: u64::try_from(now.saturating_duration_since(e.last_seen).as_millis())
                .unwrap_or(u64::MAX),
            bindings: e.bindings.iter().map(|b| (b.rule.clone(), b.provider.clone())).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bindings_expire_after_the_ttl_on_paused_time() {
        let ttl = Duration::from_secs(3600);
        let mut s = Sessions::new(10, ttl);
        let t0 = Instant::now();
        s.bind("a", "default", "default", "p1", true, t0);
        assert_eq!(s.bound_to("a", "default", ttl, t0), Some("p1"));
        assert_eq!(s.bound_count("p1"), 1);
        tokio::time::advance(Duration::from_secs(3599)).await;
        assert_eq!(s.bound_to("a", "default", ttl, Instant::now()), Some("p1"));
        s.bind("b", "default", "default", "p2", true, Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        let now = Instant::now();
        assert_eq!(s.bound_to("a", "default", ttl, now), None, "idle for the whole TTL");
        s.sweep(now);
        assert_eq!(s.len(), 1, "a evicted, b kept");
        assert!(s.info("a", now).is_none());
        assert_eq!(s.bound_count("p1"), 0);
        assert_eq!(s.bound_count("p2"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cap_evicts_the_least_recently_seen() {
        let mut s = Sessions::new(3, DEFAULT_STICKY_TTL);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            s.bind(id, "default", "default", &format!("p{i}"), true, Instant::now());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        s.bind("a", "default", "default", "p0", true, Instant::now()); // a is fresh again
        s.bind("d", "default", "default", "p3", true, Instant::now());
        assert_eq!(s.len(), 3);
        assert!(s.info("b", Instant::now()).is_none(), "b was the least recently seen");
        assert!(s.info("a", Instant::now()).is_some());
        assert_eq!(s.bound_count("p1"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn moves_turns_and_per_rule_bindings() {
        let mut s = Sessions::new(10, DEFAULT_STICKY_TTL);
        let now = Instant::now();
        s.bind("a", "default", "default", "p1", true, now);
        s.bind("a", "background", "background", "p1", true, now);
        assert_eq!(s.bound_count("p1"), 1, "one conversation, whatever the rules");
        s.bind("a", "default", "default", "p2", false, now);
        assert_eq!((s.bound_count("p1"), s.bound_count("p2")), (1, 1));
        s.bind("a", "background", "background", "p2", true, now);
        assert_eq!((s.bound_count("p1"), s.bound_count("p2")), (0, 1));
        let info = s.info("a", now).expect("known");
        assert_eq!((info.provider.as_str(), info.category.as_str(), info.turns), ("p2", "background", 3));
        assert_eq!(info.bindings.len(), 2);
        assert_eq!(s.bound_to("a", "thinking", DEFAULT_STICKY_TTL, now), None);
    }
}

//! The balancer's shared pool on Redis ([`crate::balancer::shared::SharedPool`]).
//!
//! Keys (all under the configured prefix, each with a TTL):
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `lease:{id}` | sorted set: `instance:ticket` → expiry (ms, Redis clock) | `leaseTtl`, renewed by the holder |
//! | `bind:{rule}:{session}` | the account | the rule's `stickyTtl`, renewed on each turn |
//! | `cool:{id}` | `1` | the cooldown left |
//! | `quota:{id}` | `1` | until the quota resets |
//! | `suspended:{id}`, `login:{id}`, `drain:{id}` | `1` | [`FLAG_TTL`] |
//! | `open:{id}` | when the half-open probe may go (ms, Redis clock) | the reset timeout + [`OPEN_GRACE`] |
//! | `probe:{id}` | the member sending the pool's one probe | [`PROBE_TTL`] |
//! | `usage:{id}` | the last usage poll's report (JSON, [`UsageRecord`]) | the account's `usage.refreshInterval` |
//! | `metered:{id}` | credits metered by every instance since that poll | the same as `usage:{id}` |
//! | `reset:{id}`, `undrain:{id}` | the operator's last reset / undrain (`instance:nonce:ms`) | [`WORD_TTL`] |
//! | `closed:{id}` | the pool's last successful half-open probe (same form) | [`WORD_TTL`] |
//!
//! The pick costs one round trip ([`ACQUIRE`]); everything else runs in the background.

use super::RedisLink;
use crate::balancer::Balancer;
use crate::balancer::shared::{
    AcquireRequest, Acquired, BoxFuture, OperatorWord, PoolUsage, PoolView, ProbeEnd, Publication, SharedPool,
};
use crate::usage::UsageReport;
use chrono::{DateTime, Utc};
use redis::Script;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a suspension, a dead login or a drain is remembered by the pool without being seen
/// again (each instance that sees it publishes it again).
pub const FLAG_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long an open breaker's key outlives its reset timeout (the half-open phase).
pub const OPEN_GRACE: Duration = Duration::from_secs(600);
/// Longest time one instance holds the pool's probe of an account.
pub const PROBE_TTL: Duration = Duration::from_secs(60);
/// How long an operator's reset or undrain stays for instances to see (they see it within a
/// sync; one away longer missed it and keeps its own state).
pub const WORD_TTL: Duration = Duration::from_secs(3600);
/// How often the pool's slowly changing states are read into the local view.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// The pick: binding, exclusions, probe slot, lease, in one script.
/// KEYS: lease, cool, quota, suspended, login, drain, open, probe, bind.
/// ARGV: member, cap, lease ttl ms, provider, has session (0/1), previous, sticky ttl ms.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kept = 0
if ARGV[5] == '1' then
  local b = redis.call('GET', KEYS[9])
  if b and b ~= ARGV[4] and b ~= ARGV[6] then return {'bound', b} end
  if b == ARGV[4] then kept = 1 end
end
local cool = redis.call('PTTL', KEYS[2])
local quota = redis.call('PTTL', KEYS[3])
local susp = redis.call('EXISTS', KEYS[4])
local login = redis.call('EXISTS', KEYS[5])
local drain = redis.call('EXISTS', KEYS[6])
local open = redis.call('GET', KEYS[7])
local open_left = 0
if open then open_left = tonumber(open) - now end
if cool > 0 or quota > 0 or susp == 1 or login == 1 or drain == 1 or open_left > 0 then
  return {'excluded', cool, quota, susp, login, drain, open_left}
end
local probe = 0
if open then
  if redis.call('SET', KEYS[8], ARGV[1], 'NX', 'PX', 60000) then probe = 1
  else return {'excluded', 0, 0, 0, 0, 0, 1000} end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(ARGV[2])
if cap > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= cap then
    if probe == 1 then redis.call('DEL', KEYS[8]) end
    return {'full', n}
  end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
if ARGV[5] == '1' then redis.call('SET', KEYS[9], ARGV[4], 'PX', tonumber(ARGV[7])) end
return {'ok', probe, kept}
",
    )
});

/// A lease given back. KEYS: lease, open, probe. ARGV: member, probe end (none, closed,
/// reopen, abandoned), reopen ms, open grace ms.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == 'closed' then
  redis.call('DEL', KEYS[2], KEYS[3])
elseif ARGV[2] == 'reopen' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', KEYS[2], now + tonumber(ARGV[3]), 'PX', tonumber(ARGV[3]) + tonumber(ARGV[4]))
  redis.call('DEL', KEYS[3])
elseif ARGV[2] == 'abandoned' and redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
return 1
",
    )
});

/// Facts published. KEYS: cool, quota, suspended, login, drain, open, probe.
/// ARGV: cool ms (0: none), quota ms, suspended / login / drain (-1 keep, 0 clear, 1 set),
/// open (-2 keep, -1 clear, else ms), clear cool (0/1), clear quota, flag ttl ms, open grace ms.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local function longer(key, ms)
  if ms > 0 and redis.call('PTTL', key) < ms then redis.call('SET', key, '1', 'PX', ms) end
end
if ARGV[7] == '1' then redis.call('DEL', KEYS[1]) end
if ARGV[8] == '1' then redis.call('DEL', KEYS[2]) end
longer(KEYS[1], tonumber(ARGV[1]))
longer(KEYS[2], tonumber(ARGV[2]))
for i = 3, 5 do
  if ARGV[i] == '1' then redis.call('SET', KEYS[i], '1', 'PX', tonumber(ARGV[9]))
  elseif ARGV[i] == '0' then redis.call('DEL', KEYS[i]) end
end
local open = tonumber(ARGV[6])
if open == -1 then
  redis.call('DEL', KEYS[6], KEYS[7])
elseif open >= 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', KEYS[6], now + open, 'PX', open + tonumber(ARGV[10]))
end
return 1
",
    )
});

/// The pool's view of every account. KEYS: per account cool, quota, suspended, login, drain,
/// open, lease, usage, metered, reset, undrain, closed ([`SYNC_KEYS`] each). Answers per
/// account: cool ms, quota ms, suspended, login, drain, open ms left, live leases (numbers), then
/// the usage report, the metered credits, the operator's last reset and undrain and the pool
/// probe's last success (strings, nil when absent).
static SYNC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 0, #KEYS / 12 - 1 do
  local k = i * 12
  out[#out + 1] = redis.call('PTTL', KEYS[k + 1])
  out[#out + 1] = redis.call('PTTL', KEYS[k + 2])
  out[#out + 1] = redis.call('EXISTS', KEYS[k + 3])
  out[#out + 1] = redis.call('EXISTS', KEYS[k + 4])
  out[#out + 1] = redis.call('EXISTS', KEYS[k + 5])
  local open = redis.call('GET', KEYS[k + 6])
  local left = 0
  if open then left = tonumber(open) - now end
  if left < 0 then left = 0 end
  out[#out + 1] = left
  out[#out + 1] = redis.call('ZCOUNT', KEYS[k + 7], now, '+inf')
  out[#out + 1] = redis.call('GET', KEYS[k + 8])
  out[#out + 1] = redis.call('GET', KEYS[k + 9])
  out[#out + 1] = redis.call('GET', KEYS[k + 10])
  out[#out + 1] = redis.call('GET', KEYS[k + 11])
  out[#out + 1] = redis.call('GET', KEYS[k + 12])
end
return out
",
    )
});

/// The keys [`SYNC`] reads per account, in order.
const SYNC_KEYS: [&str; 12] = [
    "cool",
    "quota",
    "suspended",
    "login",
    "drain",
    "open",
    "lease",
    "usage",
    "metered",
    "reset",
    "undrain",
    "closed",
];

/// A usage poll published. KEYS: usage, metered. ARGV: the record (JSON), its `checkedAt`, TTL
/// ms. A newer poll (or the same one) already there wins; a new one starts the metered credits
/// again.
static PUBLISH_USAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  if ok and type(old) == 'table' and tonumber(old.checkedAt) and tonumber(old.checkedAt) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[3]))
redis.call('DEL', KEYS[2])
return 1
",
    )
});

/// Metered credits added. KEYS: usage, metered. ARGV: credits. Counted only while the pool has
/// a report, and kept as long as it.
static METER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('INCRBYFLOAT', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
",
    )
});

/// A usage report as the pool keeps it under `usage:{id}` (times in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRecord {
    pub used: f64,
    pub limit: f64,
    #[serde(default)]
    pub reset_at: Option<i64>,
    #[serde(default)]
    pub tier: Option<String>,
    pub checked_at: i64,
}

impl UsageRecord {
    fn of(usage: &PoolUsage) -> UsageRecord {
        UsageRecord {
            used: usage.report.used,
            limit: usage.report.limit,
            reset_at: usage.report.reset_at.map(|t| t.timestamp_millis()),
            tier: usage.report.tier.clone(),
            checked_at: usage.checked_at.timestamp_millis(),
        }
    }

    /// The pool's usage from the record and the metered credits (`None` for junk).
    fn usage(&self, metered: f64) -> Option<PoolUsage> {
        let finite = |x: f64| x.is_finite() && x >= 0.0;
        if !finite(self.used) || !finite(self.limit) {
            return None;
        }
        Some(PoolUsage {
            report: UsageReport {
                used: self.used,
                limit: self.limit,
                reset_at: self.reset_at.and_then(DateTime::<Utc>::from_timestamp_millis),
                tier: self.tier.clone(),
            },
            checked_at: DateTime::<Utc>::from_timestamp_millis(self.checked_at)?,
            metered: if finite(metered) { metered } else { 0.0 },
        })
    }
}

/// Leases renewed. KEYS: lease. ARGV: ttl ms, members….
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
",
    )
});

/// The pool of one instance on Redis.
#[derive(Debug)]
pub struct RedisPool {
    link: Arc<RedisLink>,
    /// This instance's name in lease members (random per start).
    instance: String,
    next_ticket: AtomicU64,
    lease_ttl: Duration,
    /// Tickets this instance holds, per account (renewed in the background).
    live: Mutex<HashMap<String, HashSet<u64>>>,
    /// The operator's words last seen, per key (applied when they change).
    words_seen: Mutex<HashMap<String, String>>,
    /// When this instance started (ms since the epoch).
    started_ms: i64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisPool {
    pub fn new(link: Arc<RedisLink>, lease_ttl: Duration) -> Arc<RedisPool> {
        Arc::new(RedisPool {
            link,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            next_ticket: AtomicU64::new(1),
            lease_ttl,
            live: Mutex::new(HashMap::new()),
            words_seen: Mutex::new(HashMap::new()),
            started_ms: Utc::now().timestamp_millis(),
        })
    }

    fn member(&self, ticket: u64) -> String {
        format!("{}:{ticket}", self.instance)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<u64>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keys(&self, kind: &str, id: &str) -> String {
        self.link.key(&format!("{kind}:{id}"))
    }

    /// One look at the pool's states for `ids`, applied to `balancer`. False when Redis did not
    /// answer.
    pub async fn sync(&self, balancer: &Balancer, ids: &[String]) -> bool {
        if ids.is_empty() {
            return true;
        }
        let mut invocation = SYNC.prepare_invoke();
        for id in ids {
            for kind in SYNC_KEYS {
                invocation.key(self.keys(kind, id));
            }
        }
        let read_at = Instant::now();
        let Some(values) = self
            .link
            .run_background(|mut c| async move { invocation.invoke_async::<Vec<redis::Value>>(&mut c).await })
            .await
        else {
            return false;
        };
        let now = Instant::now();
        let at = |left: i64| (left > 0).then(|| now + Duration::from_millis(left.unsigned_abs()));
        for (id, raw) in ids.iter().zip(values.chunks_exact(SYNC_KEYS.len())) {
            let v: Vec<i64> = raw[..7].iter().map(|v| int(Some(v))).collect();
            let own = self.live().get(id).map_or(0, HashSet::len);
            let leases = usize::try_from(v[6]).unwrap_or(0);
            let words = [
                (&raw[9], OperatorWord::Reset),
                (&raw[10], OperatorWord::Undrain),
                (&raw[11], OperatorWord::Closed),
            ];
            for (value, word) in words {
                if self.new_word(id, word, text(value)) {
                    balancer.apply_pool_word(id, word);
                }
            }
            if let Some(record) = text(&raw[7]).and_then(|t| serde_json::from_str::<UsageRecord>(&t).ok()) {
                let metered = text(&raw[8]).and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0);
                if let Some(usage) = record.usage(metered) {
                    balancer.set_pool_usage(id, usage);
                }
            }
            balancer.set_pool_view(
                id,
                PoolView {
                    cooling_until: at(v[0]),
                    quota_until: at(v[1]),
                    suspended: v[2] == 1,
                    needs_login: v[3] == 1,
                    drained: v[4] == 1,
                    open_until: at(v[5]),
                    others_in_flight: u32::try_from(leases.saturating_sub(own)).unwrap_or(u32::MAX),
                },
                read_at,
            );
        }
        true
    }

    /// Renews this instance's leases (they expire `leaseTtl` after the last renewal: a crashed
    /// instance's leases stop counting then). Re-adds them after Redis lost its data.
    pub async fn renew(&self) {
        let held: Vec<(String, Vec<String>)> = self
            .live()
            .iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(id, tickets)| (id.clone(), tickets.iter().map(|t| self.member(*t)).collect()))
            .collect();
        for (id, members) in held {
            let mut invocation = RENEW.prepare_invoke();
            invocation.key(self.keys("lease", &id)).arg(ms(self.lease_ttl)).arg(members);
            let _ = self
                .link
                .run_background(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
                .await;
        }
    }

    /// The background work of the pool until `shutdown`: the sync every [`SYNC_INTERVAL`] and
    /// lease renewal every third of `leaseTtl`.
    pub async fn run(self: Arc<Self>, balancer: Weak<Balancer>, mut shutdown: watch::Receiver<bool>) {
        let renew_every = (self.lease_ttl / 3).max(SYNC_INTERVAL);
        let mut last_renew = Instant::now();
        let mut was_up = false;
        loop {
            let Some(b) = balancer.upgrade() else { return };
            let up = self.link.is_connected() && self.sync(&b, &b.provider_ids()).await;
            if up && !was_up {
                // (Re)connected: Redis may have lost everything; publish our facts and leases.
                b.republish();
                self.renew().await;
                last_renew = Instant::now();
            } else if up && last_renew.elapsed() >= renew_every {
                self.renew().await;
                last_renew = Instant::now();
            }
            if !up && was_up {
                // Redis away: the pool's view is stale; decide on local state alone.
                let now = Instant::now();
                for id in b.provider_ids() {
                    b.set_pool_view(&id, PoolView::default(), now);
                }
            }
            was_up = up;
            drop(b);
            tokio::select! {
                _ = tokio::time::sleep(SYNC_INTERVAL) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn acquire_inner(&self, req: AcquireRequest) -> Acquired {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let member = self.member(ticket);
        let id = &req.provider;
        let mut invocation = ACQUIRE.prepare_invoke();
        for kind in ["lease", "cool", "quota", "suspended", "login", "drain", "open", "probe"] {
            invocation.key(self.keys(kind, id));
        }
        let (has_session, bind_key) = match &req.session {
            Some((session, rule)) => ("1", self.link.key(&format!("bind:{rule}:{session}"))),
            None => ("0", self.keys("bind", "-")),
        };
        invocation
            .key(bind_key)
            .arg(&member)
            .arg(req.cap)
            .arg(ms(self.lease_ttl))
            .arg(id)
            .arg(has_session)
            .arg(req.previous.as_deref().unwrap_or(""))
            .arg(ms(req.sticky_ttl).max(1));
        // Counted as held before the answer, so a sync meanwhile does not count it as another's.
        self.live().entry(id.clone()).or_default().insert(ticket);
        let reply = self
            .link
            .run(|mut c| async move { invocation.invoke_async::<Vec<redis::Value>>(&mut c).await })
            .await;
        let acquired = match reply {
            None => Acquired::Local,
            Some(reply) => parse_acquire(&reply, ticket),
        };
        if !matches!(acquired, Acquired::Granted { .. }) {
            self.forget(id, ticket);
        }
        acquired
    }

    /// Whether `value` of `id`'s `word` key is another instance's word this one has not applied
    /// yet. At the first look a word given before this instance started is only recorded (it is
    /// not for this instance); the value ends with when it was given (ms since the epoch).
    fn new_word(&self, id: &str, word: OperatorWord, value: Option<String>) -> bool {
        let key = format!("{}:{id}", word.kind());
        let mut seen = self.words_seen.lock().unwrap_or_else(|e| e.into_inner());
        let first = !seen.contains_key(&key);
        // No word (yet): remembered as empty, so that the next one counts.
        let value = value.unwrap_or_default();
        if seen.get(&key) == Some(&value) {
            return false;
        }
        let own = value.is_empty() || value.starts_with(&format!("{}:", self.instance));
        let given_after_start = value
            .rsplit(':')
            .next()
            .and_then(|ms| ms.parse::<i64>().ok())
            .is_some_and(|ms| ms >= self.started_ms);
        seen.insert(key, value);
        !own && (!first || given_after_start)
    }

    fn forget(&self, id: &str, ticket: u64) {
        let mut live = self.live();
        if let Some(t) = live.get_mut(id) {
            t.remove(&ticket);
        }
    }
}

fn text(v: &redis::Value) -> Option<String> {
    redis::from_redis_value_ref::<String>(v).ok()
}

fn int(v: Option<&redis::Value>) -> i64 {
    v.and_then(|v| redis::from_redis_value_ref::<i64>(v).ok()).unwrap_or(0)
}

fn parse_acquire(reply: &[redis::Value], ticket: u64) -> Acquired {
    let now = Instant::now();
    let at = |left: i64| (left > 0).then(|| now + Duration::from_millis(left.unsigned_abs()));
    match reply.first().and_then(text).as_deref() {
        Some("ok") => {
            Acquired::Granted { ticket, probe: int(reply.get(1)) == 1, kept: int(reply.get(2)) == 1 }
        }
        Some("bound") => reply.get(1).and_then(text).map_or(Acquired::Local, Acquired::Bound),
        Some("full") => Acquired::Full { others: u32::try_from(int(reply.get(1))).unwrap_or(u32::MAX) },
        Some("excluded") => Acquired::Excluded(PoolView {
            cooling_until: at(int(reply.get(1))),
            quota_until: at(int(reply.get(2))),
            suspended: int(reply.get(3)) == 1,
            needs_login: int(reply.get(4)) == 1,
            drained: int(reply.get(5)) == 1,
            open_until: at(int(reply.get(6))),
            others_in_flight: 0,
        }),
        _ => Acquired::Local,
    }
}

impl RedisPool {
    /// Runs `invocation` in the background (fire and forget).
    fn spawn_script(&self, invocation: redis::ScriptInvocation<'static>) {
        let link = self.link.clone();
        tokio::spawn(async move {
            link.run_background(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await }).await;
        });
    }
}

impl SharedPool for RedisPool {
    fn publish_usage(&self, provider: &str, usage: PoolUsage, fresh_for: Duration) {
        if !self.link.is_connected() {
            return;
        }
        let record = UsageRecord::of(&usage);
        let Ok(json) = serde_json::to_string(&record) else { return };
        let mut invocation = PUBLISH_USAGE.prepare_invoke();
        invocation
            .key(self.keys("usage", provider))
            .key(self.keys("metered", provider))
            .arg(json)
            .arg(record.checked_at)
            .arg(ms(fresh_for).max(1));
        self.spawn_script(invocation);
    }

    fn operator_word(&self, provider: &str, word: OperatorWord) {
        if !self.link.is_connected() {
            return;
        }
        let key = self.keys(word.kind(), provider);
        let value = format!(
            "{}:{}:{}",
            self.instance,
            uuid::Uuid::new_v4().simple(),
            chrono::Utc::now().timestamp_millis()
        );
        // Seen as our own: this instance applied it already.
        self.words_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{}:{provider}", word.kind()), value.clone());
        let link = self.link.clone();
        tokio::spawn(async move {
            link.run_background(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(ms(WORD_TTL))
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        });
    }

    fn meter(&self, provider: &str, credits: f64) {
        if !self.link.is_connected() || !credits.is_finite() || credits <= 0.0 {
            return;
        }
        let mut invocation = METER.prepare_invoke();
        invocation.key(self.keys("usage", provider)).key(self.keys("metered", provider)).arg(credits);
        self.spawn_script(invocation);
    }

    fn acquire(&self, req: AcquireRequest) -> BoxFuture<'_, Acquired> {
        Box::pin(self.acquire_inner(req))
    }

    fn release(&self, provider: &str, ticket: u64, probe: ProbeEnd) {
        self.forget(provider, ticket);
        if !self.link.is_connected() {
            // Gone with Redis, or it expires after leaseTtl.
            return;
        }
        let (end, reopen) = match probe {
            ProbeEnd::NotProbe => ("none", 0),
            ProbeEnd::Closed => ("closed", 0),
            ProbeEnd::Reopen(d) => ("reopen", ms(d)),
            ProbeEnd::Abandoned => ("abandoned", 0),
        };
        let mut invocation = RELEASE.prepare_invoke();
        invocation
            .key(self.keys("lease", provider))
            .key(self.keys("open", provider))
            .key(self.keys("probe", provider))
            .arg(self.member(ticket))
            .arg(end)
            .arg(reopen)
            .arg(ms(OPEN_GRACE));
        let link = self.link.clone();
        tokio::spawn(async move {
            link.run_background(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await }).await;
        });
        if probe == ProbeEnd::Closed {
            // The other instances' own open breakers close too.
            self.operator_word(provider, OperatorWord::Closed);
        }
    }

    fn publish(&self, p: Publication) {
        if !self.link.is_connected() {
            // Published again when Redis is back (the sync republishes on reconnect).
            return;
        }
        let flag = |f: Option<bool>| match f {
            None => -1,
            Some(false) => 0,
            Some(true) => 1,
        };
        let open: i64 = match p.open_for {
            None => -2,
            Some(None) => -1,
            Some(Some(d)) => i64::try_from(ms(d)).unwrap_or(i64::MAX),
        };
        let mut invocation = PUBLISH.prepare_invoke();
        for kind in ["cool", "quota", "suspended", "login", "drain", "open", "probe"] {
            invocation.key(self.keys(kind, &p.provider));
        }
        invocation
            .arg(p.cooling_for.map_or(0, ms))
            .arg(p.quota_for.map_or(0, ms))
            .arg(flag(p.suspended))
            .arg(flag(p.needs_login))
            .arg(flag(p.drained))
            .arg(open)
            .arg(u8::from(p.clear_cooling))
            .arg(u8::from(p.clear_quota))
            .arg(ms(FLAG_TTL))
            .arg(ms(OPEN_GRACE));
        let link = self.link.clone();
        tokio::spawn(async move {
            link.run_background(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await }).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_records_round_trip_and_junk_is_dropped() {
        let usage = PoolUsage {
            report: UsageReport {
                used: 12.5,
                limit: 50.0,
                reset_at: DateTime::<Utc>::from_timestamp_millis(1_767_225_600_000),
                tier: Some("KIRO PRO".into()),
            },
            checked_at: DateTime::<Utc>::from_timestamp_millis(1_764_000_000_123).unwrap(),
            metered: 0.0,
        };
        let json = serde_json::to_string(&UsageRecord::of(&usage)).unwrap();
        let back: UsageRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.usage(1.25), Some(PoolUsage { metered: 1.25, ..usage.clone() }));
        assert_eq!(back.usage(f64::NAN).map(|u| u.metered), Some(0.0));
        let junk = UsageRecord { used: -1.0, ..back };
        assert_eq!(junk.usage(0.0), None);
    }

    #[test]
    fn an_operators_word_is_applied_once_and_never_by_its_sender() {
        let link = Arc::new(RedisLink::new("redis://127.0.0.1:1/0", "t:", Duration::from_millis(5)).unwrap());
        let pool = RedisPool::new(link, Duration::from_secs(30));
        let word = OperatorWord::Reset;
        let before = format!("other:n1:{}", pool.started_ms - 60_000);
        // Given before this instance started: recorded, not applied.
        assert!(!pool.new_word("a", word, Some(before.clone())));
        assert!(!pool.new_word("a", word, Some(before)));
        // A new one: applied once.
        let later = format!("other:n2:{}", pool.started_ms + 1);
        assert!(pool.new_word("a", word, Some(later.clone())));
        assert!(!pool.new_word("a", word, Some(later)));
        // Gone (expired, or Redis restarted): nothing to do.
        assert!(!pool.new_word("a", word, None));
        // Our own word is not applied twice.
        let own = format!("{}:n3:{}", pool.instance, pool.started_ms + 2);
        assert!(!pool.new_word("a", word, Some(own)));
        // Seen first after start, given after start: applied (the first sync may come late).
        let fresh = format!("other:n4:{}", pool.started_ms + 3);
        assert!(pool.new_word("b", OperatorWord::Undrain, Some(fresh)));
    }
}

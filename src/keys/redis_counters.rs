//! The key counters on the shared state backend (Redis, issue #16): a budget, a rate bucket and a
//! concurrency cap hold for the whole pool, not per instance, and the month's credits survive a
//! restart.
//!
//! Keys (all named through [`RedisLink::key`], so under the configured prefix):
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `keys:credits:<name>:<YYYY-MM>` | string (float) | credits spent that month | 40 days after the last charge |
//! | `keys:bucket:<name>` | hash `tokens`, `ts` (ms) | the requests-per-minute bucket | 2 minutes unused |
//! | `keys:live:<name>` | sorted set slot → deadline (ms) | requests in flight, pool-wide | with its last slot |
//!
//! [`ADMIT`] checks all three limits and takes a token and a slot in one script (one round trip,
//! atomic; the clock is Redis's `TIME`, the same for every instance). A slot lives
//! [`SLOT_TTL`] at most, so a crashed instance's slots free themselves. Charges and releases
//! happen in the background; while Redis does not answer, [`super::Keys`] counts in memory.

use super::counters::{Admit, CountersError, KeyCounters, Limits, Refused};
use crate::state::RedisLink;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Longest a concurrency slot is held without being released (a crashed instance's slots end
/// then). Longer than any answer ccr lets run (`idleTimeout` between events is 5 min by default),
/// so a live answer never loses its slot.
pub const SLOT_TTL: Duration = Duration::from_secs(15 * 60);

/// How long a month's credits are kept after their last charge: past the month's end, so the
/// views can still show last month's total for a while; then Redis forgets them.
const CREDITS_TTL_SECS: i64 = 40 * 24 * 3600;

/// `KEYS`: credits, bucket, live. `ARGV`: budget, per-minute, max (empty for none), slot id,
/// slot ttl ms. Returns `{"ok", used}`, `{"budget", used}`, `{"rate", wait ms}` or
/// `{"concurrency", ""}`.
static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] ~= '' and used >= tonumber(ARGV[1]) then
  return {'budget', tostring(used)}
end
local tokens = nil
if ARGV[2] ~= '' then
  local rpm = tonumber(ARGV[2])
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
  tokens = rpm
  if b[1] and b[2] then
    tokens = math.min(rpm, tonumber(b[1]) + (now - tonumber(b[2])) * rpm / 60000)
  end
  if tokens < 1 then
    return {'rate', tostring(math.ceil((1 - tokens) * 60000 / rpm))}
  end
end
if ARGV[3] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
    return {'concurrency', ''}
  end
end
if tokens then
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[2], 120000)
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return {'ok', tostring(used)}
",
    )
});

/// The key counters in Redis.
#[derive(Debug)]
pub struct RedisCounters {
    link: Arc<RedisLink>,
}

impl RedisCounters {
    pub fn new(link: Arc<RedisLink>) -> RedisCounters {
        RedisCounters { link }
    }

    fn credits_key(&self, key: &str, month: &str) -> String {
        self.link.key(&format!("keys:credits:{key}:{month}"))
    }

    fn bucket_key(&self, key: &str) -> String {
        self.link.key(&format!("keys:bucket:{key}"))
    }

    fn live_key(&self, key: &str) -> String {
        self.link.key(&format!("keys:live:{key}"))
    }

    /// Run `op` off the request path, when there is a runtime to run it on.
    fn background<F>(&self, what: &'static str, op: F)
    where
        F: FnOnce(Arc<RedisLink>) -> BoxFuture<'static, Option<()>> + Send + 'static,
    {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let link = self.link.clone();
        handle.spawn(async move {
            if op(link).await.is_none() {
                tracing::debug!("key counters: {what} not recorded in Redis");
            }
        });
    }
}

fn decision(reply: &[String]) -> Result<Admit, CountersError> {
    let number = |i: usize| reply.get(i).and_then(|v| v.parse::<f64>().ok());
    match reply.first().map(String::as_str) {
        Some("ok") => Ok(Admit::Yes { used: number(1).unwrap_or(0.0), slot: 0 }),
        Some("budget") => Ok(Admit::No(Refused::Budget { used: number(1).unwrap_or(0.0), budget: 0.0 })),
        Some("rate") => Ok(Admit::No(Refused::Rate {
            per_minute: 0,
            retry_after: Duration::from_millis(number(1).unwrap_or(1000.0).max(1.0) as u64),
        })),
        Some("concurrency") => Ok(Admit::No(Refused::Concurrency { max: 0 })),
        _ => Err(CountersError(format!("unexpected answer from the admit script: {reply:?}"))),
    }
}

impl KeyCounters for RedisCounters {
    fn admit<'a>(
        &'a self,
        key: &'a str,
        month: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Admit, CountersError>> {
        Box::pin(async move {
            let slot: u64 = rand::random();
            let opt = |v: Option<String>| v.unwrap_or_default();
            let keys = [self.credits_key(key, month), self.bucket_key(key), self.live_key(key)];
            let args = [
                opt(limits.monthly_credits.map(|c| c.to_string())),
                opt(limits.requests_per_minute.map(|n| n.to_string())),
                opt(limits.max_concurrent.map(|n| n.to_string())),
                slot.to_string(),
                SLOT_TTL.as_millis().to_string(),
            ];
            let reply = self
                .link
                .run(|mut conn| async move {
                    let mut call = ADMIT.prepare_invoke();
                    for k in &keys {
                        call.key(k);
                    }
                    for a in &args {
                        call.arg(a);
                    }
                    call.invoke_async::<Vec<String>>(&mut conn).await
                })
                .await
                .ok_or_else(|| CountersError("Redis did not answer".into()))?;
            // The script knows the counts; the limits themselves are ours.
            Ok(match decision(&reply)? {
                Admit::Yes { used, .. } => Admit::Yes { used, slot },
                Admit::No(Refused::Budget { used, .. }) => {
                    Admit::No(Refused::Budget { used, budget: limits.monthly_credits.unwrap_or(0.0) })
                }
                Admit::No(Refused::Rate { retry_after, .. }) => Admit::No(Refused::Rate {
                    per_minute: limits.requests_per_minute.unwrap_or(0),
                    retry_after,
                }),
                Admit::No(Refused::Concurrency { .. }) => {
                    Admit::No(Refused::Concurrency { max: limits.max_concurrent.unwrap_or(0) })
                }
            })
        })
    }

    fn release(&self, key: &str, slot: u64) {
        let live = self.live_key(key);
        self.background("a slot's release", move |link| {
            Box::pin(async move {
                link.run_background(|mut conn| async move {
                    redis::cmd("ZREM").arg(&live).arg(slot.to_string()).query_async::<()>(&mut conn).await
                })
                .await
            })
        });
    }

    fn charge(&self, key: &str, month: &str, credits: f64) {
        if !(credits.is_finite() && credits > 0.0) {
            return;
        }
        let k = self.credits_key(key, month);
        self.background("a charge", move |link| {
            Box::pin(async move {
                link.run_background(|mut conn| async move {
                    redis::pipe()
                        .atomic()
                        .cmd("INCRBYFLOAT")
                        .arg(&k)
                        .arg(credits)
                        .ignore()
                        .cmd("EXPIRE")
                        .arg(&k)
                        .arg(CREDITS_TTL_SECS)
                        .ignore()
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await
            })
        });
    }

    fn credits<'a>(
        &'a self,
        keys: &'a [String],
        month: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, f64>, CountersError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(HashMap::new());
            }
            let names: Vec<String> = keys.iter().map(|k| self.credits_key(k, month)).collect();
            let values = self
                .link
                .run_background(|mut conn| async move {
                    redis::cmd("MGET").arg(&names).query_async::<Vec<Option<String>>>(&mut conn).await
                })
                .await
                .ok_or_else(|| CountersError("Redis did not answer".into()))?;
            Ok(keys
                .iter()
                .zip(values)
                .filter_map(|(k, v)| v.and_then(|v| v.parse().ok()).map(|v| (k.clone(), v)))
                .collect())
        })
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_answers_become_decisions() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(decision(&s(&["ok", "1.5"])), Ok(Admit::Yes { used: 1.5, slot: 0 }));
        assert!(
            matches!(decision(&s(&["budget", "3"])), Ok(Admit::No(Refused::Budget { used, .. })) if used == 3.0)
        );
        assert_eq!(
            decision(&s(&["rate", "2500"])),
            Ok(Admit::No(Refused::Rate { per_minute: 0, retry_after: Duration::from_millis(2500) }))
        );
        assert_eq!(decision(&s(&["concurrency", ""])), Ok(Admit::No(Refused::Concurrency { max: 0 })));
        assert!(decision(&s(&["what"])).is_err());
    }
}

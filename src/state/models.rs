//! The accounts' model lists (`ListAvailableModels`) shared by the pool: one instance fetches an
//! account's list and publishes it under `models:{id}` for [`CACHE_TTL`]; the others read it
//! instead of asking the account again. Reads are bounded by the request-path timeout and
//! skipped while Redis is down (each instance then fetches for itself, as alone).

use super::RedisLink;
use crate::providers::codewhisperer::model_list::{CACHE_TTL, KiroModel, SharedModelLists};
use redis::Script;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Per key: the list (JSON) and its time left in ms. KEYS: `models:{id}`….
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for i = 1, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[i])
  out[#out + 1] = redis.call('PTTL', KEYS[i])
end
return out
",
    )
});

/// The model lists of one pool on Redis.
#[derive(Debug)]
pub struct RedisModels {
    link: Arc<RedisLink>,
}

impl RedisModels {
    pub fn new(link: Arc<RedisLink>) -> RedisModels {
        RedisModels { link }
    }

    fn key(&self, id: &str) -> String {
        self.link.key(&format!("models:{id}"))
    }

    /// The lists the pool holds for `ids`, with how long each stays fresh. Empty when Redis
    /// does not answer.
    async fn load_lists(&self, ids: &[String]) -> Vec<(String, Vec<KiroModel>, Duration)> {
        if ids.is_empty() {
            return Vec::new();
        }
        let mut invocation = LOAD.prepare_invoke();
        for id in ids {
            invocation.key(self.key(id));
        }
        let Some(values) = self
            .link
            .run(|mut c| async move { invocation.invoke_async::<Vec<redis::Value>>(&mut c).await })
            .await
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, pair) in ids.iter().zip(values.chunks_exact(2)) {
            let Ok(json) = redis::from_redis_value_ref::<String>(&pair[0]) else { continue };
            let left = redis::from_redis_value_ref::<i64>(&pair[1]).unwrap_or(0);
            let Ok(models) = serde_json::from_str::<Vec<KiroModel>>(&json) else { continue };
            if left > 0 {
                out.push((id.clone(), models, Duration::from_millis(left.unsigned_abs()).min(CACHE_TTL)));
            }
        }
        out
    }

    /// Publishes account `id`'s list for [`CACHE_TTL`] (does not wait).
    fn store_list(&self, id: &str, models: &[KiroModel]) {
        if !self.link.is_connected() {
            return;
        }
        let Ok(json) = serde_json::to_string(models) else { return };
        let key = self.key(id);
        let link = self.link.clone();
        let ttl = u64::try_from(CACHE_TTL.as_millis()).unwrap_or(u64::MAX);
        tokio::spawn(async move {
            link.run_background(|mut c| async move {
                redis::cmd("SET").arg(&key).arg(json).arg("PX").arg(ttl).query_async::<()>(&mut c).await
            })
            .await;
        });
    }
}

impl SharedModelLists for RedisModels {
    fn load<'a>(
        &'a self,
        ids: &'a [String],
    ) -> futures_util::future::BoxFuture<'a, Vec<(String, Vec<KiroModel>, Duration)>> {
        Box::pin(self.load_lists(ids))
    }

    fn store(&self, id: &str, models: &[KiroModel]) {
        self.store_list(id, models);
    }
}

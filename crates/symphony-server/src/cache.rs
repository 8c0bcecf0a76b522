//! The exact-match response cache, in tiers: memory (LRU, bounded), then Redis when the
//! server has one. Only deterministic requests are cached (temperature 0, or a fixed seed:
//! Symphony gives the same tokens for the same seed), keyed by the model's file, the route
//! and the request body in canonical form, so any change of prompt, model or sampling
//! setting is a different entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::redis::Redis;
use crate::util::lock;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Entries kept in memory; 0 turns the cache off.
    pub entries: usize,
    pub ttl: Duration,
}

struct Entry {
    body: Bytes,
    stored: Instant,
    tick: u64,
}

pub struct ResponseCache {
    config: CacheConfig,
    redis: Option<Arc<Redis>>,
    memory: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    entries: HashMap<String, Entry>,
    /// Recency order: tick → key.
    order: BTreeMap<u64, String>,
    clock: u64,
}

/// Fields that change how a reply is delivered or attributed, not what it says.
const NOT_IN_KEY: [&str; 3] = ["stream", "stream_options", "user"];

impl ResponseCache {
    pub fn new(config: CacheConfig, redis: Option<Arc<Redis>>) -> Self {
        Self {
            config,
            redis,
            memory: Mutex::new(Memory::default()),
        }
    }

    /// The key of a request if it is cacheable: not streamed, and deterministic.
    pub fn key(&self, route: &str, model_blob: &str, body: &Value) -> Option<String> {
        if self.config.entries == 0 || body.get("stream").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        let greedy = body
            .get("temperature")
            .and_then(Value::as_f64)
            .is_some_and(|t| t == 0.0)
            || body
                .pointer("/options/temperature")
                .and_then(Value::as_f64)
                .is_some_and(|t| t == 0.0);
        let seeded = body.get("seed").is_some_and(|s| !s.is_null())
            || body.pointer("/options/seed").is_some_and(|s| !s.is_null());
        if !(greedy || seeded) {
            return None;
        }
        let mut canonical = body.clone();
        if let Some(obj) = canonical.as_object_mut() {
            for field in NOT_IN_KEY {
                obj.remove(field);
            }
        }
        // serde_json's maps are sorted by key, so equal requests serialise equally.
        let text = format!("{route}\n{model_blob}\n{canonical}");
        Some(format!("{:x}", Sha256::digest(text.as_bytes())))
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        {
            let mut m = lock(&self.memory);
            m.clock += 1;
            let tick = m.clock;
            let fresh = match m.entries.get_mut(key) {
                Some(e) if e.stored.elapsed() < self.config.ttl => {
                    let old = std::mem::replace(&mut e.tick, tick);
                    Some((old, e.body.clone()))
                }
                _ => None,
            };
            if let Some((old, body)) = fresh {
                m.order.remove(&old);
                m.order.insert(tick, key.to_string());
                return Some(body);
            }
        }
        let redis = self.redis.as_ref()?;
        match redis.get(&format!("symphony:cache:{key}")).await {
            Ok(Some(body)) => {
                let body = Bytes::from(body);
                self.remember(key, body.clone());
                Some(body)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(event = "redis_error", error = %e);
                None
            }
        }
    }

    pub async fn put(&self, key: &str, body: Bytes) {
        self.remember(key, body.clone());
        if let Some(redis) = &self.redis {
            if let Err(e) = redis
                .set_ex(&format!("symphony:cache:{key}"), &body, self.config.ttl)
                .await
            {
                tracing::warn!(event = "redis_error", error = %e);
            }
        }
    }

    fn remember(&self, key: &str, body: Bytes) {
        let mut m = lock(&self.memory);
        m.clock += 1;
        let tick = m.clock;
        if let Some(old) = m.entries.insert(
            key.to_string(),
            Entry {
                body,
                stored: Instant::now(),
                tick,
            },
        ) {
            m.order.remove(&old.tick);
        }
        m.order.insert(tick, key.to_string());
        while m.entries.len() > self.config.entries {
            let Some((_, oldest)) = m.order.pop_first() else {
                break;
            };
            m.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cache(entries: usize) -> ResponseCache {
        ResponseCache::new(
            CacheConfig {
                entries,
                ttl: Duration::from_secs(60),
            },
            None,
        )
    }

    #[test]
    fn only_deterministic_unstreamed_requests_have_keys() {
        let c = cache(4);
        let greedy = json!({"model": "m", "messages": [], "temperature": 0});
        let k = c.key("/v1/chat/completions", "blob", &greedy).unwrap();
        // Delivery fields do not change the key; content fields do.
        let mut with_user = greedy.clone();
        with_user["user"] = json!("x");
        assert_eq!(
            c.key("/v1/chat/completions", "blob", &with_user),
            Some(k.clone())
        );
        assert_ne!(
            c.key("/v1/chat/completions", "other", &greedy),
            Some(k.clone())
        );
        assert_ne!(c.key("/v1/completions", "blob", &greedy), Some(k));
        assert!(c.key("/", "b", &json!({"temperature": 0.7})).is_none());
        assert!(c
            .key("/", "b", &json!({"temperature": 0.7, "seed": 3}))
            .is_some());
        assert!(c
            .key("/", "b", &json!({"temperature": 0, "stream": true}))
            .is_none());
        assert!(c
            .key("/", "b", &json!({"options": {"temperature": 0}}))
            .is_some());
        assert!(cache(0).key("/", "b", &greedy).is_none());
    }

    #[tokio::test]
    async fn memory_tier_is_lru_bounded() {
        let c = cache(2);
        c.put("a", Bytes::from("1")).await;
        c.put("b", Bytes::from("2")).await;
        assert_eq!(c.get("a").await, Some(Bytes::from("1"))); // a is now the most recent
        c.put("c", Bytes::from("3")).await; // evicts b
        assert!(c.get("b").await.is_none());
        assert!(c.get("a").await.is_some() && c.get("c").await.is_some());
    }
}

//! Redis for the tiers servers share, rate-limit counters and the response cache, through the
//! `redis` crate: a small pool of multiplexed connections per server, each reconnecting by
//! itself, `rediss://` over TLS, AUTH with a password or a user and password. Callers treat
//! Redis as best effort: an unreachable Redis never fails a request.
//!
//! Why a pool of multiplexed connections: one connection carries any number of commands at
//! once, but in order, so a large cached reply being read holds up the small counter updates
//! queued behind it. Commands take the connections in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use tokio::sync::OnceCell;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error(
        "invalid Redis URL '{url}' ({reason}): expected \
         redis[s]://[[user]:password@]host[:port][/db]"
    )]
    Url { url: String, reason: String },
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Each command's answer is awaited this long before the request goes on without Redis.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Adds to a counter and gives it a lifetime when it has none, in one step: two replicas
/// counting the same key at once cannot leave it without an expiry (nor count twice).
const INCR_WITH_EXPIRY: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('TTL', KEYS[1]) == -1 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return n
";

/// Connections per server unless told otherwise.
pub const DEFAULT_CONNECTIONS: usize = 4;

pub struct Redis {
    client: redis::Client,
    /// Each made at its first command (so a server starts before Redis does); a manager
    /// then reconnects on its own after Redis restarts.
    pool: Vec<OnceCell<ConnectionManager>>,
    /// The connection the next command takes.
    next: AtomicUsize,
    incr: Script,
}

impl Redis {
    pub fn new(url: &str) -> Result<Self, RedisError> {
        Self::with_connections(url, DEFAULT_CONNECTIONS)
    }

    /// A pool of `connections` (at least one).
    pub fn with_connections(url: &str, connections: usize) -> Result<Self, RedisError> {
        let bad = |reason: String| RedisError::Url {
            url: url.to_string(),
            reason,
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(bad("not a redis:// or rediss:// URL".into()));
        }
        let client = redis::Client::open(url).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            client,
            pool: (0..connections.max(1)).map(|_| OnceCell::new()).collect(),
            next: AtomicUsize::new(0),
            incr: Script::new(INCR_WITH_EXPIRY),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        let slot = &self.pool[self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len()];
        let manager = slot
            .get_or_try_init(|| {
                // Set up once per connection, not at every command.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(RESPONSE_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                self.client.get_connection_manager_with_config(config)
            })
            .await?;
        Ok(manager.clone())
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        Ok(self.connection().await?.get(key).await?)
    }

    pub async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), RedisError> {
        let secs = ttl.as_secs().max(1);
        let _: () = self.connection().await?.set_ex(key, value, secs).await?;
        Ok(())
    }

    /// `INCRBY key by`, setting the key to expire after `ttl` when it has no expiry yet.
    pub async fn incr_by(
        &self,
        key: &str,
        by: u64,
        ttl: Option<Duration>,
    ) -> Result<i64, RedisError> {
        let secs = ttl.map_or(0, |t| t.as_secs().max(1));
        let mut c = self.connection().await?;
        Ok(self
            .incr
            .key(key)
            .arg(by)
            .arg(secs)
            .invoke_async(&mut c)
            .await?)
    }

    pub async fn get_int(&self, key: &str) -> Result<i64, RedisError> {
        let value: Option<i64> = self.connection().await?.get(key).await?;
        Ok(value.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for good in [
            "redis://127.0.0.1:6380/2",
            "redis://:pw@localhost",
            "redis://user:pw@localhost:6379/0",
            "rediss://cache.example:6380",
        ] {
            assert!(Redis::new(good).is_ok(), "{good}");
        }
        for bad in ["http://x", "redis:///1", "localhost:6379"] {
            assert!(
                matches!(Redis::new(bad), Err(RedisError::Url { .. })),
                "{bad}"
            );
        }
    }
}

//! Per-key rate limits (requests and tokens per minute) and token quotas, counted in memory,
//! or in Redis when the server has one so that several servers share the counts.
//!
//! Minute windows are fixed (`unix_time / 60`), as LiteLLM and most gateways count; a
//! refused request is told when the window turns over (`Retry-After`). Tokens are counted
//! when a generation ends, so one request may overshoot a token limit; the next is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::redis::Redis;
use crate::util::{lock, unix_now};

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    minute: u64,
    requests: u64,
    tokens: u64,
}

pub struct RateLimiter {
    redis: Option<Arc<Redis>>,
    windows: Mutex<HashMap<String, Window>>,
    used: Mutex<HashMap<String, u64>>,
}

impl RateLimiter {
    pub fn new(redis: Option<Arc<Redis>>) -> Self {
        Self {
            redis,
            windows: Mutex::new(HashMap::new()),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request against its caller's limits, or refuses it with 429.
    pub async fn admit(&self, p: &Principal) -> Result<(), ApiError> {
        self.limit(p, true).await
    }

    /// Whether a request would be admitted now, without counting one: for a WebSocket
    /// upgrade, whose messages are each admitted as requests of their own.
    pub async fn check(&self, p: &Principal) -> Result<(), ApiError> {
        self.limit(p, false).await
    }

    async fn limit(&self, p: &Principal, count: bool) -> Result<(), ApiError> {
        let l = p.limits;
        if l.rpm.is_none() && l.tpm.is_none() && l.token_quota.is_none() {
            return Ok(());
        }
        let now = unix_now();
        let minute = now / 60;
        let retry = 60 - now % 60;
        let (requests, tokens, used) = match &self.redis {
            Some(redis) => match self.redis_counts(redis, p, minute, count).await {
                Ok(c) => c,
                Err(e) => {
                    // Best effort: a Redis outage does not take the API down with it.
                    tracing::warn!(event = "redis_error", error = %e);
                    self.memory_counts(p, minute, count)
                }
            },
            None => self.memory_counts(p, minute, count),
        };
        if let Some(quota) = l.token_quota {
            if used >= quota {
                return Err(ApiError::quota_spent(format!(
                    "'{}' has used its token quota ({quota} tokens); the quota does not \
                     reset: ask the server's admin for a new key",
                    p.name
                )));
            }
        }
        if let Some(rpm) = l.rpm {
            if requests > rpm {
                return Err(ApiError::too_many_requests(
                    format!(
                        "rate limit: '{}' may make {rpm} requests per minute",
                        p.name
                    ),
                    retry,
                ));
            }
        }
        if let Some(tpm) = l.tpm {
            if tokens >= tpm {
                return Err(ApiError::too_many_requests(
                    format!("rate limit: '{}' may use {tpm} tokens per minute", p.name),
                    retry,
                ));
            }
        }
        Ok(())
    }

    /// Counts this request (when `count`) and returns (requests this minute with this one,
    /// tokens this minute, tokens ever).
    fn memory_counts(&self, p: &Principal, minute: u64, count: bool) -> (u64, u64, u64) {
        let mut windows = lock(&self.windows);
        let w = windows.entry(p.name.clone()).or_default();
        if w.minute != minute {
            *w = Window {
                minute,
                ..Window::default()
            };
        }
        w.requests += u64::from(count);
        let requests = w.requests + u64::from(!count);
        let used = *lock(&self.used).get(&p.name).unwrap_or(&0);
        (requests, w.tokens, used)
    }

    async fn redis_counts(
        &self,
        redis: &Redis,
        p: &Principal,
        minute: u64,
        count: bool,
    ) -> Result<(u64, u64, u64), crate::redis::RedisError> {
        let base = format!("symphony:rl:{}:{minute}", p.name);
        let ttl = Some(Duration::from_secs(120));
        let requests = redis
            .incr_by(&format!("{base}:req"), u64::from(count), ttl)
            .await?
            + i64::from(!count);
        let tokens = redis.get_int(&format!("{base}:tok")).await?;
        let used = redis.get_int(&format!("symphony:quota:{}", p.name)).await?;
        Ok((requests as u64, tokens.max(0) as u64, used.max(0) as u64))
    }

    /// Adds a finished generation's tokens to its caller's counts.
    pub async fn record_tokens(&self, p: &Principal, tokens: u64) {
        let l = p.limits;
        if l.tpm.is_none() && l.token_quota.is_none() {
            return;
        }
        let minute = unix_now() / 60;
        if let Some(redis) = &self.redis {
            let base = format!("symphony:rl:{}:{minute}", p.name);
            let per_minute = redis
                .incr_by(
                    &format!("{base}:tok"),
                    tokens,
                    Some(Duration::from_secs(120)),
                )
                .await;
            let ever = redis
                .incr_by(&format!("symphony:quota:{}", p.name), tokens, None)
                .await;
            if let Err(e) = per_minute.and(ever) {
                tracing::warn!(event = "redis_error", error = %e);
            } else {
                return;
            }
        }
        {
            let mut windows = lock(&self.windows);
            let w = windows.entry(p.name.clone()).or_default();
            if w.minute != minute {
                *w = Window {
                    minute,
                    ..Window::default()
                };
            }
            w.tokens += tokens;
        }
        *lock(&self.used).entry(p.name.clone()).or_default() += tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Limits, Role};

    fn principal(limits: Limits) -> Principal {
        Principal {
            name: "k".into(),
            role: Role::User,
            limits,
        }
    }

    #[tokio::test]
    async fn requests_per_minute_then_429() {
        let limiter = RateLimiter::new(None);
        let p = principal(Limits {
            rpm: Some(2),
            ..Limits::default()
        });
        limiter.admit(&p).await.unwrap();
        limiter.admit(&p).await.unwrap();
        let e = limiter.admit(&p).await.unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(e.retry_after.is_some_and(|s| (1..=60).contains(&s)));
    }

    #[tokio::test]
    async fn a_check_counts_nothing() {
        let limiter = RateLimiter::new(None);
        let p = principal(Limits {
            rpm: Some(1),
            ..Limits::default()
        });
        limiter.check(&p).await.unwrap();
        limiter.check(&p).await.unwrap();
        limiter.admit(&p).await.unwrap();
        assert!(limiter.check(&p).await.is_err());
        assert!(limiter.admit(&p).await.is_err());
    }

    #[tokio::test]
    async fn tokens_and_quota() {
        let limiter = RateLimiter::new(None);
        let p = principal(Limits {
            tpm: Some(100),
            token_quota: Some(150),
            ..Limits::default()
        });
        limiter.admit(&p).await.unwrap();
        limiter.record_tokens(&p, 120).await;
        assert!(limiter
            .admit(&p)
            .await
            .unwrap_err()
            .message
            .contains("tokens per minute"));
        let quota_only = principal(Limits {
            token_quota: Some(100),
            ..Limits::default()
        });
        // Same name: the quota counts what was used. It never resets, so no Retry-After.
        let spent = limiter.admit(&quota_only).await.unwrap_err();
        assert!(spent.message.contains("quota"));
        assert!(spent.message.contains("does not reset"));
        assert_eq!(spent.retry_after, None);
    }
}

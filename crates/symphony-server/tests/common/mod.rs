//! A server built in process over a temporary home (an empty store, no model loaded), with
//! one API key per role, and a way to send it one request through `tower`'s `oneshot`: the
//! router's behaviour without a process, a port or a model.

#![allow(dead_code)] // each test binary uses its own part

pub mod prometheus;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use symphony_server::{
    Auth, CacheConfig, KeyFile, Limits, RegistryConfig, Role, ServerConfig, SharedState,
};
use symphony_store::Store;
use tower::ServiceExt;

/// The largest body the test server accepts, small so that 413 is cheap to provoke.
pub const MAX_BODY_BYTES: usize = 4096;

pub struct Harness {
    pub state: SharedState,
    pub reader: String,
    pub user: String,
    pub admin: String,
    /// A user key allowed one request a minute.
    pub limited: String,
    _home: tempfile::TempDir,
}

/// What came back.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Harness {
    /// Within a tokio runtime (the state starts tasks).
    pub fn new() -> Self {
        Self::with_jwt(None)
    }

    /// Also accepting the JWTs `jwt` verifies.
    pub fn with_jwt(jwt: Option<symphony_server::JwtVerifier>) -> Self {
        Self::build(jwt, None)
    }

    /// Counting limits in the Redis at `url`, as a replica of a fleet does.
    pub fn with_redis(url: &str) -> Self {
        let redis = symphony_server::redis::Redis::new(url).expect("a Redis URL");
        Self::build(None, Some(std::sync::Arc::new(redis)))
    }

    fn build(
        jwt: Option<symphony_server::JwtVerifier>,
        redis: Option<std::sync::Arc<symphony_server::redis::Redis>>,
    ) -> Self {
        let home = tempfile::tempdir().expect("a temporary home");
        let keys = KeyFile::open(home.path().join("keys.json")).expect("a key file");
        let make = |name: &str, role: Role, limits: Limits| {
            keys.create(name, role, limits).expect("a key")
        };
        let reader = make("reader", Role::Reader, Limits::default());
        let user = make("user", Role::User, Limits::default());
        let admin = make("admin", Role::Admin, Limits::default());
        let limited = make(
            "limited",
            Role::User,
            Limits {
                rpm: Some(1),
                ..Limits::default()
            },
        );
        let config = ServerConfig {
            registry: RegistryConfig {
                max_memory: 1 << 30,
                first_use: symphony_server::FirstUse::Refuse,
                keep_alive: Duration::from_secs(300),
                kv_cache_tokens: 1024,
                scheduler: symphony_engine::SchedulerConfig::default(),
            },
            response_cache: CacheConfig {
                entries: 0,
                ttl: Duration::from_secs(60),
            },
            max_waiting: 8,
            max_body_bytes: MAX_BODY_BYTES,
            request_timeout: Duration::from_secs(30),
            preload: Vec::new(),
            collections: home.path().join("collections"),
            agents: home.path().join("agents"),
            agent_runs: home.path().join("runs"),
            crews: home.path().join("crews"),
        };
        let auth = Auth::Enabled {
            keys: Some(keys),
            jwt,
        };
        let store = Store::at(home.path().join("store"));
        let state = symphony_server::AppState::new(store, config, auth, redis);
        Self {
            state,
            reader,
            user,
            admin,
            limited,
            _home: home,
        }
    }

    /// The server's router, as `serve` runs it.
    pub fn router(&self) -> Router {
        symphony_server::router(self.state.clone())
    }

    /// The key holding `role`.
    pub fn key(&self, role: Role) -> &str {
        match role {
            Role::Reader => &self.reader,
            Role::User => &self.user,
            Role::Admin => &self.admin,
        }
    }

    /// Sends one request: `key` as a bearer token, `body` as JSON unless `content_type`
    /// says otherwise (`None`: no content type at all).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<(&str, &[u8])>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                if !content_type.is_empty() {
                    request = request.header(header::CONTENT_TYPE, content_type);
                }
                Body::from(bytes.to_vec())
            }
            None => Body::empty(),
        };
        let request = request.body(body).expect("a request");
        let response =
            tokio::time::timeout(Duration::from_secs(30), self.router().oneshot(request))
                .await
                .unwrap_or_else(|_| panic!("{path} did not answer within 30s"))
                .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .expect("a body");
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A JSON request.
    pub async fn json(&self, method: Method, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.send(method, path, key, Some(("application/json", &bytes)))
            .await
    }
}

/// `path` with each parameter filled in (`{name}` -> `x`, `{*model}` -> `x`), so that a
/// request reaches the route's handler.
pub fn concrete(path: &str) -> String {
    path.split('/')
        .map(|part| if part.starts_with('{') { "x" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

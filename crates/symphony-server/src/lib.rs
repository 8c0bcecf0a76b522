//! `symphony serve`: OpenAI- and Ollama-compatible HTTP APIs over the engine's batching
//! scheduler, with the model registry, metrics and request logs.
//!
//! Architecture invariant: this crate speaks HTTP and owns nothing numeric. Requests are
//! turned into engine [`Request`](symphony_engine::Request)s, submitted to the model's
//! [`Scheduler`](symphony_engine::Scheduler), and its events streamed back; every model
//! detail stays behind the engine.

mod a2a;
mod admin;
pub mod agents;
pub mod auth;
mod cache;
mod collections;
mod crews;
mod embeddings;
mod error;
mod generation;
mod limits;
mod metrics;
mod ollama;
mod openai;
pub mod openapi;
mod probes;
pub mod redis;
pub mod registry;
pub mod routes;
mod structured;
mod tokenize;
mod trace_context;
mod util;
mod ws;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::FutureExt;
use symphony_store::Store;
use tracing::Instrument;

pub use auth::{Auth, JwtConfig, JwtVerifier, KeyFile, Limits, Principal, Role};
pub use cache::CacheConfig;
pub use error::ApiError;
pub use registry::{Registry, RegistryConfig};
/// Whether the registry fetches a packaged model the store lacks (part of [`RegistryConfig`]).
pub use symphony_app::FirstUse;
pub use util::parse_duration;

/// Everything `symphony serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub registry: RegistryConfig,
    pub response_cache: CacheConfig,
    /// Requests waiting per model beyond which new ones get 503 (backpressure).
    pub max_waiting: usize,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest a non-streaming request may take before it is cut off (504).
    pub request_timeout: Duration,
    /// Models loaded when the server starts (so `/ready` means they answer at once).
    pub preload: Vec<String>,
    /// Where the document collections live (the directory `symphony rag` uses).
    pub collections: std::path::PathBuf,
    /// Where the agent files are (`/v1/agents`).
    pub agents: std::path::PathBuf,
    /// The agent run store, shared with `symphony agent`.
    pub agent_runs: std::path::PathBuf,
    /// Where the crew files are (`/v1/crews`: these and the built-in crews); their runs
    /// are kept in its `runs/`, shared with `symphony crew`.
    pub crews: std::path::PathBuf,
}

pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: metrics::Metrics,
    pub config: ServerConfig,
    pub auth: Auth,
    pub agents: agents::Agents,
    limiter: limits::RateLimiter,
    cache: cache::ResponseCache,
    next_request: AtomicU64,
    ready: std::sync::atomic::AtomicBool,
    /// Unix time of the registry's last completed sweep (0 before `serve_on` starts it):
    /// `/health` fails when it stops, since then nothing is unloaded any more.
    last_sweep: AtomicU64,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// `redis`: the shared tier for rate limits and the response cache.
    pub fn new(
        store: Store,
        config: ServerConfig,
        auth: Auth,
        redis: Option<Arc<redis::Redis>>,
    ) -> SharedState {
        Arc::new(Self {
            registry: Arc::new(Registry::new(store, config.registry.clone())),
            metrics: metrics::Metrics::default(),
            auth,
            agents: agents::Agents::new(config.agents.clone(), config.agent_runs.clone()),
            limiter: limits::RateLimiter::new(redis.clone()),
            cache: cache::ResponseCache::new(config.response_cache.clone(), redis),
            config,
            next_request: AtomicU64::new(1),
            ready: false.into(),
            last_sweep: AtomicU64::new(0),
        })
    }
}

/// The routes (see [`routes::table`]), with logging, metrics, the role check and the body
/// limit around them.
pub fn router(state: SharedState) -> Router {
    routes::router()
        .fallback(probes::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// Binds, preloads, and serves until Ctrl-C / SIGTERM, finishing requests in flight.
pub async fn serve(state: SharedState, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(state, listener).await
}

pub async fn serve_on(
    state: SharedState,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let sweeper = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            // A panic in one sweep must not end the sweeps (or take a lock down with it);
            // it is logged, and `/health` reports the sweep as stale until one succeeds.
            let registry = &sweeper.registry;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                registry.unload_expired()
            })) {
                Ok(()) => sweeper
                    .last_sweep
                    .store(util::unix_now(), Ordering::Relaxed),
                Err(_) => tracing::error!(event = "sweep_failed"),
            }
        }
    });
    let app = router(state.clone());
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal());
    tokio::spawn(preload(state.clone()));
    server.await
}

/// Loads the models the server was told to preload, then marks it ready (`/ready` answers
/// 200 from then on). A model that fails to load is logged, not fatal.
pub async fn preload(state: SharedState) {
    for name in &state.config.preload {
        if let Err(e) = state.registry.get(name, None).await {
            tracing::error!(event = "preload_failed", model = %name, error = %e.message);
        }
    }
    state.ready.store(true, Ordering::SeqCst);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// The route pattern a request matched (`/v1/models/{*model}`), for metrics and roles.
fn matched_route(req: &Request) -> Option<String> {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
}

/// Gives every request an id (`x-request-id`, echoed back), then logs and counts it.
async fn observe(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(String::from)
        .unwrap_or_else(|| format!("req-{}", state.next_request.fetch_add(1, Ordering::Relaxed)));
    let route = matched_route(&req).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    // Every line logged while the request runs carries its id, method and path; as a trace
    // span (OpenTelemetry's HTTP server conventions) it is the root of the engine's spans.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        %method,
        %path,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    trace_context::join_callers_trace(&span, req.headers());
    // A handler that panics answers 500 rather than dropping the connection.
    let mut response = AssertUnwindSafe(next.run(req).instrument(span.clone()))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            ApiError::internal("the request failed inside the server; see the server log")
                .into_response()
        });
    let status = response.status().as_u16();
    state.metrics.count_request(&route, status);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    // Inside the request's span, as every line logged while it ran.
    span.in_scope(|| {
        tracing::info!(
            event = "request",
            status,
            duration_ms = start.elapsed().as_secs_f64() * 1e3,
        )
    });
    response
}

/// Establishes the caller, checks the route's role, and counts inference requests against
/// the caller's rate limits. The [`Principal`] goes into the request for the handlers.
async fn authorize(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    let route = matched_route(&req).unwrap_or_else(|| req.uri().path().to_string());
    let Some(needed) = routes::required_role(req.method(), &route) else {
        return next.run(req).await;
    };
    let bearer: Option<String> = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(String::from);
    // Each API answers in its own error shape.
    let refuse = |e: ApiError| {
        if route.starts_with("/api/") {
            e.ollama().into_response()
        } else {
            e.into_response()
        }
    };
    // A WebSocket's messages are each a request, admitted one by one (`ws`); opening one
    // only needs the room for a first.
    let count = route != "/v1/chat/ws";
    let what = format!("{} {route}", req.method());
    let principal = match admit(&state, bearer.as_deref(), needed, &what, count).await {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(Credential(bearer));
    next.run(req).await
}

/// Authenticates `bearer` and checks that it holds `needed`; an inference request (`needed`
/// is user) is also counted against the caller's limits, or only checked against them when
/// not `count`. `what` names the request in a refusal. Shared by every route and by each
/// message of a WebSocket.
pub(crate) async fn admit(
    state: &AppState,
    bearer: Option<&str>,
    needed: Role,
    what: &str,
    count: bool,
) -> Result<Principal, ApiError> {
    let principal = state.auth.authenticate(bearer).await?;
    if principal.role < needed {
        return Err(ApiError::forbidden(format!(
            "'{}' has the role {}; {what} needs {}",
            principal.name,
            principal.role.as_str(),
            needed.as_str()
        )));
    }
    if needed == Role::User {
        let admitted = if count {
            state.limiter.admit(&principal).await
        } else {
            state.limiter.check(&principal).await
        };
        if let Err(e) = admitted {
            state.metrics.rate_limited.inc();
            return Err(e);
        }
    }
    Ok(principal)
}

/// The credential a request came with, so that a long-lived connection (a WebSocket) can be
/// checked again for each message: a key revoked meanwhile stops working there too.
#[derive(Clone)]
pub(crate) struct Credential(pub Option<String>);

/// The id `observe` gave the request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

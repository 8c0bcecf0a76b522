//! The probes and the fallback: `/health` and `/ready` for orchestrators, `/metrics` for
//! Prometheus, and the 404 for a path no route has.

use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::{util, SharedState};

/// 200 while the server can serve: 503 once the registry's sweep has stopped (it runs every
/// second), the sign that the server's own upkeep has failed.
pub async fn health(State(state): State<SharedState>) -> Response {
    match unhealthy(state.last_sweep.load(Ordering::Relaxed), util::unix_now()) {
        Some(why) => ApiError::overloaded(why).into_response(),
        None => Json(json!({"status": "ok"})).into_response(),
    }
}

/// Why the server cannot serve, given its last sweep's time (0: none started yet).
fn unhealthy(last_sweep: u64, now: u64) -> Option<String> {
    let since = now.saturating_sub(last_sweep);
    (last_sweep != 0 && since > 10)
        .then(|| format!("unhealthy: the model registry has not been swept for {since}s"))
}

/// 200 once the preloaded models answer; 503 before.
pub async fn ready(State(state): State<SharedState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        Json(json!({"status": "ready"})).into_response()
    } else {
        ApiError::overloaded("loading models").into_response()
    }
}

pub async fn metrics_text(State(state): State<SharedState>) -> Response {
    (
        [("content-type", crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&state.registry),
    )
        .into_response()
}

pub async fn not_found(req: Request) -> Response {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn health_fails_once_the_sweep_stops() {
        assert_eq!(super::unhealthy(0, 1_000), None);
        assert_eq!(super::unhealthy(995, 1_000), None);
        assert!(super::unhealthy(900, 1_000).is_some_and(|m| m.contains("100s")));
    }
}

//! What every OpenAI reply shares on the way out: the response cache in front of the
//! handlers, the fingerprint and finish reasons, the SSE framing of streams and the error a
//! stream ends with.

use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{Stream, StreamExt};
use serde_json::Value;
use symphony_engine::{Completion, Event};

use super::types::{StreamError, StreamErrorBody};
use crate::error::ApiError;
use crate::SharedState;

/// A cached reply for `route`, if the request is cacheable and was answered before. Returns
/// the cache key to store the reply under on a miss.
pub(super) async fn cached(
    state: &SharedState,
    route: &str,
    model: &str,
    body: &Value,
) -> Result<(Option<Response>, Option<String>), ApiError> {
    let manifest = state.registry.resolve(model).await?;
    let Some(key) = state.cache.key(route, &manifest.blob, body) else {
        return Ok((None, None));
    };
    if let Some(hit) = state.cache.get(&key).await {
        state.metrics.response_cache_hits.inc();
        let response = (
            [
                ("content-type", "application/json"),
                ("x-symphony-cache", "hit"),
            ],
            hit,
        )
            .into_response();
        return Ok((Some(response), None));
    }
    state.metrics.response_cache_misses.inc();
    Ok((None, Some(key)))
}

/// Answers with `body` (JSON text), storing it in the response cache under `key`.
pub(super) async fn reply(state: &SharedState, key: Option<String>, body: String) -> Response {
    let bytes = axum::body::Bytes::from(body);
    if let Some(key) = key {
        state.cache.put(&key, bytes.clone()).await;
    }
    ([("content-type", "application/json")], bytes).into_response()
}

/// A stream of JSON texts as server-sent events, one `data:` line each.
pub(super) fn sse(data: impl Stream<Item = String> + Send + 'static) -> Response {
    let events = data.map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

pub(super) fn fingerprint() -> String {
    format!("symphony-{}", env!("CARGO_PKG_VERSION"))
}

pub(super) fn finish_reason(c: Option<&Completion>) -> &'static str {
    c.map_or("stop", |c| c.finish_reason.as_str())
}

/// The event a stream ends with when its channel closes before the request finished.
pub(super) fn scheduler_stopped() -> (usize, Event) {
    (0, Event::Error("the model's scheduler stopped".into()))
}

/// An error inside an SSE stream (the status line has gone out already).
pub(super) fn stream_error(message: &str) -> String {
    super::types::to_json(&StreamError {
        error: StreamErrorBody {
            message,
            kind: "server_error",
        },
    })
}

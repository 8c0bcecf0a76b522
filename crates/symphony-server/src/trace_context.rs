//! W3C trace context: a request whose `traceparent` header names a caller's span becomes
//! that span's child, so the caller's trace shows the time spent here. The propagator is
//! whatever the binary installed (none when traces are off: then this does nothing).

use axum::http::HeaderMap;
use opentelemetry_http::HeaderExtractor;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub fn join_callers_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Fails only when the span is disabled (no trace layer): nothing to join then.
    let _ = span.set_parent(parent);
}

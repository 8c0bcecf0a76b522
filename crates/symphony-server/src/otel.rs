//! OpenTelemetry trace export: one server span per request, sent in batches to an OTLP/HTTP
//! collector as JSON (`POST {endpoint}/v1/traces`), the encoding every collector accepts.
//! A request that carries a W3C `traceparent` header joins the caller's trace.
//!
//! Export never slows requests: spans go through a bounded queue (dropped when full) to a
//! task that posts them once a second.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::util::hex;

/// One finished request.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub status: u16,
    pub attributes: Vec<(&'static str, Value)>,
}

#[derive(Clone)]
pub struct Exporter {
    tx: mpsc::Sender<Span>,
}

const QUEUE: usize = 4096;
const BATCH: usize = 512;

impl Exporter {
    /// Starts the export task for `endpoint` (e.g. `http://127.0.0.1:4318`).
    pub fn start(endpoint: &str) -> Self {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let (tx, mut rx) = mpsc::channel::<Span>(QUEUE);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut pending = Vec::new();
            loop {
                tokio::select! {
                    span = rx.recv() => match span {
                        Some(s) => {
                            pending.push(s);
                            if pending.len() < BATCH {
                                continue;
                            }
                        }
                        None => {
                            post(&url, std::mem::take(&mut pending)).await;
                            return;
                        }
                    },
                    _ = tick.tick() => {}
                }
                if !pending.is_empty() {
                    post(&url, std::mem::take(&mut pending)).await;
                }
            }
        });
        Self { tx }
    }

    pub fn record(&self, span: Span) {
        // A full queue means the collector is not keeping up: drop rather than wait.
        let _ = self.tx.try_send(span);
    }
}

async fn post(url: &str, spans: Vec<Span>) {
    if spans.is_empty() {
        return;
    }
    let body = encode(&spans).to_string();
    let url = url.to_string();
    let result = tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .map(|_| ())
    })
    .await;
    if let Ok(Err(e)) = result {
        tracing::warn!(event = "otlp_export_failed", error = %e);
    }
}

fn nanos(t: SystemTime) -> String {
    // OTLP/JSON writes 64-bit integers as strings.
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        .to_string()
}

fn attribute(key: &str, value: &Value) -> Value {
    let v = match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::String(s) => json!({"stringValue": s}),
        other => json!({"stringValue": other.to_string()}),
    };
    json!({"key": key, "value": v})
}

/// The OTLP/JSON `ExportTraceServiceRequest` for `spans`.
pub fn encode(spans: &[Span]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                attribute("service.name", &json!("symphony")),
                attribute("service.version", &json!(env!("CARGO_PKG_VERSION"))),
            ]},
            "scopeSpans": [{
                "scope": {"name": "symphony-server"},
                "spans": spans.iter().map(|s| {
                    let mut v = json!({
                        "traceId": hex(&s.trace_id),
                        "spanId": hex(&s.span_id),
                        "name": s.name,
                        "kind": 2, // SPAN_KIND_SERVER
                        "startTimeUnixNano": nanos(s.start),
                        "endTimeUnixNano": nanos(s.end),
                        "attributes": s.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
                        // STATUS_CODE_ERROR for server errors, else unset.
                        "status": if s.status >= 500 { json!({"code": 2}) } else { json!({}) },
                    });
                    if let Some(parent) = s.parent_span_id {
                        v["parentSpanId"] = json!(hex(&parent));
                    }
                    v
                }).collect::<Vec<_>>(),
            }],
        }],
    })
}

/// The trace and parent span of a W3C `traceparent` header (`00-<trace>-<span>-<flags>`).
pub fn parse_traceparent(header: &str) -> Option<([u8; 16], [u8; 8])> {
    let parts: Vec<&str> = header.trim().split('-').collect();
    let [version, trace, span, _flags] = parts.as_slice() else {
        return None;
    };
    if *version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let decode = |s: &str, out: &mut [u8]| -> Option<()> {
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(())
    };
    let (mut t, mut p) = ([0u8; 16], [0u8; 8]);
    decode(trace, &mut t)?;
    decode(span, &mut p)?;
    // All-zero ids are invalid.
    if t.iter().all(|&b| b == 0) || p.iter().all(|&b| b == 0) {
        return None;
    }
    Some((t, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent() {
        let (t, p) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex(&t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&p), "00f067aa0ba902b7");
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
    }

    #[test]
    fn encoding_has_otlp_shape() {
        let now = SystemTime::now();
        let v = encode(&[Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            name: "POST /v1/completions".into(),
            start: now,
            end: now + Duration::from_millis(5),
            status: 200,
            attributes: vec![("http.response.status_code", json!(200))],
        }]);
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "01010101010101010101010101010101");
        assert_eq!(span["parentSpanId"], "0303030303030303");
        assert_eq!(span["attributes"][0]["value"]["intValue"], "200");
        let start: u128 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u128 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert_eq!(end - start, 5_000_000);
    }
}

//! `/metrics` as Prometheus reads it: parsed by the Python `prometheus-client` package's own
//! parser, every metric dashboards use is there under its name and type.

mod common;

use axum::http::{Method, StatusCode};
use common::Harness;
use serde_json::Value;

fn parse_with_prometheus_client(text: &str) -> Value {
    let python = std::env::var_os("SYMPHONY_TEST_PYTHON").expect(
        "SYMPHONY_TEST_PYTHON is not set: run the tests with scripts/test.sh, which makes a \
         virtual environment with prometheus-client",
    );
    common::prometheus::parse_metrics(&python, text)
}

#[tokio::test]
async fn prometheus_parses_every_metric_under_its_name_and_type() {
    let h = Harness::new();
    assert_eq!(
        h.send(Method::GET, "/v1/models", Some(&h.reader), None)
            .await
            .status,
        StatusCode::OK
    );
    h.send(Method::GET, "/v1/models", None, None).await;
    let reply = h.send(Method::GET, "/metrics", Some(&h.reader), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let families = parse_with_prometheus_client(&reply.text());

    // The parser names a counter's family without `_total`, its samples with it. The
    // per-model families appear once a model is loaded (the CLI's serve test checks them).
    let always = [
        ("symphony_requests", "counter"),
        ("symphony_time_to_first_token_seconds", "histogram"),
        ("symphony_inter_token_latency_seconds", "histogram"),
        ("symphony_request_latency_seconds", "histogram"),
        ("symphony_prompt_tokens", "counter"),
        ("symphony_prompt_tokens_cached", "counter"),
        ("symphony_generated_tokens", "counter"),
        ("symphony_response_cache_hits", "counter"),
        ("symphony_response_cache_misses", "counter"),
        ("symphony_rate_limited", "counter"),
        ("symphony_response_cache_hit_rate", "gauge"),
        ("symphony_loaded_models", "gauge"),
    ];
    for (name, kind) in always {
        assert_eq!(families[name]["type"], kind, "{name}: {families}");
    }
    assert_eq!(
        families.as_object().unwrap().len(),
        always.len(),
        "a metric nobody expects: {families}"
    );

    let sample = |family: &str, sample: &str, labels: Value| -> Option<f64> {
        families[family]["samples"]
            .as_array()?
            .iter()
            .find(|s| s[0] == sample && s[1] == labels)
            .and_then(|s| s[2].as_f64())
    };
    let requests = |status: &str| {
        sample(
            "symphony_requests",
            "symphony_requests_total",
            serde_json::json!({"route": "/v1/models", "status": status}),
        )
    };
    assert_eq!(requests("200"), Some(1.0), "{families}");
    assert_eq!(requests("401"), Some(1.0), "{families}");
    assert_eq!(
        sample(
            "symphony_loaded_models",
            "symphony_loaded_models",
            serde_json::json!({})
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            "symphony_time_to_first_token_seconds",
            "symphony_time_to_first_token_seconds_bucket",
            serde_json::json!({"le": "+Inf"})
        ),
        Some(0.0)
    );
}

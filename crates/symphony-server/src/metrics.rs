//! Prometheus metrics through `prometheus-client`, the Prometheus project's Rust client,
//! served in the Prometheus text format. The names are the ones dashboards already use.
//!
//! Request counts, latencies and token counts are kept as they happen; what describes the
//! loaded models (their sequences, KV blocks, prefix cache) is read from their schedulers at
//! each scrape, so it can never drift from what the schedulers hold.

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::registry::Registry;

/// The `Content-Type` of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Latency buckets in seconds, from a fast decode step to a long generation.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    time_to_first_token: Histogram,
    inter_token_latency: Histogram,
    request_latency: Histogram,
    prompt_tokens: Counter,
    cached_prompt_tokens: Counter,
    generated_tokens: Counter,
    pub response_cache_hits: Counter,
    pub response_cache_misses: Counter,
    pub rate_limited: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            time_to_first_token: latency_histogram(),
            inter_token_latency: latency_histogram(),
            request_latency: latency_histogram(),
            prompt_tokens: Counter::default(),
            cached_prompt_tokens: Counter::default(),
            generated_tokens: Counter::default(),
            response_cache_hits: Counter::default(),
            response_cache_misses: Counter::default(),
            rate_limited: Counter::default(),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                status,
            })
            .inc();
    }

    /// Prompt tokens of a request that generates nothing (an embedding).
    pub fn count_prompt_tokens(&self, tokens: u64) {
        self.prompt_tokens.inc_by(tokens);
    }

    /// Records a finished generation's timings and token counts.
    pub fn observe_generation(&self, completion: &symphony_engine::Completion) {
        self.time_to_first_token
            .observe(completion.time_to_first_token.as_secs_f64());
        self.request_latency
            .observe(completion.total_time.as_secs_f64());
        if completion.completion_tokens > 1 {
            let decode = completion
                .total_time
                .saturating_sub(completion.time_to_first_token);
            self.inter_token_latency
                .observe(decode.as_secs_f64() / (completion.completion_tokens - 1) as f64);
        }
        self.prompt_tokens.inc_by(completion.prompt_tokens as u64);
        self.cached_prompt_tokens
            .inc_by(completion.cached_tokens as u64);
        self.generated_tokens
            .inc_by(completion.completion_tokens as u64);
    }

    /// Everything, in the Prometheus text format. The registry is built per scrape: the
    /// metrics are handles onto the counts above, and the models' figures are read now.
    pub fn render(&self, models: &Registry) -> String {
        let mut r = prometheus_client::registry::Registry::default();
        // Counters get `_total` appended and help texts a full stop by the client.
        r.register(
            "symphony_requests",
            "HTTP requests by route and status",
            self.requests.clone(),
        );
        let histograms = [
            (
                "symphony_time_to_first_token_seconds",
                "From request to first generated token",
                &self.time_to_first_token,
            ),
            (
                "symphony_inter_token_latency_seconds",
                "Mean time between generated tokens, per request",
                &self.inter_token_latency,
            ),
            (
                "symphony_request_latency_seconds",
                "End-to-end generation latency",
                &self.request_latency,
            ),
        ];
        for (name, help, histogram) in histograms {
            r.register(name, help, histogram.clone());
        }
        let counters = [
            (
                "symphony_prompt_tokens",
                "Prompt tokens of finished requests",
                &self.prompt_tokens,
            ),
            (
                "symphony_prompt_tokens_cached",
                "Prompt tokens of finished requests whose keys and values came from the prefix cache",
                &self.cached_prompt_tokens,
            ),
            (
                "symphony_generated_tokens",
                "Generated tokens of finished requests",
                &self.generated_tokens,
            ),
            (
                "symphony_response_cache_hits",
                "Requests answered from the response cache",
                &self.response_cache_hits,
            ),
            (
                "symphony_response_cache_misses",
                "Cacheable requests not found in the response cache",
                &self.response_cache_misses,
            ),
            (
                "symphony_rate_limited",
                "Requests refused by a rate limit or quota",
                &self.rate_limited,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        let hits = self.response_cache_hits.get();
        let total = hits + self.response_cache_misses.get();
        let rate = if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        };
        let hit_rate = Gauge::<f64, AtomicU64>::default();
        hit_rate.set(rate);
        r.register(
            "symphony_response_cache_hit_rate",
            "Response cache hits / cacheable requests",
            hit_rate,
        );
        register_models(&mut r, models);
        let mut out = String::new();
        prometheus_text::encode(&mut out, &r).expect("writing to a String cannot fail");
        out
    }
}

/// The loaded models' figures, read from their schedulers now.
fn register_models(r: &mut prometheus_client::registry::Registry, models: &Registry) {
    let loaded = models.loaded();
    let count = Gauge::<i64>::default();
    count.set(loaded.len() as i64);
    r.register("symphony_loaded_models", "Models in memory", count);

    type Field = fn(&symphony_engine::SchedulerStats) -> usize;
    let gauges: [(&str, &str, Field); 4] = [
        (
            "symphony_running_sequences",
            "Sequences being decoded or prefilled",
            |s| s.running.load(Ordering::Relaxed),
        ),
        (
            "symphony_waiting_sequences",
            "Sequences waiting to be scheduled",
            |s| s.waiting.load(Ordering::Relaxed),
        ),
        (
            "symphony_kv_blocks_used",
            "KV cache blocks held by sequences",
            |s| s.kv_blocks_used.load(Ordering::Relaxed),
        ),
        (
            "symphony_kv_blocks_free",
            "KV cache blocks free or cached for reuse",
            |s| {
                let used = s.kv_blocks_used.load(Ordering::Relaxed);
                s.kv_blocks_total
                    .load(Ordering::Relaxed)
                    .saturating_sub(used)
            },
        ),
    ];
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let labels = |name: &str| ModelLabels {
        model: name.to_string(),
    };
    for (name, help, field) in gauges {
        let family = Family::<ModelLabels, Gauge>::default();
        for m in &loaded {
            family
                .get_or_create(&labels(&m.name))
                .set(field(m.scheduler.stats()) as i64);
        }
        r.register(name, help, family);
    }
    let hit_rate = Family::<ModelLabels, Gauge<f64, AtomicU64>>::default();
    let preemptions = Family::<ModelLabels, Counter>::default();
    for m in &loaded {
        let s = m.scheduler.stats();
        let lookups = load(&s.prefix_lookups);
        let rate = if lookups == 0 {
            0.0
        } else {
            load(&s.prefix_hits) as f64 / lookups as f64
        };
        hit_rate.get_or_create(&labels(&m.name)).set(rate);
        preemptions
            .get_or_create(&labels(&m.name))
            .inc_by(load(&s.preemptions));
    }
    r.register(
        "symphony_prefix_cache_hit_rate",
        "Prompt blocks found in the prefix cache (whole, or a cached block starting with the \
         prompt's next tokens, copied) / blocks looked up",
        hit_rate,
    );
    r.register(
        "symphony_preemptions",
        "Sequences preempted for lack of KV blocks",
        preemptions,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histograms_are_cumulative_and_counters_keep_their_names() {
        let m = Metrics::default();
        for ms in [3, 300] {
            m.time_to_first_token
                .observe(Duration::from_millis(ms).as_secs_f64());
        }
        m.count_request("/v1/models", 200);
        m.rate_limited.inc();
        let mut r = prometheus_client::registry::Registry::default();
        r.register("x", "help", m.time_to_first_token.clone());
        r.register("symphony_requests", "requests", m.requests.clone());
        r.register("symphony_rate_limited", "refused", m.rate_limited.clone());
        let mut out = String::new();
        prometheus_text::encode(&mut out, &r).unwrap();
        assert!(out.contains("x_bucket{le=\"0.0025\"} 0"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.5\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2"), "{out}");
        assert!(out.contains("x_count 2"), "{out}");
        assert!(out.contains("x_sum 0.303"), "{out}");
        assert!(
            out.contains("symphony_requests_total{route=\"/v1/models\",status=\"200\"} 1"),
            "{out}"
        );
        assert!(out.contains("symphony_rate_limited_total 1"), "{out}");
    }
}

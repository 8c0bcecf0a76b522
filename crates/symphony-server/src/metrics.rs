//! Prometheus metrics in the text exposition format, written by hand: a few counters and
//! histograms do not need a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::registry::Registry;
use crate::util::lock;

/// Latency buckets in seconds, from a fast decode step to a long generation.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            if secs <= *bound {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, status) → requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub request_latency: Histogram,
    pub prompt_tokens: AtomicU64,
    pub cached_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub response_cache_hits: AtomicU64,
    pub response_cache_misses: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl Metrics {
    pub fn count_request(&self, route: &str, status: u16) {
        *lock(&self.requests)
            .entry((route.to_string(), status))
            .or_default() += 1;
    }

    /// Records a finished generation's timings and token counts.
    pub fn observe_generation(&self, completion: &symphony_engine::Completion) {
        self.time_to_first_token
            .observe(completion.time_to_first_token);
        self.request_latency.observe(completion.total_time);
        if completion.completion_tokens > 1 {
            let decode = completion
                .total_time
                .saturating_sub(completion.time_to_first_token);
            self.inter_token_latency
                .observe(decode / (completion.completion_tokens as u32 - 1));
        }
        self.prompt_tokens
            .fetch_add(completion.prompt_tokens as u64, Ordering::Relaxed);
        self.cached_prompt_tokens
            .fetch_add(completion.cached_tokens as u64, Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(completion.completion_tokens as u64, Ordering::Relaxed);
    }

    pub fn render(&self, registry: &Registry) -> String {
        let mut out = String::new();
        out.push_str("# HELP symphony_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE symphony_requests_total counter\n");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "symphony_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        self.time_to_first_token.write(
            &mut out,
            "symphony_time_to_first_token_seconds",
            "From request to first generated token.",
        );
        self.inter_token_latency.write(
            &mut out,
            "symphony_inter_token_latency_seconds",
            "Mean time between generated tokens, per request.",
        );
        self.request_latency.write(
            &mut out,
            "symphony_request_latency_seconds",
            "End-to-end generation latency.",
        );
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "symphony_prompt_tokens_total",
            "Prompt tokens of finished requests.",
            load(&self.prompt_tokens),
        );
        counter(
            &mut out,
            "symphony_prompt_tokens_cached_total",
            "Prompt tokens of finished requests whose keys and values came from the prefix cache.",
            load(&self.cached_prompt_tokens),
        );
        counter(
            &mut out,
            "symphony_generated_tokens_total",
            "Generated tokens of finished requests.",
            load(&self.generated_tokens),
        );
        counter(
            &mut out,
            "symphony_response_cache_hits_total",
            "Requests answered from the response cache.",
            load(&self.response_cache_hits),
        );
        counter(
            &mut out,
            "symphony_response_cache_misses_total",
            "Cacheable requests not found in the response cache.",
            load(&self.response_cache_misses),
        );
        counter(
            &mut out,
            "symphony_rate_limited_total",
            "Requests refused by a rate limit or quota.",
            load(&self.rate_limited),
        );
        let loaded = registry.loaded();
        let _ = writeln!(
            out,
            "# HELP symphony_loaded_models Models in memory.\n# TYPE symphony_loaded_models gauge\nsymphony_loaded_models {}",
            loaded.len()
        );
        type Field = fn(&symphony_engine::SchedulerStats) -> f64;
        let per_model: [(&str, &str, &str, Field); 6] = [
            (
                "symphony_running_sequences",
                "gauge",
                "Sequences being decoded or prefilled.",
                |s| s.running.load(Ordering::Relaxed) as f64,
            ),
            (
                "symphony_waiting_sequences",
                "gauge",
                "Sequences waiting to be scheduled.",
                |s| s.waiting.load(Ordering::Relaxed) as f64,
            ),
            (
                "symphony_kv_blocks_used",
                "gauge",
                "KV cache blocks held by sequences.",
                |s| s.kv_blocks_used.load(Ordering::Relaxed) as f64,
            ),
            (
                "symphony_kv_blocks_free",
                "gauge",
                "KV cache blocks free or cached for reuse.",
                |s| {
                    s.kv_blocks_total
                        .load(Ordering::Relaxed)
                        .saturating_sub(s.kv_blocks_used.load(Ordering::Relaxed))
                        as f64
                },
            ),
            (
                "symphony_prefix_cache_hit_rate",
                "gauge",
                "Prompt blocks found in the prefix cache (whole, or a cached block starting with the prompt's next tokens, copied) / blocks looked up.",
                |s| {
                    let lookups = s.prefix_lookups.load(Ordering::Relaxed);
                    if lookups == 0 {
                        0.0
                    } else {
                        s.prefix_hits.load(Ordering::Relaxed) as f64 / lookups as f64
                    }
                },
            ),
            (
                "symphony_preemptions_total",
                "counter",
                "Sequences preempted for lack of KV blocks.",
                |s| s.preemptions.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, field) in per_model {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for m in &loaded {
                let v = field(m.scheduler.stats());
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {v}", m.name);
            }
        }
        let hits = load(&self.response_cache_hits);
        let total = hits + load(&self.response_cache_misses);
        let rate = if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        };
        let _ = writeln!(
            out,
            "# HELP symphony_response_cache_hit_rate Response cache hits / cacheable requests.\n# TYPE symphony_response_cache_hit_rate gauge\nsymphony_response_cache_hit_rate {rate}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        let mut out = String::new();
        h.write(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0025\"} 0"));
        assert!(out.contains("x_bucket{le=\"0.005\"} 1"));
        assert!(out.contains("x_bucket{le=\"0.5\"} 2"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2"));
        assert!(out.contains("x_count 2"));
        assert!(out.contains("x_sum 0.303"));
    }
}

//! How fast the bus carries messages between many agents (`symphony bench agents`).
//!
//! `agents` agents join the bus, each a task reading its inbox. Latency: `pings` messages,
//! one at a time, each from a random agent to another, timed from just before `send` to
//! the moment the receiver's task has it (one way; sender and receiver share a clock, being
//! in one process). Throughput: `messages` messages from random agents to random agents,
//! sent by up to 64 tasks at once, timed from the first send until every one has been
//! received.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, Notify};

use crate::acl::{AgentId, Message, Performative};
use crate::bus::Bus;
use crate::error::Error;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub agents: usize,
    pub pings: usize,
    pub messages: usize,
}

/// The figures, as `--json` prints them.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub transport: &'static str,
    pub agents: usize,
    /// How long joining every agent took.
    pub join_ms: f64,
    pub pings: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub messages: usize,
    pub messages_per_s: f64,
}

/// A small fast generator for picking agents (no need for a crate).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// Two different agents.
    fn pair(&mut self, n: usize) -> (usize, usize) {
        let from = self.below(n);
        let to = (from + 1 + self.below(n - 1)) % n;
        (from, to)
    }
}

/// Runs the benchmark on `bus`. Agents are named `bench-<n>`.
pub async fn run(bus: &Bus, config: &BenchConfig) -> Result<BenchReport, Error> {
    if config.agents < 2 {
        return Err(Error::Invalid(
            "the benchmark needs at least 2 agents".into(),
        ));
    }
    let names: Arc<Vec<AgentId>> = Arc::new(
        (0..config.agents)
            .map(|n| AgentId(format!("bench-{n}")))
            .collect(),
    );
    let clock = Instant::now();
    let received = Arc::new(AtomicUsize::new(0));
    let all_in = Arc::new(Notify::new());
    let (latency_tx, mut latencies) = mpsc::unbounded_channel::<u64>();
    let joining = Instant::now();
    let mut tasks = Vec::with_capacity(config.agents);
    for name in names.iter() {
        let mut mailbox = bus.join(name.clone()).await?;
        let latency_tx = latency_tx.clone();
        let (received, all_in) = (Arc::clone(&received), Arc::clone(&all_in));
        tasks.push(tokio::spawn(async move {
            while let Some(message) = mailbox.recv().await {
                let now = clock.elapsed().as_nanos() as u64;
                if message.performative == Performative::QueryRef {
                    let sent: u64 = message.content.parse().unwrap_or(now);
                    let _ = latency_tx.send(now.saturating_sub(sent));
                } else {
                    received.fetch_add(1, Ordering::Relaxed);
                    all_in.notify_one();
                }
            }
        }));
    }
    bus.flush().await?;
    let join_ms = joining.elapsed().as_secs_f64() * 1e3;

    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut samples = Vec::with_capacity(config.pings);
    for _ in 0..config.pings {
        let (from, to) = rng.pair(config.agents);
        let sent = clock.elapsed().as_nanos() as u64;
        let ping = Message::new(Performative::QueryRef, names[from].clone())
            .to(names[to].clone())
            .content(sent.to_string());
        bus.send(&ping).await?;
        let one_way = tokio::time::timeout(Duration::from_secs(10), latencies.recv())
            .await
            .map_err(|_| Error::Timeout(Duration::from_secs(10)))?
            .ok_or(Error::Closed)?;
        samples.push(one_way);
    }
    samples.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let at = ((samples.len() - 1) as f64 * p).round() as usize;
        samples[at] as f64 / 1e3
    };

    let senders = config.messages.min(64);
    let started = Instant::now();
    let mut sending = Vec::with_capacity(senders);
    for s in 0..senders {
        let share = config.messages / senders + usize::from(s < config.messages % senders);
        let (bus, names) = (bus.clone(), Arc::clone(&names));
        sending.push(tokio::spawn(async move {
            let mut rng = XorShift(0x2545_F491_4F6C_DD1D ^ (s as u64 + 1));
            for _ in 0..share {
                let (from, to) = rng.pair(names.len());
                let message = Message::new(Performative::Inform, names[from].clone())
                    .to(names[to].clone())
                    .content("x");
                bus.send(&message).await?;
            }
            bus.flush().await
        }));
    }
    for task in sending {
        task.await.map_err(|e| Error::Invalid(e.to_string()))??;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < config.messages {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(Duration::from_secs(120)));
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), all_in.notified()).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for task in tasks {
        task.abort();
    }
    Ok(BenchReport {
        transport: bus.transport_name(),
        agents: config.agents,
        join_ms,
        pings: samples.len(),
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        max_us: percentile(1.0),
        messages: config.messages,
        messages_per_s: config.messages as f64 / elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_two_different_agents() {
        let mut rng = XorShift(7);
        for n in [2, 3, 10] {
            for _ in 0..1000 {
                let (a, b) = rng.pair(n);
                assert!(a < n && b < n && a != b);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_message_is_counted_in_process() {
        let config = BenchConfig {
            agents: 50,
            pings: 100,
            messages: 5_000,
        };
        let report = run(&Bus::in_process(), &config).await.unwrap();
        assert_eq!((report.pings, report.messages), (100, 5_000));
        assert!(report.p50_us > 0.0 && report.p50_us <= report.p99_us);
        assert!(report.messages_per_s > 0.0);
    }
}

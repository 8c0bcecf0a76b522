//! Throughput like llama-bench: prompt processing (one forward over `n_prompt` tokens from an
//! empty cache) and generation (`n_gen` single-token steps), each repeated and averaged.
//! Generation can also run several sequences at once, one batched step for all of them, as
//! the scheduler runs a server's streams (llama-batched-bench's parallel decode).

use std::time::Instant;

use symphony_models::{BatchItem, Logits, Model, TokenId, KV_BLOCK_SIZE};

use crate::sampling::Rng;
use crate::Result;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub n_prompt: usize,
    pub n_gen: usize,
    pub repetitions: usize,
    /// Sequences generating together; 1 is llama-bench's `tg`.
    pub parallel: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// `pp512`, `tg128`, as llama-bench names its tests.
    pub test: String,
    pub n_tokens: usize,
    pub tokens_per_second: Vec<f64>,
}

impl BenchResult {
    pub fn mean(&self) -> f64 {
        self.tokens_per_second.iter().sum::<f64>() / self.tokens_per_second.len().max(1) as f64
    }

    pub fn stddev(&self) -> f64 {
        let n = self.tokens_per_second.len();
        if n < 2 {
            return 0.0;
        }
        let mean = self.mean();
        (self
            .tokens_per_second
            .iter()
            .map(|t| (t - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64)
            .sqrt()
    }
}

/// Random token ids, as llama-bench uses: the content does not change the cost.
fn random_tokens(model: &Model, n: usize, seed: u64) -> Vec<TokenId> {
    let mut rng = Rng::new(seed);
    let n_vocab = model.tokenizer.n_vocab() as u64;
    (0..n)
        .map(|_| (rng.next_u64() % n_vocab) as TokenId)
        .collect()
}

pub fn run(
    model: &Model,
    config: &BenchConfig,
    mut on_result: impl FnMut(&BenchResult),
) -> Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    let mut cache = model.new_cache();
    // Warm-up: page the weights in and let the thread pools start.
    model.forward(
        &random_tokens(model, config.n_prompt.clamp(1, 32), 0),
        &mut cache,
        Logits::Last,
    )?;
    if config.n_prompt > 0 {
        let tokens = random_tokens(model, config.n_prompt, 1);
        let result = measure(
            format!("pp{}", config.n_prompt),
            tokens.len(),
            config,
            || {
                cache.truncate(0);
                model.forward(&tokens, &mut cache, Logits::Last)?;
                Ok(())
            },
        )?;
        on_result(&result);
        results.push(result);
    }
    if config.n_gen > 0 && config.parallel > 1 {
        let result = parallel_generation(model, config)?;
        on_result(&result);
        results.push(result);
    } else if config.n_gen > 0 {
        let tokens = random_tokens(model, config.n_gen, 2);
        let result = measure(format!("tg{}", config.n_gen), tokens.len(), config, || {
            cache.truncate(0);
            for &token in &tokens {
                let logits = model.forward(&[token], &mut cache, Logits::Last)?;
                // Reading the logits back is part of every real decode step.
                std::hint::black_box(logits.squeeze(0)?.to_vec1::<f32>()?);
            }
            Ok(())
        })?;
        on_result(&result);
        results.push(result);
    }
    Ok(results)
}

/// `config.parallel` sequences, each `config.n_gen` tokens from an empty cache, all of them
/// one row each of every step's batch, in one paged store.
fn parallel_generation(model: &Model, config: &BenchConfig) -> Result<BenchResult> {
    let (n, p) = (config.n_gen, config.parallel);
    let per_sequence = n.div_ceil(KV_BLOCK_SIZE);
    let mut store = model.new_kv_store(p * per_sequence);
    let tables: Vec<Vec<u32>> = (0..p)
        .map(|s| {
            (s * per_sequence..(s + 1) * per_sequence)
                .map(|b| b as u32)
                .collect()
        })
        .collect();
    let tokens: Vec<Vec<TokenId>> = (0..p)
        .map(|s| random_tokens(model, n, 3 + s as u64))
        .collect();
    measure(format!("tg{n}x{p}"), n * p, config, || {
        for pos in 0..n {
            let items: Vec<BatchItem<'_>> = tokens
                .iter()
                .zip(&tables)
                .map(|(tokens, blocks)| BatchItem {
                    tokens: &tokens[pos..pos + 1],
                    first_pos: pos,
                    blocks,
                    logits: Logits::Last,
                })
                .collect();
            let logits = model.forward_batch(&items, &mut store)?;
            std::hint::black_box(logits.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    })
}

/// Times `config.repetitions` runs of `step`, each processing `n_tokens` tokens.
fn measure(
    test: String,
    n_tokens: usize,
    config: &BenchConfig,
    mut step: impl FnMut() -> Result<()>,
) -> Result<BenchResult> {
    let mut tokens_per_second = Vec::with_capacity(config.repetitions);
    for _ in 0..config.repetitions {
        let start = Instant::now();
        step()?;
        tokens_per_second.push(n_tokens as f64 / start.elapsed().as_secs_f64());
    }
    Ok(BenchResult {
        test,
        n_tokens,
        tokens_per_second,
    })
}

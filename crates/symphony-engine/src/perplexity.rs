//! Perplexity the way llama.cpp's `llama-perplexity` computes it, so the figures compare:
//! the text is cut into non-overlapping windows of `ctx` tokens, each window is evaluated
//! from an empty cache, and only the second half of each window is scored (those tokens
//! see at least `ctx/2` tokens of context). With a BOS-adding tokenizer the first token of
//! each window is replaced by BOS.

use symphony_models::{Logits, Model, TokenId};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct PerplexityReport {
    pub ctx: usize,
    pub n_tokens: usize,
    pub n_chunks: usize,
    pub n_scored: usize,
    pub ppl: f64,
    /// Perplexity after each chunk, as llama-perplexity prints it.
    pub running_ppl: Vec<f64>,
}

pub fn perplexity(
    model: &Model,
    tokens: &[TokenId],
    ctx: usize,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<PerplexityReport> {
    if ctx < 4 {
        return Err(Error::InvalidRequest(format!(
            "--ctx must be at least 4, got {ctx}"
        )));
    }
    if ctx > model.context_length() {
        return Err(Error::InvalidRequest(format!(
            "--ctx {ctx} exceeds the model's context of {}",
            model.context_length()
        )));
    }
    let n_chunks = tokens.len() / ctx;
    if n_chunks == 0 {
        return Err(Error::InvalidRequest(format!(
            "the text has {} tokens, fewer than one window of {ctx}",
            tokens.len()
        )));
    }
    let first = ctx / 2;
    let bos = model.tokenizer.bos.filter(|_| model.tokenizer.add_bos);
    let mut nll = 0f64;
    let mut count = 0usize;
    let mut running_ppl = Vec::with_capacity(n_chunks);
    let mut cache = model.new_cache();
    for chunk_idx in 0..n_chunks {
        let mut window = tokens[chunk_idx * ctx..(chunk_idx + 1) * ctx].to_vec();
        if let Some(bos) = bos {
            window[0] = bos;
        }
        cache.truncate(0);
        let logits = model.forward(&window, &mut cache, Logits::All)?; // (ctx, n_vocab)
        for j in first..ctx - 1 {
            let row = logits.get(j)?.to_vec1::<f32>()?;
            nll -= log_softmax_at(&row, window[j + 1] as usize);
            count += 1;
        }
        let ppl = (nll / count as f64).exp();
        running_ppl.push(ppl);
        on_chunk(chunk_idx + 1, n_chunks, ppl);
    }
    Ok(PerplexityReport {
        ctx,
        n_tokens: tokens.len(),
        n_chunks,
        n_scored: count,
        ppl: (nll / count as f64).exp(),
        running_ppl,
    })
}

/// `log softmax(row)[target]`, accumulated in f64.
pub fn log_softmax_at(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    row[target] as f64 - max - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_of_uniform_row() {
        let row = [0.0f32; 4];
        assert!((log_softmax_at(&row, 2) - (0.25f64).ln()).abs() < 1e-12);
        let row = [1000.0f32, 0.0];
        assert!(
            log_softmax_at(&row, 0).abs() < 1e-9,
            "stable for large logits"
        );
    }
}

//! Llama: pre-norm decoder with RMSNorm, rotary embeddings, grouped-query attention and a
//! SwiGLU MLP (Touvron et al. 2023, "LLaMA"; Hugging Face `modeling_llama.py`). Covers Llama
//! 2/3, SmolLM/SmolLM2, TinyLlama and other `llama`-architecture GGUF files, and the two
//! architectures that differ from it only in details the blocks already handle:
//! - Qwen2 / Qwen2.5: biases on Q, K and V (loaded where the file has them), "neox" rotary
//!   layout;
//! - Mistral: a sliding attention window (`{arch}.attention.sliding_window`).
//!
//! Weights are addressed by their GGUF names (`blk.{i}.attn_q.weight`, ...). Quantized
//! matrices stay in the file's memory map (see `quant.rs`).

use candle_core::quantized::QTensor;
use candle_core::Tensor;
use std::sync::Arc;

use crate::error::Result;
use crate::gguf::GgufFile;
use crate::layers::blocks::{
    AttentionParams, AttentionShape, GateActivation, GatedMlp, RmsNorm, SelfAttention,
};
use crate::layers::linear::{matrix, Linear};
use crate::layers::{KvCache, Rope};
use crate::{Cache, Logits};

pub use super::config::Config;

#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    attn: SelfAttention,
    ffn_norm: RmsNorm,
    mlp: GatedMlp,
}

#[derive(Debug)]
pub struct Llama {
    pub config: Config,
    embeddings: Arc<QTensor>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: Linear,
    rope: Rope,
}

impl Llama {
    pub fn load(gguf: &GgufFile, config: Config) -> Result<Self> {
        let c = &config;
        let embeddings = matrix(gguf, "token_embd.weight", c.n_vocab, c.dim)?;
        // Tied embeddings: models without an output matrix reuse the embedding table.
        let output = match gguf.tensor_info("output.weight") {
            Some(_) => Linear::load(gguf, "output", c.n_vocab, c.dim)?,
            None => Linear::load(gguf, "token_embd", c.n_vocab, c.dim)?,
        };
        let shape = AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
        };
        let blocks = (0..c.n_layers)
            .map(|i| {
                let norm = |name: &str| {
                    RmsNorm::load(gguf, &format!("blk.{i}.{name}.weight"), c.dim, c.rms_eps)
                };
                Ok(Block {
                    attn_norm: norm("attn_norm")?,
                    attn: SelfAttention::load(gguf, i, c.dim, shape, c.rms_eps)?,
                    ffn_norm: norm("ffn_norm")?,
                    mlp: GatedMlp::load(gguf, i, c.dim, c.ffn_dim, GateActivation::Silu)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(gguf, "output_norm.weight", c.dim, c.rms_eps)?;
        let rope = Rope::new(c.rope_style, c.rope_dim, c.rope_theta);
        Ok(Self {
            config,
            embeddings,
            blocks,
            norm,
            output,
            rope,
        })
    }

    pub fn new_cache(&self) -> Cache {
        Cache {
            layers: (0..self.config.n_layers)
                .map(|_| KvCache::new(self.config.n_kv_heads, self.config.head_dim))
                .collect(),
        }
    }

    /// Runs `tokens` after the positions already in `cache` and returns logits
    /// `(rows, n_vocab)`: one row, or one per token with [`Logits::All`].
    pub fn forward(&self, tokens: &[u32], cache: &mut Cache, logits: Logits) -> Result<Tensor> {
        let c = &self.config;
        let t = tokens.len();
        let ids = Tensor::new(tokens, &candle_core::Device::Cpu)?;
        let mut x = self.embeddings.embedding(&ids)?; // (t, dim)
        let params = AttentionParams {
            rope: &self.rope,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
            window: c.sliding_window,
        };
        for (block, kv) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = block.attn_norm.forward(&x)?;
            x = (x + block.attn.forward(&h, kv, params)?)?;
            let h = block.ffn_norm.forward(&x)?;
            x = (x + block.mlp.forward(&h)?)?;
        }
        let x = match logits {
            Logits::Last => x.narrow(0, t - 1, 1)?,
            Logits::All => x,
        };
        self.output.forward(&self.norm.forward(&x)?)
    }
}

//! Llama: pre-norm decoder with RMSNorm, rotary embeddings, grouped-query attention and a
//! SwiGLU MLP (Touvron et al. 2023, "LLaMA"; Hugging Face `modeling_llama.py`). Covers Llama
//! 2/3, SmolLM/SmolLM2, TinyLlama and other `llama`-architecture GGUF files, and the two
//! architectures that differ from it only in details the blocks already handle:
//! - Qwen2 / Qwen2.5: biases on Q, K and V (loaded where the file has them), "neox" rotary
//!   layout;
//! - Mistral: a sliding attention window (`{arch}.attention.sliding_window`);
//! - Phi-3: fused `attn_qkv` and gate-up `ffn_up` matrices (read as row ranges, see
//!   `blocks.rs`), "neox" rotary layout;
//! - Mixtral and Qwen2-MoE: a mixture-of-experts feed-forward (`{arch}.expert_count`), with
//!   a gated shared expert in Qwen2-MoE.
//!
//! Weights are addressed by their GGUF names (`blk.{i}.attn_q.weight`, ...). Quantized
//! matrices stay in the file's memory map (see `quant.rs`).

use candle_core::Tensor;

use crate::error::Result;
use crate::gguf::GgufFile;
use crate::layers::blocks::{
    AttentionParams, EmbeddingsAndHead, FeedForward, GateActivation, RmsNorm, SelfAttention,
};
use crate::layers::Rope;
use crate::layers::{Batch, KvBlocks};

pub use super::config::Config;

#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    attn: SelfAttention,
    ffn_norm: RmsNorm,
    mlp: FeedForward,
}

#[derive(Debug)]
pub struct Llama {
    pub config: Config,
    ends: EmbeddingsAndHead,
    blocks: Vec<Block>,
    rope: Rope,
}

impl Llama {
    pub fn load(gguf: &GgufFile, config: Config) -> Result<Self> {
        let c = &config;
        let blocks = (0..c.n_layers)
            .map(|i| {
                let norm = |name: &str| {
                    RmsNorm::load(gguf, &format!("blk.{i}.{name}.weight"), c.dim, c.rms_eps)
                };
                Ok(Block {
                    attn_norm: norm("attn_norm")?,
                    attn: SelfAttention::load(gguf, i, c.dim, c.attention_shape(), c.rms_eps)?,
                    ffn_norm: norm("ffn_norm")?,
                    mlp: FeedForward::load(
                        gguf,
                        i,
                        (c.dim, c.ffn_dim),
                        c.moe,
                        GateActivation::Silu,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            ends: EmbeddingsAndHead::load(gguf, c.n_vocab, c.dim, c.rms_eps)?,
            rope: Rope::new(c.rope_style, c.rope_dim, c.rope_theta),
            blocks,
            config,
        })
    }

    /// Runs a batch and returns the logits of its `logit_rows`, `(rows, n_vocab)`.
    pub fn forward(&self, batch: &Batch<'_>, kv: &mut [KvBlocks]) -> Result<Tensor> {
        let c = &self.config;
        let mut x = self.ends.embed(batch.tokens)?; // (t, dim)
        let params = AttentionParams {
            rope: &self.rope,
            scale: c.attention_scale,
            window: c.sliding_window,
        };
        for (block, kv) in self.blocks.iter().zip(kv.iter_mut()) {
            let h = block.attn_norm.forward(&x)?;
            x = (x + block.attn.forward(&h, kv, batch.segments, params)?)?;
            let h = block.ffn_norm.forward(&x)?;
            x = (x + block.mlp.forward(&h)?)?;
        }
        self.ends.logits(&x, batch.logit_rows)
    }
}

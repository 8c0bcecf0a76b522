//! Gemma 3 (Gemma Team 2025; Hugging Face `modeling_gemma3.py`): a decoder with
//! - embeddings scaled by `√dim`;
//! - RMSNorm before *and after* both the attention and the MLP (the post-norm output is what
//!   joins the residual stream);
//! - per-head RMSNorm of queries and keys before rotation;
//! - local layers with a sliding window and rotary base 10 000, and every sixth layer global
//!   with the file's base (1 000 000): five local to one global;
//! - a GeGLU MLP (tanh GELU);
//! - tied output embeddings, with optional final-logit soft-capping.
//!
//! GGUF files store the norm weights with Gemma's `1 + w` already applied, so the norms are
//! plain RMSNorm here.

use candle_core::Tensor;

use super::config::Config;
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::layers::blocks::{
    AttentionParams, EmbeddingsAndHead, GateActivation, GatedMlp, RmsNorm, SelfAttention,
};
use crate::layers::Rope;
use crate::layers::{Batch, KvBlocks};

/// Gemma 3's settings beyond the shared decoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    pub base: Config,
    /// Layer `i` is local (sliding window) unless `i % pattern == pattern - 1`.
    pub sliding_window_pattern: usize,
    /// Rotary base of the local layers.
    pub local_rope_theta: f32,
    /// `cap · tanh(logit / cap)` on the output, when set.
    pub final_logit_softcapping: Option<f32>,
}

impl Gemma3Config {
    pub fn from_gguf(gguf: &GgufFile, n_vocab: usize) -> Result<Self> {
        let base = Config::from_gguf(gguf, n_vocab)?;
        let key = |name: &str| format!("{}.{name}", base.architecture);
        let float = |name: &str| -> Result<Option<f32>> {
            Ok(gguf.get_f64_opt(&key(name))?.map(|v| v as f32))
        };
        let local_rope_theta = float("rope.freq_base_swa")?.unwrap_or(10_000.0);
        if !(local_rope_theta.is_finite() && local_rope_theta > 0.0) {
            return Err(crate::error::Error::InvalidMetadata {
                path: gguf.path().to_path_buf(),
                message: format!(
                    "{}.rope.freq_base_swa is {local_rope_theta}: it must be a finite positive number",
                    base.architecture
                ),
            });
        }
        Ok(Self {
            sliding_window_pattern: gguf
                .get_u64_opt(&key("attention.sliding_window_pattern"))?
                .map_or(6, |p| p as usize)
                .max(1),
            local_rope_theta,
            final_logit_softcapping: float("final_logit_softcapping")?
                .filter(|&c| c > 0.0 && c.is_finite()),
            base,
        })
    }

    fn is_local(&self, layer: usize) -> bool {
        self.base.sliding_window.is_some()
            && layer % self.sliding_window_pattern < self.sliding_window_pattern - 1
    }
}

#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    attn: SelfAttention,
    attn_post_norm: RmsNorm,
    ffn_norm: RmsNorm,
    mlp: GatedMlp,
    ffn_post_norm: RmsNorm,
    local: bool,
}

#[derive(Debug)]
pub struct Gemma3 {
    pub config: Gemma3Config,
    ends: EmbeddingsAndHead,
    blocks: Vec<Block>,
    global_rope: Rope,
    local_rope: Rope,
}

impl Gemma3 {
    pub fn load(gguf: &GgufFile, config: Gemma3Config) -> Result<Self> {
        let c = &config.base;
        let blocks = (0..c.n_layers)
            .map(|i| {
                let norm = |name: &str| {
                    RmsNorm::load(gguf, &format!("blk.{i}.{name}.weight"), c.dim, c.rms_eps)
                };
                Ok(Block {
                    attn_norm: norm("attn_norm")?,
                    attn: SelfAttention::load(gguf, i, c.dim, c.attention_shape(), c.rms_eps)?,
                    attn_post_norm: norm("post_attention_norm")?,
                    ffn_norm: norm("ffn_norm")?,
                    mlp: GatedMlp::load(gguf, i, c.dim, c.ffn_dim, GateActivation::GeluTanh)?,
                    ffn_post_norm: norm("post_ffw_norm")?,
                    local: config.is_local(i),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            ends: EmbeddingsAndHead::load(gguf, c.n_vocab, c.dim, c.rms_eps)?,
            global_rope: Rope::new(c.rope_style, c.rope_dim, c.rope_theta),
            local_rope: Rope::new(c.rope_style, c.rope_dim, config.local_rope_theta),
            blocks,
            config,
        })
    }

    /// Runs a batch and returns the logits of its `logit_rows`, `(rows, n_vocab)`.
    pub fn forward(&self, batch: &Batch<'_>, kv: &mut [KvBlocks]) -> Result<Tensor> {
        let c = &self.config.base;
        let mut x = (self.ends.embed(batch.tokens)? * f64::from((c.dim as f32).sqrt()))?;
        let scale = c.attention_scale;
        for (block, kv) in self.blocks.iter().zip(kv.iter_mut()) {
            let (rope, window) = if block.local {
                (&self.local_rope, c.sliding_window)
            } else {
                (&self.global_rope, None)
            };
            let params = AttentionParams {
                rope,
                scale,
                window,
            };
            let h = block.attn_norm.forward(&x)?;
            let attn = block.attn.forward(&h, kv, batch.segments, params)?;
            x = (x + block.attn_post_norm.forward(&attn)?)?;
            let h = block.ffn_norm.forward(&x)?;
            let mlp = block.mlp.forward(&h)?;
            x = (x + block.ffn_post_norm.forward(&mlp)?)?;
        }
        let out = self.ends.logits(&x, batch.logit_rows)?;
        match self.config.final_logit_softcapping {
            None => Ok(out),
            Some(cap) => Ok(((out / f64::from(cap))?.tanh()? * f64::from(cap))?),
        }
    }
}

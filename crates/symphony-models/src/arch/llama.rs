//! Llama: pre-norm decoder with RMSNorm, rotary embeddings, grouped-query attention and a
//! SwiGLU MLP (Touvron et al. 2023, "LLaMA"; Hugging Face `modeling_llama.py`). Covers Llama
//! 2/3, SmolLM/SmolLM2, TinyLlama and other `llama`-architecture GGUF files. The decoder is
//! shared by the architectures that differ from Llama only in details the blocks already
//! handle, each in its own file with its own table row (Mistral, Qwen2, Qwen3, Phi-3,
//! Mixtral, Qwen2-MoE): their rows point their `load` at [`load`] here.
//!
//! Weights are addressed by their GGUF names (`blk.{i}.attn_q.weight`, ...). Quantized
//! matrices stay in the file's memory map (see `quant.rs`).

use candle_core::Tensor;

use super::config::GgufDefaults;
use super::spec::{no_extra_keys, ArchSpec, Decoder};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::layers::blocks::{
    AttentionParams, EmbeddingsAndHead, FeedForward, GateActivation, RmsNorm, SelfAttention,
};
use crate::layers::{Batch, KvBlocks};
use crate::layers::{Rope, RopeStyle};

pub use super::config::Config;

pub static LLAMA: ArchSpec = ArchSpec {
    gguf_name: "llama",
    hf_model_type: "llama",
    gguf_defaults: GgufDefaults {
        rope_style: RopeStyle::Interleaved,
        expert_weights_norm: true,
    },
    hf_sandwich_norms: false,
    hf_norms_plus_one: false,
    hf_config: no_extra_keys,
    load,
};

/// Builds the Llama decoder for an architecture that runs on it (`spec` says which).
pub fn load(gguf: &GgufFile, spec: &'static ArchSpec, n_vocab: usize) -> Result<Box<dyn Decoder>> {
    let config = Config::from_gguf(gguf, n_vocab, &spec.gguf_defaults)?;
    Ok(Box::new(Llama::load(gguf, config)?))
}

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
}

impl Decoder for Llama {
    fn config(&self) -> &Config {
        &self.config
    }

    fn forward(&self, batch: &Batch<'_>, kv: &mut [KvBlocks]) -> Result<Tensor> {
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

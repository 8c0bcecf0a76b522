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
//! plain RMSNorm here (checkpoints are converted at load: `hf_norms_plus_one`).

use candle_core::Tensor;
use serde_json::Value;

use super::config::{Config, GgufDefaults};
use super::hf_config::HfConfig;
use super::spec::{ArchSpec, Decoder};
use crate::error::Result;
use crate::gguf::{GgufFile, MetadataValue};
use crate::layers::blocks::{
    AttentionParams, EmbeddingsAndHead, GateActivation, GatedMlp, RmsNorm, SelfAttention,
};
use crate::layers::{Batch, KvBlocks};
use crate::layers::{Rope, RopeStyle};

pub static GEMMA3: ArchSpec = ArchSpec {
    gguf_name: "gemma3",
    hf_model_type: "gemma3_text",
    gguf_defaults: GgufDefaults {
        rope_style: RopeStyle::Neox,
        expert_weights_norm: true,
    },
    hf_sandwich_norms: true,
    hf_norms_plus_one: true,
    hf_config,
    load,
};

fn load(gguf: &GgufFile, spec: &'static ArchSpec, n_vocab: usize) -> Result<Box<dyn Decoder>> {
    let config = Gemma3Config::from_gguf(gguf, n_vocab, &spec.gguf_defaults)?;
    Ok(Box::new(Gemma3::load(gguf, config)?))
}

/// The window (required), the layer pattern, the local rotary base, soft-capping and the
/// attention scale, from `config.json`.
fn hf_config(hf: &mut HfConfig<'_>) -> std::result::Result<(), String> {
    let window = hf
        .uint("sliding_window")
        .filter(|&w| w > 0)
        .ok_or("'sliding_window' is missing")?;
    hf.put("attention.sliding_window", MetadataValue::U64(window));
    let n_layers = hf.need("num_hidden_layers")? as usize;
    let pattern = layer_pattern(hf.json(), n_layers)?;
    hf.put(
        "attention.sliding_window_pattern",
        MetadataValue::U64(pattern as u64),
    );
    let has_local_params = hf
        .json()
        .get("rope_parameters")
        .is_some_and(|p| p.get("sliding_attention").is_some());
    let local_theta = hf
        .rope_params("sliding_attention")
        .filter(|_| has_local_params)
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64)
        .or_else(|| hf.float("rope_local_base_freq"))
        .unwrap_or(10_000.0);
    hf.put("rope.freq_base_swa", MetadataValue::F64(local_theta));
    if let Some(cap) = hf.float("final_logit_softcapping") {
        hf.put("final_logit_softcapping", MetadataValue::F64(cap));
    }
    let head_dim = hf
        .written_u64("attention.key_length")
        .ok_or("the head dimension is not known")?;
    let scalar = hf.float("query_pre_attn_scalar").unwrap_or(head_dim as f64);
    hf.put("attention.scale", MetadataValue::F64(1.0 / scalar.sqrt()));
    if hf
        .json()
        .get("attn_logit_softcapping")
        .is_some_and(|v| !v.is_null())
    {
        return Err("attention logit soft-capping is not supported yet".into());
    }
    Ok(())
}

/// Gemma 3's local/global layout as the period `p` of "p − 1 local layers, then one global"
/// (what `attention.sliding_window_pattern` says), from `layer_types` when present.
fn layer_pattern(config: &Value, n_layers: usize) -> std::result::Result<usize, String> {
    let Some(types) = config.get("layer_types").and_then(Value::as_array) else {
        let p = config
            .get("sliding_window_pattern")
            .and_then(Value::as_u64)
            .unwrap_or(6);
        return Ok(p as usize);
    };
    let global: Vec<bool> = types
        .iter()
        .map(|t| t.as_str() == Some("full_attention"))
        .collect();
    let pattern = global
        .iter()
        .position(|&g| g)
        .map_or(n_layers + 1, |i| i + 1);
    let fits = global.len() == n_layers
        && global
            .iter()
            .enumerate()
            .all(|(i, &g)| g == (i % pattern == pattern - 1));
    if !fits {
        return Err(format!(
            "layer_types {types:?} is not a repeating pattern of local layers then one global"
        ));
    }
    Ok(pattern)
}

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
    pub fn from_gguf(gguf: &GgufFile, n_vocab: usize, defaults: &GgufDefaults) -> Result<Self> {
        let base = Config::from_gguf(gguf, n_vocab, defaults)?;
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
}

impl Decoder for Gemma3 {
    fn config(&self) -> &Config {
        &self.config.base
    }

    fn forward(&self, batch: &Batch<'_>, kv: &mut [KvBlocks]) -> Result<Tensor> {
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

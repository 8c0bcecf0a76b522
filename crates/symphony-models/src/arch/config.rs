//! Hyperparameters every decoder reads the same way from `{arch}.*` GGUF keys.

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::layers::blocks::{AttentionShape, MoeShape};
use crate::layers::RopeStyle;

/// Set on a model read from safetensors: its Q and K rows keep Hugging Face's layout (the
/// rotary halves), which llama.cpp's converter permutes for `llama` GGUF files.
pub const HF_ROPE_LAYOUT_KEY: &str = "symphony.rope.hf_layout";

/// What llama.cpp assumes for an architecture where a GGUF file leaves a key out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufDefaults {
    /// llama.cpp's rope type: Llama checkpoints are permuted at conversion to rotate adjacent
    /// pairs; the others keep the Hugging Face halves, as do all checkpoints read from
    /// safetensors (which set [`HF_ROPE_LAYOUT_KEY`]).
    pub rope_style: RopeStyle,
    /// Whether the chosen experts' weights are renormalised (`{arch}.expert_weights_norm`):
    /// Mixtral-style models do, Qwen2-MoE does not.
    pub expert_weights_norm: bool,
}

/// Hyperparameters read from `{arch}.*` metadata keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub architecture: String,
    pub n_layers: usize,
    pub dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub rope_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub context_length: usize,
    pub n_vocab: usize,
    /// Attention sees only this many most recent positions (Mistral), if set.
    pub sliding_window: Option<usize>,
    pub rope_style: RopeStyle,
    /// Query-key score scale (`{arch}.attention.scale`), default `1/√head_dim`.
    pub attention_scale: f32,
    /// The expert layout of a mixture-of-experts model.
    pub moe: Option<MoeShape>,
}

impl Config {
    pub fn from_gguf(gguf: &GgufFile, n_vocab: usize, defaults: &GgufDefaults) -> Result<Self> {
        let arch = gguf.architecture()?;
        let key = |name: &str| format!("{arch}.{name}");
        let get = |name: &str| -> Result<usize> { Ok(gguf.get_u64(&key(name))? as usize) };
        let n_heads = get("attention.head_count")?;
        let dim = get("embedding_length")?;
        let invalid = |message: String| Error::InvalidMetadata {
            path: gguf.path().to_path_buf(),
            message,
        };
        if n_heads == 0 || dim % n_heads != 0 {
            return Err(invalid(format!(
                "embedding length {dim} is not divisible by {n_heads} heads"
            )));
        }
        let n_kv_heads = gguf
            .get_u64_opt(&key("attention.head_count_kv"))?
            .map_or(n_heads, |v| v as usize);
        if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(invalid(format!(
                "{n_heads} attention heads cannot be grouped over {n_kv_heads} KV heads"
            )));
        }
        let head_dim = gguf
            .get_u64_opt(&key("attention.key_length"))?
            .map_or(dim / n_heads, |v| v as usize);
        let rope_dim = gguf
            .get_u64_opt(&key("rope.dimension_count"))?
            .map_or(head_dim, |v| v as usize);
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(invalid(format!(
                "rope dimension {rope_dim} does not fit head dimension {head_dim}"
            )));
        }
        let float_opt = |name: &str| -> Result<Option<f32>> {
            Ok(gguf.get_f64_opt(&key(name))?.map(|v| v as f32))
        };
        let rope_theta = float_opt("rope.freq_base")?.unwrap_or(10_000.0);
        let ffn_dim = get("feed_forward_length")?;
        let moe = match gguf.get_u64_opt(&key("expert_count"))? {
            Some(n_experts) if n_experts > 0 => {
                let n_used = get("expert_used_count")?;
                if n_used == 0 || n_used as u64 > n_experts {
                    return Err(invalid(format!(
                        "{n_used} experts used per token out of {n_experts}"
                    )));
                }
                Some(MoeShape {
                    n_experts: n_experts as usize,
                    n_used,
                    expert_ffn_dim: gguf
                        .get_u64_opt(&key("expert_feed_forward_length"))?
                        .map_or(ffn_dim, |v| v as usize),
                    shared_ffn_dim: gguf
                        .get_u64_opt(&key("expert_shared_feed_forward_length"))?
                        .map(|v| v as usize)
                        .filter(|&v| v > 0),
                    normalize_weights: gguf
                        .get_bool_or(&key("expert_weights_norm"), defaults.expert_weights_norm)?,
                })
            }
            _ => None,
        };
        let n_layers = get("block_count")?;
        let context_length = get("context_length")?;
        let rms_eps = gguf.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32;
        let attention_scale =
            float_opt("attention.scale")?.unwrap_or(1.0 / (head_dim as f32).sqrt());
        // Values a file may carry but no model can run with: refused here, where every
        // load (and so every import) passes, rather than turning into NaN logits or an
        // empty context later.
        let positive = [
            ("block_count", n_layers),
            ("embedding_length", dim),
            ("context_length", context_length),
            ("attention.key_length", head_dim),
            ("feed_forward_length", ffn_dim),
            ("vocabulary size", n_vocab),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(invalid(format!("{name} is 0: it must be positive")));
        }
        let floats = [
            ("attention.layer_norm_rms_epsilon", rms_eps),
            ("rope.freq_base", rope_theta),
            ("attention.scale", attention_scale),
        ];
        if let Some((name, v)) = floats.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(invalid(format!(
                "{arch}.{name} is {v}: it must be a finite positive number"
            )));
        }
        Ok(Self {
            architecture: arch.to_string(),
            n_layers,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            rope_dim,
            rope_theta,
            rms_eps,
            context_length,
            n_vocab,
            sliding_window: gguf
                .get_u64_opt(&key("attention.sliding_window"))?
                .map(|w| w as usize)
                .filter(|&w| w > 0),
            rope_style: if gguf.get_bool_or(HF_ROPE_LAYOUT_KEY, false)? {
                RopeStyle::Neox
            } else {
                defaults.rope_style
            },
            attention_scale,
            moe,
        })
    }
}

impl Config {
    pub fn attention_shape(&self) -> AttentionShape {
        AttentionShape {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
        }
    }
}

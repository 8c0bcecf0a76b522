//! The decoder's sub-blocks, written once: RMSNorm, self-attention and the gated MLP. An
//! architecture file loads them by GGUF tensor name and wires them in its own order (pre-norm
//! for Llama and Qwen2; pre- and post-norm for Gemma 3).

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::Tensor;

use super::activation::{geglu, swiglu};
use super::attention::{causal_attention, KvCache};
use super::linear::{matrix, vector, Linear};
use super::norm::rms_norm_in_place;
use super::rope::Rope;
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::Logits;

/// RMSNorm with its weight, over rows of `weight.len()` values.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    pub fn load(gguf: &GgufFile, name: &str, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self {
            weight: vector(gguf, name, dim)?,
            eps,
        })
    }

    /// Loads the norm only when the file has it (optional QK-norms).
    pub fn load_optional(
        gguf: &GgufFile,
        name: &str,
        dim: usize,
        eps: f32,
    ) -> Result<Option<Self>> {
        match gguf.tensor_info(name) {
            Some(_) => Ok(Some(Self::load(gguf, name, dim, eps)?)),
            None => Ok(None),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut values = x.flatten_all()?.to_vec1::<f32>()?;
        self.forward_in_place(&mut values);
        Ok(Tensor::from_vec(values, x.shape(), x.device())?)
    }

    /// Normalises in place every row of `weight.len()` values (per-head norms).
    pub fn forward_in_place(&self, x: &mut [f32]) {
        rms_norm_in_place(x, &self.weight, self.eps);
    }
}

/// Head counts of one attention layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Multi-head self-attention with grouped KV heads, optional Q/K/V biases (Qwen2) and
/// optional per-head RMSNorm of queries and keys before rotation (Gemma 3, Qwen3, OLMo 2).
#[derive(Debug)]
pub struct SelfAttention {
    shape: AttentionShape,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
}

/// How one layer attends: its rotary embedding, score scale and optional sliding window.
#[derive(Debug, Clone, Copy)]
pub struct AttentionParams<'a> {
    pub rope: &'a Rope,
    pub scale: f32,
    pub window: Option<usize>,
}

impl SelfAttention {
    /// Loads `blk.{layer}.attn_{q,k,v,output}` (with biases where present) and
    /// `attn_{q,k}_norm` where present.
    pub fn load(
        gguf: &GgufFile,
        layer: usize,
        dim: usize,
        shape: AttentionShape,
        norm_eps: f32,
    ) -> Result<Self> {
        let p = |name: &str| format!("blk.{layer}.{name}");
        let q_dim = shape.n_heads * shape.head_dim;
        let kv_dim = shape.n_kv_heads * shape.head_dim;
        Ok(Self {
            shape,
            wq: Linear::load(gguf, &p("attn_q"), q_dim, dim)?,
            wk: Linear::load(gguf, &p("attn_k"), kv_dim, dim)?,
            wv: Linear::load(gguf, &p("attn_v"), kv_dim, dim)?,
            wo: Linear::load(gguf, &p("attn_output"), dim, q_dim)?,
            q_norm: RmsNorm::load_optional(
                gguf,
                &p("attn_q_norm.weight"),
                shape.head_dim,
                norm_eps,
            )?,
            k_norm: RmsNorm::load_optional(
                gguf,
                &p("attn_k_norm.weight"),
                shape.head_dim,
                norm_eps,
            )?,
        })
    }

    /// `h` is `(t, dim)`, the normalised input of the `t` positions after what `kv` holds.
    /// Appends their keys and values to `kv` and returns the projected output `(t, dim)`.
    pub fn forward(
        &self,
        h: &Tensor,
        kv: &mut KvCache,
        params: AttentionParams<'_>,
    ) -> Result<Tensor> {
        let AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
        } = self.shape;
        let t = h.dims()[0];
        let first_pos = kv.len();
        let mut q = self.wq.forward_values(h)?; // (t, n_heads, head_dim)
        let mut k = self.wk.forward_values(h)?; // (t, n_kv_heads, head_dim)
        let v = self.wv.forward_values(h)?;
        if let Some(norm) = &self.q_norm {
            norm.forward_in_place(&mut q);
        }
        if let Some(norm) = &self.k_norm {
            norm.forward_in_place(&mut k);
        }
        params.rope.apply(&mut q, n_heads, head_dim, first_pos);
        params.rope.apply(&mut k, n_kv_heads, head_dim, first_pos);
        kv.append(&k, &v);
        let attn = causal_attention(&q, n_heads, kv, params.scale, params.window);
        let attn = Tensor::from_vec(attn, (t, n_heads * head_dim), h.device())?;
        self.wo.forward(&attn)
    }
}

/// The gate's nonlinearity in a gated MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateActivation {
    /// SwiGLU (Llama, Qwen2, Mistral, Phi-3).
    Silu,
    /// GeGLU with the tanh approximation (Gemma).
    GeluTanh,
}

/// `down(act(gate(x)) · up(x))`.
#[derive(Debug)]
pub struct GatedMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    activation: GateActivation,
}

impl GatedMlp {
    /// Loads `blk.{layer}.ffn_{gate,up,down}`.
    pub fn load(
        gguf: &GgufFile,
        layer: usize,
        dim: usize,
        ffn_dim: usize,
        activation: GateActivation,
    ) -> Result<Self> {
        let p = |name: &str| format!("blk.{layer}.{name}");
        Ok(Self {
            gate: Linear::load(gguf, &p("ffn_gate"), ffn_dim, dim)?,
            up: Linear::load(gguf, &p("ffn_up"), ffn_dim, dim)?,
            down: Linear::load(gguf, &p("ffn_down"), dim, ffn_dim)?,
            activation,
        })
    }

    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let gate = self.gate.forward_values(h)?;
        let up = self.up.forward_values(h)?;
        let mut act = vec![0f32; gate.len()];
        match self.activation {
            GateActivation::Silu => swiglu(&gate, &up, &mut act),
            GateActivation::GeluTanh => geglu(&gate, &up, &mut act),
        }
        let rows = h.dims()[0];
        let act = Tensor::from_vec(act, (rows, gate.len() / rows), h.device())?;
        self.down.forward(&act)
    }
}

/// Both ends of a decoder: the token embedding table in, and the final norm with the output
/// projection (the embedding table itself when the file ties them) out.
#[derive(Debug)]
pub struct EmbeddingsAndHead {
    table: Arc<QTensor>,
    norm: RmsNorm,
    output: Linear,
}

impl EmbeddingsAndHead {
    /// Loads `token_embd`, `output_norm` and `output` (or ties it to `token_embd`).
    pub fn load(gguf: &GgufFile, n_vocab: usize, dim: usize, norm_eps: f32) -> Result<Self> {
        let output = match gguf.tensor_info("output.weight") {
            Some(_) => "output",
            None => "token_embd",
        };
        Ok(Self {
            table: matrix(gguf, "token_embd.weight", n_vocab, dim)?,
            norm: RmsNorm::load(gguf, "output_norm.weight", dim, norm_eps)?,
            output: Linear::load(gguf, output, n_vocab, dim)?,
        })
    }

    /// The embeddings of `tokens`, `(t, dim)`.
    pub fn embed(&self, tokens: &[u32]) -> Result<Tensor> {
        let ids = Tensor::new(tokens, &candle_core::Device::Cpu)?;
        Ok(self.table.embedding(&ids)?)
    }

    /// Logits `(rows, n_vocab)` of the final hidden states `x` `(t, dim)`: every row, or only
    /// the last with [`Logits::Last`].
    pub fn logits(&self, x: &Tensor, logits: Logits) -> Result<Tensor> {
        let x = match logits {
            Logits::Last => x.narrow(0, x.dims()[0] - 1, 1)?,
            Logits::All => x.clone(),
        };
        self.output.forward(&self.norm.forward(&x)?)
    }
}

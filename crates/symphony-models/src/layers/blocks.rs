//! The decoder's sub-blocks, written once: RMSNorm, self-attention and the gated MLP. An
//! architecture file loads them by GGUF tensor name and wires them in its own order (pre-norm
//! for Llama and Qwen2; pre- and post-norm for Gemma 3).

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::Tensor;

use super::activation::{geglu, swiglu};
use super::attention::{causal_attention, KvBlocks, Segment};
use super::linear::{matrix, vector, Linear};
use super::norm::rms_norm_in_place;
use super::rope::Rope;
use crate::error::Result;
use crate::gguf::GgufFile;

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
        // Phi-3 fuses the three projections into one `attn_qkv` matrix: Q, K and V rows in
        // that order, read as three row ranges of it.
        let (wq, wk, wv) = match gguf.tensor_info(&p("attn_qkv.weight")) {
            Some(_) => {
                let qkv = p("attn_qkv");
                (
                    Linear::load_rows(gguf, &qkv, 0, q_dim, dim)?,
                    Linear::load_rows(gguf, &qkv, q_dim, kv_dim, dim)?,
                    Linear::load_rows(gguf, &qkv, q_dim + kv_dim, kv_dim, dim)?,
                )
            }
            None => (
                Linear::load(gguf, &p("attn_q"), q_dim, dim)?,
                Linear::load(gguf, &p("attn_k"), kv_dim, dim)?,
                Linear::load(gguf, &p("attn_v"), kv_dim, dim)?,
            ),
        };
        Ok(Self {
            shape,
            wq,
            wk,
            wv,
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

    /// `h` is `(rows, dim)`, the normalised input of a batch: each segment's rows are that
    /// sequence's next positions. Writes their keys and values into the segments' blocks of
    /// `kv` and returns the projected output `(rows, dim)`.
    pub fn forward(
        &self,
        h: &Tensor,
        kv: &mut KvBlocks,
        segments: &[Segment<'_>],
        params: AttentionParams<'_>,
    ) -> Result<Tensor> {
        let AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
        } = self.shape;
        let rows = h.dims()[0];
        let mut q = self.wq.forward_values(h)?; // (rows, n_heads, head_dim)
        let mut k = self.wk.forward_values(h)?; // (rows, n_kv_heads, head_dim)
        let v = self.wv.forward_values(h)?;
        if let Some(norm) = &self.q_norm {
            norm.forward_in_place(&mut q);
        }
        if let Some(norm) = &self.k_norm {
            norm.forward_in_place(&mut k);
        }
        let (q_row, kv_row) = (n_heads * head_dim, n_kv_heads * head_dim);
        for seg in segments {
            let (qs, ks) = (
                &mut q[seg.rows.start * q_row..seg.rows.end * q_row],
                &mut k[seg.rows.start * kv_row..seg.rows.end * kv_row],
            );
            params.rope.apply(qs, n_heads, head_dim, seg.first_pos);
            params.rope.apply(ks, n_kv_heads, head_dim, seg.first_pos);
            let vs = &v[seg.rows.start * kv_row..seg.rows.end * kv_row];
            kv.write(seg.blocks, seg.first_pos, ks, vs);
        }
        let attn = causal_attention(&q, n_heads, kv, segments, params.scale, params.window);
        let attn = Tensor::from_vec(attn, (rows, n_heads * head_dim), h.device())?;
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
    /// Loads `blk.{layer}.ffn_{gate,up,down}`; Phi-3's fused `ffn_up` (gate rows first, then
    /// up rows) when there is no `ffn_gate`.
    pub fn load(
        gguf: &GgufFile,
        layer: usize,
        dim: usize,
        ffn_dim: usize,
        activation: GateActivation,
    ) -> Result<Self> {
        let p = |name: &str| format!("blk.{layer}.{name}");
        let (gate, up) = match gguf.tensor_info(&p("ffn_gate.weight")) {
            Some(_) => (
                Linear::load(gguf, &p("ffn_gate"), ffn_dim, dim)?,
                Linear::load(gguf, &p("ffn_up"), ffn_dim, dim)?,
            ),
            None => (
                Linear::load_rows(gguf, &p("ffn_up"), 0, ffn_dim, dim)?,
                Linear::load_rows(gguf, &p("ffn_up"), ffn_dim, ffn_dim, dim)?,
            ),
        };
        Ok(Self {
            gate,
            up,
            down: Linear::load(gguf, &p("ffn_down"), dim, ffn_dim)?,
            activation,
        })
    }

    /// Expert `expert` of a mixture: rows of the stacked `ffn_{gate,up,down}{suffix}` tensors
    /// of a GGUF file, or the expert's own `ffn_{gate,up,down}{suffix}.{expert}` tensors when
    /// they are stored one by one (safetensors checkpoints).
    fn load_expert(
        gguf: &GgufFile,
        layer: usize,
        suffix: &str,
        expert: usize,
        (dim, ffn_dim): (usize, usize),
        activation: GateActivation,
    ) -> Result<Self> {
        let stacked = |name: &str| format!("blk.{layer}.{name}{suffix}");
        let own = |name: &str| format!("blk.{layer}.{name}{suffix}.{expert}");
        let load = |name: &str, rows: usize, cols: usize| {
            if gguf
                .tensor_info(&format!("{}.weight", stacked(name)))
                .is_some()
            {
                Linear::load_rows(gguf, &stacked(name), expert * rows, rows, cols)
            } else {
                Linear::load(gguf, &own(name), rows, cols)
            }
        };
        Ok(Self {
            gate: load("ffn_gate", ffn_dim, dim)?,
            up: load("ffn_up", ffn_dim, dim)?,
            down: load("ffn_down", dim, ffn_dim)?,
            activation,
        })
    }

    /// The shared expert of a mixture: `ffn_{gate,up,down}_shexp`.
    fn load_expert_shared(
        gguf: &GgufFile,
        layer: usize,
        (dim, ffn_dim): (usize, usize),
        activation: GateActivation,
    ) -> Result<Self> {
        let p = |name: &str| format!("blk.{layer}.{name}_shexp");
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

/// How a mixture-of-experts layer routes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeShape {
    pub n_experts: usize,
    /// Experts each token goes to (top-k).
    pub n_used: usize,
    /// Hidden size of one expert's MLP.
    pub expert_ffn_dim: usize,
    /// Hidden size of the always-on shared expert (Qwen2-MoE), if any.
    pub shared_ffn_dim: Option<usize>,
    /// Rescale the chosen experts' weights to sum to one (Mixtral: yes; Qwen2-MoE: no).
    pub normalize_weights: bool,
}

/// A sparse mixture of gated MLPs (Shazeer et al. 2017; Mixtral, Qwen2-MoE): a router picks
/// the top-k experts per token from a softmax over its logits, and the token's output is the
/// weighted sum of those experts' outputs, plus a sigmoid-gated shared expert where the model
/// has one.
#[derive(Debug)]
pub struct MoeMlp {
    router: Linear,
    experts: Vec<GatedMlp>,
    shape: MoeShape,
    shared: Option<(GatedMlp, Option<Linear>)>,
}

impl MoeMlp {
    /// Loads `ffn_gate_inp` (the router) and the experts (`ffn_*_exps`), with the shared
    /// expert (`ffn_*_shexp`, gated by `ffn_gate_inp_shexp`) when the shape has one.
    pub fn load(
        gguf: &GgufFile,
        layer: usize,
        dim: usize,
        shape: MoeShape,
        activation: GateActivation,
    ) -> Result<Self> {
        let p = |name: &str| format!("blk.{layer}.{name}");
        let experts = (0..shape.n_experts)
            .map(|e| {
                GatedMlp::load_expert(
                    gguf,
                    layer,
                    "_exps",
                    e,
                    (dim, shape.expert_ffn_dim),
                    activation,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let shared = match shape.shared_ffn_dim {
            None => None,
            Some(ffn) => {
                let mlp = GatedMlp::load_expert_shared(gguf, layer, (dim, ffn), activation)?;
                let gate = match gguf.tensor_info(&p("ffn_gate_inp_shexp.weight")) {
                    Some(_) => Some(Linear::load(gguf, &p("ffn_gate_inp_shexp"), 1, dim)?),
                    None => None,
                };
                Some((mlp, gate))
            }
        };
        Ok(Self {
            router: Linear::load(gguf, &p("ffn_gate_inp"), shape.n_experts, dim)?,
            experts,
            shape,
            shared,
        })
    }

    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let (t, dim) = h.dims2()?;
        let logits = self.router.forward_values(h)?; // (t, n_experts)
        let routes = route(&logits, self.shape);
        let rows = h.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; t * dim];
        for (e, expert) in self.experts.iter().enumerate() {
            // The tokens routed to this expert, run as one batch.
            let picked: Vec<(usize, f32)> = routes
                .iter()
                .enumerate()
                .filter_map(|(token, r)| r.iter().find(|&&(x, _)| x == e).map(|&(_, w)| (token, w)))
                .collect();
            if picked.is_empty() {
                continue;
            }
            let mut batch = Vec::with_capacity(picked.len() * dim);
            for &(token, _) in &picked {
                batch.extend_from_slice(&rows[token * dim..(token + 1) * dim]);
            }
            let batch = Tensor::from_vec(batch, (picked.len(), dim), h.device())?;
            let y = expert.forward(&batch)?.flatten_all()?.to_vec1::<f32>()?;
            for (&(token, weight), y) in picked.iter().zip(y.chunks_exact(dim)) {
                for (o, v) in out[token * dim..(token + 1) * dim].iter_mut().zip(y) {
                    *o += weight * v;
                }
            }
        }
        if let Some((mlp, gate)) = &self.shared {
            let y = mlp.forward(h)?.flatten_all()?.to_vec1::<f32>()?;
            let g = match gate {
                Some(gate) => gate
                    .forward_values(h)?
                    .iter()
                    .map(|&v| sigmoid(v))
                    .collect(),
                None => vec![1.0; t],
            };
            for ((o, y), g) in out.chunks_exact_mut(dim).zip(y.chunks_exact(dim)).zip(g) {
                for (o, v) in o.iter_mut().zip(y) {
                    *o += g * v;
                }
            }
        }
        Ok(Tensor::from_vec(out, (t, dim), h.device())?)
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// For each token, its top-k experts and their weights: softmax over all router logits, the
/// k largest kept (ties to the lower index), renormalised to sum to one when asked.
fn route(logits: &[f32], shape: MoeShape) -> Vec<Vec<(usize, f32)>> {
    logits
        .chunks_exact(shape.n_experts)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]).then(a.cmp(&b)));
            let mut top: Vec<(usize, f32)> = order[..shape.n_used]
                .iter()
                .map(|&e| (e, exp[e] / sum))
                .collect();
            if shape.normalize_weights {
                let total: f32 = top.iter().map(|&(_, w)| w).sum();
                top.iter_mut().for_each(|(_, w)| *w /= total);
            }
            top
        })
        .collect()
}

/// The feed-forward half of a decoder layer: one MLP, or a mixture of them.
// One per layer: the variants' size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum FeedForward {
    Dense(GatedMlp),
    Moe(MoeMlp),
}

impl FeedForward {
    /// A mixture when the layer has a router (`ffn_gate_inp`) and the model an expert shape,
    /// else a dense MLP.
    pub fn load(
        gguf: &GgufFile,
        layer: usize,
        (dim, ffn_dim): (usize, usize),
        moe: Option<MoeShape>,
        activation: GateActivation,
    ) -> Result<Self> {
        let router = format!("blk.{layer}.ffn_gate_inp.weight");
        match moe {
            Some(shape) if gguf.tensor_info(&router).is_some() => Ok(FeedForward::Moe(
                MoeMlp::load(gguf, layer, dim, shape, activation)?,
            )),
            _ => Ok(FeedForward::Dense(GatedMlp::load(
                gguf, layer, dim, ffn_dim, activation,
            )?)),
        }
    }

    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        match self {
            FeedForward::Dense(mlp) => mlp.forward(h),
            FeedForward::Moe(moe) => moe.forward(h),
        }
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

    /// Logits `(rows.len(), n_vocab)` of the final hidden states `x` `(t, dim)` at `rows`.
    pub fn logits(&self, x: &Tensor, rows: &[u32]) -> Result<Tensor> {
        let x = match rows {
            [row] => x.narrow(0, *row as usize, 1)?,
            _ if rows.len() == x.dims()[0]
                && rows.iter().enumerate().all(|(i, &r)| i == r as usize) =>
            {
                x.clone()
            }
            _ => x.index_select(&Tensor::new(rows, x.device())?, 0)?,
        };
        self.output.forward(&self.norm.forward(&x)?)
    }
}

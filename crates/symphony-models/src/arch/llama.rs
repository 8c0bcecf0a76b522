//! Llama: pre-norm decoder with RMSNorm, rotary embeddings, grouped-query attention and a
//! SwiGLU MLP (Touvron et al. 2023, "LLaMA"; Hugging Face `modeling_llama.py`). Covers Llama
//! 2/3, SmolLM/SmolLM2, TinyLlama and other `llama`-architecture GGUF files.
//!
//! Weights are addressed by their GGUF names (`blk.{i}.attn_q.weight`, ...). Quantized
//! matrices stay in the file's memory map (see `quant.rs`).

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Tensor};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::layers::activation::swiglu;
use crate::layers::norm::rms_norm;
use crate::layers::{causal_attention, KvCache, Rope, RopeStyle};
use crate::quant::{load_f32, load_qtensor};
use crate::{Cache, Logits};

/// Hyperparameters read from `{arch}.*` metadata keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
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
}

impl Config {
    pub fn from_gguf(gguf: &GgufFile, n_vocab: usize) -> Result<Self> {
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
        let rope_theta = match gguf.get(&key("rope.freq_base")) {
            Some(_) => gguf.get_f64(&key("rope.freq_base"))? as f32,
            None => 10_000.0,
        };
        Ok(Self {
            n_layers: get("block_count")?,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: get("feed_forward_length")?,
            rope_dim,
            rope_theta,
            rms_eps: gguf.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32,
            context_length: get("context_length")?,
            n_vocab,
        })
    }
}

#[derive(Debug)]
struct Attention {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
}

#[derive(Debug)]
struct Mlp {
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

#[derive(Debug)]
struct Block {
    attn_norm: Vec<f32>,
    attn: Attention,
    ffn_norm: Vec<f32>,
    mlp: Mlp,
}

#[derive(Debug)]
pub struct Llama {
    pub config: Config,
    embeddings: Arc<QTensor>,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    output: QMatMul,
    rope: Rope,
}

/// Loads a weight matrix and checks it is `(rows, cols)` in row-major terms.
fn matrix(gguf: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<Arc<QTensor>> {
    let t = load_qtensor(gguf, name)?;
    if t.shape().dims() != [rows, cols] {
        return Err(Error::TensorShape {
            path: gguf.path().to_path_buf(),
            tensor: name.into(),
            expected: vec![rows, cols],
            found: t.shape().dims().to_vec(),
        });
    }
    Ok(Arc::new(t))
}

fn linear(gguf: &GgufFile, name: &str, out_dim: usize, in_dim: usize) -> Result<QMatMul> {
    Ok(QMatMul::from_arc(matrix(gguf, name, out_dim, in_dim)?)?)
}

fn vector(gguf: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>> {
    let t = load_f32(gguf, name)?;
    if t.dims() != [len] {
        return Err(Error::TensorShape {
            path: gguf.path().to_path_buf(),
            tensor: name.into(),
            expected: vec![len],
            found: t.dims().to_vec(),
        });
    }
    Ok(t.to_vec1::<f32>()?)
}

/// RMSNorm of `(rows, dim)` activations into a new tensor.
fn norm(x: &Tensor, weight: &[f32], eps: f32) -> Result<Tensor> {
    let values = x.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; values.len()];
    rms_norm(&values, weight, eps, &mut out);
    Ok(Tensor::from_vec(out, x.shape(), x.device())?)
}

impl Llama {
    pub fn load(gguf: &GgufFile, config: Config) -> Result<Self> {
        let c = &config;
        let q_dim = c.n_heads * c.head_dim;
        let kv_dim = c.n_kv_heads * c.head_dim;
        let embeddings = matrix(gguf, "token_embd.weight", c.n_vocab, c.dim)?;
        // Tied embeddings: models without an output matrix reuse the embedding table.
        let output = match gguf.tensor_info("output.weight") {
            Some(_) => linear(gguf, "output.weight", c.n_vocab, c.dim)?,
            None => QMatMul::from_arc(embeddings.clone())?,
        };
        let blocks = (0..c.n_layers)
            .map(|i| {
                let p = |name: &str| format!("blk.{i}.{name}.weight");
                Ok(Block {
                    attn_norm: vector(gguf, &p("attn_norm"), c.dim)?,
                    attn: Attention {
                        wq: linear(gguf, &p("attn_q"), q_dim, c.dim)?,
                        wk: linear(gguf, &p("attn_k"), kv_dim, c.dim)?,
                        wv: linear(gguf, &p("attn_v"), kv_dim, c.dim)?,
                        wo: linear(gguf, &p("attn_output"), c.dim, q_dim)?,
                    },
                    ffn_norm: vector(gguf, &p("ffn_norm"), c.dim)?,
                    mlp: Mlp {
                        gate: linear(gguf, &p("ffn_gate"), c.ffn_dim, c.dim)?,
                        up: linear(gguf, &p("ffn_up"), c.ffn_dim, c.dim)?,
                        down: linear(gguf, &p("ffn_down"), c.dim, c.ffn_dim)?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = vector(gguf, "output_norm.weight", c.dim)?;
        let rope = Rope::new(RopeStyle::Interleaved, c.rope_dim, c.rope_theta);
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
        let first_pos = cache.len();
        let device = candle_core::Device::Cpu;
        let ids = Tensor::new(tokens, &device)?;
        let mut x = self.embeddings.embedding(&ids)?; // (t, dim)
        let scale = 1.0 / (c.head_dim as f32).sqrt();
        for (block, kv) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = norm(&x, &block.attn_norm, c.rms_eps)?;
            let mut q = block.attn.wq.forward(&h)?.flatten_all()?.to_vec1::<f32>()?; // (t, n_heads, head_dim)
            let mut k = block.attn.wk.forward(&h)?.flatten_all()?.to_vec1::<f32>()?; // (t, n_kv_heads, head_dim)
            let v = block.attn.wv.forward(&h)?.flatten_all()?.to_vec1::<f32>()?;
            self.rope.apply(&mut q, c.n_heads, c.head_dim, first_pos);
            self.rope.apply(&mut k, c.n_kv_heads, c.head_dim, first_pos);
            kv.append(&k, &v);
            let attn = causal_attention(&q, c.n_heads, kv, scale); // (t, n_heads, head_dim)
            let attn = Tensor::from_vec(attn, (t, c.n_heads * c.head_dim), &device)?;
            x = (x + block.attn.wo.forward(&attn)?)?;

            let h = norm(&x, &block.ffn_norm, c.rms_eps)?;
            let gate = block
                .mlp
                .gate
                .forward(&h)?
                .flatten_all()?
                .to_vec1::<f32>()?; // (t, ffn_dim)
            let up = block.mlp.up.forward(&h)?.flatten_all()?.to_vec1::<f32>()?;
            let mut act = vec![0f32; gate.len()];
            swiglu(&gate, &up, &mut act);
            let act = Tensor::from_vec(act, (t, c.ffn_dim), &device)?;
            x = (x + block.mlp.down.forward(&act)?)?;
        }
        let x = match logits {
            Logits::Last => x.narrow(0, t - 1, 1)?,
            Logits::All => x,
        };
        let x = norm(&x, &self.norm, c.rms_eps)?;
        Ok(self.output.forward(&x)?)
    }
}

//! BERT encoders (all-MiniLM, BGE, E5 and other sentence-embedding models), from a Hugging
//! Face checkpoint in F32.
//!
//! Unlike the decoders, an encoder sees its whole input at once: no cache, no causal mask.
//! Several inputs run as one packed batch: every matrix multiplies the rows of all of them
//! together, and attention runs per input over its own rows, so no padding is computed and
//! an input's output does not depend on what it was batched with.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::kernels;
use crate::tokenizer::TokenId;

/// The hyperparameters of a `config.json` with `model_type: bert`.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl BertConfig {
    pub fn from_json(json: &Value) -> std::result::Result<Self, String> {
        let model_type = json.get("model_type").and_then(Value::as_str);
        if model_type != Some("bert") {
            return Err(format!(
                "model_type is {}, not bert",
                model_type.unwrap_or("missing")
            ));
        }
        let act = json
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("gelu");
        if act != "gelu" {
            return Err(format!("hidden_act '{act}' is not supported (only gelu)"));
        }
        let embedding = json
            .get("position_embedding_type")
            .and_then(Value::as_str)
            .unwrap_or("absolute");
        if embedding != "absolute" {
            return Err(format!(
                "position_embedding_type '{embedding}' is not supported (only absolute)"
            ));
        }
        let size = |key: &str| {
            json.get(key)
                .and_then(Value::as_u64)
                .filter(|&v| v > 0)
                .map(|v| v as usize)
                .ok_or_else(|| format!("'{key}' is missing or not a positive integer"))
        };
        let config = Self {
            vocab_size: size("vocab_size")?,
            hidden_size: size("hidden_size")?,
            n_layers: size("num_hidden_layers")?,
            n_heads: size("num_attention_heads")?,
            intermediate_size: size("intermediate_size")?,
            max_position_embeddings: size("max_position_embeddings")?,
            type_vocab_size: size("type_vocab_size").unwrap_or(2),
            layer_norm_eps: json
                .get("layer_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-12),
        };
        if !(config.layer_norm_eps.is_finite() && config.layer_norm_eps > 0.0) {
            return Err(format!(
                "layer_norm_eps {} is not a finite positive number",
                config.layer_norm_eps
            ));
        }
        // Every input holds at least [CLS] and [SEP].
        if config.max_position_embeddings < 2 {
            return Err(format!(
                "max_position_embeddings {} leaves no room for [CLS] and [SEP]",
                config.max_position_embeddings
            ));
        }
        if !config.hidden_size.is_multiple_of(config.n_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.n_heads
            ));
        }
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.n_heads
    }
}

#[derive(Debug)]
struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

/// `y = x · Wᵀ + b`, with `Wᵀ` stored `(in, out)` row-major, ready for the multiply; the
/// bias is added by the kernel that follows, fused with what comes next.
#[derive(Debug)]
struct Dense {
    weight_t: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
    bias: Vec<f32>,
}

impl Dense {
    /// `x · Wᵀ` for the `(rows, in)` matrix `x`, without the bias: one call of `gemm` (the
    /// crate candle's F32 products use) on the slices themselves, no copy in or out.
    fn product(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (k, n) = (self.in_dim, self.out_dim);
        assert_eq!(x.len(), rows * k, "a (rows, in) matrix");
        let mut y = Vec::with_capacity(rows * n);
        // SAFETY: `x` is `rows × k` and `weight_t` `k × n`, both row-major as the strides say;
        // `y` has room for `rows × n`, which gemm writes in full without reading it
        // (`read_dst` false), so every element is initialised before `set_len`.
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                y.as_mut_ptr(),
                1,
                n as isize,
                false,
                x.as_ptr(),
                1,
                k as isize,
                self.weight_t.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            );
            y.set_len(rows * n);
        }
        y
    }
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value projections fused into one `(hidden, 3 * hidden)` matrix.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    up: Dense,
    down: Dense,
    output_norm: LayerNorm,
}

#[derive(Debug)]
pub struct Bert {
    pub config: BertConfig,
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    /// Row 0 of the token-type table: single-segment inputs use only that type.
    token_type_row: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// Reads named tensors out of a checkpoint, checking their shapes.
struct Weights<'a> {
    dir: &'a Path,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights<'_> {
    /// The tensor `name` (or `bert.name`, as a `BertFor...` checkpoint spells it).
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (found, values) = self
            .tensors
            .remove(name)
            .or_else(|| self.tensors.remove(&format!("bert.{name}")))
            .ok_or_else(|| Error::MissingTensor {
                path: self.dir.to_path_buf(),
                name: name.into(),
            })?;
        if found != shape {
            return Err(Error::TensorShape {
                path: self.dir.to_path_buf(),
                tensor: name.into(),
                expected: shape.to_vec(),
                found,
            });
        }
        Ok(values)
    }

    fn norm(&mut self, prefix: &str, len: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.take(&format!("{prefix}.weight"), &[len])?,
            bias: self.take(&format!("{prefix}.bias"), &[len])?,
            eps: eps as f32,
        })
    }

    /// Stacks the `(out, in)` matrices of `prefixes` along `out` and transposes the result.
    fn dense(&mut self, prefixes: &[&str], out_dim: usize, in_dim: usize) -> Result<Dense> {
        let mut weight = Vec::with_capacity(prefixes.len() * out_dim * in_dim);
        let mut bias = Vec::with_capacity(prefixes.len() * out_dim);
        for prefix in prefixes {
            weight.extend(self.take(&format!("{prefix}.weight"), &[out_dim, in_dim])?);
            bias.extend(self.take(&format!("{prefix}.bias"), &[out_dim])?);
        }
        let rows = prefixes.len() * out_dim;
        let mut weight_t = vec![0f32; weight.len()];
        for (r, row) in weight.chunks_exact(in_dim).enumerate() {
            for (c, &w) in row.iter().enumerate() {
                weight_t[c * rows + r] = w;
            }
        }
        Ok(Dense {
            weight_t,
            in_dim,
            out_dim: rows,
            bias,
        })
    }
}

impl Bert {
    /// Loads the checkpoint directory `dir` (its `config.json` and safetensors shards).
    pub fn load(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = BertConfig::from_json(&crate::safetensors::read_json(&config_path)?).map_err(
            |message| Error::InvalidMetadata {
                path: config_path,
                message,
            },
        )?;
        let mut w = Weights {
            dir,
            tensors: crate::safetensors::read_f32_tensors(dir)?,
        };
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let word_embeddings =
            w.take("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position_embeddings = w.take(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let mut token_type_row = w.take(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        token_type_row.truncate(h);
        let embedding_norm = w.norm("embeddings.LayerNorm", h, eps)?;
        let layers = (0..config.n_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                Ok(Layer {
                    qkv: w.dense(
                        &[
                            &format!("{p}.attention.self.query"),
                            &format!("{p}.attention.self.key"),
                            &format!("{p}.attention.self.value"),
                        ],
                        h,
                        h,
                    )?,
                    attention_out: w.dense(&[&format!("{p}.attention.output.dense")], h, h)?,
                    attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                    up: w.dense(
                        &[&format!("{p}.intermediate.dense")],
                        config.intermediate_size,
                        h,
                    )?,
                    down: w.dense(&[&format!("{p}.output.dense")], h, config.intermediate_size)?,
                    output_norm: w.norm(&format!("{p}.output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            word_embeddings,
            position_embeddings,
            token_type_row,
            embedding_norm,
            layers,
        })
    }

    pub fn n_parameters(&self) -> u64 {
        let c = &self.config;
        let h = c.hidden_size as u64;
        let per_layer = 4 * h * h + 2 * h * c.intermediate_size as u64;
        (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) as u64 * h
            + c.n_layers as u64 * per_layer
    }

    /// The last hidden states of each input, packed: row `r` of the result is a token of the
    /// input whose rows contain `r`, in input order. Errors on an empty input, an unknown
    /// token or an input longer than the position table.
    pub fn forward(&self, inputs: &[&[TokenId]]) -> Result<Tensor> {
        let c = &self.config;
        let h = c.hidden_size;
        let mut rows = Vec::with_capacity(inputs.len());
        let mut x = Vec::with_capacity(inputs.iter().map(|t| t.len()).sum::<usize>() * h);
        for tokens in inputs {
            if tokens.is_empty() {
                return Err(Error::EmptyInput);
            }
            if tokens.len() > c.max_position_embeddings {
                return Err(Error::ContextLength {
                    requested: tokens.len(),
                    limit: c.max_position_embeddings,
                });
            }
            let start = x.len() / h;
            for (pos, &id) in tokens.iter().enumerate() {
                if id as usize >= c.vocab_size {
                    return Err(Error::TokenOutOfRange {
                        id,
                        n_vocab: c.vocab_size,
                    });
                }
                let word = &self.word_embeddings[id as usize * h..][..h];
                let position = &self.position_embeddings[pos * h..][..h];
                x.extend(
                    word.iter()
                        .zip(position)
                        .zip(&self.token_type_row)
                        .map(|((w, p), t)| w + p + t),
                );
            }
            rows.push(start..start + tokens.len());
        }
        let n = x.len() / h;
        let norm =
            |x: &mut [f32], bias: Option<&[f32]>, residual: Option<&[f32]>, ln: &LayerNorm| {
                kernels::bias_residual_layer_norm(x, bias, residual, &ln.weight, &ln.bias, ln.eps)
            };
        norm(&mut x, None, None, &self.embedding_norm);
        for layer in &self.layers {
            let mut qkv = layer.qkv.product(&x, n);
            kernels::add_bias_rows(&mut qkv, &layer.qkv.bias);
            let attended = kernels::packed_attention(&qkv, h, c.head_dim(), &rows);
            let mut x_attn = layer.attention_out.product(&attended, n);
            norm(
                &mut x_attn,
                Some(&layer.attention_out.bias),
                Some(&x),
                &layer.attention_norm,
            );
            let mut up = layer.up.product(&x_attn, n);
            kernels::bias_gelu_in_place(&mut up, &layer.up.bias);
            let mut out = layer.down.product(&up, n);
            norm(
                &mut out,
                Some(&layer.down.bias),
                Some(&x_attn),
                &layer.output_norm,
            );
            x = out;
        }
        Ok(Tensor::from_vec(x, (n, h), &Device::Cpu)?)
    }
}

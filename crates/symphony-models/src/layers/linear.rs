//! The linear layer and the weight loaders every architecture uses.
//!
//! Quantization lives here, not in the models: a [`Linear`] holds whatever matrix type the
//! file has (read in place from the map, see `quant.rs`) and an optional bias, so an
//! architecture file never knows whether its weights are Q4_K, Q8_0 or F32.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Tensor};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::{load_f32, load_qtensor, qtensor_of, MappedMatrix};

/// `y = x · Wᵀ (+ b)` with `W` stored `(out_dim, in_dim)`.
#[derive(Debug)]
pub struct Linear {
    weight: Weight,
    bias: Option<Vec<f32>>,
}

/// Our ggml-exact kernels where we have them, candle's for the other types.
#[derive(Debug)]
enum Weight {
    Mapped(MappedMatrix),
    Candle(QMatMul),
}

impl Weight {
    /// Rows `first..first + rows` of the matrix `name`, which must have `cols` columns.
    fn load(gguf: &GgufFile, name: &str, first: usize, rows: usize, cols: usize) -> Result<Self> {
        let info = tensor_info(gguf, name)?;
        let stored_rows = (info.n_elements() as usize).checked_div(cols).unwrap_or(0);
        let whole = first == 0 && info.dims.len() == 2 && stored_rows == rows;
        if info.dims.first() != Some(&(cols as u64)) || first + rows > stored_rows {
            return Err(Error::TensorShape {
                path: gguf.path().to_path_buf(),
                tensor: name.into(),
                expected: vec![first + rows, cols],
                found: info.shape(),
            });
        }
        if let Some(mapped) = MappedMatrix::rows_of(gguf, info, first, rows) {
            return Ok(Weight::Mapped(mapped));
        }
        // Types we leave to candle, read in place from the slice of the map.
        let slice = if whole {
            info.clone()
        } else {
            let row_bytes = info.n_bytes / stored_rows as u64;
            TensorInfo {
                dims: vec![cols as u64, rows as u64],
                offset: info.offset + first as u64 * row_bytes,
                n_bytes: rows as u64 * row_bytes,
                ..info.clone()
            }
        };
        Ok(Weight::Candle(QMatMul::from_arc(Arc::new(qtensor_of(
            gguf, &slice,
        )?))?))
    }
}

fn tensor_info<'a>(gguf: &'a GgufFile, name: &str) -> Result<&'a TensorInfo> {
    gguf.tensor_info(name).ok_or_else(|| Error::MissingTensor {
        path: gguf.path().to_path_buf(),
        name: name.into(),
    })
}

impl Linear {
    /// Loads `{prefix}.weight` and, when the file has it, `{prefix}.bias`.
    pub fn load(gguf: &GgufFile, prefix: &str, out_dim: usize, in_dim: usize) -> Result<Self> {
        Self::load_rows(gguf, prefix, 0, out_dim, in_dim)
    }

    /// Output rows `first..first + out_dim` of `{prefix}.weight` (and its bias): one part of
    /// a fused projection (Phi-3's `attn_qkv`, `ffn_up`) or one expert of a stack, read in
    /// place without a copy.
    pub fn load_rows(
        gguf: &GgufFile,
        prefix: &str,
        first: usize,
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Self> {
        let weight = Weight::load(gguf, &format!("{prefix}.weight"), first, out_dim, in_dim)?;
        let bias_name = format!("{prefix}.bias");
        let bias = match gguf.tensor_info(&bias_name) {
            Some(info) if first == 0 && info.n_elements() as usize == out_dim => {
                Some(vector(gguf, &bias_name, out_dim)?)
            }
            Some(info) => {
                let all = load_f32(gguf, &bias_name)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                match all.get(first..first + out_dim) {
                    Some(part) => Some(part.to_vec()),
                    None => {
                        return Err(Error::TensorShape {
                            path: gguf.path().to_path_buf(),
                            tensor: bias_name,
                            expected: vec![first + out_dim],
                            found: info.shape(),
                        })
                    }
                }
            }
            None => None,
        };
        Ok(Self { weight, bias })
    }

    /// `x` is `(rows, in_dim)`; the result is `(rows, out_dim)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (mut values, shape) = match &self.weight {
            Weight::Candle(w) => {
                let y = w.forward(x)?;
                if self.bias.is_none() {
                    return Ok(y);
                }
                (y.flatten_all()?.to_vec1::<f32>()?, y.dims().to_vec())
            }
            Weight::Mapped(w) => {
                let lhs = x.flatten_all()?.to_vec1::<f32>()?;
                let m = lhs.len() / w.cols;
                let mut out = vec![0f32; m * w.rows];
                w.matmul(&lhs, &mut out);
                (out, vec![m, w.rows])
            }
        };
        if let Some(bias) = &self.bias {
            add_bias(&mut values, bias);
        }
        Ok(Tensor::from_vec(values, shape, x.device())?)
    }

    /// [`Linear::forward`] flattened to row-major values.
    pub fn forward_values(&self, x: &Tensor) -> Result<Vec<f32>> {
        Ok(self.forward(x)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

fn add_bias(values: &mut [f32], bias: &[f32]) {
    for row in values.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Loads a weight matrix and checks it is `(rows, cols)` in row-major terms.
pub fn matrix(gguf: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<Arc<QTensor>> {
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

/// Loads a vector (norm weights, biases) as f32 and checks its length.
pub fn vector(gguf: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_is_added_to_every_row() {
        let mut v = vec![1.0, 2.0, 3.0, 4.0];
        add_bias(&mut v, &[10.0, 20.0]);
        assert_eq!(v, [11.0, 22.0, 13.0, 24.0]);
    }
}

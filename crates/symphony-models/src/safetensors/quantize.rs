//! The load-time changes to a checkpoint's tensors (`--quantize`, Gemma's `1 + w` norms):
//! what [`QuantizeTo`] and [`LoadOptions`] ask for, and the one owned buffer the changed
//! tensors are written to. Everything else is read in place from the shards' maps.

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ8_0, GgmlType as Block};

use super::shards::to_f32;
use crate::ggml_type::GgmlType;
use crate::gguf::TensorInfo;

/// Quantization applied to a checkpoint's matrices as it loads (`--quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizeTo {
    Q8_0,
    /// Q4_K where a row is whole 256-element super-blocks, Q8_0 otherwise (as llama.cpp
    /// falls back for tensors whose rows do not fit the type).
    Q4K,
}

impl std::str::FromStr for QuantizeTo {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Self::Q8_0),
            "q4_k" | "q4_k_m" => Ok(Self::Q4K),
            _ => Err(format!(
                "unknown quantization '{s}' (expected q8_0 or q4_k)"
            )),
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Quantize a safetensors checkpoint's matrices at load. GGUF files keep their types.
    pub quantize: Option<QuantizeTo>,
}

/// Tensors made at load, laid end to end (32-byte aligned) in one buffer.
#[derive(Default)]
pub(super) struct OwnedTensors {
    pub(super) bytes: Vec<u8>,
}

impl OwnedTensors {
    /// Appends `data` and returns its offset.
    pub(super) fn push(&mut self, data: &[u8]) -> u64 {
        self.bytes.resize(self.bytes.len().next_multiple_of(32), 0);
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(data);
        offset
    }
}

/// Applies the load-time changes to one tensor: `1 + w` norms where the architecture stores
/// `w` (Gemma: `norms_plus_one`), and quantization of matrices when asked. A changed tensor
/// is moved into `made` (its buffer set to `usize::MAX` until the owned buffer gets its
/// index).
pub(super) fn convert(
    info: TensorInfo,
    bytes: &[u8],
    norms_plus_one: bool,
    options: LoadOptions,
    made: &mut OwnedTensors,
) -> TensorInfo {
    let is_norm = info.name.contains("norm");
    let to_owned = |made: &mut OwnedTensors, ggml_type: GgmlType, data: Vec<u8>| TensorInfo {
        ggml_type,
        buffer: usize::MAX,
        offset: made.push(&data),
        n_bytes: data.len() as u64,
        ..info.clone()
    };
    if norms_plus_one && is_norm {
        let values: Vec<f32> = to_f32(info.ggml_type, bytes)
            .iter()
            .map(|w| w + 1.0)
            .collect();
        return to_owned(made, GgmlType::F32, f32_bytes(&values));
    }
    // Routers stay in full precision, as llama.cpp keeps them: a small error there changes
    // which experts run.
    let is_matrix = info.dims.len() == 2 && !is_norm && !info.name.contains("ffn_gate_inp");
    let target = match options.quantize {
        Some(q) if is_matrix => q,
        _ => return info,
    };
    let cols = info.dims[0] as usize;
    let values = to_f32(info.ggml_type, bytes);
    match target {
        QuantizeTo::Q4K if cols.is_multiple_of(BlockQ4K::BLCK_SIZE) => {
            to_owned(made, GgmlType::Q4_K, quantize::<BlockQ4K>(&values))
        }
        _ if cols.is_multiple_of(BlockQ8_0::BLCK_SIZE) => {
            to_owned(made, GgmlType::Q8_0, quantize::<BlockQ8_0>(&values))
        }
        _ => info, // Rows too short for any block type: kept as stored.
    }
}

fn quantize<T: Block>(values: &[f32]) -> Vec<u8> {
    let mut blocks = vec![T::zeros(); values.len() / T::BLCK_SIZE];
    T::from_float(values, &mut blocks);
    let size = std::mem::size_of_val(blocks.as_slice());
    // SAFETY: candle's block types are `repr(C)` plain data; we read their bytes as stored.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), size) }.to_vec()
}
fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantized at load, a matrix multiplies like the float one within the type's error:
    /// relative RMS error of `x · Wᵀ` over random data, Q8_0 and Q4_K (256-wide rows).
    #[test]
    fn quantized_matrices_stay_close_to_float() {
        let (rows, cols, m) = (16, 512, 3);
        let mut s = 12345u64;
        let mut rand = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let w: Vec<f32> = (0..rows * cols).map(|_| rand()).collect();
        let x: Vec<f32> = (0..m * cols).map(|_| rand()).collect();
        let exact: Vec<f32> = (0..m * rows)
            .map(|i| {
                let (r, c) = (i / rows, i % rows);
                (0..cols).map(|k| x[r * cols + k] * w[c * cols + k]).sum()
            })
            .collect();
        let rel_rms = |got: &[f32]| {
            let num: f32 = got.iter().zip(&exact).map(|(a, b)| (a - b).powi(2)).sum();
            let den: f32 = exact.iter().map(|b| b * b).sum();
            (num / den).sqrt()
        };
        let mut out = vec![0f32; m * rows];
        crate::kernels::matmul_q8_0(&quantize::<BlockQ8_0>(&w), (m, cols, rows), &x, &mut out);
        let q8 = rel_rms(&out);
        crate::kernels::matmul_q4_k(&quantize::<BlockQ4K>(&w), (m, cols, rows), &x, &mut out);
        let q4 = rel_rms(&out);
        assert!(q8 < 0.01, "Q8_0 relative RMS error {q8}");
        assert!(
            q4 < 0.08 && q4 > q8,
            "Q4_K relative RMS error {q4} (Q8_0 {q8})"
        );
    }
}

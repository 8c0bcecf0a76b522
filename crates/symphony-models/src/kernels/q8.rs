//! Activation quantization: ggml's x86 `quantize_row_q8_0`, `quantize_row_q8_1` and
//! `quantize_row_q8_K`, and where an activation row sits in its batch ([`RowPlace`]).
//!
//! Activations are quantized to 8 bits per block of 32 before the integer dot products,
//! exactly as ggml's x86 code does (multiplier `127 / max|x|`, round half to even,
//! `s = f16(d · Σq)` rounded once). candle's versions differ in each of these (`1/d`, round
//! half away from zero, `s = f16(Σq) · f16(d)`), and on a model as small as SmolLM2 those
//! differences move logits by up to 0.3 from llama.cpp's: more than the margin of a
//! near-tie. Same quantization, same integers, same reference. Q8_K (for the K-quants)
//! scales by the element of largest magnitude with its sign and keeps `d` in f32.

use half::f16;

use super::layout::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK, QK_K};
#[cfg(simd_avx2)]
use super::simd;

/// One block of 32 activations to 8 bits: returns `(d, Σq)` with `d` unrounded.
#[inline]
pub(super) fn quantize_block(block: &[f32], qs: &mut [i8; QK]) -> (f32, i32) {
    #[cfg(simd_avx2)]
    {
        // SAFETY: the target features are enabled at compile time.
        unsafe { simd::quantize_block(block.try_into().expect("32 values"), qs) }
    }
    #[cfg(not(simd_avx2))]
    quantize_block_scalar(block, qs)
}

/// [`quantize_block`] element by element: the portable path and the SIMD path's reference.
#[cfg_attr(simd_avx2, allow(dead_code))]
pub(super) fn quantize_block_scalar(block: &[f32], qs: &mut [i8; QK]) -> (f32, i32) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(block) {
        *q = (v * id).round_ties_even() as i8;
        sum += *q as i32;
    }
    (d, sum)
}

/// ggml's `quantize_row_q8_1`: `d` and `s` are stored as f16 and read back as f32.
pub fn quantize_q8_1(x: &[f32], out: &mut Vec<BlockQ8_1>) {
    out.clear();
    for block in x.chunks_exact(QK) {
        let mut qs = [0i8; QK];
        let (d, sum) = quantize_block(block, &mut qs);
        out.push(BlockQ8_1 {
            d: f16::from_f32(d).to_f32(),
            s: f16::from_f32(d * sum as f32).to_f32(),
            qs,
        });
    }
}

/// ggml's `quantize_row_q8_0`.
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<BlockQ8_0>) {
    out.clear();
    for block in x.chunks_exact(QK) {
        let mut qs = [0i8; QK];
        let (d, _) = quantize_block(block, &mut qs);
        out.push(BlockQ8_0 {
            d: f16::from_f32(d).to_f32(),
            qs,
        });
    }
}

/// Where an activation row sits in its batch. ggml picks its kernel by the batch shape, and
/// for K-quants the kernels round differently, so ours must know it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPlace {
    pub row: usize,
    pub rows: usize,
}

impl RowPlace {
    /// A row processed alone (one-token decode).
    pub const SINGLE: Self = Self { row: 0, rows: 1 };

    /// Repacked Q4_K on x86: ggml's four-row kernel takes the first `rows - rows % 4` rows
    /// (quantized together, too); the rest go through its one-row kernel.
    pub fn in_group_of_four(self) -> bool {
        self.row < self.rows - self.rows % 4
    }

    /// K-quants ggml does not repack (Q6_K on x86): batches of 8 rows or more go through its
    /// tiled matmul, smaller ones through `ggml_vec_dot`.
    pub fn tiled(self) -> bool {
        self.rows >= 8
    }
}

/// ggml's `quantize_row_q8_K_ref`: the scale comes from the element of largest magnitude
/// *with its sign* (`-127 / max`, first such element on ties) and `d` stays f32.
pub fn quantize_q8_k(x: &[f32], out: &mut Vec<BlockQ8K>) {
    quantize_q8_k_rows(x, RowPlace::SINGLE, out)
}

/// [`quantize_q8_k`] for a row at `place`: ggml's four-row quantizer
/// (`ggml_quantize_mat_q8_K_4x8`) takes the positive sign whenever the largest magnitude
/// occurs as a positive value, where the one-row version takes the first occurrence's sign.
pub fn quantize_q8_k_rows(x: &[f32], place: RowPlace, out: &mut Vec<BlockQ8K>) {
    out.clear();
    for block in x.chunks_exact(QK_K) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in block {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if place.in_group_of_four() && block.contains(&amax) {
            max = amax;
        }
        let mut q = BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        };
        if amax != 0.0 {
            let iscale = -127.0 / max;
            for (o, &v) in q.qs.iter_mut().zip(block) {
                *o = ((iscale * v).round_ties_even() as i32).min(127) as i8;
            }
            for (sum, group) in q.bsums.iter_mut().zip(q.qs.chunks_exact(16)) {
                *sum = group.iter().map(|&v| v as i16).sum();
            }
            q.d = 1.0 / iscale;
        }
        out.push(q);
    }
}

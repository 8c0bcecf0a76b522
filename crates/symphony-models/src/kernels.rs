//! Quantized matmul kernels of our own, where candle's numerics or speed fall short.
//!
//! Activations are quantized to 8 bits per block of 32 before the integer dot products, exactly
//! as ggml's x86 `quantize_row_q8_0`/`quantize_row_q8_1` do (multiplier `127 / max|x|`, round
//! half to even, `s = f16(d · Σq)` rounded once). candle's versions differ in each of these
//! (`1/d`, round half away from zero, `s = f16(Σq) · f16(d)`), and on a model as small as
//! SmolLM2 those differences move logits by up to 0.3 from llama.cpp's: more than the margin
//! of a near-tie. Same quantization, same integers, same reference.

use half::f16;
use rayon::prelude::*;

pub const QK: usize = 32;
const Q4_1_BLOCK_BYTES: usize = 20;

/// An activation block quantized to 8 bits: `x ≈ d * qs`, with `s = d * Σ qs`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8_1 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

/// One block of 32 activations to 8 bits: returns `(d, Σq)` with `d` unrounded.
fn quantize_block(block: &[f32], qs: &mut [i8; QK]) -> (f32, i32) {
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

/// An activation block for Q8_0 weights: `x ≈ d * qs`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8_0 {
    pub d: f32,
    pub qs: [i8; QK],
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

const Q8_0_BLOCK_BYTES: usize = 34;

/// One Q8_0 row (raw bytes: f16 d, 32 signed bytes per block) · one Q8_0 activation row.
/// Eight lanes of four-element integer sums, accumulated with FMA, reduced like ggml.
pub fn dot_q8_0_q8_0(row: &[u8], x: &[BlockQ8_0]) -> f32 {
    let mut acc = Lanes::default();
    for (block, xb) in row.chunks_exact(Q8_0_BLOCK_BYTES).zip(x) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        acc.fma_i8_i8(d * xb.d, &block[2..34], &xb.qs);
    }
    acc.sum()
}

/// One Q4_1 row (raw bytes: f16 d, f16 m, 16 bytes of nibbles per block) · one Q8_1 row.
///
/// The float arithmetic follows ggml's x86 kernel step for step: eight lanes, each holding
/// the integer dot product of four consecutive elements, accumulate `d_w·d_x·lane` with a
/// fused multiply-add, then reduce in `hsum_float_8`'s order, and the `m·s` terms are summed
/// apart. Same roundings, so activations downstream quantize to the same integers.
pub fn dot_q4_1_q8_1(row: &[u8], x: &[BlockQ8_1]) -> f32 {
    let mut acc = Lanes::default();
    let mut mins = 0f32;
    for (block, xb) in row.chunks_exact(Q4_1_BLOCK_BYTES).zip(x) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
        mins += m * xb.s;
        acc.fma_nibbles_i8(d * xb.d, block[4..20].try_into().expect("16 bytes"), &xb.qs);
    }
    acc.sum() + mins
}

/// Eight f32 accumulators, one per group of four elements of a 32-element block.
#[derive(Default)]
struct Lanes([f32; 8]);

// With AVX512-VNNI compiled in, the scalar methods only serve as the tests' reference.
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512vl"
    ),
    allow(dead_code)
)]
impl Lanes {
    /// `lanes += scale · (Σ of each group of four w·x)`, w unsigned nibbles (low nibbles are
    /// elements 0..16, high nibbles 16..32), x signed bytes.
    #[inline]
    fn fma_nibbles_i8(&mut self, scale: f32, packed: &[u8; 16], x: &[i8; QK]) {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        ))]
        {
            // SAFETY: the target features are enabled at compile time; loads are unaligned.
            unsafe { simd::fma_nibbles_i8(&mut self.0, scale, packed, x) }
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        )))]
        self.fma_nibbles_i8_scalar(scale, packed, x);
    }

    /// `lanes += scale · (Σ of each group of four w·x)` for signed bytes.
    #[inline]
    fn fma_i8_i8(&mut self, scale: f32, w: &[u8], x: &[i8; QK]) {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        ))]
        {
            // SAFETY: the target features are enabled at compile time; `w` holds 32 bytes.
            unsafe { simd::fma_i8_i8(&mut self.0, scale, w[..QK].try_into().expect("32 bytes"), x) }
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        )))]
        self.fma_i8_i8_scalar(scale, w, x);
    }

    /// The portable path, also the reference the SIMD path is tested against.
    fn fma_nibbles_i8_scalar(&mut self, scale: f32, packed: &[u8; 16], x: &[i8; QK]) {
        let mut w = [0u8; QK];
        for j in 0..QK / 2 {
            w[j] = packed[j] & 0x0F;
            w[j + QK / 2] = packed[j] >> 4;
        }
        self.fma_groups(scale, |e| w[e] as i32 * x[e] as i32);
    }

    fn fma_i8_i8_scalar(&mut self, scale: f32, w: &[u8], x: &[i8; QK]) {
        self.fma_groups(scale, |e| (w[e] as i8) as i32 * x[e] as i32);
    }

    #[inline]
    fn fma_groups(&mut self, scale: f32, product: impl Fn(usize) -> i32) {
        let mut p = [0i32; QK];
        for (e, v) in p.iter_mut().enumerate() {
            *v = product(e);
        }
        for (lane, a) in self.0.iter_mut().enumerate() {
            let sum = p[4 * lane] + p[4 * lane + 1] + p[4 * lane + 2] + p[4 * lane + 3];
            *a = scale.mul_add(sum as f32, *a);
        }
    }

    fn sum(&self) -> f32 {
        hsum8(&self.0)
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512vnni",
    target_feature = "avx512vl"
))]
mod simd {
    use std::arch::x86_64::*;

    /// The VNNI form of `Lanes::fma_nibbles_i8`: `vpdpbusd` forms the same eight exact integer
    /// sums, and the FMA rounds as the scalar path does.
    #[inline]
    pub(super) unsafe fn fma_nibbles_i8(
        acc: &mut [f32; 8],
        scale: f32,
        packed: &[u8; 16],
        x: &[i8; 32],
    ) {
        // SAFETY: callers guarantee the features; all loads and stores are unaligned.
        unsafe {
            let raw = _mm_loadu_si128(packed.as_ptr().cast());
            let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
            let w = _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
            let xv = _mm256_loadu_si256(x.as_ptr().cast());
            let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, xv);
            let a = _mm256_loadu_ps(acc.as_ptr());
            let a = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), a);
            _mm256_storeu_ps(acc.as_mut_ptr(), a);
        }
    }

    /// Signed × signed through `vpdpbusd` (unsigned × signed): |w| times x with w's sign.
    #[inline]
    pub(super) unsafe fn fma_i8_i8(acc: &mut [f32; 8], scale: f32, w: &[u8; 32], x: &[i8; 32]) {
        // SAFETY: callers guarantee the features; all loads and stores are unaligned.
        unsafe {
            let wv = _mm256_loadu_si256(w.as_ptr().cast());
            let xv = _mm256_loadu_si256(x.as_ptr().cast());
            let sums = _mm256_dpbusd_epi32(
                _mm256_setzero_si256(),
                _mm256_sign_epi8(wv, wv),
                _mm256_sign_epi8(xv, wv),
            );
            let a = _mm256_loadu_ps(acc.as_ptr());
            let a = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), a);
            _mm256_storeu_ps(acc.as_mut_ptr(), a);
        }
    }
}

/// ggml's `hsum_float_8`: halves, then pairs, then the last two.
fn hsum8(v: &[f32; 8]) -> f32 {
    let r = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    let r = [r[0] + r[2], r[1] + r[3]];
    r[0] + r[1]
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q4_1 weights `(n, k)` given as raw bytes.
pub fn matmul_q4_1(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        Q4_1_BLOCK_BYTES,
        mkn,
        lhs,
        dst,
        quantize_q8_1,
        |row, xs, out| {
            for (o, x) in out.iter_mut().zip(xs) {
                *o = dot_q4_1_q8_1(row, x);
            }
        },
    )
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q8_0 weights `(n, k)` given as raw bytes.
pub fn matmul_q8_0(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        Q8_0_BLOCK_BYTES,
        mkn,
        lhs,
        dst,
        quantize_q8_0,
        |row, xs, out| {
            for (o, x) in out.iter_mut().zip(xs) {
                *o = dot_q8_0_q8_0(row, x);
            }
        },
    )
}

fn matmul<A: Send + Sync>(
    weights: &[u8],
    block_bytes: usize,
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    dst: &mut [f32],
    quantize: fn(&[f32], &mut Vec<A>),
    row_dots: impl Fn(&[u8], &[Vec<A>], &mut [f32]) + Sync,
) {
    let row_bytes = k / QK * block_bytes;
    debug_assert_eq!(weights.len(), n * row_bytes);
    let mut quantized = Vec::with_capacity(m);
    for row in lhs.chunks_exact(k) {
        let mut q = Vec::with_capacity(k / QK);
        quantize(row, &mut q);
        quantized.push(q);
    }
    // Parallel over output columns: each weight row is read once per call and used for all
    // activation rows while it is in cache.
    const COLS_PER_TASK: usize = 16;
    let mut columns = vec![0f32; n * m]; // (n, m): contiguous per task
    columns
        .par_chunks_mut(COLS_PER_TASK * m)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * COLS_PER_TASK;
            for (c, out_col) in out.chunks_exact_mut(m).enumerate() {
                let w = &weights[(first + c) * row_bytes..(first + c + 1) * row_bytes];
                row_dots(w, &quantized, out_col);
            }
        });
    for (col, values) in columns.chunks_exact(m).enumerate() {
        for (row, v) in values.iter().enumerate() {
            dst[row * n + col] = *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dequantize a Q4_1 row the textbook way: x = d * q + m.
    fn dequant_q4_1(row: &[u8]) -> Vec<f32> {
        let mut out = Vec::new();
        for block in row.chunks_exact(Q4_1_BLOCK_BYTES) {
            let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
            let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
            let mut vals = [0f32; QK];
            for j in 0..QK / 2 {
                vals[j] = d * (block[4 + j] & 0x0F) as f32 + m;
                vals[j + QK / 2] = d * (block[4 + j] >> 4) as f32 + m;
            }
            out.extend_from_slice(&vals);
        }
        out
    }

    fn q4_1_row(k: usize, seed: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut s = seed;
        for b in 0..k / QK {
            bytes.extend_from_slice(&f16::from_f32(0.01 + b as f32 * 0.003).to_le_bytes());
            bytes.extend_from_slice(&f16::from_f32(-0.08 + b as f32 * 0.001).to_le_bytes());
            for _ in 0..16 {
                s = s.wrapping_mul(1103515245).wrapping_add(12345);
                bytes.push((s >> 16) as u8);
            }
        }
        bytes
    }

    #[test]
    fn matmul_matches_dequantized_product_within_q8_error() {
        let (m, k, n) = (3, 128, 37);
        let weights: Vec<u8> = (0..n).flat_map(|r| q4_1_row(k, r as u32 + 1)).collect();
        let lhs: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let mut dst = vec![0f32; m * n];
        matmul_q4_1(&weights, (m, k, n), &lhs, &mut dst);
        let row_bytes = k / QK * Q4_1_BLOCK_BYTES;
        for col in 0..n {
            let w = dequant_q4_1(&weights[col * row_bytes..(col + 1) * row_bytes]);
            for row in 0..m {
                let exact: f32 = w
                    .iter()
                    .zip(&lhs[row * k..(row + 1) * k])
                    .map(|(a, b)| a * b)
                    .sum();
                let got = dst[row * n + col];
                // 8-bit activations: error well under 1% of the magnitude of the terms.
                let scale: f32 = w
                    .iter()
                    .zip(&lhs[row * k..(row + 1) * k])
                    .map(|(a, b)| (a * b).abs())
                    .sum();
                assert!(
                    (got - exact).abs() <= 0.01 * scale + 1e-4,
                    "({row},{col}): {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn q8_0_matmul_matches_f32_product() {
        let (m, k, n) = (2, 64, 5);
        let mut weights = Vec::new();
        let mut exact_w = Vec::new();
        for r in 0..n {
            for b in 0..k / QK {
                let d = 0.02 * (r + b + 1) as f32;
                let d16 = f16::from_f32(d);
                weights.extend_from_slice(&d16.to_le_bytes());
                for j in 0..QK {
                    let q = ((r * 31 + b * 7 + j * 13) % 255) as i32 - 127;
                    weights.push(q as i8 as u8);
                    exact_w.push(d16.to_f32() * q as f32);
                }
            }
        }
        let lhs: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut dst = vec![0f32; m * n];
        matmul_q8_0(&weights, (m, k, n), &lhs, &mut dst);
        for row in 0..m {
            for col in 0..n {
                let exact: f32 = (0..k)
                    .map(|i| exact_w[col * k + i] * lhs[row * k + i])
                    .sum();
                let scale: f32 = (0..k)
                    .map(|i| (exact_w[col * k + i] * lhs[row * k + i]).abs())
                    .sum();
                let got = dst[row * n + col];
                assert!(
                    (got - exact).abs() <= 0.01 * scale,
                    "({row},{col}): {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn simd_and_scalar_lanes_agree_bit_for_bit() {
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as u8
        };
        for _ in 0..200 {
            let packed: [u8; 16] = std::array::from_fn(|_| next());
            let w8: [u8; 32] = std::array::from_fn(|_| next());
            let x: [i8; 32] = std::array::from_fn(|_| (next() as i8).max(-127));
            let scale = next() as f32 / 97.0;
            let (mut a, mut b) = (Lanes([0.5; 8]), Lanes([0.5; 8]));
            a.fma_nibbles_i8(scale, &packed, &x);
            b.fma_nibbles_i8_scalar(scale, &packed, &x);
            assert_eq!(a.0, b.0);
            a.fma_i8_i8(scale, &w8, &x);
            b.fma_i8_i8_scalar(scale, &w8, &x);
            assert_eq!(a.0, b.0);
        }
    }

    #[test]
    fn q8_1_sum_is_rounded_once() {
        let x: Vec<f32> = (0..32).map(|i| 1.0 + i as f32 * 0.37).collect();
        let mut q = Vec::new();
        quantize_q8_1(&x, &mut q);
        let sum: i32 = q[0].qs.iter().map(|&v| v as i32).sum();
        let d = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        assert_eq!(q[0].s, f16::from_f32(d * sum as f32).to_f32());
        assert_eq!(q[0].qs[31], 127);
        // Halves round to even, as _mm256_round_ps does: 2.5 → 2, 3.5 → 4 (scale 127 / 127 = 1).
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        x[3] = -2.5;
        quantize_q8_1(&x, &mut q);
        assert_eq!(&q[0].qs[..4], &[127, 2, 4, -2]);
    }
}

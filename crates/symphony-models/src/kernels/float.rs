//! Float weights (F32, F16, BF16, as Hugging Face checkpoints store them) and [`dot_f32`]:
//! each weight row is widened to f32 once and dotted with every activation row in f32, in
//! eight independent lanes, then the lanes summed in order and the tail added.

use half::f16;

use super::matmul::par_column_tasks;

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for F32 weights `(n, k)` given as raw bytes.
pub fn matmul_f32(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    float_matmul(weights, 4, mkn, lhs, dst, |w| {
        f32::from_le_bytes([w[0], w[1], w[2], w[3]])
    })
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for F16 weights `(n, k)` given as raw bytes.
pub fn matmul_f16(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    float_matmul(weights, 2, mkn, lhs, dst, |w| {
        f16::from_le_bytes([w[0], w[1]]).to_f32()
    })
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for BF16 weights `(n, k)` given as raw bytes.
pub fn matmul_bf16(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    float_matmul(weights, 2, mkn, lhs, dst, |w| {
        half::bf16::from_le_bytes([w[0], w[1]]).to_f32()
    })
}

/// Float weights: each weight row is widened to f32 once and dotted with every activation
/// row in f32 (8 partial sums), as Hugging Face checkpoints compute in f32.
pub(super) fn float_matmul(
    weights: &[u8],
    elem_bytes: usize,
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    dst: &mut [f32],
    widen: impl Fn(&[u8]) -> f32 + Sync,
) {
    let row_bytes = k * elem_bytes;
    debug_assert_eq!(weights.len(), n * row_bytes);
    par_column_tasks(dst, (m, n), |out| {
        let mut row = vec![0f32; k];
        for c in 0..out.cols {
            let col = out.first + c;
            let w = &weights[col * row_bytes..(col + 1) * row_bytes];
            for (v, bytes) in row.iter_mut().zip(w.chunks_exact(elem_bytes)) {
                *v = widen(bytes);
            }
            for (r, x) in lhs.chunks_exact(k).enumerate() {
                out.set(r, c, dot_f32(&row, x));
            }
        }
    });
}

/// The dot product of two f32 slices of equal length, in eight independent lanes.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (x, y) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

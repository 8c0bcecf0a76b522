//! The float kernels of the small encoders (BERT-style embedders): a vectorizable `exp` and
//! `erf`, the exact GELU, bias rows, and layer normalization fused with the bias and the
//! residual. All run in f32 (the layer norm's statistics in f64), in parallel over rows.

use rayon::prelude::*;

/// `exp(x)` in f32 arithmetic that vectorizes: `x = n·ln2 + r` with `|r| <= ln2/2`, `exp(r)`
/// by its Taylor series to `r⁷` (relative error below 1e-8 on that range), and `2ⁿ` built in
/// the exponent bits. Inputs are clamped to `[-87, 88]`, where `exp` stays a normal f32;
/// relative error within a few ulp of the correctly rounded result.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `erf(x)` by Abramowitz and Stegun's formula 7.1.26 (absolute error 1.5e-7 in exact
/// arithmetic; below 1e-6 in f32, a few ulp near 1), with [`exp_f32`]: branch-free, so it
/// vectorizes.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp_f32(-a * a);
    y.copysign(x)
}

/// `x ← gelu(x + bias)` over the rows of a `(rows, bias.len())` matrix, the exact (erf)
/// GELU of BERT, in parallel over rows.
pub fn bias_gelu_in_place(x: &mut [f32], bias: &[f32]) {
    let n = bias.len();
    assert_eq!(x.len() % n, 0, "a matrix of rows of the bias' length");
    let rows_per_task = (16384 / n).max(1);
    x.par_chunks_mut(rows_per_task * n).for_each(|block| {
        for row in block.chunks_exact_mut(n) {
            for (v, b) in row.iter_mut().zip(bias) {
                let z = *v + b;
                *v = 0.5 * z * (1.0 + erf_f32(z * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
    });
}

/// `x ← x + bias` on every row of a `(rows, bias.len())` matrix.
pub fn add_bias_rows(x: &mut [f32], bias: &[f32]) {
    let n = bias.len();
    let rows_per_task = (16384 / n).max(1);
    x.par_chunks_mut(rows_per_task * n).for_each(|block| {
        for row in block.chunks_exact_mut(n) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    });
}

/// Layer normalization of each row of `x` after adding `bias` and `residual` (a
/// transformer's `LayerNorm(x·Wᵀ + b + residual)` in one pass): `(v - mean) / sqrt(var +
/// eps) · gamma + beta`, the variance without Bessel's correction, as BERT's.
pub fn bias_residual_layer_norm(
    x: &mut [f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let n = gamma.len();
    assert_eq!(x.len() % n, 0, "a matrix of rows of the norm's length");
    if let Some(r) = residual {
        assert_eq!(r.len(), x.len(), "the residual has the input's shape");
    }
    let rows_per_task = (16384 / n).max(1);
    x.par_chunks_mut(rows_per_task * n)
        .enumerate()
        .for_each(|(task, block)| {
            let first_row = task * rows_per_task;
            for (i, row) in block.chunks_exact_mut(n).enumerate() {
                if let Some(b) = bias {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
                if let Some(r) = residual {
                    let r = &r[(first_row + i) * n..][..n];
                    row.iter_mut().zip(r).for_each(|(v, r)| *v += r);
                }
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                let inv = (1.0 / (var + eps as f64).sqrt()) as f32;
                let mean = mean as f32;
                for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                    *v = (*v - mean) * inv * g + b;
                }
            }
        });
}

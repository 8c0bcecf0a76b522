//! SwiGLU's gate, `silu(g) · u`, with ggml's vectorised `expf`.
//!
//! ggml evaluates `exp` with a short polynomial (accurate to ~1.5 ulp) rather than libm; the
//! result feeds the 8-bit quantization of the down projection's input, where a one-ulp
//! difference can flip an integer. Using the same polynomial keeps our activations on the
//! reference's side of every rounding boundary.

/// ggml's `ggml_v_expf` for one lane (AVX-512 form): range reduction by `n = round(x / ln 2)`,
/// a degree-5 polynomial in the remainder, scaled by `2^n`.
pub fn expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 0x1.8p23: adding it rounds to an integer.
    let z = x.mul_add(c(0x3fb8_aa3b), r); // x · log2(e) + r
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x)); // x - n·ln2, in two parts
    let u = b * b;
    let high = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)));
    let j = high.mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // `scalef`: j · 2^n rounded once (exact in f64, then one rounding to f32).
    (j as f64 * 2f64.powi(n as i32)) as f32
}

/// `out[i] = silu(gate[i]) · up[i]`, `silu(x) = x / (1 + e^-x)`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + expf(-g)) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_is_within_two_ulps_of_libm() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, exact) = (expf(x), x.exp());
            let ulps = (ours.to_bits() as i64 - exact.to_bits() as i64).abs();
            assert!(ulps <= 2, "expf({x}) = {ours}, libm {exact}: {ulps} ulps");
            x += 0.013;
        }
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(200.0), f32::INFINITY);
        assert_eq!(expf(0.0), 1.0);
    }

    #[test]
    fn swiglu_values() {
        let mut out = [0.0; 3];
        swiglu(&[0.0, 2.0, -2.0], &[5.0, 1.0, 1.0], &mut out);
        assert_eq!(out[0], 0.0);
        assert!((out[1] - 2.0 / (1.0 + (-2f32).exp())).abs() < 1e-6);
        assert!((out[2] + 2.0 / (1.0 + 2f32.exp())).abs() < 1e-6);
    }
}

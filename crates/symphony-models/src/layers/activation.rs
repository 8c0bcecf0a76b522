//! Gated activations: SwiGLU's `silu(g) · u` with ggml's vectorised `expf`, and GeGLU's
//! `gelu(g) · u` with ggml's half-precision GELU table.
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
    // `scalef`: j · 2^n rounded once (exact in f64, then one rounding to f32). 2^n is built
    // from its exponent bits: |n| ≤ 192 is far inside f64's range (and `powi` is a libcall).
    let two_n = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (j as f64 * two_n) as f32
}

/// `out[i] = silu(gate[i]) · up[i]`, `silu(x) = x / (1 + e^-x)`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + expf(-g)) * u;
    }
}

/// `out[i] = gelu(gate[i]) · up[i]` with the tanh form of GELU, as ggml computes it: the
/// input rounded to f16, GELU evaluated in f32 and rounded to f16 (ggml reads a table of
/// every f16 value), and the two ends clamped (`x ≤ -10 → 0`, `x ≥ 10 → x`). On a
/// near-halfway case the result can sit one f16 step from the exactly rounded GELU.
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let table = gelu_table();
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let gelu = if g <= -10.0 {
            0.0
        } else if g >= 10.0 {
            g
        } else {
            half::f16::from_bits(table[half::f16::from_f32(g).to_bits() as usize]).to_f32()
        };
        *o = gelu * u;
    }
}

/// [`gelu_f16`] of every f16 value (as f16 bits), made once: a lookup instead of a `tanh`
/// per element, which had taken a sixth of Gemma's prefill.
fn gelu_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                half::f16::from_f32(gelu_of_f16(half::f16::from_bits(bits).to_f32())).to_bits()
            })
            .collect()
    })
}

/// GELU (tanh form) as [`geglu`] computes it, element by element: the reference of the table.
#[cfg(test)]
fn gelu_f16(x: f32) -> f32 {
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let x = half::f16::from_f32(x).to_f32();
    half::f16::from_f32(gelu_of_f16(x)).to_f32()
}

/// The tanh-form GELU of an input already rounded to f16, before its rounding to f16.
fn gelu_of_f16(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    // `1 + a·x·x` as GCC compiles ggml's `ggml_gelu_f32`: fused into one FMA. The result is
    // then rounded to f16, where that last bit decides near-halfway cases.
    let inner = SQRT_2_OVER_PI * x * (COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + inner.tanh())
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
    fn geglu_matches_the_tanh_gelu_to_half_precision() {
        for i in -1200..1200 {
            let x = i as f32 / 100.0;
            let exact = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh());
            let mut out = [0.0];
            geglu(&[x], &[2.0], &mut out);
            let tolerance = 2.0 * (exact.abs() * 2e-3 + 1e-4);
            assert!((out[0] - 2.0 * exact).abs() <= tolerance, "gelu({x})");
        }
        let mut out = [0.0; 2];
        geglu(&[-10.0, 10.0], &[3.0, 3.0], &mut out);
        assert_eq!(out, [0.0, 30.0]);
    }

    /// The table gives what evaluating each element gives, bit for bit: inputs between f16
    /// values, at the clamps, and the non-finite ones.
    #[test]
    fn geglu_by_table_equals_gelu_element_by_element() {
        let mut inputs: Vec<f32> = (-110_000..110_000)
            .map(|i| i as f32 * 1.000_37e-4)
            .collect();
        inputs.extend([
            -10.0,
            10.0,
            9.999,
            -9.999,
            1e-7,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        let ones = vec![1.0; inputs.len()];
        let mut out = vec![0.0; inputs.len()];
        geglu(&inputs, &ones, &mut out);
        for (x, y) in inputs.iter().zip(&out) {
            assert_eq!(y.to_bits(), gelu_f16(*x).to_bits(), "gelu({x})");
        }
        let mut nan = [0.0];
        geglu(&[f32::NAN], &[1.0], &mut nan);
        assert!(nan[0].is_nan());
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

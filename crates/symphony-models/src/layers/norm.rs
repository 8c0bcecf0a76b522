//! RMSNorm, computed as ggml computes it (sum of squares in f64, `x · (1/√(mean + ε)) · w`) so
//! that the normalised activations round the same way as the reference's before they are
//! quantized for the next matmul.

/// Normalises each row of `x` (rows of `weight.len()` values) in place.
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    for row in x.chunks_exact_mut(n) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_rms_rows() {
        let mut out = [3.0, 4.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        rms_norm_in_place(&mut out, &[1.0, 1.0, 1.0, 2.0], 0.0);
        // Row 1: rms = sqrt(25/4) = 2.5.
        assert_eq!(&out[..4], &[1.2, 1.6, 0.0, 0.0]);
        assert_eq!(&out[4..], &[1.0, 1.0, 1.0, 2.0]);
    }
}

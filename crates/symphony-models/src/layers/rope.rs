//! Rotary position embeddings, applied in place to `(t, n_heads, head_dim)` rows.
//!
//! Two layouts exist in GGUF files: llama.cpp's "normal" rope rotates adjacent pairs
//! `(x[2i], x[2i+1])` (Llama checkpoints are permuted at conversion so this holds), and
//! "neox" rope rotates `(x[i], x[i + d/2])` (Qwen2, Gemma, Phi-3).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    Neox,
}

#[derive(Debug, Clone)]
pub struct Rope {
    style: RopeStyle,
    /// Dimensions rotated per head (the rest pass through).
    rope_dim: usize,
    /// `base^(-2/rope_dim)`: each pair's angle is the previous one's times this.
    theta_scale: f32,
}

impl Rope {
    pub fn new(style: RopeStyle, rope_dim: usize, base: f32) -> Self {
        Self {
            style,
            rope_dim,
            theta_scale: base.powf(-2.0 / rope_dim as f32),
        }
    }

    /// Rotates `x`, laid out `(t, n_heads, head_dim)`, for positions `first_pos..first_pos + t`.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, head_dim: usize, first_pos: usize) {
        let row = n_heads * head_dim;
        let half = self.rope_dim / 2;
        let mut cos_sin = vec![(0f32, 0f32); half];
        for (t, row_data) in x.chunks_exact_mut(row).enumerate() {
            // Angles by repeated multiplication from the position, in f32, exactly as ggml
            // builds them: the rounding of high-frequency pairs then matches the reference.
            let mut theta = (first_pos + t) as f32;
            for cs in cos_sin.iter_mut() {
                *cs = (theta.cos(), theta.sin());
                theta *= self.theta_scale;
            }
            for head in row_data.chunks_exact_mut(head_dim) {
                for (i, &(cos, sin)) in cos_sin.iter().enumerate() {
                    let (a, b) = match self.style {
                        RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0.mul_add(cos, -(x1 * sin));
                    head[b] = x0.mul_add(sin, x1 * cos);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        let rope = Rope::new(RopeStyle::Interleaved, 4, 10000.0);
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        rope.apply(&mut x, 1, 4, 0);
        assert_eq!(x, vec![1.0, 2.0, 3.0, 4.0]);
        let mut y = vec![1.0, 2.0, 3.0, 4.0];
        rope.apply(&mut y, 1, 4, 7);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&y) - 30.0).abs() < 1e-4);
        // First pair rotates by 7 radians.
        assert!((y[0] - (7f32.cos() - 2.0 * 7f32.sin())).abs() < 1e-5);
    }

    #[test]
    fn relative_positions_give_equal_dot_products() {
        // q·k after rope depends only on the distance between positions.
        for style in [RopeStyle::Interleaved, RopeStyle::Neox] {
            let rope = Rope::new(style, 8, 10000.0);
            let q: Vec<f32> = (0..8).map(|i| i as f32 * 0.3 - 1.0).collect();
            let k: Vec<f32> = (0..8).map(|i| 1.0 - i as f32 * 0.2).collect();
            let at = |pq: usize, pk: usize| {
                let (mut a, mut b) = (q.clone(), k.clone());
                rope.apply(&mut a, 1, 8, pq);
                rope.apply(&mut b, 1, 8, pk);
                a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()
            };
            assert!((at(5, 2) - at(103, 100)).abs() < 1e-3, "{style:?}");
        }
    }
}

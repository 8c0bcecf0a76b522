//! [`Lanes`]: eight f32 accumulators, one per group of four elements of a 32-element block,
//! the shape of ggml's x86 dot products (`vpmaddubsw`/`vpdpbusd` into eight i32 lanes, one
//! FMA per block by `d_w · d_x`), and [`hsum8`], their reduction in `hsum_float_8`'s order.
//! The scalar methods are the portable path and the references the SIMD ones are tested
//! against.

use super::layout::QK;
#[cfg(simd_avx2)]
use super::simd;

/// ggml's `hsum_float_8`: halves, then pairs, then the last two.
pub(super) fn hsum8(v: &[f32; 8]) -> f32 {
    let r = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    let r = [r[0] + r[2], r[1] + r[3]];
    r[0] + r[1]
}

/// Eight f32 accumulators, one per group of four elements of a 32-element block.
#[derive(Default)]
pub(super) struct Lanes(pub(super) [f32; 8]);

// With the SIMD paths compiled in, the scalar methods only serve as the tests' reference.
#[cfg_attr(simd_avx2, allow(dead_code))]
impl Lanes {
    /// `lanes += scale · (Σ of each group of four w·x)`, w unsigned bytes, x signed.
    #[inline]
    pub(super) fn fma_u8_i8(&mut self, scale: f32, w: &[u8; QK], x: &[i8; QK]) {
        #[cfg(simd_avx2)]
        {
            // SAFETY: the target features are enabled at compile time; loads are unaligned.
            unsafe { simd::fma_u8_i8(&mut self.0, scale, w, x) }
        }
        #[cfg(not(simd_avx2))]
        self.fma_u8_i8_scalar(scale, w, x);
    }

    /// The portable paths, also the references the SIMD paths are tested against.
    pub(super) fn fma_u8_i8_scalar(&mut self, scale: f32, w: &[u8; QK], x: &[i8; QK]) {
        self.fma_groups(scale, |e| w[e] as i32 * x[e] as i32);
    }

    /// `lanes += scale · (Σ of each group of four w·x)` for signed bytes.
    #[inline]
    pub(super) fn fma_i8_i8(&mut self, scale: f32, w: &[u8], x: &[i8; QK]) {
        #[cfg(simd_avx2)]
        {
            // SAFETY: the target features are enabled at compile time; `w` holds 32 bytes.
            unsafe { simd::fma_i8_i8(&mut self.0, scale, w[..QK].try_into().expect("32 bytes"), x) }
        }
        #[cfg(not(simd_avx2))]
        self.fma_i8_i8_scalar(scale, w, x);
    }

    pub(super) fn fma_i8_i8_scalar(&mut self, scale: f32, w: &[u8], x: &[i8; QK]) {
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

    pub(super) fn sum(&self) -> f32 {
        hsum8(&self.0)
    }
}

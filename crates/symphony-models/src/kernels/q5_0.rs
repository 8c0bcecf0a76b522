//! Q5_0 weights (f16 `d`, 32 high bits, 16 bytes of low nibbles per block) against Q8_0
//! activations: ggml's x86 `ggml_vec_dot_q5_0_q8_0` (llamafile's tile kernel rounds the
//! same way). Each weight is `(nibble | high bit << 4) - 16`, multiplied as a signed byte;
//! lanes and FMA order as Q8_0's. The tile kernel unpacks eight rows once per task into
//! unsigned bytes (`w + 16`) and takes `16 · Σx` off in the sums' starting value.

use half::f16;

#[cfg(simd_avx2)]
use super::lanes::hsum8;
use super::lanes::Lanes;
use super::layout::{BlockQ8_0, Q5_0_BLOCK_BYTES, QK};
#[cfg(simd_avx2)]
use super::layout::{Q5_0_TILE_BLOCK, ROW_GROUP, TILE_COLS};
use super::matmul::{matmul, Kernels};
use super::q8::quantize_q8_0;
#[cfg(not(simd_avx512))]
use super::rows::each_row;
#[cfg(simd_avx2)]
use super::rows::signed_rows;
#[cfg(simd_avx512)]
use super::rows::{each_row_four, rows_of};
#[cfg(simd_avx2)]
use super::simd;
#[cfg(simd_avx2)]
use super::tile::pack_tile;
use super::tile::Tile;

/// The 32 signed weights of a Q5_0 block (f16 d, 32 high bits, 16 bytes of low nibbles):
/// `(nibble | high bit << 4) - 16`, as bytes for the signed dot product.
#[inline]
pub(super) fn unpack_q5_0(block: &[u8]) -> [u8; QK] {
    let qh = u32::from_le_bytes(block[2..6].try_into().expect("4 bytes"));
    let qs = &block[6..22];
    let mut w = [0u8; QK];
    for j in 0..QK / 2 {
        let lo = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
        let hi = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
        w[j] = lo.wrapping_sub(16);
        w[j + QK / 2] = hi.wrapping_sub(16);
    }
    w
}

/// One Q5_0 row · one Q8_0 activation row, with ggml's lanes and FMA order (its x86
/// `ggml_vec_dot_q5_0_q8_0` and llamafile's tile kernel round identically).
pub fn dot_q5_0_q8_0(row: &[u8], x: &[BlockQ8_0]) -> f32 {
    dot_q5_0_rows(row, [x])[0]
}

/// [`dot_q5_0_q8_0`] for `R` activation rows, the weight block unpacked once, each row's
/// lanes in registers. (One row through [`Lanes`] had measured as fast while the matmul
/// called its row kernel through a pointer per weight row; inlined into the task's row
/// loop, the register form is faster: Qwen-0.5B decode 40 -> 46 t/s at one thread.)
pub(super) fn dot_q5_0_rows<const R: usize>(row: &[u8], xs: [&[BlockQ8_0]; R]) -> [f32; R] {
    #[cfg(simd_avx2)]
    {
        signed_rows(row, Q5_0_BLOCK_BYTES, xs, |block| {
            let qh = u32::from_le_bytes(block[2..6].try_into().expect("4 bytes"));
            let qs: &[u8; 16] = block[6..22].try_into().expect("16 bytes");
            // SAFETY: the target features are enabled at compile time.
            unsafe { simd::q5_0_weights(qs, qh) }
        })
    }
    #[cfg(not(simd_avx2))]
    dot_q5_0_rows_lanes(row, xs)
}

/// [`dot_q5_0_rows`] through [`Lanes`]: the portable path and the reference of the
/// register path.
#[cfg_attr(simd_avx2, allow(dead_code))]
pub(super) fn dot_q5_0_rows_lanes<const R: usize>(row: &[u8], xs: [&[BlockQ8_0]; R]) -> [f32; R] {
    let mut acc: [Lanes; R] = std::array::from_fn(|_| Lanes::default());
    for (b, block) in row.chunks_exact(Q5_0_BLOCK_BYTES).enumerate() {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        if R == 1 {
            // One row: unpacking in registers is cheaper than through memory.
            let xb = &xs[0][b];
            acc[0].fma_q5_0(d * xb.d, block, &xb.qs);
            continue;
        }
        let w = unpack_q5_0(block);
        for (a, x) in acc.iter_mut().zip(&xs) {
            let xb = &x[b];
            a.fma_i8_i8(d * xb.d, &w, &xb.qs);
        }
    }
    acc.map(|a| a.sum())
}

/// Eight Q5_0 rows unpacked block by block, once per matmul task instead of once per group
/// of activation rows: prefill meets every weight row with hundreds of activation rows, and
/// the 5-bit unpacking cost as much as the dot products it fed.
#[cfg(simd_avx2)]
pub(super) fn pack_q5_0_tile(rows: &[u8], row_bytes: usize, out: &mut Vec<u8>) {
    pack_tile(
        rows,
        row_bytes,
        (Q5_0_BLOCK_BYTES, Q5_0_TILE_BLOCK),
        out,
        |o, j, block| {
            let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
            o[4 * j..4 * j + 4].copy_from_slice(&d.to_le_bytes());
            let qh = u32::from_le_bytes(block[2..6].try_into().expect("4 bytes"));
            let qs: &[u8; 16] = block[6..22].try_into().expect("16 bytes");
            let to: &mut [u8; QK] = (&mut o[4 * TILE_COLS + QK * j..][..QK])
                .try_into()
                .expect("32 bytes");
            // SAFETY: the target features are enabled at compile time.
            unsafe { simd::q5_0_unsigned_weights(qs, qh, to) };
        },
    );
}

#[cfg(simd_avx2)]
pub(super) fn dot_q5_0_tile(
    packed: &[u8],
    xs: [&[BlockQ8_0]; ROW_GROUP],
) -> [[f32; TILE_COLS]; ROW_GROUP] {
    assert!(xs.iter().all(|x| x.len() * Q5_0_TILE_BLOCK == packed.len()));
    // SAFETY: the target features are enabled at compile time; the lengths are checked
    // above and every load is unaligned.
    let lanes = unsafe { simd::q5_0_tile_dot(packed, xs) };
    lanes.map(|row| row.map(|l| hsum8(&l)))
}

/// The tiled Q5_0 kernel where the machine has it (AVX2).
#[cfg(simd_avx2)]
pub(super) const Q5_0_TILE: Option<Tile<BlockQ8_0>> = Some(Tile {
    min_rows: ROW_GROUP,
    pack: Some(pack_q5_0_tile),
    dot: |packed, _, xs| dot_q5_0_tile(packed, xs),
});

#[cfg(not(simd_avx2))]
pub(super) const Q5_0_TILE: Option<Tile<BlockQ8_0>> = None;

/// Two or four Q5_0 rows (`N`) · one Q8_0 row, each result [`dot_q5_0_q8_0`]'s bit for bit.
#[cfg(simd_avx512)]
pub(super) fn dot_q5_0_rows_of<const N: usize, const P: usize>(
    rows: [&[u8]; N],
    x: &[BlockQ8_0],
) -> [f32; N] {
    // SAFETY (in the closure): the target features are enabled at compile time, and
    // `rows_of` passes the starts of whole blocks.
    rows_of::<N, P, 16>(rows, x, Q5_0_BLOCK_BYTES, |a, b| unsafe {
        simd::q5_0_unsigned_pair(a, b)
    })
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q5_0 weights `(n, k)` given as raw bytes.
pub fn matmul_q5_0(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK, Q5_0_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        Kernels {
            quantize: |x, _, out| quantize_q8_0(x, out),
            #[cfg(simd_avx512)]
            dot: |ws, rb, x, _, out| {
                let four = |rows: [&[u8]; 4]| dot_q5_0_rows_of::<4, 2>(rows, x);
                let pair = |a: &[u8], b: &[u8]| dot_q5_0_rows_of::<2, 1>([a, b], x);
                each_row_four(ws, rb, out, four, pair, |w| dot_q5_0_q8_0(w, x))
            },
            #[cfg(not(simd_avx512))]
            dot: |ws, rb, x, _, out| each_row(ws, rb, out, |w| dot_q5_0_q8_0(w, x)),
            dot_group: |w, xs, _| dot_q5_0_rows(w, xs),
            tile: Q5_0_TILE,
        },
    )
}

// The Q5_0 step of [`Lanes`], beside the format it unpacks. With the SIMD paths compiled in,
// the scalar method only serves as the tests' reference.
#[cfg_attr(simd_avx2, allow(dead_code))]
impl Lanes {
    /// `lanes += scale · (Σ of each group of four w·x)` for one Q5_0 block's weights.
    #[inline]
    pub(super) fn fma_q5_0(&mut self, scale: f32, block: &[u8], x: &[i8; QK]) {
        #[cfg(simd_avx2)]
        {
            let qs: &[u8; 16] = block[6..22].try_into().expect("16 bytes");
            let qh = u32::from_le_bytes(block[2..6].try_into().expect("4 bytes"));
            // SAFETY: the target features are enabled at compile time; loads are unaligned.
            unsafe { simd::fma_q5_0(&mut self.0, scale, qs, qh, x) }
        }
        #[cfg(not(simd_avx2))]
        self.fma_q5_0_scalar(scale, block, x);
    }

    pub(super) fn fma_q5_0_scalar(&mut self, scale: f32, block: &[u8], x: &[i8; QK]) {
        self.fma_i8_i8_scalar(scale, &unpack_q5_0(block), x);
    }
}

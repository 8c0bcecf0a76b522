//! Q8_0 weights (f16 `d`, 32 signed bytes per block) against Q8_0 activations: ggml's x86
//! `ggml_vec_dot_q8_0_q8_0`. Eight lanes of four-element integer sums, one FMA per block by
//! `d_w · d_x`, reduced in `hsum_float_8`'s order. The tile kernel needs VNNI: it makes the
//! weights unsigned by flipping their top bit (`w + 128`), whose products AVX2's
//! `vpmaddubsw` would saturate, and takes `128 · Σx` off in the sums' starting value.

use half::f16;

#[cfg(all(simd_avx2, target_feature = "avx512vnni", target_feature = "avx512vl"))]
use super::lanes::hsum8;
use super::lanes::Lanes;
use super::layout::{BlockQ8_0, Q8_0_BLOCK_BYTES, QK};
#[cfg(all(simd_avx2, target_feature = "avx512vnni", target_feature = "avx512vl"))]
use super::layout::{ROW_GROUP, TILE_COLS};
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
use super::tile::Tile;

/// One Q8_0 row (raw bytes: f16 d, 32 signed bytes per block) · one Q8_0 activation row.
/// Eight lanes of four-element integer sums, accumulated with FMA, reduced like ggml.
pub fn dot_q8_0_q8_0(row: &[u8], x: &[BlockQ8_0]) -> f32 {
    dot_q8_0_rows(row, [x])[0]
}

/// [`dot_q8_0_q8_0`] for `R` activation rows at once: each row keeps its own accumulators
/// (so each result is the one-row result, bit for bit), and the weight block is read once.
pub(super) fn dot_q8_0_rows<const R: usize>(row: &[u8], xs: [&[BlockQ8_0]; R]) -> [f32; R] {
    #[cfg(simd_avx2)]
    {
        signed_rows(row, Q8_0_BLOCK_BYTES, xs, |block| {
            // SAFETY: the target features are enabled at compile time.
            unsafe { simd::bytes(block[2..34].try_into().expect("32 bytes")) }
        })
    }
    #[cfg(not(simd_avx2))]
    dot_q8_0_rows_lanes(row, xs)
}

/// [`dot_q8_0_rows`] through [`Lanes`]: the portable path and the SIMD path's reference.
#[cfg_attr(simd_avx2, allow(dead_code))]
pub(super) fn dot_q8_0_rows_lanes<const R: usize>(row: &[u8], xs: [&[BlockQ8_0]; R]) -> [f32; R] {
    let mut acc: [Lanes; R] = std::array::from_fn(|_| Lanes::default());
    for (b, block) in row.chunks_exact(Q8_0_BLOCK_BYTES).enumerate() {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let w: &[u8; QK] = block[2..34].try_into().expect("32 bytes");
        for (a, x) in acc.iter_mut().zip(&xs) {
            let xb = &x[b];
            a.fma_i8_i8(d * xb.d, w, &xb.qs);
        }
    }
    acc.map(|a| a.sum())
}

/// Eight Q8_0 rows · four activation rows, read from the rows as stored. Only with VNNI:
/// its weights are made unsigned by an offset, whose products AVX2's `vpmaddubsw` would
/// saturate.
#[cfg(all(simd_avx2, target_feature = "avx512vnni", target_feature = "avx512vl"))]
pub(super) fn dot_q8_0_tile(
    rows: &[u8],
    row_bytes: usize,
    xs: [&[BlockQ8_0]; ROW_GROUP],
) -> [[f32; TILE_COLS]; ROW_GROUP] {
    assert_eq!(rows.len(), TILE_COLS * row_bytes);
    assert!(xs.iter().all(|x| x.len() * Q8_0_BLOCK_BYTES == row_bytes));
    // SAFETY: the target features are enabled at compile time; the lengths are checked
    // above and every load is unaligned.
    let lanes = unsafe { simd::q8_0_tile_dot(rows, row_bytes, xs) };
    lanes.map(|row| row.map(|l| hsum8(&l)))
}

/// The tiled Q8_0 kernel where the machine has it (AVX512-VNNI).
#[cfg(all(simd_avx2, target_feature = "avx512vnni", target_feature = "avx512vl"))]
pub(super) const Q8_0_TILE: Option<Tile<BlockQ8_0>> = Some(Tile {
    min_rows: ROW_GROUP,
    pack: None,
    dot: dot_q8_0_tile,
});

#[cfg(not(all(simd_avx2, target_feature = "avx512vnni", target_feature = "avx512vl")))]
pub(super) const Q8_0_TILE: Option<Tile<BlockQ8_0>> = None;

/// Two or four Q8_0 rows (`N`) · one Q8_0 row, each result [`dot_q8_0_q8_0`]'s bit for bit:
/// the signed weights made unsigned by their top bit flipped (`w + 128`).
#[cfg(simd_avx512)]
pub(super) fn dot_q8_0_rows_of<const N: usize, const P: usize>(
    rows: [&[u8]; N],
    x: &[BlockQ8_0],
) -> [f32; N] {
    // SAFETY (in the closure): the target features are enabled at compile time, and
    // `rows_of` passes the starts of whole 34-byte blocks.
    rows_of::<N, P, 128>(rows, x, Q8_0_BLOCK_BYTES, |a, b| unsafe {
        simd::q8_0_flipped_pair(a, b)
    })
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q8_0 weights `(n, k)` given as raw bytes.
pub fn matmul_q8_0(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK, Q8_0_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        Kernels {
            quantize: |x, _, out| quantize_q8_0(x, out),
            #[cfg(simd_avx512)]
            dot: |ws, rb, x, _, out| {
                let four = |rows: [&[u8]; 4]| dot_q8_0_rows_of::<4, 2>(rows, x);
                let pair = |a: &[u8], b: &[u8]| dot_q8_0_rows_of::<2, 1>([a, b], x);
                each_row_four(ws, rb, out, four, pair, |w| dot_q8_0_q8_0(w, x))
            },
            #[cfg(not(simd_avx512))]
            dot: |ws, rb, x, _, out| each_row(ws, rb, out, |w| dot_q8_0_q8_0(w, x)),
            dot_group: |w, xs, _| dot_q8_0_rows(w, xs),
            tile: Q8_0_TILE,
        },
    )
}

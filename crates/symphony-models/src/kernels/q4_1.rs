//! Q4_1 weights (f16 `d`, f16 `m`, 16 bytes of nibbles per block) against Q8_1 activations:
//! ggml's x86 `ggml_vec_dot_q4_1_q8_1`, step for step. Eight lanes, each the integer dot
//! product of four consecutive elements, accumulate `d_w · d_x · lane` with a fused
//! multiply-add and reduce in `hsum_float_8`'s order; the `m · s` terms are summed apart.
//! Same roundings, so activations downstream quantize to the same integers.

use half::f16;

#[cfg(simd_avx2)]
use super::lanes::hsum8;
use super::lanes::Lanes;
use super::layout::{BlockQ8_1, Q4_1_BLOCK_BYTES, QK};
#[cfg(simd_avx2)]
use super::layout::{ROW_GROUP, TILE_COLS};
use super::matmul::{matmul, Kernels};
use super::q8::quantize_q8_1;
use super::rows::each_row;
#[cfg(simd_avx2)]
use super::simd;
use super::tile::Tile;

/// One Q4_1 row (raw bytes: f16 d, f16 m, 16 bytes of nibbles per block) · one Q8_1 row.
///
/// The float arithmetic follows ggml's x86 kernel step for step: eight lanes, each holding
/// the integer dot product of four consecutive elements, accumulate `d_w·d_x·lane` with a
/// fused multiply-add, then reduce in `hsum_float_8`'s order, and the `m·s` terms are summed
/// apart. Same roundings, so activations downstream quantize to the same integers.
pub fn dot_q4_1_q8_1(row: &[u8], x: &[BlockQ8_1]) -> f32 {
    dot_q4_1_rows(row, [x])[0]
}

/// [`dot_q4_1_q8_1`] for `R` activation rows, the nibbles unpacked once per block.
pub(super) fn dot_q4_1_rows<const R: usize>(row: &[u8], xs: [&[BlockQ8_1]; R]) -> [f32; R] {
    #[cfg(simd_avx2)]
    if R == 1 {
        // Decode: one row, its lanes and its `m·s` sum in registers throughout (SmolLM2's
        // one-thread decode: 100 -> 111 t/s on Zen 5).
        let blocks = row.len() / Q4_1_BLOCK_BYTES;
        assert!(xs[0].len() >= blocks);
        // SAFETY: the target features are enabled at compile time; the lengths are checked.
        let (lanes, mins) = unsafe { simd::q4_1_row(row, xs[0]) };
        return [hsum8(&lanes) + mins; R];
    }
    // (For a group, keeping the lanes in registers as Q8_0 and Q5_0 do measured 10-20 %
    // slower on Zen 3, the `m·s` sums then taking a second pass over the blocks.)
    dot_q4_1_rows_lanes(row, xs)
}

/// [`dot_q4_1_rows`] through [`Lanes`].
pub(super) fn dot_q4_1_rows_lanes<const R: usize>(row: &[u8], xs: [&[BlockQ8_1]; R]) -> [f32; R] {
    let mut acc: [Lanes; R] = std::array::from_fn(|_| Lanes::default());
    let mut mins = [0f32; R];
    for (b, block) in row.chunks_exact(Q4_1_BLOCK_BYTES).enumerate() {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
        let w = unpack_nibbles(block[4..20].try_into().expect("16 bytes"));
        for ((a, mins), x) in acc.iter_mut().zip(&mut mins).zip(&xs) {
            let xb = &x[b];
            *mins += m * xb.s;
            a.fma_u8_i8(d * xb.d, &w, &xb.qs);
        }
    }
    std::array::from_fn(|r| acc[r].sum() + mins[r])
}

/// Eight Q4_1 rows · four activation rows, read from the rows as stored: unlike Q5_0's,
/// Q4_1's weights unpack in two instructions, so packing them per task saves nothing in
/// prefill and cost a quarter of a 16-row decode step's matmul time.
#[cfg(simd_avx2)]
pub(super) fn dot_q4_1_tile(
    rows: &[u8],
    row_bytes: usize,
    xs: [&[BlockQ8_1]; ROW_GROUP],
) -> [[f32; TILE_COLS]; ROW_GROUP] {
    assert_eq!(rows.len(), TILE_COLS * row_bytes);
    assert!(xs.iter().all(|x| x.len() * Q4_1_BLOCK_BYTES == row_bytes));
    // SAFETY: the target features are enabled at compile time; the lengths are checked
    // above and every load is unaligned.
    let (lanes, mins) = unsafe { simd::q4_1_tile_dot(rows, row_bytes, xs) };
    std::array::from_fn(|r| std::array::from_fn(|j| hsum8(&lanes[r][j]) + mins[r][j]))
}

/// The tiled Q4_1 kernel where the machine has it (AVX2).
#[cfg(simd_avx2)]
pub(super) const Q4_1_TILE: Option<Tile<BlockQ8_1>> = Some(Tile {
    min_rows: ROW_GROUP,
    pack: None,
    dot: dot_q4_1_tile,
});

#[cfg(not(simd_avx2))]
pub(super) const Q4_1_TILE: Option<Tile<BlockQ8_1>> = None;

/// 16 bytes of packed nibbles as 32 weights: low nibbles are elements 0..16, high 16..32.
#[inline]
pub(super) fn unpack_nibbles(packed: &[u8; 16]) -> [u8; QK] {
    #[cfg(simd_avx2)]
    {
        // SAFETY: the target features are enabled at compile time; loads are unaligned.
        unsafe { simd::unpack_nibbles(packed) }
    }
    #[cfg(not(simd_avx2))]
    unpack_nibbles_scalar(packed)
}

#[cfg_attr(simd_avx2, allow(dead_code))]
pub(super) fn unpack_nibbles_scalar(packed: &[u8; 16]) -> [u8; QK] {
    std::array::from_fn(|e| {
        if e < QK / 2 {
            packed[e] & 0x0F
        } else {
            packed[e - QK / 2] >> 4
        }
    })
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q4_1 weights `(n, k)` given as raw bytes.
pub fn matmul_q4_1(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK, Q4_1_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        Kernels {
            quantize: |x, _, out| quantize_q8_1(x, out),
            dot: |ws, rb, x, _, out| each_row(ws, rb, out, |w| dot_q4_1_q8_1(w, x)),
            dot_group: |w, xs, _| dot_q4_1_rows(w, xs),
            tile: Q4_1_TILE,
        },
    )
}

//! Q6_K weights (super-blocks of 256: 128 bytes of low nibbles, 64 of high bit pairs,
//! 16 signed 8-bit scales, f16 `d`) against Q8_K activations. Batches of fewer than 8 rows
//! follow ggml's x86 `ggml_vec_dot_q6_K_q8_K` (eight integer lanes per super-block, the
//! offset of 32 taken off through the activation sums, one FMA per lane, `hsum_float_8`);
//! larger batches follow ggml's tiled matmul (each super-block's exact integer sum times the
//! weight scale, fused with the activation scale into one accumulator). With AVX-512 the
//! one-row kernel unpacks and multiplies in registers (`simd::q6_k_row_lanes`).

use half::f16;

use super::lanes::hsum8;
#[cfg(simd_avx2)]
use super::layout::ROW_GROUP;
use super::layout::{BlockQ8K, Q6_K_BLOCK_BYTES, QK_K};
use super::layout::{Q6_K_TILE_BLOCK, Q6_K_TILE_QUANTS, Q6_K_TILE_SCALES, TILE_COLS};
use super::matmul::{matmul, Kernels};
use super::q8::{quantize_q8_k, RowPlace};
use super::rows::each_row;
#[cfg(simd_avx2)]
use super::simd;
use super::tile::{pack_tile, Tile};

/// One Q6_K row · one Q8_K row. Batches of fewer than 8 rows follow ggml's x86
/// `ggml_vec_dot_q6_K_q8_K`: eight integer lanes per super-block (lane `l` sums the scaled
/// products of bytes `4l..4l+4` of every 32-element run, less `32 ·` the scaled activation
/// sums of groups `2l` and `2l+1`), one FMA per lane, then `hsum_float_8`. Larger batches
/// follow ggml's tiled matmul: each super-block's whole integer sum times the weight scale,
/// then fused with the activation scale into one accumulator.
pub fn dot_q6_k_q8_k(row: &[u8], x: &[BlockQ8K], place: RowPlace) -> f32 {
    dot_q6_k_rows(row, [x], [place])[0]
}

/// [`dot_q6_k_q8_k`] for `R` activation rows, each super-block unpacked once.
pub(super) fn dot_q6_k_rows<const R: usize>(
    row: &[u8],
    xs: [&[BlockQ8K]; R],
    places: [RowPlace; R],
) -> [f32; R] {
    let mut lanes_acc = [[0f32; 8]; R];
    let mut acc = [0f32; R];
    for (b, block) in row.chunks_exact(Q6_K_BLOCK_BYTES).enumerate() {
        let d_w = f16::from_le_bytes([block[208], block[209]]).to_f32();
        // One row (decode): the quants unpacked in registers and used there; a group
        // unpacks them once into memory for all its rows.
        let unpacked = (R > 1 || !cfg!(simd_avx512)).then(|| Q6KBlock::unpack(block));
        for r in 0..R {
            let xb = &xs[r][b];
            let lanes = match &unpacked {
                Some(unpacked) => unpacked.lane_sums(xb),
                None => Q6KBlock::row_lane_sums(block, xb),
            };
            if places[r].tiled() {
                let sum: i32 = lanes.iter().sum();
                acc[r] = ((sum as f32) * d_w).mul_add(xb.d, acc[r]);
            } else {
                let d = xb.d * d_w;
                for (a, &lane) in lanes_acc[r].iter_mut().zip(&lanes) {
                    *a = d.mul_add(lane as f32, *a);
                }
            }
        }
    }
    std::array::from_fn(|r| {
        if places[r].tiled() {
            acc[r]
        } else {
            hsum8(&lanes_acc[r])
        }
    })
}

/// Eight Q6_K rows rearranged by super-block so that lane `j` of every register is row `j`'s:
/// the tiled matmul ggml uses from 8 rows on sums a super-block's scaled products exactly
/// before any rounding, so the order of the integer sums is free.
#[cfg_attr(not(simd_avx2), allow(dead_code))]
pub(super) fn pack_q6_k_tile(rows: &[u8], row_bytes: usize, out: &mut Vec<u8>) {
    pack_tile(
        rows,
        row_bytes,
        (Q6_K_BLOCK_BYTES, Q6_K_TILE_BLOCK),
        out,
        |o, j, block| {
            let d = f16::from_le_bytes([block[208], block[209]]).to_f32();
            o[4 * j..][..4].copy_from_slice(&d.to_le_bytes());
            let unpacked = Q6KBlock::unpack(block);
            for (sub, &scale) in unpacked.scales.iter().enumerate() {
                let to = Q6_K_TILE_SCALES + 4 * (TILE_COLS * sub + j);
                o[to..][..4].copy_from_slice(&(scale as i32).to_le_bytes());
            }
            for (c, chunk) in unpacked.quants.chunks_exact(4).enumerate() {
                let to = Q6_K_TILE_QUANTS + 4 * (TILE_COLS * c + j);
                o[to..][..4].copy_from_slice(chunk);
            }
        },
    );
}

#[cfg(simd_avx2)]
pub(super) fn dot_q6_k_tile(
    packed: &[u8],
    xs: [&[BlockQ8K]; ROW_GROUP],
) -> [[f32; TILE_COLS]; ROW_GROUP] {
    assert!(xs.iter().all(|x| x.len() * Q6_K_TILE_BLOCK == packed.len()));
    // SAFETY: the target features are enabled at compile time; the lengths are checked
    // above and every load is unaligned.
    unsafe { simd::q6_k_tile_dot(packed, xs) }
}

/// The tiled Q6_K kernel where the machine has it (AVX2), for ggml's tiled batches only.
#[cfg(simd_avx2)]
pub(super) const Q6_K_TILE: Option<Tile<BlockQ8K>> = Some(Tile {
    min_rows: 8,
    pack: Some(pack_q6_k_tile),
    dot: |packed, _, xs| dot_q6_k_tile(packed, xs),
});

#[cfg(not(simd_avx2))]
pub(super) const Q6_K_TILE: Option<Tile<BlockQ8K>> = None;

/// A Q6_K super-block's 6-bit quants (0..64, in element order) and 16 signed scales.
pub(super) struct Q6KBlock {
    pub(super) quants: [u8; QK_K],
    scales: [i8; 16],
}

impl Q6KBlock {
    #[inline(always)]
    pub(super) fn unpack(block: &[u8]) -> Self {
        let scales = std::array::from_fn(|i| block[192 + i] as i8);
        #[cfg(simd_avx2)]
        {
            // SAFETY: the target features are enabled at compile time; loads are unaligned.
            let quants = unsafe { simd::q6_k_unpack(block[..192].try_into().expect("192 bytes")) };
            Self { quants, scales }
        }
        #[cfg(not(simd_avx2))]
        Self {
            quants: q6_k_unpack_scalar(block),
            scales,
        }
    }

    /// [`Q6KBlock::lane_sums`] straight from the stored `block`, unpacked in registers where
    /// the machine has AVX-512.
    #[inline(always)]
    pub(super) fn row_lane_sums(block: &[u8], xb: &BlockQ8K) -> [i32; 8] {
        #[cfg(simd_avx512)]
        // SAFETY: the target features are enabled at compile time; loads are unaligned.
        unsafe {
            simd::q6_k_row_lanes(block.try_into().expect("a block"), &xb.qs, &xb.bsums)
        }
        #[cfg(not(simd_avx512))]
        Self::unpack(block).lane_sums(xb)
    }

    /// The eight integer lanes of ggml's x86 Q6_K dot product for one super-block.
    #[inline(always)]
    pub(super) fn lane_sums(&self, xb: &BlockQ8K) -> [i32; 8] {
        #[cfg(simd_avx2)]
        // SAFETY: the target features are enabled at compile time; loads are unaligned.
        unsafe {
            simd::q6_k_lane_sums(&self.quants, &self.scales, &xb.qs, &xb.bsums)
        }
        #[cfg(not(simd_avx2))]
        self.lane_sums_scalar(xb)
    }
}

#[cfg_attr(simd_avx2, allow(dead_code))]
impl Q6KBlock {
    /// [`Q6KBlock::lane_sums`] one product at a time: the reference for the SIMD path.
    pub(super) fn lane_sums_scalar(&self, xb: &BlockQ8K) -> [i32; 8] {
        let scales = self.scales.map(|s| s as i32);
        let mut lanes = [0i32; 8];
        for run in 0..8 {
            let w: &[u8; 32] = self.quants[32 * run..32 * run + 32]
                .try_into()
                .expect("32 quants");
            let x: &[i8; 32] = xb.qs[32 * run..32 * run + 32]
                .try_into()
                .expect("32 values");
            // Lanes 0-3 cover the run's first 16 elements, lanes 4-7 the second.
            for (l, (lane, dot)) in lanes
                .iter_mut()
                .zip(lane_dots_u8_i8_scalar(w, x))
                .enumerate()
            {
                *lane += scales[2 * run + l / 4] * dot;
            }
        }
        for (l, lane) in lanes.iter_mut().enumerate() {
            let offset = xb.bsums[2 * l] as i32 * scales[2 * l]
                + xb.bsums[2 * l + 1] as i32 * scales[2 * l + 1];
            *lane -= offset << 5;
        }
        lanes
    }
}

/// The 256 quants of a Q6_K super-block (0..64) in element order.
#[cfg_attr(simd_avx2, allow(dead_code))]
pub(super) fn q6_k_unpack_scalar(block: &[u8]) -> [u8; QK_K] {
    let (ql, qh) = (&block[..128], &block[128..192]);
    // Each half of 128 holds four runs of 32; the offset of 32 is applied in
    // `lane_sums` through the activation sums.
    let mut q = [0u8; QK_K];
    for half in 0..2 {
        let (ql, qh, q) = (&ql[64 * half..], &qh[32 * half..], &mut q[128 * half..]);
        for l in 0..32 {
            q[l] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
            q[32 + l] = (ql[32 + l] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
            q[64 + l] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[96 + l] = (ql[32 + l] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    q
}

/// `lane[l] = Σ w[i]·x[i]` over `i` in `4l..4l+4`: the eight exact integer sums of 32
/// unsigned by 32 signed bytes, one product at a time.
#[cfg_attr(simd_avx2, allow(dead_code))]
pub(super) fn lane_dots_u8_i8_scalar(w: &[u8; 32], x: &[i8; 32]) -> [i32; 8] {
    std::array::from_fn(|l| (4 * l..4 * l + 4).map(|i| w[i] as i32 * x[i] as i32).sum())
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q6_K weights `(n, k)` given as raw bytes.
pub fn matmul_q6_k(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK_K, Q6_K_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        Kernels {
            quantize: |x, _, out| quantize_q8_k(x, out),
            dot: |ws, rb, x, p, out| each_row(ws, rb, out, |w| dot_q6_k_q8_k(w, x, p)),
            dot_group: dot_q6_k_rows,
            tile: Q6_K_TILE,
        },
    )
}

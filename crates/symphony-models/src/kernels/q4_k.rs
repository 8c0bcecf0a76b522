//! Q4_K weights (super-blocks of 256: f16 `d` and `dmin`, twelve bytes of 6-bit scales and
//! mins, 128 bytes of nibbles) against Q8_K activations. On AVX2 machines llama.cpp repacks
//! Q4_K matrices and uses its interleaved kernels; per output both form exact integer sums
//! for each pair of 32-element sub-blocks, and the one-row kernel (gemv) adds a
//! super-block's four pairs before its FMA where the four-row kernel (gemm) does one FMA per
//! pair. [`RowPlace`] says which a row gets, so results match llama.cpp's batch by batch.
//! With AVX-512 the one-row kernel forms a super-block's two exact totals two runs per
//! register (`simd::q4_k_total`); the order of exact integer sums is free.

use half::f16;

use super::layout::{BlockQ8K, Q4_K_BLOCK_BYTES, QK_K};
use super::layout::{Q4_K_TILE_BLOCK, Q4_K_TILE_MINS, Q4_K_TILE_QUANTS, Q4_K_TILE_SCALES};
#[cfg(simd_avx2)]
use super::layout::{ROW_GROUP, TILE_COLS};
use super::matmul::{matmul, Kernels};
use super::q8::{quantize_q8_k_rows, RowPlace};
use super::rows::each_row;
#[cfg(simd_avx2)]
use super::simd;
use super::tile::{pack_tile, Tile};

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K super-block.
pub(super) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// One Q4_K row · one Q8_K row. On AVX2 machines llama.cpp repacks Q4_K matrices whose row
/// count is a multiple of 8 and computes them with its interleaved kernels. Per output, both
/// form exact integer sums for each pair of 32-element sub-blocks (scaled quants, and mins
/// times the activation sums); the one-row kernel (gemv) adds a super-block's four pairs
/// before its FMA, the four-row kernel (gemm) does one FMA per pair. So do we, by `place`.
pub fn dot_q4_k_q8_k(row: &[u8], x: &[BlockQ8K], place: RowPlace) -> f32 {
    dot_q4_k_rows(row, [x], [place])[0]
}

/// [`dot_q4_k_q8_k`] for `R` activation rows, each super-block unpacked once.
pub(super) fn dot_q4_k_rows<const R: usize>(
    row: &[u8],
    xs: [&[BlockQ8K]; R],
    places: [RowPlace; R],
) -> [f32; R] {
    let (mut acc, mut acc_min) = ([0f32; R], [0f32; R]);
    for (b, block) in row.chunks_exact(Q4_K_BLOCK_BYTES).enumerate() {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let dmin = f16::from_le_bytes([block[2], block[3]]).to_f32();
        let unpacked = Q4KBlock::unpack(block);
        #[cfg(simd_avx512)]
        if R == 1 && !places[0].in_group_of_four() {
            // Decode: ggml's one-row kernel adds the four pairs before rounding, so only the
            // super-block's two exact totals matter, and they can be formed in any order.
            let xb = &xs[0][b];
            let (sum, mins) = unpacked.totals(xb);
            acc[0] = (sum as f32).mul_add(d * xb.d, acc[0]);
            acc_min[0] = (mins as f32).mul_add(dmin * xb.d, acc_min[0]);
            continue;
        }
        // Integer pair sums two rows at a time where there are two (their reductions share
        // instructions), one at a time otherwise.
        let mut all_pairs = [[(0i32, 0i32); 4]; R];
        let mut r = 0;
        while r + 2 <= R {
            (all_pairs[r], all_pairs[r + 1]) = unpacked.pair_sums_two(&xs[r][b], &xs[r + 1][b]);
            r += 2;
        }
        if r < R {
            all_pairs[r] = unpacked.pair_sums(&xs[r][b]);
        }
        for r in 0..R {
            let xb = &xs[r][b];
            let (scale, scale_min) = (d * xb.d, dmin * xb.d);
            let pairs = all_pairs[r];
            if places[r].in_group_of_four() {
                for (sum, mins) in pairs {
                    acc[r] = (sum as f32).mul_add(scale, acc[r]);
                    acc_min[r] = (mins as f32).mul_add(scale_min, acc_min[r]);
                }
            } else {
                let sum: i32 = pairs.iter().map(|&(s, _)| s).sum();
                let mins: i32 = pairs.iter().map(|&(_, m)| m).sum();
                acc[r] = (sum as f32).mul_add(scale, acc[r]);
                acc_min[r] = (mins as f32).mul_add(scale_min, acc_min[r]);
            }
        }
    }
    std::array::from_fn(|r| acc[r] - acc_min[r])
}

/// For each pair of sub-blocks of a Q4_K super-block: `(Σ scale · q4·q8, Σ min · Σq8)`.
pub(super) type PairSums = [(i32, i32); 4];

/// A Q4_K super-block: its packed 4-bit weights (four runs of 32 bytes, low nibbles one
/// sub-block, high nibbles the next) with each sub-block's 6-bit scale and min decoded.
pub(super) struct Q4KBlock<'a> {
    packed: &'a [u8; 128],
    scales: [(i32, i32); 8],
}

impl<'a> Q4KBlock<'a> {
    #[inline]
    fn unpack(block: &'a [u8]) -> Self {
        let scales = &block[4..16];
        Self {
            packed: block[16..144].try_into().expect("128 bytes"),
            scales: std::array::from_fn(|sub| {
                let (sc, m) = scale_min_k4(sub, scales);
                (sc as i32, m as i32)
            }),
        }
    }

    /// For each pair of sub-blocks: `(Σ scale · q4·q8, Σ min · Σq8)`, exact.
    #[inline]
    fn pair_sums(&self, xb: &BlockQ8K) -> PairSums {
        std::array::from_fn(|pair| {
            let packed: &[u8; 32] = self.packed[32 * pair..32 * pair + 32]
                .try_into()
                .expect("32 bytes");
            let x = |sub: usize| -> &[i8; 32] {
                xb.qs[32 * sub..32 * sub + 32]
                    .try_into()
                    .expect("32 values")
            };
            let (lo, hi) = (2 * pair, 2 * pair + 1);
            let sum = scaled_nibble_dots(
                packed,
                (x(lo), self.scales[lo].0),
                (x(hi), self.scales[hi].0),
            );
            let mins = [lo, hi]
                .iter()
                .map(|&sub| {
                    self.scales[sub].1 * (xb.bsums[2 * sub] as i32 + xb.bsums[2 * sub + 1] as i32)
                })
                .sum();
            (sum, mins)
        })
    }
}

impl Q4KBlock<'_> {
    /// The sums of [`Q4KBlock::pair_sums`] over the four pairs, the quants' in 512-bit
    /// registers, two pairs at a time.
    #[cfg(simd_avx512)]
    #[inline]
    fn totals(&self, xb: &BlockQ8K) -> (i32, i32) {
        let scales = self.scales.map(|(sc, _)| sc);
        // SAFETY: the target features are enabled at compile time; loads are unaligned.
        let sum = unsafe { simd::q4_k_total(self.packed, &scales, &xb.qs) };
        let mins = (0..8)
            .map(|sub| {
                self.scales[sub].1 * (xb.bsums[2 * sub] as i32 + xb.bsums[2 * sub + 1] as i32)
            })
            .sum();
        (sum, mins)
    }

    /// [`Q4KBlock::pair_sums`] for two activation rows: the same integers.
    #[inline]
    fn pair_sums_two(&self, a: &BlockQ8K, b: &BlockQ8K) -> (PairSums, PairSums) {
        #[cfg(simd_avx2)]
        {
            let scales = self.scales.map(|(sc, _)| sc);
            let mins = self.scales.map(|(_, m)| m as i16);
            // SAFETY: the target features are enabled at compile time; loads are unaligned.
            let (sums, min_sums) = unsafe {
                simd::q4_k_pair_sums_two(
                    self.packed,
                    &scales,
                    &mins,
                    (&a.qs, &a.bsums),
                    (&b.qs, &b.bsums),
                )
            };
            let row = |k: usize| std::array::from_fn(|p| (sums[4 * k + p], min_sums[4 * k + p]));
            (row(0), row(1))
        }
        #[cfg(not(simd_avx2))]
        (self.pair_sums(a), self.pair_sums(b))
    }
}

/// The tiled Q4_K kernel where the machine has it (AVX2).
#[cfg(simd_avx2)]
pub(super) const Q4_K_TILE: Option<Tile<BlockQ8K>> = Some(Tile {
    min_rows: ROW_GROUP,
    pack: Some(pack_q4_k_tile),
    dot: |packed, _, xs| dot_q4_k_tile(packed, xs),
});

#[cfg(not(simd_avx2))]
pub(super) const Q4_K_TILE: Option<Tile<BlockQ8K>> = None;

/// Eight Q4_K rows rearranged by super-block. For pair `p` of sub-blocks, 32-byte chunk `c`
/// holds bytes `4c..4c+4` of the pair's 32 packed bytes from each row in turn: their low
/// nibbles are elements `64p+4c..` (sub-block `2p`), their high nibbles elements
/// `64p+32+4c..` (sub-block `2p+1`), so one register meets four activations of each.
#[cfg_attr(not(simd_avx2), allow(dead_code))]
pub(super) fn pack_q4_k_tile(rows: &[u8], row_bytes: usize, out: &mut Vec<u8>) {
    pack_tile(
        rows,
        row_bytes,
        (Q4_K_BLOCK_BYTES, Q4_K_TILE_BLOCK),
        out,
        |o, j, block| {
            let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
            let dmin = f16::from_le_bytes([block[2], block[3]]).to_f32();
            o[4 * j..4 * j + 4].copy_from_slice(&d.to_le_bytes());
            o[32 + 4 * j..32 + 4 * j + 4].copy_from_slice(&dmin.to_le_bytes());
            let mut put_i16 = |at: usize, v: u8| {
                o[at..at + 2].copy_from_slice(&(v as i16).to_le_bytes());
            };
            for sub in 0..8 {
                let (scale, min) = scale_min_k4(sub, &block[4..16]);
                let lanes = Q4_K_TILE_SCALES + 32 * sub + 4 * j;
                put_i16(lanes, scale);
                put_i16(lanes + 2, scale);
                put_i16(Q4_K_TILE_MINS + 32 * (sub / 2) + 4 * j + 2 * (sub % 2), min);
            }
            for p in 0..4 {
                for c in 0..8 {
                    let to = Q4_K_TILE_QUANTS + 32 * (8 * p + c) + 4 * j;
                    let from = 16 + 32 * p + 4 * c;
                    o[to..to + 4].copy_from_slice(&block[from..from + 4]);
                }
            }
        },
    );
}

#[cfg(simd_avx2)]
pub(super) fn dot_q4_k_tile(
    packed: &[u8],
    xs: [&[BlockQ8K]; ROW_GROUP],
) -> [[f32; TILE_COLS]; ROW_GROUP] {
    assert!(xs.iter().all(|x| x.len() * Q4_K_TILE_BLOCK == packed.len()));
    // SAFETY: the target features are enabled at compile time; the lengths are checked
    // above and every load is unaligned.
    unsafe { simd::q4_k_tile_dot(packed, xs) }
}

/// `sc_lo · (low nibbles · x_lo) + sc_hi · (high nibbles · x_hi)` over 32 packed bytes: the
/// exact integer sum of two scaled sub-block dot products.
#[inline]
pub(super) fn scaled_nibble_dots(
    packed: &[u8; 32],
    lo: (&[i8; 32], i32),
    hi: (&[i8; 32], i32),
) -> i32 {
    #[cfg(simd_avx2)]
    {
        // SAFETY: the target features are enabled at compile time; loads are unaligned.
        unsafe { simd::scaled_nibble_dots(packed, lo, hi) }
    }
    #[cfg(not(simd_avx2))]
    scaled_nibble_dots_scalar(packed, lo, hi)
}

#[cfg_attr(simd_avx2, allow(dead_code))]
pub(super) fn scaled_nibble_dots_scalar(
    packed: &[u8; 32],
    (x_lo, sc_lo): (&[i8; 32], i32),
    (x_hi, sc_hi): (&[i8; 32], i32),
) -> i32 {
    let dot = |x: &[i8; 32], nibble: fn(u8) -> u8| -> i32 {
        packed
            .iter()
            .zip(x)
            .map(|(&p, &v)| nibble(p) as i32 * v as i32)
            .sum()
    };
    sc_lo * dot(x_lo, |p| p & 0x0F) + sc_hi * dot(x_hi, |p| p >> 4)
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q4_K weights `(n, k)` given as raw bytes.
pub fn matmul_q4_k(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK_K, Q4_K_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        Kernels {
            quantize: quantize_q8_k_rows,
            dot: |ws, rb, x, p, out| each_row(ws, rb, out, |w| dot_q4_k_q8_k(w, x, p)),
            dot_group: dot_q4_k_rows,
            tile: Q4_K_TILE,
        },
    )
}

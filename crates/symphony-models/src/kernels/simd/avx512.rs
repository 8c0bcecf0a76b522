//! The 512-bit kernels (AVX-512 F, BW, DQ, VL and VNNI: `cfg(simd_avx512)`). Each does in
//! one 512-bit register what the 256-bit kernel does in two, lane for lane: two activation
//! rows side by side for the tiles, two weight rows side by side for decode, two runs of a
//! super-block at once for Q4_K and Q6_K. Every lane forms the same exact integers and the
//! same FMAs in the same order as its 256-bit counterpart, so the results are the same bits.

use std::arch::x86_64::*;

use super::registers::i32_lanes;
use crate::kernels::layout;

/// [`tile_lanes`] with AVX-512: two activation rows share a 512-bit register, lanes 0..8
/// one row's and 8..16 the other's, against the weight block repeated in both halves.
/// Each lane does what it does in the 256-bit form, so the results are the same bits,
/// in half the instructions. All eight weight rows at once: sixteen accumulators.
#[inline(always)]
pub(super) unsafe fn tile_lanes<'x, const R: usize, const OFFSET: i32>(
    blocks: usize,
    weights: impl Fn(usize, usize) -> (__m256i, __m256),
    xs: impl Fn(usize, usize) -> (&'x [i8; 32], f32),
) -> [[[f32; 8]; layout::TILE_COLS]; R] {
    use layout::TILE_COLS;
    // Two pairs of activation rows: the grouped kernels' four.
    const { assert!(R == 4) };
    // SAFETY: callers guarantee the features and that both closures may be called for
    // every row below `TILE_COLS` and block below `blocks`; loads and stores are
    // unaligned.
    unsafe {
        let ones = _mm512_set1_epi8(1);
        let mut acc = [[_mm512_setzero_ps(); 2]; TILE_COLS];
        for b in 0..blocks {
            let half = |r: usize| _mm256_loadu_si256(xs(r, b).0.as_ptr().cast());
            let x: [__m512i; 2] = std::array::from_fn(|p| {
                _mm512_inserti64x4(_mm512_castsi256_si512(half(2 * p)), half(2 * p + 1), 1)
            });
            let xd: [__m512; 2] = std::array::from_fn(|p| {
                _mm512_insertf32x8(
                    _mm512_set1_ps(xs(2 * p, b).1),
                    _mm256_set1_ps(xs(2 * p + 1, b).1),
                    1,
                )
            });
            let start: [__m512i; 2] = std::array::from_fn(|p| {
                if OFFSET == 0 {
                    _mm512_setzero_si512()
                } else {
                    let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, x[p]);
                    _mm512_mullo_epi32(sums, _mm512_set1_epi32(-OFFSET))
                }
            });
            for (row, acc) in acc.iter_mut().enumerate() {
                let (w, d) = weights(row, b);
                let w = _mm512_broadcast_i64x4(w);
                let d = _mm512_broadcastss_ps(_mm256_castps256_ps128(d));
                for p in 0..2 {
                    let sums = _mm512_dpbusd_epi32(start[p], w, x[p]);
                    acc[p] =
                        _mm512_fmadd_ps(_mm512_mul_ps(d, xd[p]), _mm512_cvtepi32_ps(sums), acc[p]);
                }
            }
        }
        let mut out = [[[0f32; 8]; TILE_COLS]; R];
        for (row, acc) in acc.iter().enumerate() {
            for p in 0..2 {
                let mut lanes = [0f32; 16];
                _mm512_storeu_ps(lanes.as_mut_ptr(), acc[p]);
                out[2 * p][row].copy_from_slice(&lanes[..8]);
                out[2 * p + 1][row].copy_from_slice(&lanes[8..]);
            }
        }
        out
    }
}

/// `2·P` weight rows against one activation row, for decode: each pair's row A has its
/// eight lanes in the low half of a 512-bit register, row B in the high half, against
/// the activation block repeated in both. `weights(b)` gives block `b` of every pair as
/// unsigned bytes (the stored weights plus `OFFSET`) and the rows' scales (row `k` in
/// lane `k`); the offset comes off as `OFFSET · Σx` in the sums' starting value, formed
/// once per block for all the pairs. Each lane does what the one-row kernel does for its
/// row (exact integer sums, one FMA by `d_w·d_x` per block), so each row's lanes are
/// that kernel's bit for bit, in half its instructions or fewer.
#[inline(always)]
pub(in crate::kernels) unsafe fn row_pair_lanes<'x, const P: usize, const OFFSET: i32>(
    blocks: usize,
    weights: impl Fn(usize) -> ([__m512i; P], __m128),
    x: impl Fn(usize) -> (&'x [i8; 32], f32),
) -> [[[f32; 8]; 2]; P] {
    const { assert!(P <= 2) };
    // SAFETY: callers guarantee the features and that both closures may be called for
    // every block below `blocks`; loads and stores are unaligned.
    unsafe {
        let ones = _mm512_set1_epi8(1);
        // Lanes of pair p's scales: row 2p's in the low half, row 2p + 1's in the high.
        let halves: [__m512i; P] = std::array::from_fn(|p| {
            let (a, b) = (2 * p as i32, 2 * p as i32 + 1);
            _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a)
        });
        let mut acc = [_mm512_setzero_ps(); P];
        for b in 0..blocks {
            let (qs, xd) = x(b);
            let xv = _mm512_broadcast_i64x4(_mm256_loadu_si256(qs.as_ptr().cast()));
            let start = if OFFSET == 0 {
                _mm512_setzero_si512()
            } else {
                let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, xv);
                _mm512_mullo_epi32(sums, _mm512_set1_epi32(-OFFSET))
            };
            let (w, d) = weights(b);
            // `d_w·d_x` for every row, each spread over its half of its pair's register.
            let d = _mm512_castps128_ps512(_mm_mul_ps(d, _mm_set1_ps(xd)));
            for p in 0..P {
                let scale = _mm512_permutexvar_ps(halves[p], d);
                let sums = _mm512_dpbusd_epi32(start, w[p], xv);
                acc[p] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sums), acc[p]);
            }
        }
        acc.map(|acc| {
            let mut lanes = [0f32; 16];
            _mm512_storeu_ps(lanes.as_mut_ptr(), acc);
            let mut out = [[0f32; 8]; 2];
            out[0].copy_from_slice(&lanes[..8]);
            out[1].copy_from_slice(&lanes[8..]);
            out
        })
    }
}

/// Two Q5_0 blocks (at `a` and `b`, 22 bytes each) as stored, 0..=31: [`q5_0_unsigned`]
/// for both at once, `a`'s in the low half.
#[inline(always)]
pub(in crate::kernels) unsafe fn q5_0_unsigned_pair(a: *const u8, b: *const u8) -> __m512i {
    // SAFETY: callers guarantee the features and 22 readable bytes at `a` and `b`.
    unsafe {
        let halves = |p: *const u8| _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(6).cast()));
        // Each 128-bit quarter: the 16 bytes of nibbles; the second and fourth take the
        // high nibbles.
        let raw = _mm512_inserti64x4(_mm512_castsi256_si512(halves(a)), halves(b), 1);
        let nibbles = _mm512_and_si512(
            _mm512_mask_blend_epi64(0b1100_1100, raw, _mm512_srli_epi16(raw, 4)),
            _mm512_set1_epi8(0x0F),
        );
        // Bit `e` of a block's `qh` is the fifth bit of its weight `e`: the two words
        // side by side are the byte mask of the whole register.
        let qh = |p: *const u8| p.add(2).cast::<u32>().read_unaligned() as u64;
        let set = _cvtu64_mask64(qh(b) << 32 | qh(a));
        _mm512_mask_add_epi8(nibbles, set, nibbles, _mm512_set1_epi8(0x10))
    }
}

/// `Q4KBlock::totals`' quants: `Σ scale · q4·q8` over a whole super-block. A 512-bit
/// register holds two runs of packed nibbles, so its low nibbles are sub-blocks `4q` and
/// `4q + 2` and its high nibbles `4q + 1` and `4q + 3`; the activations are shuffled to
/// match and each half multiplied by its sub-block's scale.
#[inline]
pub(in crate::kernels) unsafe fn q4_k_total(
    packed: &[u8; 128],
    scales: &[i32; 8],
    x: &[i8; 256],
) -> i32 {
    // SAFETY: callers guarantee the features; all loads are unaligned and inside the
    // arrays.
    unsafe {
        let mask = _mm512_set1_epi8(0x0F);
        let sc = _mm512_castsi256_si512(_mm256_loadu_si256(scales.as_ptr().cast()));
        let spread = |a: i32, b: i32| {
            let index = _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a);
            _mm512_permutexvar_epi32(index, sc)
        };
        let mut total = _mm512_setzero_si512();
        for q in 0..2 {
            let raw = _mm512_loadu_si512(packed.as_ptr().add(64 * q).cast());
            let lo = _mm512_and_si512(raw, mask);
            let hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask);
            let x0 = _mm512_loadu_si512(x.as_ptr().add(128 * q).cast());
            let x1 = _mm512_loadu_si512(x.as_ptr().add(128 * q + 64).cast());
            let x_lo = _mm512_shuffle_i64x2(x0, x1, 0b01_00_01_00);
            let x_hi = _mm512_shuffle_i64x2(x0, x1, 0b11_10_11_10);
            let sub = 4 * q as i32;
            let lo = _mm512_mullo_epi32(
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, x_lo),
                spread(sub, sub + 2),
            );
            let hi = _mm512_mullo_epi32(
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, x_hi),
                spread(sub + 1, sub + 3),
            );
            total = _mm512_add_epi32(total, _mm512_add_epi32(lo, hi));
        }
        _mm512_reduce_add_epi32(total)
    }
}

/// `Q6KBlock::unpack` and `Q6KBlock::lane_sums` in one, two runs of 32 per 512-bit
/// register: the low nibbles of a half's 64 bytes are its first two runs, the high
/// nibbles its last two, each with its pair of high bits shifted in by the half's
/// amount. Each lane's exact integer is the 256-bit kernel's: the upper half's lanes
/// (the second run of each register) are added into the lower half's at the end.
#[inline]
pub(in crate::kernels) unsafe fn q6_k_row_lanes(
    block: &[u8; layout::Q6_K_BLOCK_BYTES],
    qs: &[i8; 256],
    bsums: &[i16; 16],
) -> [i32; 8] {
    // SAFETY: callers guarantee the features; all loads and stores are unaligned and
    // inside the arrays.
    unsafe {
        let (m4, m3) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
        let scales = &block[192..208];
        let sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(
            scales.as_ptr().cast(),
        )));
        // Scales `4k..4k + 4`, each over eight 16-bit lanes: runs 2k and 2k + 1.
        const QUARTERS: [i16; 32] = {
            let mut index = [0i16; 32];
            let mut i = 0;
            while i < 32 {
                index[i] = (i / 8) as i16;
                i += 1;
            }
            index
        };
        let quarters = _mm512_loadu_si512(QUARTERS.as_ptr().cast());
        let scale_quarters = |k: i16| {
            let index = _mm512_add_epi16(quarters, _mm512_set1_epi16(4 * k));
            _mm512_permutexvar_epi16(index, sc16)
        };
        let (low_shift, high_shift) = (
            _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4),
            _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0),
        );
        let mut acc = _mm512_setzero_si512();
        for half in 0..2 {
            let ql = _mm512_loadu_si512(block.as_ptr().add(64 * half).cast());
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                block.as_ptr().add(128 + 32 * half).cast(),
            ));
            let low_runs = _mm512_or_si512(
                _mm512_and_si512(ql, m4),
                _mm512_and_si512(_mm512_sllv_epi64(qh, low_shift), m3),
            );
            let high_runs = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                _mm512_and_si512(_mm512_srlv_epi64(qh, high_shift), m3),
            );
            for (k, runs) in [low_runs, high_runs].into_iter().enumerate() {
                let x = _mm512_loadu_si512(qs.as_ptr().add(128 * half + 64 * k).cast());
                let pairs = _mm512_maddubs_epi16(runs, x);
                let sc = scale_quarters((2 * half + k) as i16);
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, sc));
            }
        }
        let acc = _mm256_add_epi32(
            _mm512_castsi512_si256(acc),
            _mm512_extracti64x4_epi64(acc, 1),
        );
        let sc16 = _mm512_castsi512_si256(sc16);
        let offsets = _mm256_madd_epi16(_mm256_loadu_si256(bsums.as_ptr().cast()), sc16);
        let lanes = _mm256_sub_epi32(acc, _mm256_slli_epi32(offsets, 5));
        i32_lanes(lanes)
    }
}

/// Asks for the cache line at `p` to be brought into L1 (`prefetcht0`): `rows_of` reads rows
/// side by side, where the hardware prefetcher loses track.
#[inline(always)]
pub(in crate::kernels) fn prefetch(p: *const u8) {
    // SAFETY: a prefetch is a hint; it reads nothing into the program and faults on no
    // address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
}

/// The f16 scales at byte `at` of up to four rows (`rows_of`'s), as f32 in lanes 0.., the rest zero.
#[inline(always)]
pub(in crate::kernels) fn f16_scales<const N: usize>(rows: [&[u8]; N], at: usize) -> __m128 {
    const { assert!(N <= 4) };
    let bits = rows.iter().enumerate().fold(0u64, |bits, (k, row)| {
        bits | (u16::from_le_bytes([row[at], row[at + 1]]) as u64) << (16 * k)
    });
    // SAFETY: the target features are enabled at compile time.
    unsafe { _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64)) }
}

/// Two Q8_0 blocks (at `a` and `b`, 34 bytes each) as unsigned bytes, `a`'s in the low half:
/// the signed weights (bytes 2..34) with their top bit flipped (`w + 128`).
#[inline(always)]
pub(in crate::kernels) unsafe fn q8_0_flipped_pair(a: *const u8, b: *const u8) -> __m512i {
    // SAFETY: callers guarantee the features and whole 34-byte blocks at `a` and `b`;
    // loads are unaligned.
    unsafe {
        let w = _mm512_castsi256_si512(_mm256_loadu_si256(a.add(2).cast()));
        let w = _mm512_inserti64x4(w, _mm256_loadu_si256(b.add(2).cast()), 1);
        _mm512_xor_si512(w, _mm512_set1_epi8(i8::MIN))
    }
}

/// `sums[r] = Σ_t weights[r · weight_stride + t] · vectors[t · vector_stride..][..16]`
/// for `t < count`: `R` rows of weights against a column of sixteen-lane vectors, the
/// `R` sums in registers, each vector loaded once for all of them (attention's scores
/// and weighted sums, `attention::weighted_lane_sums`).
///
/// # Safety
/// The target features are enabled at compile time (the module's condition); `weights`
/// holds `(R - 1) · weight_stride + count` values and `vectors`
/// `(count - 1) · vector_stride + 16`.
pub(in crate::kernels) unsafe fn weighted_lane_sums<const R: usize>(
    weights: *const f32,
    weight_stride: usize,
    vectors: *const f32,
    vector_stride: usize,
    count: usize,
) -> [[f32; 16]; R] {
    let mut sums = [[0f32; 16]; R];
    // SAFETY: the caller's bounds cover every offset read; stores go to `sums`.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); R];
        for t in 0..count {
            let v = _mm512_loadu_ps(vectors.add(t * vector_stride));
            for (r, acc) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(*weights.add(r * weight_stride + t));
                *acc = _mm512_fmadd_ps(w, v, *acc);
            }
        }
        for (sum, acc) in sums.iter_mut().zip(&acc) {
            _mm512_storeu_ps(sum.as_mut_ptr(), *acc);
        }
    }
    sums
}

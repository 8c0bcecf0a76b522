//! The 256-bit kernels (AVX2 and FMA: `cfg(simd_avx2)`), one per portable step they replace:
//! the same exact integer sums (`dpbusd`, or `vpmaddubsw`/`vpmaddwd` where every pair stays
//! below the saturation bound), the same FMAs in the same order, so each returns the portable
//! path's bits. Where the machine also has AVX512-VNNI with VL, the 256-bit `vpdpbusd` is used
//! in place of the AVX2 pair of instructions (see `registers`).

use std::arch::x86_64::*;

#[cfg(simd_avx512)]
use super::avx512::tile_lanes;
use super::registers::{dpbusd, f32_lanes, i32_lanes};
use crate::kernels::layout;

/// `Lanes::fma_q5_0`: the 5-bit weights unpacked in registers (low nibbles, then high
/// nibbles; bit `e` of `qh` spread to byte `e` as ggml's `bytes_from_bits_32` does),
/// offset by -16, then the signed product as in `fma_i8_i8`.
#[inline]
pub(in crate::kernels) unsafe fn fma_q5_0(
    acc: &mut [f32; 8],
    scale: f32,
    qs: &[u8; 16],
    qh: u32,
    x: &[i8; 32],
) {
    // SAFETY: callers guarantee the features.
    unsafe { fma_signed(acc, scale, q5_0_weights(qs, qh), x) }
}

/// `acc += scale · (Σ of each group of four w·x)` for signed weights in a register:
/// |w| times x with w's sign, through `dpbusd` (unsigned × signed).
#[inline(always)]
unsafe fn fma_signed(acc: &mut [f32; 8], scale: f32, w: __m256i, x: &[i8; 32]) {
    // SAFETY: callers guarantee the features; all loads and stores are unaligned.
    unsafe {
        let xv = _mm256_loadu_si256(x.as_ptr().cast());
        let sums = dpbusd(
            _mm256_setzero_si256(),
            _mm256_sign_epi8(w, w),
            _mm256_sign_epi8(xv, w),
        );
        let a = _mm256_loadu_ps(acc.as_ptr());
        let a = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), a);
        _mm256_storeu_ps(acc.as_mut_ptr(), a);
    }
}

/// A Q5_0 block's 32 signed weights in a register: the unsigned ones less 16.
#[inline(always)]
pub(in crate::kernels) unsafe fn q5_0_weights(qs: &[u8; 16], qh: u32) -> __m256i {
    // SAFETY: callers guarantee the features.
    unsafe { _mm256_sub_epi8(q5_0_unsigned(qs, qh), _mm256_set1_epi8(16)) }
}

/// A Q5_0 block's 32 weights as stored, 0..=31: the low nibbles, then the high ones,
/// bit `e` of `qh` spread to byte `e` as ggml's `bytes_from_bits_32` does.
#[inline(always)]
unsafe fn q5_0_unsigned(qs: &[u8; 16], qh: u32) -> __m256i {
    // SAFETY: callers guarantee the features; the load is unaligned.
    unsafe {
        let raw = _mm_loadu_si128(qs.as_ptr().cast());
        let nibbles = _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
            _mm256_set1_epi8(0x0F),
        );
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh as i32),
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        _mm256_or_si256(nibbles, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
    }
}

/// [`q5_0_unsigned`] stored: `pack_q5_0_tile`'s unpacking.
#[inline]
pub(in crate::kernels) unsafe fn q5_0_unsigned_weights(qs: &[u8; 16], qh: u32, out: &mut [u8; 32]) {
    // SAFETY: callers guarantee the features; the store is unaligned.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), q5_0_unsigned(qs, qh)) }
}

/// The eight lanes of each of [`layout::TILE_COLS`] weight rows against each of `R`
/// activation rows, as the grouped kernels keep them: per block, the pair's exact
/// four-element integer sums, then `acc += (d_w·d_x) · sums` with one FMA, so each pair's
/// lanes are the one-row kernel's bit for bit. `weights(row, b)` gives a block's weights
/// as unsigned bytes (the stored ones plus `OFFSET`) and its `d_w` in every lane; `xs(r,
/// b)` an activation block and its `d_x`. The offset comes off exactly as
/// `OFFSET · Σ x`, formed once per activation block for all the rows, in the sums'
/// starting value, so no per-pair sign fixes are needed. Weight rows go `TILE_ROWS` at a
/// time, their accumulators in registers; what is shared between rows (the activations,
/// their scales and offsets) is loaded once per block.
#[cfg(not(simd_avx512))]
#[inline(always)]
unsafe fn tile_lanes<'x, const R: usize, const OFFSET: i32>(
    blocks: usize,
    weights: impl Fn(usize, usize) -> (__m256i, __m256),
    xs: impl Fn(usize, usize) -> (&'x [i8; 32], f32),
) -> [[[f32; 8]; layout::TILE_COLS]; R] {
    use layout::TILE_COLS;
    /// Weight rows whose accumulators are live at once: `TILE_ROWS · R` registers.
    const TILE_ROWS: usize = 4;
    // SAFETY: callers guarantee the features and that both closures may be called for
    // every row below `TILE_COLS` and block below `blocks`; stores are unaligned.
    unsafe {
        let mut out = [[[0f32; 8]; TILE_COLS]; R];
        let ones = _mm256_set1_epi8(1);
        for first in (0..TILE_COLS).step_by(TILE_ROWS) {
            let mut acc = [[_mm256_setzero_ps(); R]; TILE_ROWS];
            for b in 0..blocks {
                let x: [__m256i; R] =
                    std::array::from_fn(|r| _mm256_loadu_si256(xs(r, b).0.as_ptr().cast()));
                let xd: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(xs(r, b).1));
                // -OFFSET · (Σ of each group of four x), exact: |Σ| <= 4·128.
                let start: [__m256i; R] = std::array::from_fn(|r| {
                    if OFFSET == 0 {
                        _mm256_setzero_si256()
                    } else {
                        let sums = dpbusd(_mm256_setzero_si256(), ones, x[r]);
                        _mm256_mullo_epi32(sums, _mm256_set1_epi32(-OFFSET))
                    }
                });
                for (i, acc) in acc.iter_mut().enumerate() {
                    let (w, d) = weights(first + i, b);
                    for r in 0..R {
                        let sums = dpbusd(start[r], w, x[r]);
                        acc[r] = _mm256_fmadd_ps(
                            _mm256_mul_ps(d, xd[r]),
                            _mm256_cvtepi32_ps(sums),
                            acc[r],
                        );
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                for r in 0..R {
                    out[r][first + i] = f32_lanes(acc[r]);
                }
            }
        }
        out
    }
}

/// `dot_q5_0_tile`'s lanes ([`tile_lanes`]): the packed weights come unpacked and
/// unsigned (`w + 16`), their scales widened.
#[inline]
pub(in crate::kernels) unsafe fn q5_0_tile_dot(
    packed: &[u8],
    xs: [&[layout::BlockQ8_0]; layout::ROW_GROUP],
) -> [[[f32; 8]; layout::TILE_COLS]; layout::ROW_GROUP] {
    use layout::{Q5_0_TILE_BLOCK, QK, TILE_COLS};
    // SAFETY: callers guarantee the features and that `packed` holds one tile block for
    // each activation block; all loads are unaligned and inside the slices.
    unsafe {
        let t = |b: usize| packed.as_ptr().add(b * Q5_0_TILE_BLOCK);
        tile_lanes::<{ layout::ROW_GROUP }, 16>(
            packed.len() / Q5_0_TILE_BLOCK,
            |row, b| {
                let w = _mm256_loadu_si256(t(b).add(4 * TILE_COLS + QK * row).cast());
                (
                    w,
                    _mm256_set1_ps(t(b).cast::<f32>().add(row).read_unaligned()),
                )
            },
            |r, b| (&xs[r][b].qs, xs[r][b].d),
        )
    }
}

/// A stored block's f16 scale in every lane of a register.
#[inline(always)]
unsafe fn widened_scale(block: *const u8) -> __m256 {
    // SAFETY: callers guarantee the features and two readable bytes at `block`.
    unsafe {
        let bits = block.cast::<u16>().read_unaligned();
        _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }
}

/// `dot_q8_0_tile`'s lanes ([`tile_lanes`]), from the stored rows: the signed weights
/// become unsigned by their top bit flipped (`w + 128`), which only VNNI's `vpdpbusd`
/// multiplies without saturating.
#[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
#[inline]
pub(in crate::kernels) unsafe fn q8_0_tile_dot(
    rows: &[u8],
    row_bytes: usize,
    xs: [&[layout::BlockQ8_0]; layout::ROW_GROUP],
) -> [[[f32; 8]; layout::TILE_COLS]; layout::ROW_GROUP] {
    use layout::Q8_0_BLOCK_BYTES as BLOCK;
    // SAFETY: callers guarantee the features, that `rows` holds `TILE_COLS` rows of
    // `row_bytes` and that each of `xs` has a block for each of theirs; all loads are
    // unaligned and inside the slices.
    unsafe {
        let block = |row: usize, b: usize| rows.as_ptr().add(row * row_bytes + b * BLOCK);
        tile_lanes::<{ layout::ROW_GROUP }, 128>(
            row_bytes / BLOCK,
            |row, b| {
                let w = _mm256_loadu_si256(block(row, b).add(2).cast());
                let flipped = _mm256_xor_si256(w, _mm256_set1_epi8(i8::MIN));
                (flipped, widened_scale(block(row, b)))
            },
            |r, b| (&xs[r][b].qs, xs[r][b].d),
        )
    }
}

/// 32 bytes in a register.
#[inline(always)]
pub(in crate::kernels) unsafe fn bytes(b: &[u8; 32]) -> __m256i {
    // SAFETY: callers guarantee the features; the load is unaligned.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// `R` activation rows against one weight row of 32-element blocks, each row's eight
/// lanes kept in a register from the first block to the last: per block, the weights
/// (`weights(b)`: the bytes and `d_w`) are unpacked once, and each row adds
/// `d_w·d_x · (Σ of each group of four w·x)` with one FMA, as `Lanes` does;
/// the weights are signed bytes, multiplied through `vpsignb`. Returns each row's
/// lanes, for `hsum8`.
#[inline(always)]
pub(in crate::kernels) unsafe fn lanes_rows<'x, const R: usize>(
    blocks: usize,
    weights: impl Fn(usize) -> (__m256i, f32),
    xs: impl Fn(usize, usize) -> (&'x [i8; 32], f32),
) -> [[f32; 8]; R] {
    // SAFETY: callers guarantee the features and that `weights` and `xs` may be called
    // for every block below `blocks`; loads and stores are unaligned.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..blocks {
            let (w, d) = weights(b);
            let u = _mm256_sign_epi8(w, w);
            for (r, acc) in acc.iter_mut().enumerate() {
                let (qs, xd) = xs(r, b);
                let xv = _mm256_loadu_si256(qs.as_ptr().cast());
                let xv = _mm256_sign_epi8(xv, w);
                let sums = dpbusd(_mm256_setzero_si256(), u, xv);
                *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xd), _mm256_cvtepi32_ps(sums), *acc);
            }
        }
        acc.map(f32_lanes)
    }
}

/// `scale · Σ u·s` over each group of four bytes, exact for `u` up to 15 and `scale` up
/// to 63 (a K-quant nibble and its 6-bit scale). Without VNNI, `vpmaddwd` by the scale
/// does the widening and the scaling in one instruction (`vpmulld` is slow on AVX2).
#[inline(always)]
unsafe fn scaled_dot(u: __m256i, s: __m256i, scale: i32) -> __m256i {
    #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
    // SAFETY: the target features are enabled at compile time.
    unsafe {
        _mm256_mullo_epi32(
            dpbusd(_mm256_setzero_si256(), u, s),
            _mm256_set1_epi32(scale),
        )
    }
    #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
    // SAFETY: AVX2 is enabled at compile time (the module's condition).
    unsafe {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(scale as i16))
    }
}

/// `Lanes::fma_u8_i8`: one `dpbusd`, then the FMA.
#[inline]
pub(in crate::kernels) unsafe fn fma_u8_i8(
    acc: &mut [f32; 8],
    scale: f32,
    w: &[u8; 32],
    x: &[i8; 32],
) {
    // SAFETY: callers guarantee the features; all loads and stores are unaligned.
    unsafe {
        let wv = _mm256_loadu_si256(w.as_ptr().cast());
        let xv = _mm256_loadu_si256(x.as_ptr().cast());
        let sums = dpbusd(_mm256_setzero_si256(), wv, xv);
        let a = _mm256_loadu_ps(acc.as_ptr());
        let a = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), a);
        _mm256_storeu_ps(acc.as_mut_ptr(), a);
    }
}

/// One Q4_1 row · one Q8_1 row as `dot_q4_1_rows_lanes` computes it (the same integers,
/// FMA per block and `m·s` sum, in the same order), the eight lanes and the sum kept in
/// registers: returns the lanes (for `hsum8`) and the `m·s` sum.
#[inline]
pub(in crate::kernels) unsafe fn q4_1_row(row: &[u8], x: &[layout::BlockQ8_1]) -> ([f32; 8], f32) {
    use half::f16;
    use layout::Q4_1_BLOCK_BYTES;
    // SAFETY: callers guarantee the features and that `x` has a block for each of the
    // row's; all loads are unaligned and inside the slices.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0f32;
        for (block, xb) in row.chunks_exact(Q4_1_BLOCK_BYTES).zip(x) {
            let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
            let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
            mins += m * xb.s;
            let w = nibbles(block[4..20].try_into().expect("16 bytes"));
            let xv = _mm256_loadu_si256(xb.qs.as_ptr().cast());
            let sums = dpbusd(_mm256_setzero_si256(), w, xv);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(sums), acc);
        }
        (f32_lanes(acc), mins)
    }
}

/// `dot_q4_1_tile`'s lanes ([`tile_lanes`], the nibbles unpacked from the stored rows)
/// and `m·s` sums: for each of the tile's eight weight rows and each activation row, the
/// sum `q4_1_row` keeps for that pair, its additions in the same order, all eight rows'
/// in one register per activation row.
#[inline]
#[allow(clippy::needless_range_loop)] // `b` indexes the rows and the activations alike
pub(in crate::kernels) unsafe fn q4_1_tile_dot(
    rows: &[u8],
    row_bytes: usize,
    xs: [&[layout::BlockQ8_1]; layout::ROW_GROUP],
) -> (
    [[[f32; 8]; layout::TILE_COLS]; layout::ROW_GROUP],
    [[f32; layout::TILE_COLS]; layout::ROW_GROUP],
) {
    use layout::{Q4_1_BLOCK_BYTES as BLOCK, ROW_GROUP as R, TILE_COLS};
    let blocks = row_bytes / BLOCK;
    // SAFETY: callers guarantee the features, that `rows` holds `TILE_COLS` rows of
    // `row_bytes` and that each of `xs` has `blocks` blocks; all loads and stores are
    // unaligned and inside the slices.
    unsafe {
        let block = |row: usize, b: usize| rows.as_ptr().add(row * row_bytes + b * BLOCK);
        let mut mins = [_mm256_setzero_ps(); R];
        for b in 0..blocks {
            let m: [u16; TILE_COLS] =
                std::array::from_fn(|row| block(row, b).add(2).cast::<u16>().read_unaligned());
            let m = _mm256_cvtph_ps(_mm_loadu_si128(m.as_ptr().cast()));
            for (r, mins) in mins.iter_mut().enumerate() {
                *mins = _mm256_add_ps(*mins, _mm256_mul_ps(m, _mm256_set1_ps(xs[r][b].s)));
            }
        }
        let out_mins = mins.map(f32_lanes);
        let out = tile_lanes::<R, 0>(
            blocks,
            |row, b| {
                (
                    nibbles(&*block(row, b).add(4).cast()),
                    widened_scale(block(row, b)),
                )
            },
            |r, b| (&xs[r][b].qs, xs[r][b].d),
        );
        (out, out_mins)
    }
}

/// `quantize_block_scalar` eight lanes at a time, as ggml's AVX2 `quantize_row_q8_0`
/// does it: the maximum magnitude (exact in any order), the same `v · (127 / amax)`
/// rounded half to even, narrowed with saturation and put back in element order.
#[inline]
pub(in crate::kernels) unsafe fn quantize_block(
    block: &[f32; 32],
    qs: &mut [i8; 32],
) -> (f32, i32) {
    // SAFETY: callers guarantee the features; loads and stores are unaligned.
    unsafe {
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(block.as_ptr().add(8 * i)));
        let sign = _mm256_set1_ps(-0.0);
        let abs: [__m256; 4] = std::array::from_fn(|i| _mm256_andnot_ps(sign, v[i]));
        let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let q: [__m256i; 4] = std::array::from_fn(|i| {
            let scaled = _mm256_mul_ps(v[i], id);
            _mm256_cvtps_epi32(_mm256_round_ps(
                scaled,
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            ))
        });
        let total = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let total = _mm_add_epi32(
            _mm256_castsi256_si128(total),
            _mm256_extracti128_si256(total, 1),
        );
        let total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0b01_00_11_10));
        let total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0b10_11_00_01));
        // Packing interleaves the 128-bit halves; the permutation undoes it.
        let bytes = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(qs.as_mut_ptr().cast(), bytes);
        (d, _mm_cvtsi128_si32(total))
    }
}

/// `unpack_nibbles` in two instructions.
#[inline]
pub(in crate::kernels) unsafe fn unpack_nibbles(packed: &[u8; 16]) -> [u8; 32] {
    // SAFETY: callers guarantee the features; the store is unaligned.
    unsafe {
        let mut out = [0u8; 32];
        _mm256_storeu_si256(out.as_mut_ptr().cast(), nibbles(packed));
        out
    }
}

/// 16 bytes of packed nibbles as 32 weights in a register (low nibbles first).
#[inline(always)]
unsafe fn nibbles(packed: &[u8; 16]) -> __m256i {
    // SAFETY: callers guarantee the features; the load is unaligned.
    unsafe {
        let raw = _mm_loadu_si128(packed.as_ptr().cast());
        let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }
}

/// `scaled_nibble_dots`: one `dpbusd` per nibble half, scaled in integers, one
/// horizontal sum.
#[inline]
pub(in crate::kernels) unsafe fn scaled_nibble_dots(
    packed: &[u8; 32],
    (x_lo, sc_lo): (&[i8; 32], i32),
    (x_hi, sc_hi): (&[i8; 32], i32),
) -> i32 {
    // SAFETY: callers guarantee the features; all loads are unaligned.
    unsafe {
        let raw = _mm256_loadu_si256(packed.as_ptr().cast());
        let mask = _mm256_set1_epi8(0x0F);
        let lo = _mm256_and_si256(raw, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
        let v = _mm256_add_epi32(
            scaled_dot(lo, _mm256_loadu_si256(x_lo.as_ptr().cast()), sc_lo),
            scaled_dot(hi, _mm256_loadu_si256(x_hi.as_ptr().cast()), sc_hi),
        );
        let v = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b01_00_11_10));
        let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b10_11_00_01));
        _mm_cvtsi128_si32(v)
    }
}

/// `Q4KBlock::pair_sums_two`: for rows a and b, the four scaled pair sums and the four
/// min sums of a Q4_K super-block, as `[a0, a1, a2, a3, b0, b1, b2, b3]`. The sixteen
/// eight-lane vectors are reduced together by a tree of horizontal adds.
#[inline]
pub(in crate::kernels) unsafe fn q4_k_pair_sums_two(
    packed: &[u8; 128],
    scales: &[i32; 8],
    mins: &[i16; 8],
    a: (&[i8; 256], &[i16; 16]),
    b: (&[i8; 256], &[i16; 16]),
) -> ([i32; 8], [i32; 8]) {
    // SAFETY: callers guarantee the features; all loads and stores are unaligned and
    // inside the arrays.
    unsafe {
        let mask = _mm256_set1_epi8(0x0F);
        let zero = _mm256_setzero_si256();
        let mut v = [zero; 8];
        for p in 0..4 {
            let raw = _mm256_loadu_si256(packed.as_ptr().add(32 * p).cast());
            let lo = _mm256_and_si256(raw, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
            let (sc_lo, sc_hi) = (scales[2 * p], scales[2 * p + 1]);
            for (k, qs) in [(0, a.0), (4, b.0)] {
                let x_lo = _mm256_loadu_si256(qs.as_ptr().add(64 * p).cast());
                let x_hi = _mm256_loadu_si256(qs.as_ptr().add(64 * p + 32).cast());
                v[k + p] =
                    _mm256_add_epi32(scaled_dot(lo, x_lo, sc_lo), scaled_dot(hi, x_hi, sc_hi));
            }
        }
        let h01 = _mm256_hadd_epi32(v[0], v[1]);
        let h23 = _mm256_hadd_epi32(v[2], v[3]);
        let h45 = _mm256_hadd_epi32(v[4], v[5]);
        let h67 = _mm256_hadd_epi32(v[6], v[7]);
        let h0123 = _mm256_hadd_epi32(h01, h23);
        let h4567 = _mm256_hadd_epi32(h45, h67);
        let sums = _mm256_add_epi32(
            _mm256_permute2x128_si256(h0123, h4567, 0x20),
            _mm256_permute2x128_si256(h0123, h4567, 0x31),
        );
        // Mins: each sub-block's min times its two 16-element activation sums
        // (`vpmaddwd` on the mins doubled), then adjacent sub-blocks added per pair.
        let m16: [i16; 16] = std::array::from_fn(|i| mins[i / 2]);
        let m16 = _mm256_loadu_si256(m16.as_ptr().cast());
        let ma = _mm256_madd_epi16(_mm256_loadu_si256(a.1.as_ptr().cast()), m16);
        let mb = _mm256_madd_epi16(_mm256_loadu_si256(b.1.as_ptr().cast()), m16);
        let min_sums = _mm256_permutevar8x32_epi32(
            _mm256_hadd_epi32(ma, mb),
            _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7),
        );
        (i32_lanes(sums), i32_lanes(min_sums))
    }
}

/// `dot_q4_k_tile`: the eight weight rows of a packed tile in the eight lanes. Per pair
/// of sub-blocks each activation row gets the exact scaled integer sum in every lane
/// (four nibbles by four broadcast activations, then by the row's scale), then one FMA by
/// `d · d_x`; the mins form their own chain, as in the grouped kernel, so each lane
/// repeats that kernel's arithmetic for its row. With VNNI one `vpdpbusd` per chunk
/// accumulates each lane's 32-bit sum and `vpmulld` scales it once per pair; without it
/// `vpmaddubsw` sums in 16 bits and `vpmaddwd` scales and widens. Both give the same
/// exact integers, so the same bits.
#[inline]
pub(in crate::kernels) unsafe fn q4_k_tile_dot(
    packed: &[u8],
    xs: [&[layout::BlockQ8K]; layout::ROW_GROUP],
) -> [[f32; 8]; layout::ROW_GROUP] {
    use layout::{Q4_K_TILE_BLOCK, Q4_K_TILE_MINS, Q4_K_TILE_QUANTS, Q4_K_TILE_SCALES};
    const R: usize = layout::ROW_GROUP;
    // SAFETY: callers guarantee the features and that `packed` holds one tile block for
    // each activation block; all loads and stores are unaligned and inside the slices.
    unsafe {
        let mask = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_min = [_mm256_setzero_ps(); R];
        for (b, tile) in packed.chunks_exact(Q4_K_TILE_BLOCK).enumerate() {
            let t = tile.as_ptr();
            let d = _mm256_loadu_ps(t.cast());
            let dmin = _mm256_loadu_ps(t.add(32).cast());
            let xd: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(xs[r][b].d));
            let scale: [__m256; R] = std::array::from_fn(|r| _mm256_mul_ps(d, xd[r]));
            let qs: [*const u8; R] = std::array::from_fn(|r| xs[r][b].qs.as_ptr().cast());
            for p in 0..4 {
                // Each lane's scale, as two equal 16-bit halves (for `vpmaddwd`).
                let sc_lo = _mm256_loadu_si256(t.add(Q4_K_TILE_SCALES + 64 * p).cast());
                let sc_hi = _mm256_loadu_si256(t.add(Q4_K_TILE_SCALES + 64 * p + 32).cast());
                // Without VNNI the pair sums stay in 16 bits across the eight chunks: each
                // is at most 2·15·128 = 3840 in magnitude, eight of them 30720 < 32767.
                let mut lo_sums = [_mm256_setzero_si256(); R];
                let mut hi_sums = [_mm256_setzero_si256(); R];
                for c in 0..8 {
                    let raw = _mm256_loadu_si256(t.add(Q4_K_TILE_QUANTS + 32 * (8 * p + c)).cast());
                    let lo = _mm256_and_si256(raw, mask);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
                    for r in 0..R {
                        let at = qs[r].add(64 * p + 4 * c);
                        let x_lo = _mm256_set1_epi32(at.cast::<i32>().read_unaligned());
                        let x_hi = _mm256_set1_epi32(at.add(32).cast::<i32>().read_unaligned());
                        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
                        {
                            lo_sums[r] = _mm256_dpbusd_epi32(lo_sums[r], lo, x_lo);
                            hi_sums[r] = _mm256_dpbusd_epi32(hi_sums[r], hi, x_hi);
                        }
                        #[cfg(not(all(
                            target_feature = "avx512vnni",
                            target_feature = "avx512vl"
                        )))]
                        {
                            let add =
                                |sums, w, x| _mm256_add_epi16(sums, _mm256_maddubs_epi16(w, x));
                            lo_sums[r] = add(lo_sums[r], lo, x_lo);
                            hi_sums[r] = add(hi_sums[r], hi, x_hi);
                        }
                    }
                }
                #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
                let scaled = |sums, sc| {
                    _mm256_mullo_epi32(sums, _mm256_and_si256(sc, _mm256_set1_epi32(0xFFFF)))
                };
                #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
                let scaled = |sums, sc| _mm256_madd_epi16(sums, sc);
                for r in 0..R {
                    let sums =
                        _mm256_add_epi32(scaled(lo_sums[r], sc_lo), scaled(hi_sums[r], sc_hi));
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale[r], acc[r]);
                }
            }
            // Mins: lane j holds row j's two mins of the pair; the activations' two
            // 32-element sums (each within ±4096) broadcast beside them.
            for r in 0..R {
                let scale_min = _mm256_mul_ps(dmin, xd[r]);
                let bsums = &xs[r][b].bsums;
                for p in 0..4 {
                    let lo = bsums[4 * p].wrapping_add(bsums[4 * p + 1]) as u16 as u32;
                    let hi = bsums[4 * p + 2].wrapping_add(bsums[4 * p + 3]) as u16 as u32;
                    let mins = _mm256_madd_epi16(
                        _mm256_loadu_si256(t.add(Q4_K_TILE_MINS + 32 * p).cast()),
                        _mm256_set1_epi32((hi << 16 | lo) as i32),
                    );
                    acc_min[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), scale_min, acc_min[r]);
                }
            }
        }
        std::array::from_fn(|r| f32_lanes(_mm256_sub_ps(acc[r], acc_min[r])))
    }
}

/// `dot_q6_k_tile`: the eight weight rows of a packed tile in the eight lanes. Per
/// sub-block of 16, each activation row's four chunks go through `dpbusd` from
/// `-32 · Σx` (the quants' offset), the sum is multiplied by the rows' scales and added
/// to the super-block's exact integer total; then, as in ggml's tiled matmul,
/// `acc += (total · d_w) · d_x` with one FMA.
#[inline]
pub(in crate::kernels) unsafe fn q6_k_tile_dot(
    packed: &[u8],
    xs: [&[layout::BlockQ8K]; layout::ROW_GROUP],
) -> [[f32; 8]; layout::ROW_GROUP] {
    use layout::{Q6_K_TILE_BLOCK, Q6_K_TILE_QUANTS, Q6_K_TILE_SCALES, TILE_COLS};
    const R: usize = layout::ROW_GROUP;
    // SAFETY: callers guarantee the features and that `packed` holds one tile block for
    // each activation block; all loads and stores are unaligned and inside the slices.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, tile) in packed.chunks_exact(Q6_K_TILE_BLOCK).enumerate() {
            let t = tile.as_ptr();
            let mut total = [_mm256_setzero_si256(); R];
            for sub in 0..16 {
                let mut sums: [__m256i; R] =
                    std::array::from_fn(|r| _mm256_set1_epi32(-32 * xs[r][b].bsums[sub] as i32));
                for c in 0..4 {
                    let chunk = 4 * sub + c;
                    let w =
                        _mm256_loadu_si256(t.add(Q6_K_TILE_QUANTS + 4 * TILE_COLS * chunk).cast());
                    for r in 0..R {
                        let x = xs[r][b].qs.as_ptr().add(4 * chunk);
                        let x = _mm256_set1_epi32(x.cast::<i32>().read_unaligned());
                        sums[r] = dpbusd(sums[r], w, x);
                    }
                }
                let scales =
                    _mm256_loadu_si256(t.add(Q6_K_TILE_SCALES + 4 * TILE_COLS * sub).cast());
                for r in 0..R {
                    total[r] = _mm256_add_epi32(total[r], _mm256_mullo_epi32(sums[r], scales));
                }
            }
            let d = _mm256_loadu_ps(t.cast());
            for r in 0..R {
                acc[r] = _mm256_fmadd_ps(
                    _mm256_mul_ps(_mm256_cvtepi32_ps(total[r]), d),
                    _mm256_set1_ps(xs[r][b].d),
                    acc[r],
                );
            }
        }
        acc.map(f32_lanes)
    }
}

/// `Q6KBlock::unpack`: each half of 128 quants from 64 bytes of low nibbles and 32 of
/// high bit pairs, four runs of 32 built in registers.
#[inline]
pub(in crate::kernels) unsafe fn q6_k_unpack(block: &[u8; 192]) -> [u8; 256] {
    // SAFETY: callers guarantee the features; all loads and stores are unaligned and
    // inside the arrays.
    unsafe {
        let (m4, m3) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
        let mut out = [0u8; 256];
        for half in 0..2 {
            let ql0 = _mm256_loadu_si256(block.as_ptr().add(64 * half).cast());
            let ql1 = _mm256_loadu_si256(block.as_ptr().add(64 * half + 32).cast());
            let qh = _mm256_loadu_si256(block.as_ptr().add(128 + 32 * half).cast());
            let runs = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                    _mm256_and_si256(qh, m3),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3),
                ),
            ];
            for (r, run) in runs.into_iter().enumerate() {
                _mm256_storeu_si256(out.as_mut_ptr().add(128 * half + 32 * r).cast(), run);
            }
        }
        out
    }
}

/// `Q6KBlock::lane_sums`: per run, `vpmaddubsw` pairs (at most 2·63·127, no saturation)
/// times the run's two scales by `vpmaddwd` give each lane its scaled four-element sum;
/// the offset of 32 comes off through the activation sums, also by `vpmaddwd`.
#[inline]
pub(in crate::kernels) unsafe fn q6_k_lane_sums(
    quants: &[u8; 256],
    scales: &[i8; 16],
    qs: &[i8; 256],
    bsums: &[i16; 16],
) -> [i32; 8] {
    // SAFETY: callers guarantee the features; all loads and stores are unaligned and
    // inside the arrays.
    unsafe {
        let mut acc = _mm256_setzero_si256();
        for run in 0..8 {
            let w = _mm256_loadu_si256(quants.as_ptr().add(32 * run).cast());
            let x = _mm256_loadu_si256(qs.as_ptr().add(32 * run).cast());
            let sc = _mm256_set_m128i(
                _mm_set1_epi16(scales[2 * run + 1] as i16),
                _mm_set1_epi16(scales[2 * run] as i16),
            );
            let pairs = _mm256_maddubs_epi16(w, x);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, sc));
        }
        let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(scales.as_ptr().cast()));
        let offsets = _mm256_madd_epi16(_mm256_loadu_si256(bsums.as_ptr().cast()), sc16);
        let lanes = _mm256_sub_epi32(acc, _mm256_slli_epi32(offsets, 5));
        i32_lanes(lanes)
    }
}

/// Signed × signed through `dpbusd` (unsigned × signed): |w| times x with w's sign.
#[inline]
pub(in crate::kernels) unsafe fn fma_i8_i8(
    acc: &mut [f32; 8],
    scale: f32,
    w: &[u8; 32],
    x: &[i8; 32],
) {
    // SAFETY: callers guarantee the features; the load is unaligned.
    unsafe { fma_signed(acc, scale, _mm256_loadu_si256(w.as_ptr().cast()), x) }
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
#[cfg(not(simd_avx512))]
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
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for t in 0..count {
            let at = vectors.add(t * vector_stride);
            let v = [_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8))];
            for (r, acc) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_ps(*weights.add(r * weight_stride + t));
                acc[0] = _mm256_fmadd_ps(w, v[0], acc[0]);
                acc[1] = _mm256_fmadd_ps(w, v[1], acc[1]);
            }
        }
        for (sum, acc) in sums.iter_mut().zip(&acc) {
            _mm256_storeu_ps(sum.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(sum.as_mut_ptr().add(8), acc[1]);
        }
    }
    sums
}

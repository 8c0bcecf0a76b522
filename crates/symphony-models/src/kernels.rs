//! Quantized matmul kernels of our own, where candle's numerics or speed fall short.
//!
//! Activations are quantized to 8 bits per block of 32 before the integer dot products, exactly
//! as ggml's x86 `quantize_row_q8_0`/`quantize_row_q8_1` do (multiplier `127 / max|x|`, round
//! half to even, `s = f16(d · Σq)` rounded once). candle's versions differ in each of these
//! (`1/d`, round half away from zero, `s = f16(Σq) · f16(d)`), and on a model as small as
//! SmolLM2 those differences move logits by up to 0.3 from llama.cpp's: more than the margin
//! of a near-tie. Same quantization, same integers, same reference.

use half::f16;
use rayon::prelude::*;

pub const QK: usize = 32;
const Q4_1_BLOCK_BYTES: usize = 20;

/// An activation block quantized to 8 bits: `x ≈ d * qs`, with `s = d * Σ qs`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8_1 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

/// One block of 32 activations to 8 bits: returns `(d, Σq)` with `d` unrounded.
fn quantize_block(block: &[f32], qs: &mut [i8; QK]) -> (f32, i32) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(block) {
        *q = (v * id).round_ties_even() as i8;
        sum += *q as i32;
    }
    (d, sum)
}

/// ggml's `quantize_row_q8_1`: `d` and `s` are stored as f16 and read back as f32.
pub fn quantize_q8_1(x: &[f32], out: &mut Vec<BlockQ8_1>) {
    out.clear();
    for block in x.chunks_exact(QK) {
        let mut qs = [0i8; QK];
        let (d, sum) = quantize_block(block, &mut qs);
        out.push(BlockQ8_1 {
            d: f16::from_f32(d).to_f32(),
            s: f16::from_f32(d * sum as f32).to_f32(),
            qs,
        });
    }
}

/// An activation block for Q8_0 weights: `x ≈ d * qs`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8_0 {
    pub d: f32,
    pub qs: [i8; QK],
}

/// ggml's `quantize_row_q8_0`.
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<BlockQ8_0>) {
    out.clear();
    for block in x.chunks_exact(QK) {
        let mut qs = [0i8; QK];
        let (d, _) = quantize_block(block, &mut qs);
        out.push(BlockQ8_0 {
            d: f16::from_f32(d).to_f32(),
            qs,
        });
    }
}

const Q8_0_BLOCK_BYTES: usize = 34;

/// One Q8_0 row (raw bytes: f16 d, 32 signed bytes per block) · one Q8_0 activation row.
/// Eight lanes of four-element integer sums, accumulated with FMA, reduced like ggml.
pub fn dot_q8_0_q8_0(row: &[u8], x: &[BlockQ8_0]) -> f32 {
    let mut acc = Lanes::default();
    for (block, xb) in row.chunks_exact(Q8_0_BLOCK_BYTES).zip(x) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        acc.fma_i8_i8(d * xb.d, &block[2..34], &xb.qs);
    }
    acc.sum()
}

const Q5_0_BLOCK_BYTES: usize = 22;

/// The 32 signed weights of a Q5_0 block (f16 d, 32 high bits, 16 bytes of low nibbles):
/// `(nibble | high bit << 4) - 16`, as bytes for the signed dot product.
#[inline]
fn unpack_q5_0(block: &[u8]) -> [u8; QK] {
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
    let mut acc = Lanes::default();
    for (block, xb) in row.chunks_exact(Q5_0_BLOCK_BYTES).zip(x) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        acc.fma_q5_0(d * xb.d, block, &xb.qs);
    }
    acc.sum()
}

/// One Q4_1 row (raw bytes: f16 d, f16 m, 16 bytes of nibbles per block) · one Q8_1 row.
///
/// The float arithmetic follows ggml's x86 kernel step for step: eight lanes, each holding
/// the integer dot product of four consecutive elements, accumulate `d_w·d_x·lane` with a
/// fused multiply-add, then reduce in `hsum_float_8`'s order, and the `m·s` terms are summed
/// apart. Same roundings, so activations downstream quantize to the same integers.
pub fn dot_q4_1_q8_1(row: &[u8], x: &[BlockQ8_1]) -> f32 {
    let mut acc = Lanes::default();
    let mut mins = 0f32;
    for (block, xb) in row.chunks_exact(Q4_1_BLOCK_BYTES).zip(x) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
        mins += m * xb.s;
        acc.fma_nibbles_i8(d * xb.d, block[4..20].try_into().expect("16 bytes"), &xb.qs);
    }
    acc.sum() + mins
}

pub const QK_K: usize = 256;
const Q4_K_BLOCK_BYTES: usize = 144;
const Q6_K_BLOCK_BYTES: usize = 210;

/// A super-block of 256 activations quantized to 8 bits for the K-quant dot products, with
/// the sums of each 16 for the weights' offsets: ggml's `block_q8_K`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

/// Where an activation row sits in its batch. ggml picks its kernel by the batch shape, and
/// for K-quants the kernels round differently, so ours must know it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPlace {
    pub row: usize,
    pub rows: usize,
}

impl RowPlace {
    /// A row processed alone (one-token decode).
    pub const SINGLE: Self = Self { row: 0, rows: 1 };

    /// Repacked Q4_K on x86: ggml's four-row kernel takes the first `rows - rows % 4` rows
    /// (quantized together, too); the rest go through its one-row kernel.
    pub fn in_group_of_four(self) -> bool {
        self.row < self.rows - self.rows % 4
    }

    /// K-quants ggml does not repack (Q6_K on x86): batches of 8 rows or more go through its
    /// tiled matmul, smaller ones through `ggml_vec_dot`.
    pub fn tiled(self) -> bool {
        self.rows >= 8
    }
}

/// ggml's `quantize_row_q8_K_ref`: the scale comes from the element of largest magnitude
/// *with its sign* (`-127 / max`, first such element on ties) and `d` stays f32.
pub fn quantize_q8_k(x: &[f32], out: &mut Vec<BlockQ8K>) {
    quantize_q8_k_rows(x, RowPlace::SINGLE, out)
}

/// [`quantize_q8_k`] for a row at `place`: ggml's four-row quantizer
/// (`ggml_quantize_mat_q8_K_4x8`) takes the positive sign whenever the largest magnitude
/// occurs as a positive value, where the one-row version takes the first occurrence's sign.
pub fn quantize_q8_k_rows(x: &[f32], place: RowPlace, out: &mut Vec<BlockQ8K>) {
    out.clear();
    for block in x.chunks_exact(QK_K) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in block {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if place.in_group_of_four() && block.contains(&amax) {
            max = amax;
        }
        let mut q = BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        };
        if amax != 0.0 {
            let iscale = -127.0 / max;
            for (o, &v) in q.qs.iter_mut().zip(block) {
                *o = ((iscale * v).round_ties_even() as i32).min(127) as i8;
            }
            for (sum, group) in q.bsums.iter_mut().zip(q.qs.chunks_exact(16)) {
                *sum = group.iter().map(|&v| v as i16).sum();
            }
            q.d = 1.0 / iscale;
        }
        out.push(q);
    }
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K super-block.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
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
    let (mut acc, mut acc_min) = (0f32, 0f32);
    for (block, xb) in row.chunks_exact(Q4_K_BLOCK_BYTES).zip(x) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let dmin = f16::from_le_bytes([block[2], block[3]]).to_f32();
        let (scale, scale_min) = (d * xb.d, dmin * xb.d);
        let pairs = q4_k_pair_sums(block, xb);
        match place.in_group_of_four() {
            false => {
                let sum: i32 = pairs.iter().map(|&(s, _)| s).sum();
                let mins: i32 = pairs.iter().map(|&(_, m)| m).sum();
                acc = (sum as f32).mul_add(scale, acc);
                acc_min = (mins as f32).mul_add(scale_min, acc_min);
            }
            true => {
                for (sum, mins) in pairs {
                    acc = (sum as f32).mul_add(scale, acc);
                    acc_min = (mins as f32).mul_add(scale_min, acc_min);
                }
            }
        }
    }
    acc - acc_min
}

/// For each pair of sub-blocks of a Q4_K super-block: `(Σ scale · q4·q8, Σ min · Σq8)`.
fn q4_k_pair_sums(block: &[u8], xb: &BlockQ8K) -> [(i32, i32); 4] {
    let scales = &block[4..16];
    let qs = &block[16..144];
    std::array::from_fn(|pair| {
        let packed: &[u8; 32] = qs[32 * pair..32 * pair + 32].try_into().expect("32 bytes");
        let lo: [u8; 32] = std::array::from_fn(|e| packed[e] & 0x0F);
        let hi: [u8; 32] = std::array::from_fn(|e| packed[e] >> 4);
        let x =
            |start: usize| -> &[i8; 32] { xb.qs[start..start + 32].try_into().expect("32 values") };
        let lo: i32 = lane_dots_u8_i8(&lo, x(64 * pair)).iter().sum();
        let hi: i32 = lane_dots_u8_i8(&hi, x(64 * pair + 32)).iter().sum();
        let (mut sum, mut mins) = (0i32, 0i32);
        for (sub, dot) in [(2 * pair, lo), (2 * pair + 1, hi)] {
            let (sc, m) = scale_min_k4(sub, scales);
            sum += sc as i32 * dot;
            mins += m as i32 * (xb.bsums[2 * sub] as i32 + xb.bsums[2 * sub + 1] as i32);
        }
        (sum, mins)
    })
}

/// One Q6_K row · one Q8_K row. Batches of fewer than 8 rows follow ggml's x86
/// `ggml_vec_dot_q6_K_q8_K`: eight integer lanes per super-block (lane `l` sums the scaled
/// products of bytes `4l..4l+4` of every 32-element run, less `32 ·` the scaled activation
/// sums of groups `2l` and `2l+1`), one FMA per lane, then `hsum_float_8`. Larger batches
/// follow ggml's tiled matmul: each super-block's whole integer sum times the weight scale,
/// then fused with the activation scale into one accumulator.
pub fn dot_q6_k_q8_k(row: &[u8], x: &[BlockQ8K], place: RowPlace) -> f32 {
    let mut lanes_acc = [0f32; 8];
    let mut acc = 0f32;
    for (block, xb) in row.chunks_exact(Q6_K_BLOCK_BYTES).zip(x) {
        let d_w = f16::from_le_bytes([block[208], block[209]]).to_f32();
        let lanes = q6_k_lane_sums(block, xb);
        if place.tiled() {
            let sum: i32 = lanes.iter().sum();
            acc = ((sum as f32) * d_w).mul_add(xb.d, acc);
        } else {
            let d = xb.d * d_w;
            for (a, &lane) in lanes_acc.iter_mut().zip(&lanes) {
                *a = d.mul_add(lane as f32, *a);
            }
        }
    }
    if place.tiled() {
        acc
    } else {
        hsum8(&lanes_acc)
    }
}

/// The eight integer lanes of ggml's x86 Q6_K dot product for one super-block.
fn q6_k_lane_sums(block: &[u8], xb: &BlockQ8K) -> [i32; 8] {
    let (ql, qh) = (&block[..128], &block[128..192]);
    let scales: [i32; 16] = std::array::from_fn(|i| block[192 + i] as i8 as i32);
    // The 6-bit quants (0..64, offset 32 applied below through the activation sums), in
    // element order: each half of 128 holds four runs of 32.
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
    let mut lanes = [0i32; 8];
    for run in 0..8 {
        let w: &[u8; 32] = q[32 * run..32 * run + 32].try_into().expect("32 quants");
        let x: &[i8; 32] = xb.qs[32 * run..32 * run + 32]
            .try_into()
            .expect("32 values");
        // Lanes 0-3 cover the run's first 16 elements, lanes 4-7 the second.
        for (l, (lane, dot)) in lanes.iter_mut().zip(lane_dots_u8_i8(w, x)).enumerate() {
            *lane += scales[2 * run + l / 4] * dot;
        }
    }
    for (l, lane) in lanes.iter_mut().enumerate() {
        let offset =
            xb.bsums[2 * l] as i32 * scales[2 * l] + xb.bsums[2 * l + 1] as i32 * scales[2 * l + 1];
        *lane -= offset << 5;
    }
    lanes
}

/// `lane[l] = Σ w[i]·x[i]` over `i` in `4l..4l+4`: the eight exact integer sums `vpdpbusd`
/// forms from 32 unsigned and 32 signed bytes.
#[inline]
fn lane_dots_u8_i8(w: &[u8; 32], x: &[i8; 32]) -> [i32; 8] {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512vl"
    ))]
    {
        // SAFETY: the target features are enabled at compile time; loads are unaligned.
        unsafe { simd::lane_dots_u8_i8(w, x) }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512vl"
    )))]
    lane_dots_u8_i8_scalar(w, x)
}

/// The portable path, also the reference the SIMD path is tested against.
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512vl"
    ),
    allow(dead_code)
)]
fn lane_dots_u8_i8_scalar(w: &[u8; 32], x: &[i8; 32]) -> [i32; 8] {
    std::array::from_fn(|l| (4 * l..4 * l + 4).map(|i| w[i] as i32 * x[i] as i32).sum())
}

/// Eight f32 accumulators, one per group of four elements of a 32-element block.
#[derive(Default)]
struct Lanes([f32; 8]);

// With AVX512-VNNI compiled in, the scalar methods only serve as the tests' reference.
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512vl"
    ),
    allow(dead_code)
)]
impl Lanes {
    /// `lanes += scale · (Σ of each group of four w·x)`, w unsigned nibbles (low nibbles are
    /// elements 0..16, high nibbles 16..32), x signed bytes.
    #[inline]
    fn fma_nibbles_i8(&mut self, scale: f32, packed: &[u8; 16], x: &[i8; QK]) {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        ))]
        {
            // SAFETY: the target features are enabled at compile time; loads are unaligned.
            unsafe { simd::fma_nibbles_i8(&mut self.0, scale, packed, x) }
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        )))]
        self.fma_nibbles_i8_scalar(scale, packed, x);
    }

    /// `lanes += scale · (Σ of each group of four w·x)` for signed bytes.
    #[inline]
    fn fma_i8_i8(&mut self, scale: f32, w: &[u8], x: &[i8; QK]) {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        ))]
        {
            // SAFETY: the target features are enabled at compile time; `w` holds 32 bytes.
            unsafe { simd::fma_i8_i8(&mut self.0, scale, w[..QK].try_into().expect("32 bytes"), x) }
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        )))]
        self.fma_i8_i8_scalar(scale, w, x);
    }

    /// `lanes += scale · (Σ of each group of four w·x)` for one Q5_0 block's weights.
    #[inline]
    fn fma_q5_0(&mut self, scale: f32, block: &[u8], x: &[i8; QK]) {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        ))]
        {
            let qs: &[u8; 16] = block[6..22].try_into().expect("16 bytes");
            let qh = u32::from_le_bytes(block[2..6].try_into().expect("4 bytes"));
            // SAFETY: the target features are enabled at compile time; loads are unaligned.
            unsafe { simd::fma_q5_0(&mut self.0, scale, qs, qh, x) }
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            target_feature = "avx512vnni",
            target_feature = "avx512vl"
        )))]
        self.fma_q5_0_scalar(scale, block, x);
    }

    fn fma_q5_0_scalar(&mut self, scale: f32, block: &[u8], x: &[i8; QK]) {
        self.fma_i8_i8_scalar(scale, &unpack_q5_0(block), x);
    }

    /// The portable path, also the reference the SIMD path is tested against.
    fn fma_nibbles_i8_scalar(&mut self, scale: f32, packed: &[u8; 16], x: &[i8; QK]) {
        let mut w = [0u8; QK];
        for j in 0..QK / 2 {
            w[j] = packed[j] & 0x0F;
            w[j + QK / 2] = packed[j] >> 4;
        }
        self.fma_groups(scale, |e| w[e] as i32 * x[e] as i32);
    }

    fn fma_i8_i8_scalar(&mut self, scale: f32, w: &[u8], x: &[i8; QK]) {
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

    fn sum(&self) -> f32 {
        hsum8(&self.0)
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512vnni",
    target_feature = "avx512vl"
))]
mod simd {
    use std::arch::x86_64::*;

    /// `Lanes::fma_q5_0`: the 5-bit weights unpacked in registers (low nibbles, then high
    /// nibbles; bit `e` of `qh` spread to byte `e` as ggml's `bytes_from_bits_32` does),
    /// offset by -16, then the signed product as in `fma_i8_i8`.
    #[inline]
    pub(super) unsafe fn fma_q5_0(
        acc: &mut [f32; 8],
        scale: f32,
        qs: &[u8; 16],
        qh: u32,
        x: &[i8; 32],
    ) {
        // SAFETY: callers guarantee the features; all loads and stores are unaligned.
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
            let w = _mm256_sub_epi8(
                _mm256_or_si256(nibbles, _mm256_and_si256(set, _mm256_set1_epi8(0x10))),
                _mm256_set1_epi8(16),
            );
            let xv = _mm256_loadu_si256(x.as_ptr().cast());
            let sums = _mm256_dpbusd_epi32(
                _mm256_setzero_si256(),
                _mm256_sign_epi8(w, w),
                _mm256_sign_epi8(xv, w),
            );
            let a = _mm256_loadu_ps(acc.as_ptr());
            let a = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), a);
            _mm256_storeu_ps(acc.as_mut_ptr(), a);
        }
    }

    /// `vpdpbusd` of 32 unsigned by 32 signed bytes into eight exact lane sums.
    #[inline]
    pub(super) unsafe fn lane_dots_u8_i8(w: &[u8; 32], x: &[i8; 32]) -> [i32; 8] {
        // SAFETY: callers guarantee the features; all loads and stores are unaligned.
        unsafe {
            let wv = _mm256_loadu_si256(w.as_ptr().cast());
            let xv = _mm256_loadu_si256(x.as_ptr().cast());
            let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, xv);
            let mut out = [0i32; 8];
            _mm256_storeu_si256(out.as_mut_ptr().cast(), sums);
            out
        }
    }

    /// The VNNI form of `Lanes::fma_nibbles_i8`: `vpdpbusd` forms the same eight exact integer
    /// sums, and the FMA rounds as the scalar path does.
    #[inline]
    pub(super) unsafe fn fma_nibbles_i8(
        acc: &mut [f32; 8],
        scale: f32,
        packed: &[u8; 16],
        x: &[i8; 32],
    ) {
        // SAFETY: callers guarantee the features; all loads and stores are unaligned.
        unsafe {
            let raw = _mm_loadu_si128(packed.as_ptr().cast());
            let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
            let w = _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
            let xv = _mm256_loadu_si256(x.as_ptr().cast());
            let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, xv);
            let a = _mm256_loadu_ps(acc.as_ptr());
            let a = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), a);
            _mm256_storeu_ps(acc.as_mut_ptr(), a);
        }
    }

    /// Signed × signed through `vpdpbusd` (unsigned × signed): |w| times x with w's sign.
    #[inline]
    pub(super) unsafe fn fma_i8_i8(acc: &mut [f32; 8], scale: f32, w: &[u8; 32], x: &[i8; 32]) {
        // SAFETY: callers guarantee the features; all loads and stores are unaligned.
        unsafe {
            let wv = _mm256_loadu_si256(w.as_ptr().cast());
            let xv = _mm256_loadu_si256(x.as_ptr().cast());
            let sums = _mm256_dpbusd_epi32(
                _mm256_setzero_si256(),
                _mm256_sign_epi8(wv, wv),
                _mm256_sign_epi8(xv, wv),
            );
            let a = _mm256_loadu_ps(acc.as_ptr());
            let a = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), a);
            _mm256_storeu_ps(acc.as_mut_ptr(), a);
        }
    }
}

/// ggml's `hsum_float_8`: halves, then pairs, then the last two.
fn hsum8(v: &[f32; 8]) -> f32 {
    let r = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    let r = [r[0] + r[2], r[1] + r[3]];
    r[0] + r[1]
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q4_1 weights `(n, k)` given as raw bytes.
pub fn matmul_q4_1(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK, Q4_1_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        |x, _, out| quantize_q8_1(x, out),
        |w, x, _| dot_q4_1_q8_1(w, x),
    )
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q8_0 weights `(n, k)` given as raw bytes.
pub fn matmul_q8_0(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK, Q8_0_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        |x, _, out| quantize_q8_0(x, out),
        |w, x, _| dot_q8_0_q8_0(w, x),
    )
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q5_0 weights `(n, k)` given as raw bytes.
pub fn matmul_q5_0(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK, Q5_0_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        |x, _, out| quantize_q8_0(x, out),
        |w, x, _| dot_q5_0_q8_0(w, x),
    )
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q4_K weights `(n, k)` given as raw bytes.
pub fn matmul_q4_k(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK_K, Q4_K_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        quantize_q8_k_rows,
        dot_q4_k_q8_k,
    )
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for Q6_K weights `(n, k)` given as raw bytes.
pub fn matmul_q6_k(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    matmul(
        weights,
        (QK_K, Q6_K_BLOCK_BYTES),
        mkn,
        lhs,
        dst,
        |x, _, out| quantize_q8_k(x, out),
        dot_q6_k_q8_k,
    )
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for F32 weights `(n, k)` given as raw bytes.
pub fn matmul_f32(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    float_matmul(weights, 4, mkn, lhs, dst, |w| {
        f32::from_le_bytes([w[0], w[1], w[2], w[3]])
    })
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for F16 weights `(n, k)` given as raw bytes.
pub fn matmul_f16(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    float_matmul(weights, 2, mkn, lhs, dst, |w| {
        f16::from_le_bytes([w[0], w[1]]).to_f32()
    })
}

/// `dst (m, n) = lhs (m, k) · weightsᵀ` for BF16 weights `(n, k)` given as raw bytes.
pub fn matmul_bf16(weights: &[u8], mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) {
    float_matmul(weights, 2, mkn, lhs, dst, |w| {
        half::bf16::from_le_bytes([w[0], w[1]]).to_f32()
    })
}

/// Float weights: each weight row is widened to f32 once and dotted with every activation
/// row in f32 (8 partial sums), as Hugging Face checkpoints compute in f32.
fn float_matmul(
    weights: &[u8],
    elem_bytes: usize,
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    dst: &mut [f32],
    widen: fn(&[u8]) -> f32,
) {
    let row_bytes = k * elem_bytes;
    debug_assert_eq!(weights.len(), n * row_bytes);
    const COLS_PER_TASK: usize = 16;
    let mut columns = vec![0f32; n * m]; // (n, m)
    columns
        .par_chunks_mut(COLS_PER_TASK * m)
        .enumerate()
        .for_each(|(task, out)| {
            let mut row = vec![0f32; k];
            for (c, out_col) in out.chunks_exact_mut(m).enumerate() {
                let col = task * COLS_PER_TASK + c;
                let w = &weights[col * row_bytes..(col + 1) * row_bytes];
                for (v, bytes) in row.iter_mut().zip(w.chunks_exact(elem_bytes)) {
                    *v = widen(bytes);
                }
                for (o, x) in out_col.iter_mut().zip(lhs.chunks_exact(k)) {
                    *o = dot_f32(&row, x);
                }
            }
        });
    for (col, values) in columns.chunks_exact(m).enumerate() {
        for (r, v) in values.iter().enumerate() {
            dst[r * n + col] = *v;
        }
    }
}

fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (x, y) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// A quantized matmul: `dst (m, n) = lhs (m, k) · weightsᵀ` for weights `(n, k)` given as
/// raw bytes of the type's blocks.
pub type MatmulKernel = fn(&[u8], (usize, usize, usize), &[f32], &mut [f32]);

/// Our kernel for `ggml_type`; `None` for the types we leave to candle.
pub fn kernel_for(ggml_type: crate::quant::GgmlType) -> Option<MatmulKernel> {
    use crate::quant::GgmlType as T;
    Some(match ggml_type {
        T::Q4_1 => matmul_q4_1,
        T::Q5_0 => matmul_q5_0,
        T::Q8_0 => matmul_q8_0,
        T::Q4_K => matmul_q4_k,
        T::Q6_K => matmul_q6_k,
        T::F32 => matmul_f32,
        T::F16 => matmul_f16,
        T::BF16 => matmul_bf16,
        _ => return None,
    })
}

fn matmul<A: Send + Sync>(
    weights: &[u8],
    (block_elems, block_bytes): (usize, usize),
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    dst: &mut [f32],
    quantize: fn(&[f32], RowPlace, &mut Vec<A>),
    dot: fn(&[u8], &[A], RowPlace) -> f32,
) {
    let row_bytes = k / block_elems * block_bytes;
    debug_assert_eq!(weights.len(), n * row_bytes);
    let mut quantized = Vec::with_capacity(m);
    for (r, row) in lhs.chunks_exact(k).enumerate() {
        let mut q = Vec::with_capacity(k / block_elems);
        let place = RowPlace { row: r, rows: m };
        quantize(row, place, &mut q);
        quantized.push((q, place));
    }
    // Parallel over output columns: each weight row is read once per call and used for all
    // activation rows while it is in cache.
    const COLS_PER_TASK: usize = 16;
    let mut columns = vec![0f32; n * m]; // (n, m): contiguous per task
    columns
        .par_chunks_mut(COLS_PER_TASK * m)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * COLS_PER_TASK;
            for (c, out_col) in out.chunks_exact_mut(m).enumerate() {
                let w = &weights[(first + c) * row_bytes..(first + c + 1) * row_bytes];
                for (o, (x, place)) in out_col.iter_mut().zip(&quantized) {
                    *o = dot(w, x, *place);
                }
            }
        });
    for (col, values) in columns.chunks_exact(m).enumerate() {
        for (row, v) in values.iter().enumerate() {
            dst[row * n + col] = *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dequantize a Q4_1 row the textbook way: x = d * q + m.
    fn dequant_q4_1(row: &[u8]) -> Vec<f32> {
        let mut out = Vec::new();
        for block in row.chunks_exact(Q4_1_BLOCK_BYTES) {
            let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
            let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
            let mut vals = [0f32; QK];
            for j in 0..QK / 2 {
                vals[j] = d * (block[4 + j] & 0x0F) as f32 + m;
                vals[j + QK / 2] = d * (block[4 + j] >> 4) as f32 + m;
            }
            out.extend_from_slice(&vals);
        }
        out
    }

    fn q4_1_row(k: usize, seed: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut s = seed;
        for b in 0..k / QK {
            bytes.extend_from_slice(&f16::from_f32(0.01 + b as f32 * 0.003).to_le_bytes());
            bytes.extend_from_slice(&f16::from_f32(-0.08 + b as f32 * 0.001).to_le_bytes());
            for _ in 0..16 {
                s = s.wrapping_mul(1103515245).wrapping_add(12345);
                bytes.push((s >> 16) as u8);
            }
        }
        bytes
    }

    /// Dequantize a Q5_0 row from the format's definition: x = d * ((nibble | hbit << 4) - 16).
    fn dequant_q5_0(row: &[u8]) -> Vec<f32> {
        let mut out = Vec::new();
        for block in row.chunks_exact(Q5_0_BLOCK_BYTES) {
            let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
            let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
            let mut vals = [0f32; QK];
            for j in 0..QK / 2 {
                let lo = (block[6 + j] & 0x0F) as i32 | (((qh >> j) & 1) as i32) << 4;
                let hi = (block[6 + j] >> 4) as i32 | (((qh >> (j + 16)) & 1) as i32) << 4;
                vals[j] = d * (lo - 16) as f32;
                vals[j + QK / 2] = d * (hi - 16) as f32;
            }
            out.extend_from_slice(&vals);
        }
        out
    }

    /// Random K-quant rows with small, sane super-block scales (f16 `d`, and `dmin` for
    /// Q4_K), dequantized by candle's implementation of the format as the reference.
    fn k_quant_case(
        dtype: candle_core::quantized::GgmlDType,
        n: usize,
        k: usize,
    ) -> (Vec<u8>, Vec<f32>) {
        let (block_bytes, d_offsets): (usize, &[usize]) = match dtype {
            candle_core::quantized::GgmlDType::Q4K => (Q4_K_BLOCK_BYTES, &[0, 2]),
            _ => (Q6_K_BLOCK_BYTES, &[208]),
        };
        let mut s = 99u32;
        let mut bytes = Vec::new();
        for _ in 0..n * k / QK_K {
            let mut block: Vec<u8> = (0..block_bytes)
                .map(|_| {
                    s = s.wrapping_mul(1103515245).wrapping_add(12345);
                    (s >> 16) as u8
                })
                .collect();
            for &o in d_offsets {
                block[o..o + 2].copy_from_slice(&f16::from_f32(0.003).to_le_bytes());
            }
            bytes.extend_from_slice(&block);
        }
        let storage = dtype.from_data(std::borrow::Cow::Borrowed(&bytes));
        let w = candle_core::quantized::QTensor::new(
            candle_core::quantized::QStorage::Cpu(storage),
            (n, k),
        )
        .unwrap()
        .dequantize(&candle_core::Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
        (bytes, w)
    }

    #[test]
    fn k_quant_matmuls_match_dequantized_products_within_q8_error() {
        use candle_core::quantized::GgmlDType;
        // 3 rows: ggml's one-row kernels; 9 rows: its four-row (Q4_K) and tiled (Q6_K) ones
        // for the first rows, and the one-row Q4_K kernel for the last.
        for m in [3, 9] {
            let k = 512;
            let n = 8;
            let lhs: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            for (dtype, kernel) in [
                (GgmlDType::Q4K, matmul_q4_k as MatmulKernel),
                (GgmlDType::Q6K, matmul_q6_k),
            ] {
                let (bytes, w) = k_quant_case(dtype, n, k);
                let mut dst = vec![0f32; m * n];
                kernel(&bytes, (m, k, n), &lhs, &mut dst);
                for row in 0..m {
                    for col in 0..n {
                        let x = &lhs[row * k..(row + 1) * k];
                        let wr = &w[col * k..(col + 1) * k];
                        let exact: f32 = wr.iter().zip(x).map(|(a, b)| a * b).sum();
                        let scale: f32 = wr.iter().zip(x).map(|(a, b)| (a * b).abs()).sum();
                        let got = dst[row * n + col];
                        assert!(
                            (got - exact).abs() <= 0.01 * scale + 1e-3,
                            "{dtype:?} ({row},{col}): {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn row_places_follow_ggml_batch_rules() {
        let place = |row, rows| RowPlace { row, rows };
        assert!(place(7, 10).in_group_of_four() && !place(8, 10).in_group_of_four());
        assert!(!place(0, 3).in_group_of_four() && !RowPlace::SINGLE.tiled());
        assert!(place(0, 8).tiled() && !place(6, 7).tiled());
    }

    #[test]
    fn grouped_q8_k_rows_take_the_positive_sign_on_a_magnitude_tie() {
        let mut x = vec![0.5f32; QK_K];
        x[3] = -2.0;
        x[9] = 2.0;
        let (mut single, mut grouped) = (Vec::new(), Vec::new());
        quantize_q8_k_rows(&x, RowPlace::SINGLE, &mut single);
        quantize_q8_k_rows(&x, RowPlace { row: 0, rows: 4 }, &mut grouped);
        // One row: the first extreme (-2) sets the sign; four rows: the positive one does.
        assert!(single[0].d > 0.0 && grouped[0].d < 0.0);
        assert_eq!((single[0].qs[3], grouped[0].qs[9]), (-127, -127));
    }

    #[test]
    fn q8_k_quantization_keeps_the_signed_maximum_exact() {
        let mut x: Vec<f32> = (0..QK_K).map(|i| (i as f32 * 0.37).sin()).collect();
        x[77] = -3.0;
        let mut q = Vec::new();
        quantize_q8_k(&x, &mut q);
        // ggml scales by -127 / max with max's sign: the extreme maps to -127 whatever its
        // sign, and d carries the sign back.
        assert_eq!(q[0].qs[77], -127);
        assert!((q[0].d * -127.0 + 3.0).abs() < 1e-6, "d = {}", q[0].d);
        x[77] = 3.0;
        let mut p = Vec::new();
        quantize_q8_k(&x, &mut p);
        assert_eq!(p[0].qs[77], -127);
        assert!(p[0].d < 0.0);
        let sums: i16 = q[0].qs[64..80].iter().map(|&v| v as i16).sum();
        assert_eq!(q[0].bsums[4], sums);
    }

    #[test]
    fn q5_0_matmul_matches_dequantized_product_within_q8_error() {
        let (m, k, n) = (2, 128, 19);
        let mut s = 7u32;
        let mut weights = Vec::new();
        for _ in 0..n * k / QK {
            weights.extend_from_slice(&f16::from_f32(0.02).to_le_bytes());
            for _ in 0..20 {
                s = s.wrapping_mul(1103515245).wrapping_add(12345);
                weights.push((s >> 16) as u8);
            }
        }
        let lhs: Vec<f32> = (0..m * k)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
            .collect();
        let mut dst = vec![0f32; m * n];
        matmul_q5_0(&weights, (m, k, n), &lhs, &mut dst);
        let row_bytes = k / QK * Q5_0_BLOCK_BYTES;
        for col in 0..n {
            let w = dequant_q5_0(&weights[col * row_bytes..(col + 1) * row_bytes]);
            for row in 0..m {
                let x = &lhs[row * k..(row + 1) * k];
                let exact: f32 = w.iter().zip(x).map(|(a, b)| a * b).sum();
                let got = dst[row * n + col];
                assert!(
                    (got - exact).abs() < 0.05,
                    "({row},{col}): {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn matmul_matches_dequantized_product_within_q8_error() {
        let (m, k, n) = (3, 128, 37);
        let weights: Vec<u8> = (0..n).flat_map(|r| q4_1_row(k, r as u32 + 1)).collect();
        let lhs: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let mut dst = vec![0f32; m * n];
        matmul_q4_1(&weights, (m, k, n), &lhs, &mut dst);
        let row_bytes = k / QK * Q4_1_BLOCK_BYTES;
        for col in 0..n {
            let w = dequant_q4_1(&weights[col * row_bytes..(col + 1) * row_bytes]);
            for row in 0..m {
                let exact: f32 = w
                    .iter()
                    .zip(&lhs[row * k..(row + 1) * k])
                    .map(|(a, b)| a * b)
                    .sum();
                let got = dst[row * n + col];
                // 8-bit activations: error well under 1% of the magnitude of the terms.
                let scale: f32 = w
                    .iter()
                    .zip(&lhs[row * k..(row + 1) * k])
                    .map(|(a, b)| (a * b).abs())
                    .sum();
                assert!(
                    (got - exact).abs() <= 0.01 * scale + 1e-4,
                    "({row},{col}): {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn q8_0_matmul_matches_f32_product() {
        let (m, k, n) = (2, 64, 5);
        let mut weights = Vec::new();
        let mut exact_w = Vec::new();
        for r in 0..n {
            for b in 0..k / QK {
                let d = 0.02 * (r + b + 1) as f32;
                let d16 = f16::from_f32(d);
                weights.extend_from_slice(&d16.to_le_bytes());
                for j in 0..QK {
                    let q = ((r * 31 + b * 7 + j * 13) % 255) as i32 - 127;
                    weights.push(q as i8 as u8);
                    exact_w.push(d16.to_f32() * q as f32);
                }
            }
        }
        let lhs: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut dst = vec![0f32; m * n];
        matmul_q8_0(&weights, (m, k, n), &lhs, &mut dst);
        for row in 0..m {
            for col in 0..n {
                let exact: f32 = (0..k)
                    .map(|i| exact_w[col * k + i] * lhs[row * k + i])
                    .sum();
                let scale: f32 = (0..k)
                    .map(|i| (exact_w[col * k + i] * lhs[row * k + i]).abs())
                    .sum();
                let got = dst[row * n + col];
                assert!(
                    (got - exact).abs() <= 0.01 * scale,
                    "({row},{col}): {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn simd_and_scalar_lanes_agree_bit_for_bit() {
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as u8
        };
        for _ in 0..200 {
            let packed: [u8; 16] = std::array::from_fn(|_| next());
            let w8: [u8; 32] = std::array::from_fn(|_| next());
            let x: [i8; 32] = std::array::from_fn(|_| (next() as i8).max(-127));
            let scale = next() as f32 / 97.0;
            let (mut a, mut b) = (Lanes([0.5; 8]), Lanes([0.5; 8]));
            a.fma_nibbles_i8(scale, &packed, &x);
            b.fma_nibbles_i8_scalar(scale, &packed, &x);
            assert_eq!(a.0, b.0);
            a.fma_i8_i8(scale, &w8, &x);
            b.fma_i8_i8_scalar(scale, &w8, &x);
            assert_eq!(a.0, b.0);
            assert_eq!(lane_dots_u8_i8(&w8, &x), lane_dots_u8_i8_scalar(&w8, &x));
            let q5_0: [u8; 22] = std::array::from_fn(|_| next());
            a.fma_q5_0(scale, &q5_0, &x);
            b.fma_q5_0_scalar(scale, &q5_0, &x);
            assert_eq!(a.0, b.0);
        }
    }

    #[test]
    fn q8_1_sum_is_rounded_once() {
        let x: Vec<f32> = (0..32).map(|i| 1.0 + i as f32 * 0.37).collect();
        let mut q = Vec::new();
        quantize_q8_1(&x, &mut q);
        let sum: i32 = q[0].qs.iter().map(|&v| v as i32).sum();
        let d = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        assert_eq!(q[0].s, f16::from_f32(d * sum as f32).to_f32());
        assert_eq!(q[0].qs[31], 127);
        // Halves round to even, as _mm256_round_ps does: 2.5 → 2, 3.5 → 4 (scale 127 / 127 = 1).
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        x[3] = -2.5;
        quantize_q8_1(&x, &mut q);
        assert_eq!(&q[0].qs[..4], &[127, 2, 4, -2]);
    }
}

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
#[inline]
fn quantize_block(block: &[f32], qs: &mut [i8; QK]) -> (f32, i32) {
    #[cfg(simd_avx2)]
    {
        // SAFETY: the target features are enabled at compile time.
        unsafe { simd::quantize_block(block.try_into().expect("32 values"), qs) }
    }
    #[cfg(not(simd_avx2))]
    quantize_block_scalar(block, qs)
}

/// [`quantize_block`] element by element: the portable path and the SIMD path's reference.
#[cfg_attr(simd_avx2, allow(dead_code))]
fn quantize_block_scalar(block: &[f32], qs: &mut [i8; QK]) -> (f32, i32) {
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
    dot_q8_0_rows(row, [x])[0]
}

/// [`dot_q8_0_q8_0`] for `R` activation rows at once: each row keeps its own accumulators
/// (so each result is the one-row result, bit for bit), and the weight block is read once.
fn dot_q8_0_rows<const R: usize>(row: &[u8], xs: [&[BlockQ8_0]; R]) -> [f32; R] {
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
fn dot_q8_0_rows_lanes<const R: usize>(row: &[u8], xs: [&[BlockQ8_0]; R]) -> [f32; R] {
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

/// `R` activation rows · one row of Q8_0-activated blocks whose weights are signed bytes
/// (Q8_0, Q5_0: `d` in each block's first two bytes), each row's lanes in registers
/// throughout (`simd::lanes_rows`). `weights` turns one block into its 32 weights.
#[cfg(simd_avx2)]
fn signed_rows<const R: usize>(
    row: &[u8],
    block_bytes: usize,
    xs: [&[BlockQ8_0]; R],
    weights: impl Fn(&[u8]) -> std::arch::x86_64::__m256i,
) -> [f32; R] {
    let blocks = row.len() / block_bytes;
    assert!(xs.iter().all(|x| x.len() >= blocks));
    // SAFETY: the target features are enabled at compile time; every block index is below
    // `blocks`, inside `row` and (checked above) each activation row.
    let lanes = unsafe {
        simd::lanes_rows::<R>(
            blocks,
            |b| {
                let block = &row[b * block_bytes..(b + 1) * block_bytes];
                let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
                (weights(block), d)
            },
            |r, b| (&xs[r][b].qs, xs[r][b].d),
        )
    };
    lanes.map(|l| hsum8(&l))
}

/// Eight Q8_0 rows · four activation rows, read from the rows as stored. Only with VNNI:
/// its weights are made unsigned by an offset, whose products AVX2's `vpmaddubsw` would
/// saturate.
#[cfg(all(simd_avx2, target_feature = "avx512vnni", target_feature = "avx512vl"))]
fn dot_q8_0_tile(
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
const Q8_0_TILE: Option<Tile<BlockQ8_0>> = Some(Tile {
    min_rows: ROW_GROUP,
    pack: None,
    dot: dot_q8_0_tile,
});
#[cfg(not(all(simd_avx2, target_feature = "avx512vnni", target_feature = "avx512vl")))]
const Q8_0_TILE: Option<Tile<BlockQ8_0>> = None;

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
    dot_q5_0_rows(row, [x])[0]
}

/// [`dot_q5_0_q8_0`] for `R` activation rows, the weight block unpacked once, each row's
/// lanes in registers. (One row through [`Lanes`] had measured as fast while the matmul
/// called its row kernel through a pointer per weight row; inlined into the task's row
/// loop, the register form is faster: Qwen-0.5B decode 40 -> 46 t/s at one thread.)
fn dot_q5_0_rows<const R: usize>(row: &[u8], xs: [&[BlockQ8_0]; R]) -> [f32; R] {
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
fn dot_q5_0_rows_lanes<const R: usize>(row: &[u8], xs: [&[BlockQ8_0]; R]) -> [f32; R] {
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

/// Packs [`TILE_COLS`] rows block by block into `out`: one packed block of `packed_bytes`
/// per block of `block_bytes`, `put(o, j, block)` writing row `j`'s block into packed block
/// `o`.
#[cfg_attr(not(simd_avx2), allow(dead_code))]
fn pack_tile(
    rows: &[u8],
    row_bytes: usize,
    (block_bytes, packed_bytes): (usize, usize),
    out: &mut Vec<u8>,
    mut put: impl FnMut(&mut [u8], usize, &[u8]),
) {
    let blocks = row_bytes / block_bytes;
    out.clear();
    out.resize(blocks * packed_bytes, 0);
    for (b, o) in out.chunks_exact_mut(packed_bytes).enumerate() {
        for j in 0..TILE_COLS {
            let at = j * row_bytes + b * block_bytes;
            put(o, j, &rows[at..at + block_bytes]);
        }
    }
}

/// Bytes of one block of a packed Q5_0 tile: the eight rows' `d` as f32, then each row's
/// 32 weights unpacked to unsigned bytes (`w + 16`, 0..=31).
#[cfg(simd_avx2)]
const Q5_0_TILE_BLOCK: usize = TILE_COLS * (4 + QK);

/// Eight Q5_0 rows unpacked block by block, once per matmul task instead of once per group
/// of activation rows: prefill meets every weight row with hundreds of activation rows, and
/// the 5-bit unpacking cost as much as the dot products it fed.
#[cfg(simd_avx2)]
fn pack_q5_0_tile(rows: &[u8], row_bytes: usize, out: &mut Vec<u8>) {
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
fn dot_q5_0_tile(packed: &[u8], xs: [&[BlockQ8_0]; ROW_GROUP]) -> [[f32; TILE_COLS]; ROW_GROUP] {
    assert!(xs.iter().all(|x| x.len() * Q5_0_TILE_BLOCK == packed.len()));
    // SAFETY: the target features are enabled at compile time; the lengths are checked
    // above and every load is unaligned.
    let lanes = unsafe { simd::q5_0_tile_dot(packed, xs) };
    lanes.map(|row| row.map(|l| hsum8(&l)))
}

/// The tiled Q5_0 kernel where the machine has it (AVX2).
#[cfg(simd_avx2)]
const Q5_0_TILE: Option<Tile<BlockQ8_0>> = Some(Tile {
    min_rows: ROW_GROUP,
    pack: Some(pack_q5_0_tile),
    dot: |packed, _, xs| dot_q5_0_tile(packed, xs),
});
#[cfg(not(simd_avx2))]
const Q5_0_TILE: Option<Tile<BlockQ8_0>> = None;

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
fn dot_q4_1_rows<const R: usize>(row: &[u8], xs: [&[BlockQ8_1]; R]) -> [f32; R] {
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
fn dot_q4_1_rows_lanes<const R: usize>(row: &[u8], xs: [&[BlockQ8_1]; R]) -> [f32; R] {
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
fn dot_q4_1_tile(
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
const Q4_1_TILE: Option<Tile<BlockQ8_1>> = Some(Tile {
    min_rows: ROW_GROUP,
    pack: None,
    dot: dot_q4_1_tile,
});
#[cfg(not(simd_avx2))]
const Q4_1_TILE: Option<Tile<BlockQ8_1>> = None;

/// 16 bytes of packed nibbles as 32 weights: low nibbles are elements 0..16, high 16..32.
#[inline]
fn unpack_nibbles(packed: &[u8; 16]) -> [u8; QK] {
    #[cfg(simd_avx2)]
    {
        // SAFETY: the target features are enabled at compile time; loads are unaligned.
        unsafe { simd::unpack_nibbles(packed) }
    }
    #[cfg(not(simd_avx2))]
    unpack_nibbles_scalar(packed)
}

#[cfg_attr(simd_avx2, allow(dead_code))]
fn unpack_nibbles_scalar(packed: &[u8; 16]) -> [u8; QK] {
    std::array::from_fn(|e| {
        if e < QK / 2 {
            packed[e] & 0x0F
        } else {
            packed[e - QK / 2] >> 4
        }
    })
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
    dot_q4_k_rows(row, [x], [place])[0]
}

/// [`dot_q4_k_q8_k`] for `R` activation rows, each super-block unpacked once.
fn dot_q4_k_rows<const R: usize>(
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
type PairSums = [(i32, i32); 4];

/// A Q4_K super-block: its packed 4-bit weights (four runs of 32 bytes, low nibbles one
/// sub-block, high nibbles the next) with each sub-block's 6-bit scale and min decoded.
struct Q4KBlock<'a> {
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

/// Bytes of one packed Q4_K super-block of a tile: per weight row `d` and `dmin` as f32,
/// each sub-block's scale and each pair's two mins as i16 lanes for `vpmaddwd`, then the
/// quants, four bytes of each row per 32 (see [`pack_q4_k_tile`]).
const Q4_K_TILE_BLOCK: usize = 4 * TILE_COLS * 2 + 8 * 32 + 4 * 32 + 4 * 8 * 32;

/// Offsets inside a packed super-block.
const Q4_K_TILE_SCALES: usize = 64;
const Q4_K_TILE_MINS: usize = Q4_K_TILE_SCALES + 8 * 32;
const Q4_K_TILE_QUANTS: usize = Q4_K_TILE_MINS + 4 * 32;

/// The tiled Q4_K kernel where the machine has it (AVX2).
#[cfg(simd_avx2)]
const Q4_K_TILE: Option<Tile<BlockQ8K>> = Some(Tile {
    min_rows: ROW_GROUP,
    pack: Some(pack_q4_k_tile),
    dot: |packed, _, xs| dot_q4_k_tile(packed, xs),
});
#[cfg(not(simd_avx2))]
const Q4_K_TILE: Option<Tile<BlockQ8K>> = None;

/// Eight Q4_K rows rearranged by super-block. For pair `p` of sub-blocks, 32-byte chunk `c`
/// holds bytes `4c..4c+4` of the pair's 32 packed bytes from each row in turn: their low
/// nibbles are elements `64p+4c..` (sub-block `2p`), their high nibbles elements
/// `64p+32+4c..` (sub-block `2p+1`), so one register meets four activations of each.
#[cfg_attr(not(simd_avx2), allow(dead_code))]
fn pack_q4_k_tile(rows: &[u8], row_bytes: usize, out: &mut Vec<u8>) {
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
fn dot_q4_k_tile(packed: &[u8], xs: [&[BlockQ8K]; ROW_GROUP]) -> [[f32; TILE_COLS]; ROW_GROUP] {
    assert!(xs.iter().all(|x| x.len() * Q4_K_TILE_BLOCK == packed.len()));
    // SAFETY: the target features are enabled at compile time; the lengths are checked
    // above and every load is unaligned.
    unsafe { simd::q4_k_tile_dot(packed, xs) }
}

/// `sc_lo · (low nibbles · x_lo) + sc_hi · (high nibbles · x_hi)` over 32 packed bytes: the
/// exact integer sum of two scaled sub-block dot products.
#[inline]
fn scaled_nibble_dots(packed: &[u8; 32], lo: (&[i8; 32], i32), hi: (&[i8; 32], i32)) -> i32 {
    #[cfg(simd_avx2)]
    {
        // SAFETY: the target features are enabled at compile time; loads are unaligned.
        unsafe { simd::scaled_nibble_dots(packed, lo, hi) }
    }
    #[cfg(not(simd_avx2))]
    scaled_nibble_dots_scalar(packed, lo, hi)
}

#[cfg_attr(simd_avx2, allow(dead_code))]
fn scaled_nibble_dots_scalar(
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
fn dot_q6_k_rows<const R: usize>(
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

/// Bytes of one super-block of a packed Q6_K tile: the eight rows' `d` as f32, their 16
/// scales as i32 (sub-block by sub-block, row by row), then their quants unpacked (0..64) in
/// chunks of four elements, each chunk's four bytes from every row in turn, so that one
/// register holds one chunk of the eight rows.
const Q6_K_TILE_BLOCK: usize = 4 * TILE_COLS + 16 * 4 * TILE_COLS + QK_K * TILE_COLS;
const Q6_K_TILE_SCALES: usize = 4 * TILE_COLS;
const Q6_K_TILE_QUANTS: usize = Q6_K_TILE_SCALES + 16 * 4 * TILE_COLS;

/// Eight Q6_K rows rearranged by super-block so that lane `j` of every register is row `j`'s:
/// the tiled matmul ggml uses from 8 rows on sums a super-block's scaled products exactly
/// before any rounding, so the order of the integer sums is free.
#[cfg_attr(not(simd_avx2), allow(dead_code))]
fn pack_q6_k_tile(rows: &[u8], row_bytes: usize, out: &mut Vec<u8>) {
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
fn dot_q6_k_tile(packed: &[u8], xs: [&[BlockQ8K]; ROW_GROUP]) -> [[f32; TILE_COLS]; ROW_GROUP] {
    assert!(xs.iter().all(|x| x.len() * Q6_K_TILE_BLOCK == packed.len()));
    // SAFETY: the target features are enabled at compile time; the lengths are checked
    // above and every load is unaligned.
    unsafe { simd::q6_k_tile_dot(packed, xs) }
}

/// The tiled Q6_K kernel where the machine has it (AVX2), for ggml's tiled batches only.
#[cfg(simd_avx2)]
const Q6_K_TILE: Option<Tile<BlockQ8K>> = Some(Tile {
    min_rows: 8,
    pack: Some(pack_q6_k_tile),
    dot: |packed, _, xs| dot_q6_k_tile(packed, xs),
});
#[cfg(not(simd_avx2))]
const Q6_K_TILE: Option<Tile<BlockQ8K>> = None;

/// A Q6_K super-block's 6-bit quants (0..64, in element order) and 16 signed scales.
struct Q6KBlock {
    quants: [u8; QK_K],
    scales: [i8; 16],
}

impl Q6KBlock {
    #[inline(always)]
    fn unpack(block: &[u8]) -> Self {
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
    fn row_lane_sums(block: &[u8], xb: &BlockQ8K) -> [i32; 8] {
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
    fn lane_sums(&self, xb: &BlockQ8K) -> [i32; 8] {
        #[cfg(simd_avx2)]
        // SAFETY: the target features are enabled at compile time; loads are unaligned.
        unsafe {
            simd::q6_k_lane_sums(&self.quants, &self.scales, &xb.qs, &xb.bsums)
        }
        #[cfg(not(simd_avx2))]
        self.lane_sums_scalar(xb)
    }
}

/// The 256 quants of a Q6_K super-block (0..64) in element order.
#[cfg_attr(simd_avx2, allow(dead_code))]
fn q6_k_unpack_scalar(block: &[u8]) -> [u8; QK_K] {
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

#[cfg_attr(simd_avx2, allow(dead_code))]
impl Q6KBlock {
    /// [`Q6KBlock::lane_sums`] one product at a time: the reference for the SIMD path.
    fn lane_sums_scalar(&self, xb: &BlockQ8K) -> [i32; 8] {
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

/// `lane[l] = Σ w[i]·x[i]` over `i` in `4l..4l+4`: the eight exact integer sums of 32
/// unsigned by 32 signed bytes, one product at a time.
#[cfg_attr(simd_avx2, allow(dead_code))]
fn lane_dots_u8_i8_scalar(w: &[u8; 32], x: &[i8; 32]) -> [i32; 8] {
    std::array::from_fn(|l| (4 * l..4 * l + 4).map(|i| w[i] as i32 * x[i] as i32).sum())
}

/// Eight f32 accumulators, one per group of four elements of a 32-element block.
#[derive(Default)]
struct Lanes([f32; 8]);

// With the SIMD paths compiled in, the scalar methods only serve as the tests' reference.
#[cfg_attr(simd_avx2, allow(dead_code))]
impl Lanes {
    /// `lanes += scale · (Σ of each group of four w·x)`, w unsigned bytes, x signed.
    #[inline]
    fn fma_u8_i8(&mut self, scale: f32, w: &[u8; QK], x: &[i8; QK]) {
        #[cfg(simd_avx2)]
        {
            // SAFETY: the target features are enabled at compile time; loads are unaligned.
            unsafe { simd::fma_u8_i8(&mut self.0, scale, w, x) }
        }
        #[cfg(not(simd_avx2))]
        self.fma_u8_i8_scalar(scale, w, x);
    }

    /// The portable paths, also the references the SIMD paths are tested against.
    fn fma_u8_i8_scalar(&mut self, scale: f32, w: &[u8; QK], x: &[i8; QK]) {
        self.fma_groups(scale, |e| w[e] as i32 * x[e] as i32);
    }

    /// `lanes += scale · (Σ of each group of four w·x)` for signed bytes.
    #[inline]
    fn fma_i8_i8(&mut self, scale: f32, w: &[u8], x: &[i8; QK]) {
        #[cfg(simd_avx2)]
        {
            // SAFETY: the target features are enabled at compile time; `w` holds 32 bytes.
            unsafe { simd::fma_i8_i8(&mut self.0, scale, w[..QK].try_into().expect("32 bytes"), x) }
        }
        #[cfg(not(simd_avx2))]
        self.fma_i8_i8_scalar(scale, w, x);
    }

    /// `lanes += scale · (Σ of each group of four w·x)` for one Q5_0 block's weights.
    #[inline]
    fn fma_q5_0(&mut self, scale: f32, block: &[u8], x: &[i8; QK]) {
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

    fn fma_q5_0_scalar(&mut self, scale: f32, block: &[u8], x: &[i8; QK]) {
        self.fma_i8_i8_scalar(scale, &unpack_q5_0(block), x);
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

#[cfg(simd_avx2)]
mod simd {
    use std::arch::x86_64::*;

    /// `acc + Σ u·s` over each group of four bytes: eight exact lane sums of 32 unsigned by
    /// 32 signed bytes. AVX512-VNNI does it in one instruction (`vpdpbusd`); plain AVX2 forms
    /// pair sums with `vpmaddubsw`, which saturates at ±32767, then widens them with
    /// `vpmaddwd`. Every caller keeps a pair below that bound (4- to 6-bit weights, or signed
    /// bytes within ±127 as Q8_0 quantization writes them), so both paths give the same
    /// integers, as ggml's AVX2 and VNNI kernels do.
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        // SAFETY: the target features are enabled at compile time.
        unsafe {
            _mm256_dpbusd_epi32(acc, u, s)
        }
        #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
        // SAFETY: AVX2 is enabled at compile time (the module's condition).
        unsafe {
            let pairs = _mm256_maddubs_epi16(u, s);
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
        }
    }

    /// A register's eight f32 lanes, in memory order.
    #[inline(always)]
    fn f32_lanes(v: __m256) -> [f32; 8] {
        let mut out = [0f32; 8];
        // SAFETY: AVX is enabled at compile time (the module's condition); the store is
        // unaligned and fills `out` exactly.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
        out
    }

    /// A register's eight i32 lanes, in memory order.
    #[inline(always)]
    fn i32_lanes(v: __m256i) -> [i32; 8] {
        let mut out = [0i32; 8];
        // SAFETY: as in `f32_lanes`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
        out
    }

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
    pub(super) unsafe fn q5_0_weights(qs: &[u8; 16], qh: u32) -> __m256i {
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
    pub(super) unsafe fn q5_0_unsigned_weights(qs: &[u8; 16], qh: u32, out: &mut [u8; 32]) {
        // SAFETY: callers guarantee the features; the store is unaligned.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), q5_0_unsigned(qs, qh)) }
    }

    /// The eight lanes of each of [`super::TILE_COLS`] weight rows against each of `R`
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
    ) -> [[[f32; 8]; super::TILE_COLS]; R] {
        use super::TILE_COLS;
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

    /// [`tile_lanes`] with AVX-512: two activation rows share a 512-bit register, lanes 0..8
    /// one row's and 8..16 the other's, against the weight block repeated in both halves.
    /// Each lane does what it does in the 256-bit form, so the results are the same bits,
    /// in half the instructions. All eight weight rows at once: sixteen accumulators.
    #[cfg(simd_avx512)]
    #[inline(always)]
    unsafe fn tile_lanes<'x, const R: usize, const OFFSET: i32>(
        blocks: usize,
        weights: impl Fn(usize, usize) -> (__m256i, __m256),
        xs: impl Fn(usize, usize) -> (&'x [i8; 32], f32),
    ) -> [[[f32; 8]; super::TILE_COLS]; R] {
        use super::TILE_COLS;
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
                        acc[p] = _mm512_fmadd_ps(
                            _mm512_mul_ps(d, xd[p]),
                            _mm512_cvtepi32_ps(sums),
                            acc[p],
                        );
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
    #[cfg(simd_avx512)]
    #[inline(always)]
    pub(super) unsafe fn row_pair_lanes<'x, const P: usize, const OFFSET: i32>(
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
    #[cfg(simd_avx512)]
    #[inline(always)]
    pub(super) unsafe fn q5_0_unsigned_pair(a: *const u8, b: *const u8) -> __m512i {
        // SAFETY: callers guarantee the features and 22 readable bytes at `a` and `b`.
        unsafe {
            let halves =
                |p: *const u8| _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(6).cast()));
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

    /// `dot_q5_0_tile`'s lanes ([`tile_lanes`]): the packed weights come unpacked and
    /// unsigned (`w + 16`), their scales widened.
    #[inline]
    pub(super) unsafe fn q5_0_tile_dot(
        packed: &[u8],
        xs: [&[super::BlockQ8_0]; super::ROW_GROUP],
    ) -> [[[f32; 8]; super::TILE_COLS]; super::ROW_GROUP] {
        use super::{Q5_0_TILE_BLOCK, QK, TILE_COLS};
        // SAFETY: callers guarantee the features and that `packed` holds one tile block for
        // each activation block; all loads are unaligned and inside the slices.
        unsafe {
            let t = |b: usize| packed.as_ptr().add(b * Q5_0_TILE_BLOCK);
            tile_lanes::<{ super::ROW_GROUP }, 16>(
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
    pub(super) unsafe fn q8_0_tile_dot(
        rows: &[u8],
        row_bytes: usize,
        xs: [&[super::BlockQ8_0]; super::ROW_GROUP],
    ) -> [[[f32; 8]; super::TILE_COLS]; super::ROW_GROUP] {
        use super::Q8_0_BLOCK_BYTES as BLOCK;
        // SAFETY: callers guarantee the features, that `rows` holds `TILE_COLS` rows of
        // `row_bytes` and that each of `xs` has a block for each of theirs; all loads are
        // unaligned and inside the slices.
        unsafe {
            let block = |row: usize, b: usize| rows.as_ptr().add(row * row_bytes + b * BLOCK);
            tile_lanes::<{ super::ROW_GROUP }, 128>(
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
    pub(super) unsafe fn bytes(b: &[u8; 32]) -> __m256i {
        // SAFETY: callers guarantee the features; the load is unaligned.
        unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
    }

    /// `R` activation rows against one weight row of 32-element blocks, each row's eight
    /// lanes kept in a register from the first block to the last: per block, the weights
    /// (`weights(b)`: the bytes and `d_w`) are unpacked once, and each row adds
    /// `d_w·d_x · (Σ of each group of four w·x)` with one FMA, as [`super::Lanes`] does;
    /// the weights are signed bytes, multiplied through `vpsignb`. Returns each row's
    /// lanes, for `hsum8`.
    #[inline(always)]
    pub(super) unsafe fn lanes_rows<'x, const R: usize>(
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
    pub(super) unsafe fn fma_u8_i8(acc: &mut [f32; 8], scale: f32, w: &[u8; 32], x: &[i8; 32]) {
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
    pub(super) unsafe fn q4_1_row(row: &[u8], x: &[super::BlockQ8_1]) -> ([f32; 8], f32) {
        use super::{f16, Q4_1_BLOCK_BYTES};
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
    pub(super) unsafe fn q4_1_tile_dot(
        rows: &[u8],
        row_bytes: usize,
        xs: [&[super::BlockQ8_1]; super::ROW_GROUP],
    ) -> (
        [[[f32; 8]; super::TILE_COLS]; super::ROW_GROUP],
        [[f32; super::TILE_COLS]; super::ROW_GROUP],
    ) {
        use super::{Q4_1_BLOCK_BYTES as BLOCK, ROW_GROUP as R, TILE_COLS};
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
    pub(super) unsafe fn quantize_block(block: &[f32; 32], qs: &mut [i8; 32]) -> (f32, i32) {
        // SAFETY: callers guarantee the features; loads and stores are unaligned.
        unsafe {
            let v: [__m256; 4] =
                std::array::from_fn(|i| _mm256_loadu_ps(block.as_ptr().add(8 * i)));
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
            let total =
                _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
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
            let bytes =
                _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(qs.as_mut_ptr().cast(), bytes);
            (d, _mm_cvtsi128_si32(total))
        }
    }

    /// `unpack_nibbles` in two instructions.
    #[inline]
    pub(super) unsafe fn unpack_nibbles(packed: &[u8; 16]) -> [u8; 32] {
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
    pub(super) unsafe fn scaled_nibble_dots(
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

    /// `Q4KBlock::totals`' quants: `Σ scale · q4·q8` over a whole super-block. A 512-bit
    /// register holds two runs of packed nibbles, so its low nibbles are sub-blocks `4q` and
    /// `4q + 2` and its high nibbles `4q + 1` and `4q + 3`; the activations are shuffled to
    /// match and each half multiplied by its sub-block's scale.
    #[cfg(simd_avx512)]
    #[inline]
    pub(super) unsafe fn q4_k_total(packed: &[u8; 128], scales: &[i32; 8], x: &[i8; 256]) -> i32 {
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

    /// `Q4KBlock::pair_sums_two`: for rows a and b, the four scaled pair sums and the four
    /// min sums of a Q4_K super-block, as `[a0, a1, a2, a3, b0, b1, b2, b3]`. The sixteen
    /// eight-lane vectors are reduced together by a tree of horizontal adds.
    #[inline]
    pub(super) unsafe fn q4_k_pair_sums_two(
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
    /// (`vpmaddubsw` of four nibbles by four broadcast activations, `vpmaddwd` by the row's
    /// scale), then one FMA by `d · d_x`; the mins form their own chain, as in the grouped
    /// kernel, so each lane repeats that kernel's arithmetic for its row.
    #[inline]
    pub(super) unsafe fn q4_k_tile_dot(
        packed: &[u8],
        xs: [&[super::BlockQ8K]; super::ROW_GROUP],
    ) -> [[f32; 8]; super::ROW_GROUP] {
        use super::{Q4_K_TILE_BLOCK, Q4_K_TILE_MINS, Q4_K_TILE_QUANTS, Q4_K_TILE_SCALES};
        const R: usize = super::ROW_GROUP;
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
                    let sc_lo = _mm256_loadu_si256(t.add(Q4_K_TILE_SCALES + 64 * p).cast());
                    let sc_hi = _mm256_loadu_si256(t.add(Q4_K_TILE_SCALES + 64 * p + 32).cast());
                    // Pair sums stay in 16 bits across the eight chunks: each is at most
                    // 2·15·128 = 3840 in magnitude, eight of them 30720 < 32767.
                    let mut lo_sums = [_mm256_setzero_si256(); R];
                    let mut hi_sums = [_mm256_setzero_si256(); R];
                    for c in 0..8 {
                        let raw =
                            _mm256_loadu_si256(t.add(Q4_K_TILE_QUANTS + 32 * (8 * p + c)).cast());
                        let lo = _mm256_and_si256(raw, mask);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
                        for r in 0..R {
                            let at = qs[r].add(64 * p + 4 * c);
                            let x_lo = _mm256_set1_epi32(at.cast::<i32>().read_unaligned());
                            let x_hi = _mm256_set1_epi32(at.add(32).cast::<i32>().read_unaligned());
                            lo_sums[r] =
                                _mm256_add_epi16(lo_sums[r], _mm256_maddubs_epi16(lo, x_lo));
                            hi_sums[r] =
                                _mm256_add_epi16(hi_sums[r], _mm256_maddubs_epi16(hi, x_hi));
                        }
                    }
                    for r in 0..R {
                        let sums = _mm256_add_epi32(
                            _mm256_madd_epi16(lo_sums[r], sc_lo),
                            _mm256_madd_epi16(hi_sums[r], sc_hi),
                        );
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
                        acc_min[r] =
                            _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), scale_min, acc_min[r]);
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
    pub(super) unsafe fn q6_k_tile_dot(
        packed: &[u8],
        xs: [&[super::BlockQ8K]; super::ROW_GROUP],
    ) -> [[f32; 8]; super::ROW_GROUP] {
        use super::{Q6_K_TILE_BLOCK, Q6_K_TILE_QUANTS, Q6_K_TILE_SCALES, TILE_COLS};
        const R: usize = super::ROW_GROUP;
        // SAFETY: callers guarantee the features and that `packed` holds one tile block for
        // each activation block; all loads and stores are unaligned and inside the slices.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); R];
            for (b, tile) in packed.chunks_exact(Q6_K_TILE_BLOCK).enumerate() {
                let t = tile.as_ptr();
                let mut total = [_mm256_setzero_si256(); R];
                for sub in 0..16 {
                    let mut sums: [__m256i; R] = std::array::from_fn(|r| {
                        _mm256_set1_epi32(-32 * xs[r][b].bsums[sub] as i32)
                    });
                    for c in 0..4 {
                        let chunk = 4 * sub + c;
                        let w = _mm256_loadu_si256(
                            t.add(Q6_K_TILE_QUANTS + 4 * TILE_COLS * chunk).cast(),
                        );
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
    pub(super) unsafe fn q6_k_unpack(block: &[u8; 192]) -> [u8; 256] {
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
    pub(super) unsafe fn q6_k_lane_sums(
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

    /// `Q6KBlock::unpack` and `Q6KBlock::lane_sums` in one, two runs of 32 per 512-bit
    /// register: the low nibbles of a half's 64 bytes are its first two runs, the high
    /// nibbles its last two, each with its pair of high bits shifted in by the half's
    /// amount. Each lane's exact integer is the 256-bit kernel's: the upper half's lanes
    /// (the second run of each register) are added into the lower half's at the end.
    #[cfg(simd_avx512)]
    #[inline]
    pub(super) unsafe fn q6_k_row_lanes(
        block: &[u8; super::Q6_K_BLOCK_BYTES],
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

    /// Signed × signed through `dpbusd` (unsigned × signed): |w| times x with w's sign.
    #[inline]
    pub(super) unsafe fn fma_i8_i8(acc: &mut [f32; 8], scale: f32, w: &[u8; 32], x: &[i8; 32]) {
        // SAFETY: callers guarantee the features; the load is unaligned.
        unsafe { fma_signed(acc, scale, _mm256_loadu_si256(w.as_ptr().cast()), x) }
    }

    /// `sums[r] = Σ_t weights[r · weight_stride + t] · vectors[t · vector_stride..][..16]`
    /// for `t < count`: `R` rows of weights against a column of sixteen-lane vectors, the
    /// `R` sums in registers, each vector loaded once for all of them (attention's scores
    /// and weighted sums, [`super::weighted_lane_sums`]).
    ///
    /// # Safety
    /// The target features are enabled at compile time (the module's condition); `weights`
    /// holds `(R - 1) · weight_stride + count` values and `vectors`
    /// `(count - 1) · vector_stride + 16`.
    pub(super) unsafe fn weighted_lane_sums<const R: usize>(
        weights: *const f32,
        weight_stride: usize,
        vectors: *const f32,
        vector_stride: usize,
        count: usize,
    ) -> [[f32; 16]; R] {
        let mut sums = [[0f32; 16]; R];
        // SAFETY: the caller's bounds cover every offset read; stores go to `sums`.
        unsafe {
            #[cfg(simd_avx512)]
            {
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
            #[cfg(not(simd_avx512))]
            {
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
        }
        sums
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
        Kernels {
            quantize: |x, _, out| quantize_q8_1(x, out),
            dot: |ws, rb, x, _, out| each_row(ws, rb, out, |w| dot_q4_1_q8_1(w, x)),
            dot_group: |w, xs, _| dot_q4_1_rows(w, xs),
            tile: Q4_1_TILE,
        },
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
    widen: impl Fn(&[u8]) -> f32 + Sync,
) {
    let row_bytes = k * elem_bytes;
    debug_assert_eq!(weights.len(), n * row_bytes);
    par_column_tasks(dst, (m, n), |out| {
        let mut row = vec![0f32; k];
        for c in 0..out.cols {
            let col = out.first + c;
            let w = &weights[col * row_bytes..(col + 1) * row_bytes];
            for (v, bytes) in row.iter_mut().zip(w.chunks_exact(elem_bytes)) {
                *v = widen(bytes);
            }
            for (r, x) in lhs.chunks_exact(k).enumerate() {
                out.set(r, c, dot_f32(&row, x));
            }
        }
    });
}

/// The dot product of two f32 slices of equal length, in eight independent lanes.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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

/// Weight rows (output columns) per matmul task.
const COLS_PER_TASK: usize = 16;

/// Runs `task` in parallel for each run of [`COLS_PER_TASK`] output columns of
/// `dst (m, n)`, each task writing its own columns straight into place. (Writing each
/// task's columns contiguously and transposing after cost a tenth of Qwen-0.5B's
/// prefill, all of it memory traffic.)
fn par_column_tasks(
    dst: &mut [f32],
    (m, n): (usize, usize),
    task: impl Fn(TaskColumns<'_>) + Sync,
) {
    assert_eq!(dst.len(), m * n);
    let shared = SharedDst(dst.as_mut_ptr(), std::marker::PhantomData);
    (0..n.div_ceil(COLS_PER_TASK))
        .into_par_iter()
        .for_each(|t| {
            let first = t * COLS_PER_TASK;
            let cols = COLS_PER_TASK.min(n - first);
            task(TaskColumns {
                dst: &shared,
                m,
                n,
                first,
                cols,
            })
        });
}

/// The output of [`par_column_tasks`], shared by its tasks.
struct SharedDst<'a>(*mut f32, std::marker::PhantomData<&'a mut [f32]>);

// SAFETY: the tasks write disjoint elements: `TaskColumns::set` confines each task to its
// own columns, and no task reads `dst`.
unsafe impl Sync for SharedDst<'_> {}

/// One task's columns `first..first + cols` of the output.
struct TaskColumns<'a> {
    dst: &'a SharedDst<'a>,
    m: usize,
    n: usize,
    first: usize,
    cols: usize,
}

impl TaskColumns<'_> {
    /// `dst[row][first + col] = v`.
    #[inline]
    fn set(&self, row: usize, col: usize, v: f32) {
        assert!(row < self.m && col < self.cols);
        // SAFETY: in bounds (`row < m`, `first + col < n`, `dst` holds `m · n` and is
        // borrowed mutably for the whole `par_column_tasks` call), and only this task
        // writes its columns.
        unsafe { self.dst.0.add(row * self.n + self.first + col).write(v) }
    }
}

/// [`each_row`] four rows at a time through `four`, the rest as [`each_row_pair`] does.
#[cfg_attr(not(simd_avx512), allow(dead_code))]
#[inline(always)]
fn each_row_four(
    rows: &[u8],
    row_bytes: usize,
    out: &mut [f32],
    four: impl Fn([&[u8]; 4]) -> [f32; 4],
    pair: impl Fn(&[u8], &[u8]) -> [f32; 2],
    single: impl Fn(&[u8]) -> f32,
) {
    let whole = out.len() / 4 * 4;
    let (fours, rest) = out.split_at_mut(whole);
    for (o, w) in fours
        .chunks_exact_mut(4)
        .zip(rows.chunks_exact(4 * row_bytes))
    {
        let w: [&[u8]; 4] = std::array::from_fn(|k| &w[k * row_bytes..(k + 1) * row_bytes]);
        o.copy_from_slice(&four(w));
    }
    each_row_pair(&rows[whole * row_bytes..], row_bytes, rest, pair, single);
}

/// [`each_row`] two rows at a time through `pair` (the last, odd row through `single`).
#[cfg_attr(not(simd_avx512), allow(dead_code))]
#[inline(always)]
fn each_row_pair(
    rows: &[u8],
    row_bytes: usize,
    out: &mut [f32],
    pair: impl Fn(&[u8], &[u8]) -> [f32; 2],
    single: impl Fn(&[u8]) -> f32,
) {
    let mut rows = rows.chunks_exact(row_bytes);
    for o in out.chunks_mut(2) {
        match o {
            [a, b] => {
                let (wa, wb) = (rows.next().expect("a row"), rows.next().expect("a row"));
                [*a, *b] = pair(wa, wb);
            }
            [a] => *a = single(rows.next().expect("a row")),
            _ => unreachable!("chunks of two"),
        }
    }
}

/// `N` weight rows (two or four) of a 32-element block type · one Q8_0 activation row, through
/// `simd::row_pair_lanes`: `pair(a, b)` gives the blocks at `a` and `b` (two rows' blocks of
/// the same index) as unsigned bytes, the stored weights plus `OFFSET`; a block's f16 scale
/// is its first two bytes. Each result is the type's one-row kernel's bit for bit.
#[cfg(simd_avx512)]
#[inline(always)]
fn rows_of<const N: usize, const P: usize, const OFFSET: i32>(
    rows: [&[u8]; N],
    x: &[BlockQ8_0],
    block_bytes: usize,
    pair: impl Fn(*const u8, *const u8) -> std::arch::x86_64::__m512i,
) -> [f32; N] {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    const { assert!(N == 2 * P) };
    let len = rows[0].len();
    let blocks = len / block_bytes;
    assert!(rows.iter().all(|r| r.len() == len) && x.len() >= blocks);
    // Rows read side by side lose the hardware prefetcher on some row lengths (Qwen's
    // 616-byte Q5_0 rows: half speed from memory), so each block asks for lines of the rows
    // after next, as many as a block of every row takes.
    let lines = P * (2 * block_bytes).div_ceil(64);
    // SAFETY: the target features are enabled at compile time; every block index is below
    // `blocks`, inside every row and (checked above) the activations.
    let lanes = unsafe {
        simd::row_pair_lanes::<P, OFFSET>(
            blocks,
            |i| {
                let at = i * block_bytes;
                for line in 0..lines {
                    let ahead = 2 * N * len + 64 * (lines * i + line);
                    _mm_prefetch::<_MM_HINT_T0>(rows[0].as_ptr().wrapping_add(ahead).cast());
                }
                let w = std::array::from_fn(|p| {
                    pair(
                        rows[2 * p].as_ptr().add(at),
                        rows[2 * p + 1].as_ptr().add(at),
                    )
                });
                (w, scales(rows, at))
            },
            |i| (&x[i].qs, x[i].d),
        )
    };
    std::array::from_fn(|r| hsum8(&lanes[r / 2][r % 2]))
}

/// Two or four Q5_0 rows (`N`) · one Q8_0 row, each result [`dot_q5_0_q8_0`]'s bit for bit.
#[cfg(simd_avx512)]
fn dot_q5_0_rows_of<const N: usize, const P: usize>(rows: [&[u8]; N], x: &[BlockQ8_0]) -> [f32; N] {
    // SAFETY (in the closure): the target features are enabled at compile time, and
    // `rows_of` passes the starts of whole blocks.
    rows_of::<N, P, 16>(rows, x, Q5_0_BLOCK_BYTES, |a, b| unsafe {
        simd::q5_0_unsigned_pair(a, b)
    })
}

/// The f16 scales at byte `at` of up to four rows, as f32 in lanes 0.., the rest zero.
#[cfg(simd_avx512)]
#[inline(always)]
fn scales<const N: usize>(rows: [&[u8]; N], at: usize) -> std::arch::x86_64::__m128 {
    use std::arch::x86_64::*;
    const { assert!(N <= 4) };
    let bits = rows.iter().enumerate().fold(0u64, |bits, (k, row)| {
        bits | (u16::from_le_bytes([row[at], row[at + 1]]) as u64) << (16 * k)
    });
    // SAFETY: the target features are enabled at compile time.
    unsafe { _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64)) }
}

/// Two or four Q8_0 rows (`N`) · one Q8_0 row, each result [`dot_q8_0_q8_0`]'s bit for bit:
/// the signed weights made unsigned by their top bit flipped (`w + 128`).
#[cfg(simd_avx512)]
fn dot_q8_0_rows_of<const N: usize, const P: usize>(rows: [&[u8]; N], x: &[BlockQ8_0]) -> [f32; N] {
    use std::arch::x86_64::*;
    rows_of::<N, P, 128>(rows, x, Q8_0_BLOCK_BYTES, |a, b| {
        // SAFETY: the target features are enabled at compile time; `rows_of` passes the
        // starts of whole 34-byte blocks, whose weights are bytes 2..34; loads are unaligned.
        unsafe {
            let w = _mm512_castsi256_si512(_mm256_loadu_si256(a.add(2).cast()));
            let w = _mm512_inserti64x4(w, _mm256_loadu_si256(b.add(2).cast()), 1);
            _mm512_xor_si512(w, _mm512_set1_epi8(i8::MIN))
        }
    })
}

/// `out[c] = dot(row c)` for consecutive weight rows of `row_bytes` each.
#[inline(always)]
fn each_row(rows: &[u8], row_bytes: usize, out: &mut [f32], dot: impl Fn(&[u8]) -> f32) {
    for (o, w) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
        *o = dot(w);
    }
}

/// Activation rows a weight row meets at once. Each keeps its own accumulators, so every
/// result is the one-row result bit for bit; meanwhile the weight block is unpacked once for
/// all of them, and their independent FMA chains hide each other's latency.
const ROW_GROUP: usize = 4;

type GroupDot<A> = fn(&[u8], [&[A]; ROW_GROUP], [RowPlace; ROW_GROUP]) -> [f32; ROW_GROUP];

/// Weight rows a tile holds: one per f32 lane of an AVX2 register.
const TILE_COLS: usize = 8;

/// A kernel that computes [`TILE_COLS`] weight rows against [`ROW_GROUP`] activation rows
/// at once, from the weight rows rearranged so that one register holds a few bytes of each
/// (as ggml repacks Q4_K on x86). Every lane does what the grouped kernel does for its
/// weight row, in the same order, so the results are the same bit for bit; what goes is
/// the per-row horizontal reductions and scalar FMAs.
struct Tile<A> {
    /// The fewest rows a batch must have for the tile to compute them as the grouped kernel
    /// would: ggml rounds Q6_K one way below 8 rows and another from 8 on.
    min_rows: usize,
    /// Rearranges [`TILE_COLS`] consecutive weight rows (`row_bytes` each) into `out`, once
    /// per matmul task; `None` where the kernel reads the rows as stored.
    pack: Option<TilePack>,
    /// Packed (or stored) rows, `row_bytes` each as stored, · activation rows (all in a
    /// group of four): `out[row][col]`.
    dot: TileDot<A>,
}

type TilePack = fn(&[u8], usize, &mut Vec<u8>);
type TileDot<A> = fn(&[u8], usize, [&[A]; ROW_GROUP]) -> [[f32; TILE_COLS]; ROW_GROUP];

/// How one weight type's matmul quantizes its activations and forms its dot products.
struct Kernels<A: 'static> {
    quantize: fn(&[f32], RowPlace, &mut Vec<A>),
    /// Consecutive weight rows (`row_bytes` each) · one activation row, into `out`: one
    /// call per task rather than per weight row, so the row kernel inlines into the loop.
    dot: fn(&[u8], usize, &[A], RowPlace, &mut [f32]),
    dot_group: GroupDot<A>,
    /// For batches where every activation row of a group is in a group of four.
    tile: Option<Tile<A>>,
}

fn matmul<A: Send + Sync>(
    weights: &[u8],
    (block_elems, block_bytes): (usize, usize),
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    dst: &mut [f32],
    kernels: Kernels<A>,
) {
    let Kernels {
        quantize,
        dot,
        dot_group,
        tile,
    } = kernels;
    let row_bytes = k / block_elems * block_bytes;
    debug_assert_eq!(weights.len(), n * row_bytes);
    let quantize_row = |(r, row): (usize, &[f32])| {
        let mut q = Vec::with_capacity(k / block_elems);
        let place = RowPlace { row: r, rows: m };
        quantize(row, place, &mut q);
        (q, place)
    };
    let quantized: Vec<(Vec<A>, RowPlace)> = if m == 1 {
        lhs.chunks_exact(k).enumerate().map(quantize_row).collect()
    } else {
        lhs.par_chunks_exact(k)
            .enumerate()
            .map(quantize_row)
            .collect()
    };
    // Parallel over output columns: each task takes a few weight rows and meets them with
    // every activation row, a group of rows at a time.
    par_column_tasks(dst, (m, n), |out| {
        let (first, cols) = (out.first, out.cols);
        // Whole tiles of weight rows, packed once per task, where there are groups of
        // four activation rows to meet them.
        let tile = tile.as_ref().filter(|tile| m >= tile.min_rows);
        let tiles = if tile.is_some() { cols / TILE_COLS } else { 0 };
        let tile_rows = |t: usize| {
            let start = (first + t * TILE_COLS) * row_bytes;
            &weights[start..start + TILE_COLS * row_bytes]
        };
        let packed: Vec<Vec<u8>> = match tile.and_then(|tile| tile.pack) {
            Some(pack) => (0..tiles)
                .map(|t| {
                    let mut out = Vec::new();
                    pack(tile_rows(t), row_bytes, &mut out);
                    out
                })
                .collect(),
            None => Vec::new(),
        };
        // Each group of activation rows meets all the task's weight rows before the
        // next group comes: the group (a few KB) and the task's weight rows (16 rows)
        // stay in L1 between uses, where sweeping many rows per weight row would
        // stream the rows from L2 again for every weight row.
        let groups = m / ROW_GROUP * ROW_GROUP;
        for r in (0..groups).step_by(ROW_GROUP) {
            let xs = std::array::from_fn(|i| quantized[r + i].0.as_slice());
            let places = std::array::from_fn(|i| quantized[r + i].1);
            if let Some(tile) = tile {
                for t in 0..tiles {
                    let data = packed.get(t).map_or_else(|| tile_rows(t), Vec::as_slice);
                    let values = (tile.dot)(data, row_bytes, xs);
                    for (i, row) in values.iter().enumerate() {
                        for (j, v) in row.iter().enumerate() {
                            out.set(r + i, t * TILE_COLS + j, *v);
                        }
                    }
                }
            }
            for c in tiles * TILE_COLS..cols {
                let w = &weights[(first + c) * row_bytes..(first + c + 1) * row_bytes];
                let values = dot_group(w, xs, places);
                for (i, v) in values.iter().enumerate() {
                    out.set(r + i, c, *v);
                }
            }
        }
        if groups < m {
            let rows = &weights[first * row_bytes..(first + cols) * row_bytes];
            let mut values = [0f32; COLS_PER_TASK];
            for r in groups..m {
                dot(
                    rows,
                    row_bytes,
                    &quantized[r].0,
                    quantized[r].1,
                    &mut values[..cols],
                );
                for (c, v) in values[..cols].iter().enumerate() {
                    out.set(r, c, *v);
                }
            }
        }
    });
}

/// `exp(x)` in f32 arithmetic that vectorizes: `x = n·ln2 + r` with `|r| <= ln2/2`, `exp(r)`
/// by its Taylor series to `r⁷` (relative error below 1e-8 on that range), and `2ⁿ` built in
/// the exponent bits. Inputs are clamped to `[-87, 88]`, where `exp` stays a normal f32;
/// relative error within a few ulp of the correctly rounded result.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `erf(x)` by Abramowitz and Stegun's formula 7.1.26 (absolute error 1.5e-7 in exact
/// arithmetic; below 1e-6 in f32, a few ulp near 1), with [`exp_f32`]: branch-free, so it
/// vectorizes.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp_f32(-a * a);
    y.copysign(x)
}

/// `x ← gelu(x + bias)` over the rows of a `(rows, bias.len())` matrix, the exact (erf)
/// GELU of BERT, in parallel over rows.
pub fn bias_gelu_in_place(x: &mut [f32], bias: &[f32]) {
    let n = bias.len();
    assert_eq!(x.len() % n, 0, "a matrix of rows of the bias' length");
    let rows_per_task = (16384 / n).max(1);
    x.par_chunks_mut(rows_per_task * n).for_each(|block| {
        for row in block.chunks_exact_mut(n) {
            for (v, b) in row.iter_mut().zip(bias) {
                let z = *v + b;
                *v = 0.5 * z * (1.0 + erf_f32(z * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
    });
}

/// Queries an attention block scores together: every key and value loaded serves this many.
const ATTENTION_QUERIES: usize = 4;
/// Keys (or value columns) an attention block holds per query: one 512-bit register of f32,
/// two 256-bit ones.
const ATTENTION_LANES: usize = 16;

/// Bidirectional multi-head attention for packed sequences. `qkv` holds, for each row (a
/// token), its query, key and value projections side by side (`3 · hidden` columns, heads
/// of `head_dim` contiguous within each); `rows` are the sequences' row ranges, in order and
/// disjoint, each attending only over itself. Returns the `(rows, hidden)` outputs, heads
/// side by side. One task per sequence, run in parallel, writing its own output rows; softmax
/// with [`exp_f32`].
pub fn packed_attention(
    qkv: &[f32],
    hidden: usize,
    head_dim: usize,
    rows: &[std::ops::Range<usize>],
) -> Vec<f32> {
    let n_rows = qkv.len() / (3 * hidden);
    let mut output = vec![0f32; n_rows * hidden];
    let mut tasks = Vec::with_capacity(rows.len());
    let (mut rest, mut at) = (output.as_mut_slice(), 0);
    for range in rows {
        assert!(
            range.start >= at && range.end <= n_rows,
            "sequences in order, disjoint"
        );
        let (_, tail) = rest.split_at_mut((range.start - at) * hidden);
        let (mine, tail) = tail.split_at_mut(range.len() * hidden);
        tasks.push((range.clone(), mine));
        (rest, at) = (tail, range.end);
    }
    tasks.into_par_iter().for_each(|(range, out)| {
        let mut scratch = AttentionScratch::new(range.len(), head_dim);
        for head in 0..hidden / head_dim {
            scratch.attend(qkv, hidden, head * head_dim, range.start, out);
        }
    });
    output
}

/// One sequence's head, laid out for register blocks: the queries (scaled) row by row, the
/// keys transposed and the values row by row, each padded with zeros to whole blocks.
struct AttentionScratch {
    len: usize,
    head_dim: usize,
    /// `len` rounded up to whole [`ATTENTION_LANES`] (the keys' row length).
    keys_len: usize,
    /// `head_dim` rounded up to whole [`ATTENTION_LANES`] (the values' row length).
    value_len: usize,
    queries: Vec<f32>,
    keys_t: Vec<f32>,
    values: Vec<f32>,
    /// The scores, then the unnormalised probabilities, of one block of queries.
    scores: Vec<f32>,
}

impl AttentionScratch {
    fn new(len: usize, head_dim: usize) -> Self {
        let keys_len = len.next_multiple_of(ATTENTION_LANES);
        let value_len = head_dim.next_multiple_of(ATTENTION_LANES);
        Self {
            len,
            head_dim,
            keys_len,
            value_len,
            queries: vec![0.0; len.next_multiple_of(ATTENTION_QUERIES) * head_dim],
            keys_t: vec![0.0; head_dim * keys_len],
            values: vec![0.0; len * value_len],
            scores: vec![0.0; ATTENTION_QUERIES * keys_len],
        }
    }

    /// Attention of the head whose columns start at `offset` (within the query, key and
    /// value parts of `qkv`) for the sequence starting at row `first`, into its columns of
    /// `out` (the sequence's `(len, hidden)` output rows).
    fn attend(&mut self, qkv: &[f32], hidden: usize, offset: usize, first: usize, out: &mut [f32]) {
        let (len, hd, kl, vl) = (self.len, self.head_dim, self.keys_len, self.value_len);
        let scale = 1.0 / (hd as f32).sqrt();
        for i in 0..len {
            let row = &qkv[(first + i) * 3 * hidden..][..3 * hidden];
            for (q, &x) in self.queries[i * hd..][..hd].iter_mut().zip(&row[offset..]) {
                *q = x * scale;
            }
            for (d, &k) in row[hidden + offset..][..hd].iter().enumerate() {
                self.keys_t[d * kl + i] = k;
            }
            self.values[i * vl..][..hd].copy_from_slice(&row[2 * hidden + offset..][..hd]);
        }
        const R: usize = ATTENTION_QUERIES;
        const L: usize = ATTENTION_LANES;
        for block in (0..len).step_by(R) {
            let queries = &self.queries[block * hd..][..R * hd];
            for j in (0..kl).step_by(L) {
                let sums = weighted_lane_sums::<R>(queries, hd, &self.keys_t[j..], kl, hd);
                for (r, sums) in sums.iter().enumerate() {
                    self.scores[r * kl + j..][..L].copy_from_slice(sums);
                }
            }
            let mut inverse_sums = [0f32; R];
            for (r, scores) in self.scores.chunks_exact_mut(kl).enumerate() {
                // The padding keys: out of the maximum, and (nearly) nothing in the sum.
                scores[len..].fill(f32::NEG_INFINITY);
                inverse_sums[r] = 1.0 / exp_in_place_sum(scores);
            }
            for c in (0..vl).step_by(L) {
                let acc = weighted_lane_sums::<R>(&self.scores, kl, &self.values[c..], vl, len);
                let width = L.min(hd - c);
                for r in 0..R.min(len - block) {
                    let dst = &mut out[(block + r) * hidden + offset + c..][..width];
                    for (o, &a) in dst.iter_mut().zip(&acc[r]) {
                        *o = a * inverse_sums[r];
                    }
                }
            }
        }
    }
}

/// `s ← exp(s - max)` over `scores` (whole [`ATTENTION_LANES`]), returning the sum: lanes
/// of maxima and partial sums, so that both reductions vectorize. An entry of -∞ adds
/// `exp(-87)` (the clamp of [`exp_f32`]) at most: nothing beside the maximum's 1.
fn exp_in_place_sum(scores: &mut [f32]) -> f32 {
    const L: usize = ATTENTION_LANES;
    let mut maxima = [f32::NEG_INFINITY; L];
    for chunk in scores.chunks_exact(L) {
        for (m, &s) in maxima.iter_mut().zip(chunk) {
            *m = if s > *m { s } else { *m };
        }
    }
    let max = maxima.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sums = [0f32; L];
    for chunk in scores.chunks_exact_mut(L) {
        for (sum, s) in sums.iter_mut().zip(chunk) {
            *s = exp_f32(*s - max);
            *sum += *s;
        }
    }
    sums.iter().sum()
}

/// `sums[r] = Σ_t weights[r · weight_stride + t] · vectors[t · vector_stride..][..L]` for
/// `t < count`: [`simd::weighted_lane_sums`] where the CPU has it, the same sums one lane at
/// a time elsewhere.
fn weighted_lane_sums<const R: usize>(
    weights: &[f32],
    weight_stride: usize,
    vectors: &[f32],
    vector_stride: usize,
    count: usize,
) -> [[f32; ATTENTION_LANES]; R] {
    const L: usize = ATTENTION_LANES;
    if count > 0 {
        assert!(weights.len() >= (R - 1) * weight_stride + count);
        assert!(vectors.len() >= (count - 1) * vector_stride + L);
    }
    #[cfg(simd_avx2)]
    // SAFETY: the features are enabled at compile time; the bounds are asserted above.
    return unsafe {
        simd::weighted_lane_sums::<R>(
            weights.as_ptr(),
            weight_stride,
            vectors.as_ptr(),
            vector_stride,
            count,
        )
    };
    #[cfg(not(simd_avx2))]
    {
        let mut sums = [[0f32; L]; R];
        for (r, sum) in sums.iter_mut().enumerate() {
            for t in 0..count {
                let w = weights[r * weight_stride + t];
                for (s, &v) in sum.iter_mut().zip(&vectors[t * vector_stride..][..L]) {
                    *s = w.mul_add(v, *s);
                }
            }
        }
        sums
    }
}

/// `x ← x + bias` on every row of a `(rows, bias.len())` matrix.
pub fn add_bias_rows(x: &mut [f32], bias: &[f32]) {
    let n = bias.len();
    let rows_per_task = (16384 / n).max(1);
    x.par_chunks_mut(rows_per_task * n).for_each(|block| {
        for row in block.chunks_exact_mut(n) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    });
}

/// Layer normalization of each row of `x` after adding `bias` and `residual` (a
/// transformer's `LayerNorm(x·Wᵀ + b + residual)` in one pass): `(v - mean) / sqrt(var +
/// eps) · gamma + beta`, the variance without Bessel's correction, as BERT's.
pub fn bias_residual_layer_norm(
    x: &mut [f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let n = gamma.len();
    assert_eq!(x.len() % n, 0, "a matrix of rows of the norm's length");
    if let Some(r) = residual {
        assert_eq!(r.len(), x.len(), "the residual has the input's shape");
    }
    let rows_per_task = (16384 / n).max(1);
    x.par_chunks_mut(rows_per_task * n)
        .enumerate()
        .for_each(|(task, block)| {
            let first_row = task * rows_per_task;
            for (i, row) in block.chunks_exact_mut(n).enumerate() {
                if let Some(b) = bias {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
                if let Some(r) = residual {
                    let r = &r[(first_row + i) * n..][..n];
                    row.iter_mut().zip(r).for_each(|(v, r)| *v += r);
                }
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                let inv = (1.0 / (var + eps as f64).sqrt()) as f32;
                let mean = mean as f32;
                for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                    *v = (*v - mean) * inv * g + b;
                }
            }
        });
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
        let d_offsets: &[usize] = match dtype {
            candle_core::quantized::GgmlDType::Q4K => &[0, 2],
            _ => &[208],
        };
        block_case(dtype, n, k, d_offsets)
    }

    /// Random blocks of `dtype` with small f16 scales at `d_offsets`, and their dequantized
    /// values (by candle).
    fn block_case(
        dtype: candle_core::quantized::GgmlDType,
        n: usize,
        k: usize,
        d_offsets: &[usize],
    ) -> (Vec<u8>, Vec<f32>) {
        let block_bytes = dtype.type_size();
        let mut s = 99u32;
        let mut bytes = Vec::new();
        for _ in 0..n * k / dtype.block_size() {
            let mut block: Vec<u8> = (0..block_bytes)
                .map(|_| {
                    s = s.wrapping_mul(1103515245).wrapping_add(12345);
                    (s >> 16) as u8
                })
                .collect();
            // Scales that vary from block to block (random bytes could be infinite), so
            // products of scales round differently wherever a kernel's order differs.
            let scale = 0.003 * (1.0 + (s >> 20 & 7) as f32 / 7.0);
            for &o in d_offsets {
                block[o..o + 2].copy_from_slice(&f16::from_f32(scale).to_le_bytes());
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

    /// Pseudo-random bytes (a linear congruential generator) for the SIMD-vs-scalar tests.
    fn byte_stream(mut seed: u32) -> impl FnMut() -> u8 {
        move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as u8
        }
    }

    #[test]
    fn simd_and_scalar_lanes_agree_bit_for_bit() {
        let mut next = byte_stream(7);
        for _ in 0..200 {
            let packed: [u8; 16] = std::array::from_fn(|_| next());
            let w8: [u8; 32] = std::array::from_fn(|_| next());
            let x: [i8; 32] = std::array::from_fn(|_| (next() as i8).max(-127));
            let scale = next() as f32 / 97.0;
            let (mut a, mut b) = (Lanes([0.5; 8]), Lanes([0.5; 8]));
            a.fma_i8_i8(scale, &w8, &x);
            b.fma_i8_i8_scalar(scale, &w8, &x);
            assert_eq!(a.0, b.0);
            // Q4_1's unsigned weights are nibbles.
            let w4 = w8.map(|w| w & 15);

            let q5_0: [u8; 22] = std::array::from_fn(|_| next());
            a.fma_q5_0(scale, &q5_0, &x);
            b.fma_q5_0_scalar(scale, &q5_0, &x);
            assert_eq!(a.0, b.0);
            a.fma_u8_i8(scale, &w4, &x);
            b.fma_u8_i8_scalar(scale, &w4, &x);
            assert_eq!(a.0, b.0);
            assert_eq!(unpack_nibbles(&packed), unpack_nibbles_scalar(&packed));
            let packed32: [u8; 32] = std::array::from_fn(|_| next());
            let x2: [i8; 32] = std::array::from_fn(|_| (next() as i8).max(-127));
            let (sc_lo, sc_hi) = ((next() & 63) as i32, (next() & 63) as i32);
            assert_eq!(
                scaled_nibble_dots(&packed32, (&x, sc_lo), (&x2, sc_hi)),
                scaled_nibble_dots_scalar(&packed32, (&x, sc_lo), (&x2, sc_hi))
            );
        }
    }

    /// The register-resident row kernels give what the `Lanes` path gives, bit for bit,
    /// for one row and for a group.
    #[test]
    fn row_kernels_equal_the_lanes_path_bit_for_bit() {
        use candle_core::quantized::GgmlDType;
        let k = 256;
        let rows: Vec<Vec<f32>> = (0..4)
            .map(|r| {
                (0..k)
                    .map(|i| (((i * 31 + r * 7) % 89) as f32 - 44.0) / 13.0)
                    .collect()
            })
            .collect();
        let q8_0: Vec<Vec<BlockQ8_0>> = rows
            .iter()
            .map(|x| {
                let mut q = Vec::new();
                quantize_q8_0(x, &mut q);
                q
            })
            .collect();
        let four: [&[BlockQ8_0]; 4] = std::array::from_fn(|r| q8_0[r].as_slice());
        let (q8w, _) = block_case(GgmlDType::Q8_0, 1, k, &[0]);
        let (q5w, _) = block_case(GgmlDType::Q5_0, 1, k, &[0]);
        let bits = |v: [f32; 4]| v.map(f32::to_bits);
        assert_eq!(
            bits(dot_q8_0_rows(&q8w, four)),
            bits(dot_q8_0_rows_lanes(&q8w, four))
        );
        assert_eq!(
            bits(dot_q5_0_rows(&q5w, four)),
            bits(dot_q5_0_rows_lanes(&q5w, four))
        );
        assert_eq!(
            dot_q8_0_rows(&q8w, [&q8_0[1]])[0].to_bits(),
            dot_q8_0_rows_lanes(&q8w, [&q8_0[1]])[0].to_bits()
        );
        assert_eq!(
            dot_q5_0_rows(&q5w, [&q8_0[1]])[0].to_bits(),
            dot_q5_0_rows_lanes(&q5w, [&q8_0[1]])[0].to_bits()
        );
        // Q4_1's one-row kernel (decode), its `m·s` sum included.
        let (q4w, _) = block_case(GgmlDType::Q4_1, 1, k, &[0, 2]);
        for x in &rows {
            let mut q = Vec::new();
            quantize_q8_1(x, &mut q);
            assert_eq!(
                dot_q4_1_rows(&q4w, [&q])[0].to_bits(),
                dot_q4_1_rows_lanes(&q4w, [&q])[0].to_bits()
            );
        }
    }

    #[test]
    fn q6_k_simd_and_scalar_lanes_agree() {
        let mut next = byte_stream(11);
        for _ in 0..100 {
            let block: [u8; Q6_K_BLOCK_BYTES] = std::array::from_fn(|_| next());
            let unpacked = Q6KBlock::unpack(&block);
            assert_eq!(unpacked.quants, q6_k_unpack_scalar(&block));
            let mut xb = BlockQ8K {
                d: 1.0,
                qs: std::array::from_fn(|_| (next() as i8).max(-127)),
                bsums: [0; 16],
            };
            for (sum, group) in xb.bsums.iter_mut().zip(xb.qs.chunks_exact(16)) {
                *sum = group.iter().map(|&v| v as i16).sum();
            }
            assert_eq!(unpacked.lane_sums(&xb), unpacked.lane_sums_scalar(&xb));
        }
    }

    /// The grouped kernels (four activation rows per weight row) give each row exactly what
    /// the one-row dot product gives it: same integers, same FMA order, same places.
    #[test]
    fn grouped_rows_equal_single_rows_bit_for_bit() {
        use candle_core::quantized::GgmlDType;
        // 21 weight rows: a task of 16 (two tiles of eight) and one of 5 (no whole tile).
        let (m, k, n) = (11, 512, 21);
        // Each block of 32 its own range, so the activations' scales vary too.
        let lhs: Vec<f32> = (0..m * k)
            .map(|i| ((i * 53 % 113) as f32 - 56.0) / 17.0 * (1.0 + (i / 32 % 5) as f32 * 0.13))
            .collect();
        let place = |r| RowPlace { row: r, rows: m };
        for (dtype, kernel) in [
            (GgmlDType::Q4_1, matmul_q4_1 as MatmulKernel),
            (GgmlDType::Q8_0, matmul_q8_0),
            (GgmlDType::Q5_0, matmul_q5_0),
            (GgmlDType::Q4K, matmul_q4_k),
            (GgmlDType::Q6K, matmul_q6_k),
        ] {
            let (bytes, _) = match dtype {
                GgmlDType::Q4_1 => block_case(dtype, n, k, &[0, 2]),
                GgmlDType::Q8_0 | GgmlDType::Q5_0 => block_case(dtype, n, k, &[0]),
                _ => k_quant_case(dtype, n, k),
            };
            let mut dst = vec![0f32; m * n];
            kernel(&bytes, (m, k, n), &lhs, &mut dst);
            let row_bytes = bytes.len() / n;
            for r in 0..m {
                let x = &lhs[r * k..(r + 1) * k];
                for c in 0..n {
                    let w = &bytes[c * row_bytes..(c + 1) * row_bytes];
                    let single = match dtype {
                        GgmlDType::Q4_1 => {
                            let mut q = Vec::new();
                            quantize_q8_1(x, &mut q);
                            dot_q4_1_q8_1(w, &q)
                        }
                        GgmlDType::Q8_0 | GgmlDType::Q5_0 => {
                            let mut q = Vec::new();
                            quantize_q8_0(x, &mut q);
                            if dtype == GgmlDType::Q8_0 {
                                dot_q8_0_q8_0(w, &q)
                            } else {
                                dot_q5_0_q8_0(w, &q)
                            }
                        }
                        GgmlDType::Q4K => {
                            let mut q = Vec::new();
                            quantize_q8_k_rows(x, place(r), &mut q);
                            dot_q4_k_q8_k(w, &q, place(r))
                        }
                        _ => {
                            let mut q = Vec::new();
                            quantize_q8_k(x, &mut q);
                            dot_q6_k_q8_k(w, &q, place(r))
                        }
                    };
                    assert_eq!(
                        dst[r * n + c].to_bits(),
                        single.to_bits(),
                        "{dtype:?} row {r} col {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn block_quantization_equals_the_scalar_reference() {
        let mut s = 5u32;
        let mut next = || {
            s = s.wrapping_mul(1103515245).wrapping_add(12345);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let mut cases: Vec<[f32; QK]> = (0..2000)
            .map(|i| std::array::from_fn(|_| next() * (1 << (i % 12)) as f32))
            .collect();
        // Exact halves after scaling (amax 127: scale 1), an all-zero block, and a block
        // whose largest magnitude is negative.
        cases.push(std::array::from_fn(|e| {
            if e == 0 {
                127.0
            } else {
                e as f32 - 15.5
            }
        }));
        cases.push([0.0; QK]);
        cases.push(std::array::from_fn(|e| {
            if e == 7 {
                -3.0
            } else {
                e as f32 / 40.0
            }
        }));
        for block in &cases {
            let (mut a, mut b) = ([0i8; QK], [0i8; QK]);
            let simd = quantize_block(block, &mut a);
            let scalar = quantize_block_scalar(block, &mut b);
            assert_eq!(
                (simd.0.to_bits(), simd.1, a),
                (scalar.0.to_bits(), scalar.1, b)
            );
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

    #[test]
    fn exp_and_erf_match_the_reference() {
        let mut worst_exp = 0f64;
        for i in -20000..=20000 {
            let x = i as f32 * 0.0043; // -86 ..= 86
            let want = (x as f64).exp();
            worst_exp = worst_exp.max(((exp_f32(x) as f64 - want) / want).abs());
        }
        // erf against candle's (libm's).
        let z: Vec<f32> = (-20000..=20000).map(|i| i as f32 * 0.0004).collect(); // -8 ..= 8
        let want = candle_core::Tensor::new(z.as_slice(), &candle_core::Device::Cpu)
            .unwrap()
            .erf()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let worst_erf = z
            .iter()
            .zip(&want)
            .map(|(&z, &w)| (erf_f32(z) as f64 - w as f64).abs())
            .fold(0f64, f64::max);
        assert!(worst_exp < 4e-7, "exp: relative error {worst_exp}");
        assert!(worst_erf < 1e-6, "erf: absolute error {worst_erf}");
        assert!(erf_f32(0.0).abs() < 1e-7 && erf_f32(-9.0) == -1.0 && erf_f32(9.0) == 1.0);
        // Clamped: finite and positive far out, never inf or NaN.
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(1000.0).is_finite());
    }

    #[test]
    fn bias_gelu_matches_candle() {
        use candle_core::{Device, Tensor};
        let n = 7;
        let x: Vec<f32> = (0..5 * n).map(|i| (i as f32 - 17.0) * 0.37).collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 0.3).collect();
        let want = Tensor::from_vec(x.clone(), (5, n), &Device::Cpu)
            .unwrap()
            .broadcast_add(&Tensor::new(bias.as_slice(), &Device::Cpu).unwrap())
            .unwrap()
            .gelu_erf()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut got = x;
        bias_gelu_in_place(&mut got, &bias);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    #[test]
    fn packed_attention_matches_a_plain_softmax() {
        // Whole register blocks and partial ones: heads narrower and wider than a block's
        // lanes, sequences shorter and longer than a block of queries or keys.
        attention_matches_a_plain_softmax(8, 4, &[0..3, 3..4, 4..9]);
        attention_matches_a_plain_softmax(96, 24, &[0..37, 37..38, 38..108]);
    }

    fn attention_matches_a_plain_softmax(
        hidden: usize,
        head_dim: usize,
        rows: &[std::ops::Range<usize>],
    ) {
        let n = rows.last().unwrap().end;
        let qkv: Vec<f32> = (0..n * 3 * hidden)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.05)
            .collect();
        let got = packed_attention(&qkv, hidden, head_dim, rows);
        let at = |r: usize, c: usize| qkv[r * 3 * hidden + c] as f64;
        for range in rows {
            for head in 0..hidden / head_dim {
                for i in range.clone() {
                    let scores: Vec<f64> = range
                        .clone()
                        .map(|j| {
                            (0..head_dim)
                                .map(|d| {
                                    at(i, head * head_dim + d) * at(j, hidden + head * head_dim + d)
                                })
                                .sum::<f64>()
                                / (head_dim as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = exps.iter().sum();
                    for d in 0..head_dim {
                        let want: f64 = range
                            .clone()
                            .zip(&exps)
                            .map(|(j, e)| e / total * at(j, 2 * hidden + head * head_dim + d))
                            .sum();
                        let g = got[i * hidden + head * head_dim + d] as f64;
                        assert!(
                            (g - want).abs() < 1e-5,
                            "row {i} head {head} dim {d}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn layer_norm_with_bias_and_residual() {
        let n = 5;
        let x: Vec<f32> = (0..3 * n).map(|i| (i as f32 * 1.7).sin() * 3.0).collect();
        let residual: Vec<f32> = (0..3 * n).map(|i| i as f32 * 0.1).collect();
        let bias = [0.5, -0.5, 0.25, 0.0, 1.0];
        let (gamma, beta) = ([1.0, 2.0, 0.5, 1.5, -1.0], [0.0, 0.1, -0.2, 0.3, 0.0]);
        let mut got = x.clone();
        bias_residual_layer_norm(&mut got, Some(&bias), Some(&residual), &gamma, &beta, 1e-12);
        for r in 0..3 {
            let v: Vec<f64> = (0..n)
                .map(|c| (x[r * n + c] + bias[c] + residual[r * n + c]) as f64)
                .collect();
            let mean = v.iter().sum::<f64>() / n as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n as f64;
            for c in 0..n {
                let want = (v[c] - mean) / (var + 1e-12).sqrt() * gamma[c] as f64 + beta[c] as f64;
                assert!((got[r * n + c] as f64 - want).abs() < 1e-5, "{r},{c}");
            }
        }
    }
}

//! The layouts every kernel and its SIMD half agree on: the bytes of each stored weight block
//! (as ggml writes them), the 8-bit activation blocks they are multiplied with, and the shape
//! of the tiles the grouped kernels rearrange weight rows into. Nothing here computes; it is
//! the one place both the portable kernels and `simd` read these sizes from.

/// Elements in a block of the 32-element formats (Q4_1, Q5_0, Q8_0, and their activations).
pub const QK: usize = 32;
/// Elements in a K-quant super-block (Q4_K, Q6_K, and their Q8_K activations).
pub const QK_K: usize = 256;

/// Bytes of one stored block, as ggml writes it: f16 `d`, f16 `m`, 16 bytes of nibbles.
pub(super) const Q4_1_BLOCK_BYTES: usize = 20;
/// f16 `d`, 32 high bits, 16 bytes of low nibbles.
pub(super) const Q5_0_BLOCK_BYTES: usize = 22;
/// f16 `d`, 32 signed bytes.
pub(super) const Q8_0_BLOCK_BYTES: usize = 34;
/// f16 `d` and `dmin`, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles.
pub(super) const Q4_K_BLOCK_BYTES: usize = 144;
/// 128 bytes of low nibbles, 64 of high bit pairs, 16 signed scales, f16 `d`.
pub(super) const Q6_K_BLOCK_BYTES: usize = 210;

/// An activation block for Q8_0 weights: `x ≈ d * qs`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8_0 {
    pub d: f32,
    pub qs: [i8; QK],
}

/// An activation block quantized to 8 bits: `x ≈ d * qs`, with `s = d * Σ qs`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8_1 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

/// A super-block of 256 activations quantized to 8 bits for the K-quant dot products, with
/// the sums of each 16 for the weights' offsets: ggml's `block_q8_K`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

/// Activation rows a weight row meets at once. Each keeps its own accumulators, so every
/// result is the one-row result bit for bit; meanwhile the weight block is unpacked once for
/// all of them, and their independent FMA chains hide each other's latency.
pub(super) const ROW_GROUP: usize = 4;

/// Weight rows a tile holds: one per f32 lane of an AVX2 register.
pub(super) const TILE_COLS: usize = 8;

/// Bytes of one block of a packed Q5_0 tile: the eight rows' `d` as f32, then each row's
/// 32 weights unpacked to unsigned bytes (`w + 16`, 0..=31).
#[cfg(simd_avx2)]
pub(super) const Q5_0_TILE_BLOCK: usize = TILE_COLS * (4 + QK);

/// Bytes of one packed Q4_K super-block of a tile: per weight row `d` and `dmin` as f32,
/// each sub-block's scale and each pair's two mins as i16 lanes for `vpmaddwd`, then the
/// quants, four bytes of each row per 32 (see `q4_k::pack_q4_k_tile`).
pub(super) const Q4_K_TILE_BLOCK: usize = 4 * TILE_COLS * 2 + 8 * 32 + 4 * 32 + 4 * 8 * 32;

/// Offsets inside a packed Q4_K super-block.
pub(super) const Q4_K_TILE_SCALES: usize = 64;
pub(super) const Q4_K_TILE_MINS: usize = Q4_K_TILE_SCALES + 8 * 32;
pub(super) const Q4_K_TILE_QUANTS: usize = Q4_K_TILE_MINS + 4 * 32;

/// Bytes of one super-block of a packed Q6_K tile: the eight rows' `d` as f32, their 16
/// scales as i32 (sub-block by sub-block, row by row), then their quants unpacked (0..64) in
/// chunks of four elements, each chunk's four bytes from every row in turn, so that one
/// register holds one chunk of the eight rows.
pub(super) const Q6_K_TILE_BLOCK: usize = 4 * TILE_COLS + 16 * 4 * TILE_COLS + QK_K * TILE_COLS;
/// Offsets inside a packed Q6_K super-block.
pub(super) const Q6_K_TILE_SCALES: usize = 4 * TILE_COLS;
pub(super) const Q6_K_TILE_QUANTS: usize = Q6_K_TILE_SCALES + 16 * 4 * TILE_COLS;

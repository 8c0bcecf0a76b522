//! Tiles: [`TILE_COLS`] weight rows computed against [`ROW_GROUP`] activation rows at once,
//! from the rows rearranged ([`pack_tile`]) so that one register holds a few bytes of each.
//! Each quantization type says whether it has a tile kernel ([`Tile`]); the matmul driver
//! uses it where the batch is large enough, each task preparing its rows once (`pack`, or
//! none where the kernel reads the stored rows). Two shapes, after how ggml rounds:
//!
//! - lanes per output (Q4_1, Q5_0, Q8_0: ggml rounds these per lane of a block's products):
//!   `simd::tile_lanes` gives every (weight row, activation row) its own eight lanes and does
//!   per block what the grouped kernel does, the weights as unsigned bytes (Q4_1's nibbles
//!   from the stored rows; Q5_0 unpacked once per task, `w + 16`; Q8_0 from the stored rows
//!   with the top bit flipped, `w + 128`, VNNI only), the offset taken off as `OFFSET · Σx`
//!   in the sums' starting value, formed once per activation block. With AVX-512 two
//!   activation rows share a 512-bit register (lanes 0..8 and 8..16) and all eight weight
//!   rows' accumulators live at once.
//! - rows in the lanes (Q4_K, Q6_K: ggml sums their products exactly before rounding): the
//!   packers rearrange eight rows so that lane `j` of every register is row `j`'s, as ggml
//!   repacks Q4_K at load; no horizontal sums. Q6_K's tile serves batches of 8 rows or more
//!   only ([`Tile::min_rows`]), where ggml uses its tiled matmul; below that ggml's
//!   `vec_dot` rounds per lane.
use super::layout::{ROW_GROUP, TILE_COLS};

/// A kernel that computes [`TILE_COLS`] weight rows against [`ROW_GROUP`] activation rows
/// at once, from the weight rows rearranged so that one register holds a few bytes of each
/// (as ggml repacks Q4_K on x86). Every lane does what the grouped kernel does for its
/// weight row, in the same order, so the results are the same bit for bit; what goes is
/// the per-row horizontal reductions and scalar FMAs.
pub(super) struct Tile<A> {
    /// The fewest rows a batch must have for the tile to compute them as the grouped kernel
    /// would: ggml rounds Q6_K one way below 8 rows and another from 8 on.
    pub(super) min_rows: usize,
    /// Rearranges [`TILE_COLS`] consecutive weight rows (`row_bytes` each) into `out`, once
    /// per matmul task; `None` where the kernel reads the rows as stored.
    pub(super) pack: Option<TilePack>,
    /// Packed (or stored) rows, `row_bytes` each as stored, · activation rows (all in a
    /// group of four): `out[row][col]`.
    pub(super) dot: TileDot<A>,
}

pub(super) type TilePack = fn(&[u8], usize, &mut Vec<u8>);

pub(super) type TileDot<A> = fn(&[u8], usize, [&[A]; ROW_GROUP]) -> [[f32; TILE_COLS]; ROW_GROUP];

/// Packs [`TILE_COLS`] rows block by block into `out`: one packed block of `packed_bytes`
/// per block of `block_bytes`, `put(o, j, block)` writing row `j`'s block into packed block
/// `o`.
#[cfg_attr(not(simd_avx2), allow(dead_code))]
pub(super) fn pack_tile(
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

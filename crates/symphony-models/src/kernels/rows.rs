//! Loops over weight rows shared by several block types: one row at a time ([`each_row`]),
//! two or four side by side for decode on AVX-512 ([`each_row_four`], `rows_of`), and
//! `signed_rows`, `R` activation rows against one row of signed-byte blocks (Q8_0, Q5_0)
//! with each row's lanes in registers.
//!
//! With AVX-512, Q5_0 and Q8_0 decode four weight rows at a time (`rows_of` over
//! `simd::row_pair_lanes`: each pair of rows in one 512-bit register, row A's lanes low, row
//! B's high, against the activation block repeated), prefetching a line of the rows after
//! next per block, since rows read side by side lose the hardware prefetcher on some row
//! lengths.

#[cfg(simd_avx2)]
use half::f16;

#[cfg(simd_avx2)]
use super::lanes::hsum8;
#[cfg(simd_avx2)]
use super::layout::BlockQ8_0;
#[cfg(simd_avx2)]
use super::simd;

/// `out[c] = dot(row c)` for consecutive weight rows of `row_bytes` each.
#[inline(always)]
pub(super) fn each_row(rows: &[u8], row_bytes: usize, out: &mut [f32], dot: impl Fn(&[u8]) -> f32) {
    for (o, w) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
        *o = dot(w);
    }
}

/// [`each_row`] two rows at a time through `pair` (the last, odd row through `single`).
#[cfg_attr(not(simd_avx512), allow(dead_code))]
#[inline(always)]
pub(super) fn each_row_pair(
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

/// [`each_row`] four rows at a time through `four`, the rest as [`each_row_pair`] does.
#[cfg_attr(not(simd_avx512), allow(dead_code))]
#[inline(always)]
pub(super) fn each_row_four(
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

/// `R` activation rows · one row of Q8_0-activated blocks whose weights are signed bytes
/// (Q8_0, Q5_0: `d` in each block's first two bytes), each row's lanes in registers
/// throughout (`simd::lanes_rows`). `weights` turns one block into its 32 weights.
#[cfg(simd_avx2)]
pub(super) fn signed_rows<const R: usize>(
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

/// `N` weight rows (two or four) of a 32-element block type · one Q8_0 activation row, through
/// `simd::row_pair_lanes`: `pair(a, b)` gives the blocks at `a` and `b` (two rows' blocks of
/// the same index) as unsigned bytes, the stored weights plus `OFFSET`; a block's f16 scale
/// is its first two bytes. Each result is the type's one-row kernel's bit for bit.
#[cfg(simd_avx512)]
#[inline(always)]
pub(super) fn rows_of<const N: usize, const P: usize, const OFFSET: i32>(
    rows: [&[u8]; N],
    x: &[BlockQ8_0],
    block_bytes: usize,
    pair: impl Fn(*const u8, *const u8) -> std::arch::x86_64::__m512i,
) -> [f32; N] {
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
                    simd::prefetch(rows[0].as_ptr().wrapping_add(ahead));
                }
                let w = std::array::from_fn(|p| {
                    pair(
                        rows[2 * p].as_ptr().add(at),
                        rows[2 * p + 1].as_ptr().add(at),
                    )
                });
                (w, simd::f16_scales(rows, at))
            },
            |i| (&x[i].qs, x[i].d),
        )
    };
    std::array::from_fn(|r| hsum8(&lanes[r / 2][r % 2]))
}

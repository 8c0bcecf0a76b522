//! The quantized matmul driver: activations quantized once per row (in parallel for a
//! batch), then output columns split into tasks of [`COLS_PER_TASK`] weight rows, each task
//! writing its own columns straight into the output ([`par_column_tasks`]).
//!
//! A task meets its weight rows with the activation rows [`ROW_GROUP`] at a time, each group
//! with all its weight rows before the next, so both stay in L1: through the type's tile
//! where it has one and the batch allows, else the grouped row kernel (`dot_*_rows::<4>`,
//! each activation row keeping its own accumulators). Rows outside groups of four (all of
//! decode's) meet the task's weight rows in one call per activation row (`Kernels::dot`, the
//! row kernel inlined into the loop by `rows::each_row`). Every path gives each output the
//! one-row kernel's value bit for bit, so the batch shape changes a result only where
//! ggml's own kernel choice does ([`RowPlace`]).
use rayon::prelude::*;

use super::layout::{ROW_GROUP, TILE_COLS};
use super::q8::RowPlace;
use super::tile::Tile;

/// Weight rows (output columns) per matmul task.
pub(super) const COLS_PER_TASK: usize = 16;

/// Runs `task` in parallel for each run of [`COLS_PER_TASK`] output columns of
/// `dst (m, n)`, each task writing its own columns straight into place. (Writing each
/// task's columns contiguously and transposing after cost a tenth of Qwen-0.5B's
/// prefill, all of it memory traffic.)
pub(super) fn par_column_tasks(
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
pub(super) struct SharedDst<'a>(*mut f32, std::marker::PhantomData<&'a mut [f32]>);

// SAFETY: the tasks write disjoint elements: `TaskColumns::set` confines each task to its
// own columns, and no task reads `dst`.
unsafe impl Sync for SharedDst<'_> {}

/// One task's columns `first..first + cols` of the output.
pub(super) struct TaskColumns<'a> {
    dst: &'a SharedDst<'a>,
    m: usize,
    n: usize,
    pub(super) first: usize,
    pub(super) cols: usize,
}

impl TaskColumns<'_> {
    /// `dst[row][first + col] = v`.
    #[inline]
    pub(super) fn set(&self, row: usize, col: usize, v: f32) {
        assert!(row < self.m && col < self.cols);
        // SAFETY: in bounds (`row < m`, `first + col < n`, `dst` holds `m · n` and is
        // borrowed mutably for the whole `par_column_tasks` call), and only this task
        // writes its columns.
        unsafe { self.dst.0.add(row * self.n + self.first + col).write(v) }
    }
}

pub(super) type GroupDot<A> =
    fn(&[u8], [&[A]; ROW_GROUP], [RowPlace; ROW_GROUP]) -> [f32; ROW_GROUP];

/// How one weight type's matmul quantizes its activations and forms its dot products.
pub(super) struct Kernels<A: 'static> {
    pub(super) quantize: fn(&[f32], RowPlace, &mut Vec<A>),
    /// Consecutive weight rows (`row_bytes` each) · one activation row, into `out`: one
    /// call per task rather than per weight row, so the row kernel inlines into the loop.
    pub(super) dot: fn(&[u8], usize, &[A], RowPlace, &mut [f32]),
    pub(super) dot_group: GroupDot<A>,
    /// For batches where every activation row of a group is in a group of four.
    pub(super) tile: Option<Tile<A>>,
}

pub(super) fn matmul<A: Send + Sync>(
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
            #[allow(clippy::needless_range_loop)] // `r` is also the output row
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

/// A quantized matmul: `dst (m, n) = lhs (m, k) · weightsᵀ` for weights `(n, k)` given as
/// raw bytes of the type's blocks.
pub type MatmulKernel = fn(&[u8], (usize, usize, usize), &[f32], &mut [f32]);

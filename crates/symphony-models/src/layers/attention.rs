//! Causal self-attention over a paged KV cache.
//!
//! Keys and values live in fixed-size blocks ([`KV_BLOCK_SIZE`] positions); a sequence names
//! its blocks in a block table, so sequences of any length share one pool without copying,
//! and identical prompt prefixes can share blocks (the engine's prefix cache).
//!
//! Work is split per (query, head): each computes one row of scores over the keys it may see,
//! so a long prompt never holds the full `queries × keys` score matrix (memory per worker is
//! one row, `O(keys)`), and decode steps parallelise across heads and sequences.

use std::ops::Range;

use rayon::prelude::*;

use super::activation::expf;

/// Positions per KV block.
pub const KV_BLOCK_SIZE: usize = 16;

/// One layer's keys and values in blocks, each laid out `(n_kv_heads, KV_BLOCK_SIZE,
/// head_dim)` so a head's keys within a block are contiguous for the dot products.
#[derive(Debug, Clone)]
pub struct KvBlocks {
    n_kv_heads: usize,
    head_dim: usize,
    n_blocks: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl KvBlocks {
    pub fn new(n_kv_heads: usize, head_dim: usize, n_blocks: usize) -> Self {
        let len = n_blocks * n_kv_heads * KV_BLOCK_SIZE * head_dim;
        Self {
            n_kv_heads,
            head_dim,
            n_blocks,
            k: vec![0f32; len],
            v: vec![0f32; len],
        }
    }

    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// Bytes of keys and values one block holds.
    pub fn block_bytes(&self) -> usize {
        2 * self.n_kv_heads * KV_BLOCK_SIZE * self.head_dim * std::mem::size_of::<f32>()
    }

    /// Grows the pool to `n_blocks` (existing blocks keep their contents).
    pub fn grow(&mut self, n_blocks: usize) {
        if n_blocks > self.n_blocks {
            let len = n_blocks * self.n_kv_heads * KV_BLOCK_SIZE * self.head_dim;
            self.k.resize(len, 0.0);
            self.v.resize(len, 0.0);
            self.n_blocks = n_blocks;
        }
    }

    fn offset(&self, block: u32, head: usize, slot: usize) -> usize {
        ((block as usize * self.n_kv_heads + head) * KV_BLOCK_SIZE + slot) * self.head_dim
    }

    /// Writes `t` positions of keys and values, each laid out `(t, n_kv_heads, head_dim)`,
    /// at positions `first_pos..first_pos + t` of the sequence whose blocks are `table`.
    pub fn write(&mut self, table: &[u32], first_pos: usize, k: &[f32], v: &[f32]) {
        let (h, d) = (self.n_kv_heads, self.head_dim);
        let t = k.len() / (h * d);
        debug_assert_eq!(k.len(), t * h * d);
        debug_assert_eq!(v.len(), k.len());
        for i in 0..t {
            let pos = first_pos + i;
            let block = table[pos / KV_BLOCK_SIZE];
            for head in 0..h {
                let src = (i * h + head) * d;
                let dst = self.offset(block, head, pos % KV_BLOCK_SIZE);
                self.k[dst..dst + d].copy_from_slice(&k[src..src + d]);
                self.v[dst..dst + d].copy_from_slice(&v[src..src + d]);
            }
        }
    }

    /// Copies every position of block `from` into block `to`.
    pub fn copy_block(&mut self, from: u32, to: u32) {
        let n = self.n_kv_heads * KV_BLOCK_SIZE * self.head_dim;
        let (src, dst) = (from as usize * n, to as usize * n);
        self.k.copy_within(src..src + n, dst);
        self.v.copy_within(src..src + n, dst);
    }

    /// The keys (or values) of `head` at positions `0..n` of a sequence: one contiguous
    /// slice of `(positions, head_dim)` per block, so the loops over keys stay tight.
    fn head_blocks<'a>(
        &'a self,
        data: &'a [f32],
        table: &'a [u32],
        head: usize,
        n: usize,
    ) -> impl Iterator<Item = &'a [f32]> + 'a {
        let d = self.head_dim;
        table
            .iter()
            .take(n.div_ceil(KV_BLOCK_SIZE))
            .enumerate()
            .map(move |(i, &block)| {
                let in_block = (n - i * KV_BLOCK_SIZE).min(KV_BLOCK_SIZE);
                let start = self.offset(block, head, 0);
                &data[start..start + in_block * d]
            })
    }
}

/// One sequence's part of a batch: its query rows, the position of the first of them, and
/// its block table (which must already hold those rows' keys and values).
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    pub rows: Range<usize>,
    pub first_pos: usize,
    pub blocks: &'a [u32],
}

/// Attention of a batch of queries `(rows, n_heads, head_dim)` against each row's sequence.
/// Segment rows are that sequence's positions `first_pos..`, so query `i` of a segment sees
/// keys `0..=first_pos + i`, or with a sliding `window` only the last `window` of those (the
/// query's own position included). Returns `(rows, n_heads, head_dim)`.
///
/// One (query, head) at a time: a row of scores over the visible keys, never the full
/// `queries × keys` matrix. The float arithmetic follows ggml's CPU attention (scores by
/// `ggml_vec_dot_f32`, softmax with its vectorised `expf` and chunked sums, values summed as
/// its sgemm does for a prompt and as `ggml_vec_dot_f32` does for one token) so that the
/// output rounds as the reference's does before it is quantized for the output projection.
pub fn causal_attention(
    q: &[f32],
    n_heads: usize,
    kv: &KvBlocks,
    segments: &[Segment<'_>],
    scale: f32,
    window: Option<usize>,
) -> Vec<f32> {
    let d = kv.head_dim;
    let group = n_heads / kv.n_kv_heads;
    let segment_of_row: Vec<usize> = segments
        .iter()
        .enumerate()
        .flat_map(|(s, seg)| seg.rows.clone().map(move |_| s))
        .collect();
    let mut out = vec![0f32; q.len()];
    out.par_chunks_mut(d)
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (unit, out)| {
            let Scratch { scores, acc } = scratch;
            let (row, head) = (unit / n_heads, unit % n_heads);
            let seg = &segments[segment_of_row[row]];
            // ggml sums values with its sgemm for a prompt and its dot product for one token.
            let value_sum = if seg.rows.len() == 1 {
                ValueSum::Dot
            } else {
                ValueSum::Gemm
            };
            let kv_head = head / group;
            let query = &q[unit * d..(unit + 1) * d];
            let n_keys = seg.first_pos + (row - seg.rows.start) + 1;
            // Keys before `start` are masked: they keep their slots (score -inf, weight 0) so
            // the lane and chunk of every visible key is the one ggml's masked softmax uses.
            let start = window.map_or(0, |w| n_keys.saturating_sub(w));
            scores.clear();
            scores.resize(start, f32::NEG_INFINITY);
            for (b, keys) in kv
                .head_blocks(&kv.k, seg.blocks, kv_head, n_keys)
                .enumerate()
            {
                let first = start.saturating_sub(b * KV_BLOCK_SIZE).min(keys.len() / d);
                scores.extend(
                    keys.chunks_exact(d)
                        .skip(first)
                        .map(|key| dot_f32(query, key) * scale),
                );
            }
            softmax_in_place(scores);
            let values = kv.head_blocks(&kv.v, seg.blocks, kv_head, n_keys);
            match value_sum {
                ValueSum::Gemm => weighted_values_gemm(scores, values, start, acc, out),
                ValueSum::Dot => weighted_values_dot(scores, values, start, acc, out),
            }
        });
    out
}

/// One worker's buffers, reused from one (query, head) to the next: its row of scores and
/// its value accumulators.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    acc: Vec<f32>,
}

/// How ggml sums `p · v` over keys: its sgemm for prompts, its dot product for one token.
#[derive(Clone, Copy)]
enum ValueSum {
    Gemm,
    Dot,
}

/// `_mm512_reduce_add_ps`: halves of 8, then 4, then pairs.
fn reduce16(v: &[f32; 16]) -> f32 {
    let a: [f32; 8] = std::array::from_fn(|i| v[i] + v[i + 8]);
    let b: [f32; 4] = std::array::from_fn(|i| a[i] + a[i + 4]);
    (b[0] + b[2]) + (b[1] + b[3])
}

/// ggml's AVX-512 `ggml_vec_dot_f32`: four accumulators of 16 lanes over steps of 64,
/// scalar leftovers, accumulators folded pairwise, then reduced.
fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        // SAFETY: AVX-512F is enabled at compile time; loads are unaligned and in bounds.
        unsafe { dot_f32_avx512(x, y) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
    dot_f32_scalar(x, y)
}

/// [`dot_f32_scalar`] with the four accumulators in registers: the same FMAs, folds and
/// reduction, so the same bits.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
unsafe fn dot_f32_avx512(x: &[f32], y: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n_full = x.len().min(y.len()) / 64 * 64;
    // SAFETY: every load reads 16 floats below `n_full`, inside both slices.
    let folded = unsafe {
        let mut acc = [_mm512_setzero_ps(); 4];
        for base in (0..n_full).step_by(64) {
            for (j, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_loadu_ps(x.as_ptr().add(base + 16 * j));
                let yv = _mm512_loadu_ps(y.as_ptr().add(base + 16 * j));
                *a = _mm512_fmadd_ps(xv, yv, *a);
            }
        }
        let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), v);
        lanes
    };
    let mut sum = reduce16(&folded) as f64;
    for i in n_full..x.len() {
        sum += (x[i] * y[i]) as f64;
    }
    sum as f32
}

/// The portable path, also the reference the AVX-512 path is tested against.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "avx512f"),
    allow(dead_code)
)]
fn dot_f32_scalar(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [[0f32; 16]; 4];
    let n_full = x.len() / 64 * 64;
    for (cx, cy) in x[..n_full]
        .chunks_exact(64)
        .zip(y[..n_full].chunks_exact(64))
    {
        for (j, acc_j) in acc.iter_mut().enumerate() {
            for (l, a) in acc_j.iter_mut().enumerate() {
                *a = cx[16 * j + l].mul_add(cy[16 * j + l], *a);
            }
        }
    }
    let mut sum = fold_accumulators(&acc) as f64;
    for i in n_full..x.len() {
        sum += (x[i] * y[i]) as f64;
    }
    sum as f32
}

fn fold_accumulators(acc: &[[f32; 16]; 4]) -> f32 {
    let x0: [f32; 16] = std::array::from_fn(|l| acc[0][l] + acc[2][l]);
    let x1: [f32; 16] = std::array::from_fn(|l| acc[1][l] + acc[3][l]);
    let x: [f32; 16] = std::array::from_fn(|l| x0[l] + x1[l]);
    reduce16(&x)
}

/// ggml's soft_max: max, then `expf(s - max)` in chunks of 16 whose sums are added in f64,
/// then a multiplication by the f32 reciprocal.
fn softmax_in_place(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for chunk in scores.chunks_mut(16) {
        let mut lanes = [0f32; 16];
        for (s, lane) in chunk.iter_mut().zip(lanes.iter_mut()) {
            *s = expf(*s - max);
            *lane = *s;
        }
        // A partial last chunk stands for the zero-padded cache positions ggml sums too.
        sum += reduce16(&lanes) as f64;
    }
    let inv = (1.0 / sum) as f32;
    scores.iter_mut().for_each(|s| *s *= inv);
}

/// Calls `f(j, p_j, v_j)` for the keys from `start` on, walking the value blocks slice by
/// slice (plain loops: this is the innermost work of attention).
fn for_visible_values<'a>(
    p: &[f32],
    blocks: impl Iterator<Item = &'a [f32]>,
    start: usize,
    d: usize,
    mut f: impl FnMut(usize, f32, &[f32]),
) {
    for (b, values) in blocks.enumerate() {
        let base = b * KV_BLOCK_SIZE;
        if base + KV_BLOCK_SIZE <= start {
            continue;
        }
        for (k, v) in values.chunks_exact(d).enumerate() {
            let j = base + k;
            if j >= start {
                f(j, p[j], v);
            }
        }
    }
}

/// `out[c] = Σ_j p_j · v_j[c]` with one 16-lane FMA accumulator per output (llamafile sgemm).
/// Accumulators are stored lane-major so the inner loop runs along `c`, contiguous in `v`.
fn weighted_values_gemm<'a>(
    p: &[f32],
    blocks: impl Iterator<Item = &'a [f32]>,
    start: usize,
    acc: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = out.len();
    acc.clear();
    acc.resize(16 * d, 0.0); // (lane, c)
    for_visible_values(p, blocks, start, d, |j, pj, v| {
        let lane = &mut acc[(j % 16) * d..(j % 16 + 1) * d];
        for (a, &vc) in lane.iter_mut().zip(v) {
            *a = pj.mul_add(vc, *a);
        }
    });
    reduce16_rows(acc, out);
}

/// The same sum as `ggml_vec_dot_f32` over the (zero-padded, multiple of 64) keys.
fn weighted_values_dot<'a>(
    p: &[f32],
    blocks: impl Iterator<Item = &'a [f32]>,
    start: usize,
    acc: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = out.len();
    acc.clear();
    acc.resize(64 * d, 0.0); // (accumulator · 16 + lane, c)
    for_visible_values(p, blocks, start, d, |j, pj, v| {
        let slot = &mut acc[(j % 64) * d..(j % 64 + 1) * d];
        for (a, &vc) in slot.iter_mut().zip(v) {
            *a = pj.mul_add(vc, *a);
        }
    });
    // `fold_accumulators` for every output at once: accumulator k's lanes are rows
    // 16k..16k + 16, and the folds are element-wise, so whole rows add as vectors.
    let (first, rest) = acc.split_at_mut(16 * d);
    let (second, rest) = rest.split_at_mut(16 * d);
    let (third, fourth) = rest.split_at_mut(16 * d);
    for (((a0, a1), a2), a3) in first.iter_mut().zip(&*second).zip(&*third).zip(&*fourth) {
        *a0 = (*a0 + a2) + (a1 + a3);
    }
    reduce16_rows(first, out);
}

/// [`reduce16`] down each column of 16 rows of `out.len()` values, the halving steps done
/// a row against a row, so they vectorize along the columns.
fn reduce16_rows(rows: &mut [f32], out: &mut [f32]) {
    let d = out.len();
    for half in [8, 4] {
        let (low, high) = rows[..2 * half * d].split_at_mut(half * d);
        for (a, b) in low.iter_mut().zip(&*high) {
            *a += b;
        }
    }
    let row = |i: usize| &rows[i * d..(i + 1) * d];
    for ((((o, b0), b1), b2), b3) in out
        .iter_mut()
        .zip(row(0))
        .zip(row(1))
        .zip(row(2))
        .zip(row(3))
    {
        *o = (b0 + b2) + (b1 + b3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_scalar_dot_agree_bit_for_bit() {
        let mut seed = 3u32;
        let mut next = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for len in [64, 80, 128, 256, 17] {
            for _ in 0..50 {
                let x: Vec<f32> = (0..len).map(|_| next()).collect();
                let y: Vec<f32> = (0..len).map(|_| next()).collect();
                assert_eq!(dot_f32(&x, &y).to_bits(), dot_f32_scalar(&x, &y).to_bits());
            }
        }
    }

    /// Textbook attention: the full score matrix, softmax, weighted sum, in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n_heads: usize,
        n_kv: usize,
        d: usize,
        past: usize,
        window: usize,
    ) -> Vec<f32> {
        let t = q.len() / (n_heads * d);
        let total = k.len() / (n_kv * d);
        let mut out = vec![0f32; q.len()];
        for i in 0..t {
            for h in 0..n_heads {
                let kh = h / (n_heads / n_kv);
                let qv = &q[(i * n_heads + h) * d..][..d];
                let visible = (past + i + 1).min(total);
                let first = visible.saturating_sub(window);
                let scores: Vec<f64> = (first..visible)
                    .map(|j| {
                        let kv = &k[(j * n_kv + kh) * d..][..d];
                        qv.iter()
                            .zip(kv)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for x in 0..d {
                    let val: f64 = (first..visible)
                        .map(|j| e[j - first] / z * v[(j * n_kv + kh) * d + x] as f64)
                        .sum();
                    out[(i * n_heads + h) * d + x] = val as f32;
                }
            }
        }
        out
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn attention_matches_naive_with_gqa_paging_and_batching() {
        let (n_heads, n_kv, d) = (6, 2, 16);
        // Sequence A: 150 positions (several blocks, more than two key tiles), a prefix of
        // 100 already cached. Sequence B: 21 positions decoding its last one. Both in one
        // batch, with their blocks scattered through the pool in no particular order.
        let (past_a, t_a, past_b) = (100, 50, 20);
        let ka = pseudo_random((past_a + t_a) * n_kv * d, 1);
        let va = pseudo_random((past_a + t_a) * n_kv * d, 2);
        let qa = pseudo_random(t_a * n_heads * d, 3);
        let kb = pseudo_random((past_b + 1) * n_kv * d, 4);
        let vb = pseudo_random((past_b + 1) * n_kv * d, 5);
        let qb = pseudo_random(n_heads * d, 6);
        let table_a = [7u32, 0, 9, 3, 12, 5, 1, 10, 2, 11];
        let table_b = [4u32, 8];
        let mut kv = KvBlocks::new(n_kv, d, 13);
        let split = past_a * n_kv * d;
        kv.write(&table_a, 0, &ka[..split], &va[..split]);
        kv.write(&table_a, past_a, &ka[split..], &va[split..]);
        kv.write(&table_b, 0, &kb, &vb);
        let q: Vec<f32> = qa.iter().chain(&qb).copied().collect();
        let segments = [
            Segment {
                rows: 0..t_a,
                first_pos: past_a,
                blocks: &table_a,
            },
            Segment {
                rows: t_a..t_a + 1,
                first_pos: past_b,
                blocks: &table_b,
            },
        ];
        for window in [None, Some(1), Some(37), Some(120)] {
            let ours =
                causal_attention(&q, n_heads, &kv, &segments, 1.0 / (d as f32).sqrt(), window);
            let w = window.unwrap_or(usize::MAX);
            let mut reference = naive(&qa, &ka, &va, n_heads, n_kv, d, past_a, w);
            reference.extend(naive(&qb, &kb, &vb, n_heads, n_kv, d, past_b, w));
            let max_diff = ours
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max_diff < 1e-4, "window {window:?}: max diff {max_diff}");
        }
    }

    #[test]
    fn a_sequence_in_a_batch_gets_the_bits_it_gets_alone() {
        let (n_heads, n_kv, d) = (4, 2, 64);
        let k = pseudo_random(40 * n_kv * d, 7);
        let v = pseudo_random(40 * n_kv * d, 8);
        let q = pseudo_random(n_heads * d, 9);
        let mut kv = KvBlocks::new(n_kv, d, 6);
        kv.write(&[0, 1, 2], 0, &k, &v);
        kv.write(&[3, 4, 5], 0, &k, &v);
        let alone = causal_attention(
            &q,
            n_heads,
            &kv,
            &[Segment {
                rows: 0..1,
                first_pos: 39,
                blocks: &[0, 1, 2],
            }],
            0.125,
            None,
        );
        let q2: Vec<f32> = q.iter().chain(&q).copied().collect();
        let batched = causal_attention(
            &q2,
            n_heads,
            &kv,
            &[
                Segment {
                    rows: 0..1,
                    first_pos: 39,
                    blocks: &[3, 4, 5],
                },
                Segment {
                    rows: 1..2,
                    first_pos: 39,
                    blocks: &[0, 1, 2],
                },
            ],
            0.125,
            None,
        );
        assert_eq!(alone[..], batched[..alone.len()]);
        assert_eq!(alone[..], batched[alone.len()..]);
    }

    /// The value sums as written before they were vectorized: one output at a time, its
    /// accumulators gathered and folded by [`fold_accumulators`] and [`reduce16`].
    fn weighted_values_per_output(
        p: &[f32],
        values: &[f32],
        start: usize,
        d: usize,
        slots: usize,
    ) -> Vec<f32> {
        let mut acc = vec![0f32; slots * d];
        for (j, v) in values.chunks_exact(d).enumerate().skip(start) {
            for (c, &vc) in v.iter().enumerate() {
                acc[(j % slots) * d + c] = p[j].mul_add(vc, acc[(j % slots) * d + c]);
            }
        }
        (0..d)
            .map(|c| {
                if slots == 16 {
                    reduce16(&std::array::from_fn(|l| acc[l * d + c]))
                } else {
                    fold_accumulators(&std::array::from_fn(|k| {
                        std::array::from_fn(|l| acc[(16 * k + l) * d + c])
                    }))
                }
            })
            .collect()
    }

    #[test]
    fn vectorized_value_sums_equal_the_per_output_folds_bit_for_bit() {
        let d = 64;
        for (n, start) in [(1, 0), (37, 0), (64, 5), (150, 100), (200, 0)] {
            let p = pseudo_random(n, 11 + n as u32);
            let values = pseudo_random(n * d, 13 + n as u32);
            let blocks = || values.chunks(KV_BLOCK_SIZE * d);
            let mut acc = Vec::new();
            let mut out = vec![0f32; d];
            weighted_values_dot(&p, blocks(), start, &mut acc, &mut out);
            let want = weighted_values_per_output(&p, &values, start, d, 64);
            assert_eq!(bits(&out), bits(&want), "dot, {n} keys from {start}");
            weighted_values_gemm(&p, blocks(), start, &mut acc, &mut out);
            let want = weighted_values_per_output(&p, &values, start, d, 16);
            assert_eq!(bits(&out), bits(&want), "gemm, {n} keys from {start}");
        }
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn copied_blocks_hold_the_same_positions() {
        let mut kv = KvBlocks::new(1, 2, 3);
        let k: Vec<f32> = (0..2 * KV_BLOCK_SIZE).map(|i| i as f32).collect();
        kv.write(&[0], 0, &k[..2 * KV_BLOCK_SIZE], &k[..2 * KV_BLOCK_SIZE]);
        kv.copy_block(0, 2);
        let blocks: Vec<&[f32]> = kv.head_blocks(&kv.k, &[2], 0, KV_BLOCK_SIZE).collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!(&blocks[0][6..8], &[6.0, 7.0]);
        assert_eq!(blocks[0].len(), 2 * KV_BLOCK_SIZE);
    }
}

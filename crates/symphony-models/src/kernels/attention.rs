//! Bidirectional multi-head attention over packed sequences, for the encoders: per sequence
//! and head, the queries scored four at a time against the transposed keys in 16-lane
//! blocks, softmax with [`exp_f32`], then the weighted sums of the values. The lane sums
//! use `simd` where the CPU has AVX2 (FMA per lane, in the same order as the portable loop).

use rayon::prelude::*;

use super::encoder::exp_f32;
#[cfg(simd_avx2)]
use super::simd;

/// Queries an attention block scores together: every key and value loaded serves this many.
pub(super) const ATTENTION_QUERIES: usize = 4;

/// Keys (or value columns) an attention block holds per query: one 512-bit register of f32,
/// two 256-bit ones.
pub(super) const ATTENTION_LANES: usize = 16;

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
pub(super) struct AttentionScratch {
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
pub(super) fn exp_in_place_sum(scores: &mut [f32]) -> f32 {
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
pub(super) fn weighted_lane_sums<const R: usize>(
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

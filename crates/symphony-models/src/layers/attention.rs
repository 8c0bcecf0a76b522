//! Causal self-attention over a KV cache.
//!
//! Work is split per (query, head): each computes one row of scores over the keys it may see,
//! so a long prompt never holds the full `queries × keys` score matrix (memory per worker is
//! one row, `O(keys)`), and decode steps parallelise across heads.

use rayon::prelude::*;

use super::activation::expf;

/// Keys and values of one layer, laid out `(n_kv_heads, capacity, head_dim)` so each head's
/// keys are contiguous for the dot products.
#[derive(Debug, Clone)]
pub struct KvCache {
    n_kv_heads: usize,
    head_dim: usize,
    len: usize,
    capacity: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl KvCache {
    pub fn new(n_kv_heads: usize, head_dim: usize) -> Self {
        Self {
            n_kv_heads,
            head_dim,
            len: 0,
            capacity: 0,
            k: Vec::new(),
            v: Vec::new(),
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on (to reuse a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn grow_to(&mut self, needed: usize) {
        if needed <= self.capacity {
            return;
        }
        let new_capacity = needed.max(self.capacity * 2).max(64);
        let (h, d) = (self.n_kv_heads, self.head_dim);
        let relayout = |old: &[f32], old_cap: usize, len: usize| {
            let mut new = vec![0f32; h * new_capacity * d];
            for head in 0..h {
                let src = &old[head * old_cap * d..head * old_cap * d + len * d];
                new[head * new_capacity * d..head * new_capacity * d + len * d]
                    .copy_from_slice(src);
            }
            new
        };
        self.k = relayout(&self.k, self.capacity, self.len);
        self.v = relayout(&self.v, self.capacity, self.len);
        self.capacity = new_capacity;
    }

    /// Appends `t` positions of keys and values, each laid out `(t, n_kv_heads, head_dim)`.
    pub fn append(&mut self, k: &[f32], v: &[f32]) {
        let (h, d) = (self.n_kv_heads, self.head_dim);
        let t = k.len() / (h * d);
        debug_assert_eq!(k.len(), t * h * d);
        debug_assert_eq!(v.len(), k.len());
        self.grow_to(self.len + t);
        for pos in 0..t {
            for head in 0..h {
                let src = (pos * h + head) * d;
                let dst = (head * self.capacity + self.len + pos) * d;
                self.k[dst..dst + d].copy_from_slice(&k[src..src + d]);
                self.v[dst..dst + d].copy_from_slice(&v[src..src + d]);
            }
        }
        self.len += t;
    }

    fn head_keys(&self, head: usize) -> &[f32] {
        let start = head * self.capacity * self.head_dim;
        &self.k[start..start + self.len * self.head_dim]
    }

    fn head_values(&self, head: usize) -> &[f32] {
        let start = head * self.capacity * self.head_dim;
        &self.v[start..start + self.len * self.head_dim]
    }
}

/// Attention of `t` new queries `(t, n_heads, head_dim)` against every cached position.
/// The queries are the last `t` positions in the cache (their keys were appended first), so
/// query `i` sees keys `0..=cache.len() - t + i`, or with a sliding `window` only the last
/// `window` of those (the query's own position included). Returns `(t, n_heads, head_dim)`.
///
/// One (query, head) at a time: a row of scores over the visible keys, never the full
/// `queries × keys` matrix. The float arithmetic follows ggml's CPU attention (scores by
/// `ggml_vec_dot_f32`, softmax with its vectorised `expf` and chunked sums, values summed as
/// its sgemm does for a prompt and as `ggml_vec_dot_f32` does for one token) so that the
/// output rounds as the reference's does before it is quantized for the output projection.
pub fn causal_attention(
    q: &[f32],
    n_heads: usize,
    cache: &KvCache,
    scale: f32,
    window: Option<usize>,
) -> Vec<f32> {
    let d = cache.head_dim;
    let t = q.len() / (n_heads * d);
    let group = n_heads / cache.n_kv_heads;
    let first_pos = cache.len - t;
    let value_sum = if t == 1 {
        ValueSum::Dot
    } else {
        ValueSum::Gemm
    };
    let mut out = vec![0f32; q.len()];
    out.par_chunks_mut(d)
        .enumerate()
        .for_each_init(Vec::new, |scores, (unit, out)| {
            let (row, head) = (unit / n_heads, unit % n_heads);
            let kv_head = head / group;
            let query = &q[unit * d..(unit + 1) * d];
            let n_keys = first_pos + row + 1;
            // Keys before `start` are masked: they keep their slots (score -inf, weight 0) so
            // the lane and chunk of every visible key is the one ggml's masked softmax uses.
            let start = window.map_or(0, |w| n_keys.saturating_sub(w));
            let keys = &cache.head_keys(kv_head)[..n_keys * d];
            let values = &cache.head_values(kv_head)[..n_keys * d];
            scores.clear();
            scores.resize(start, f32::NEG_INFINITY);
            scores.extend(
                keys.chunks_exact(d)
                    .skip(start)
                    .map(|key| dot_f32(query, key) * scale),
            );
            softmax_in_place(scores);
            match value_sum {
                ValueSum::Gemm => weighted_values_gemm(scores, values, start, out),
                ValueSum::Dot => weighted_values_dot(scores, values, start, out),
            }
        });
    out
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

/// `out[c] = Σ_j p_j · v_j[c]` with one 16-lane FMA accumulator per output (llamafile sgemm).
/// Accumulators are stored lane-major so the inner loop runs along `c`, contiguous in `v`.
fn weighted_values_gemm(p: &[f32], values: &[f32], start: usize, out: &mut [f32]) {
    let d = out.len();
    let mut acc = vec![0f32; 16 * d]; // (lane, c)
    for (j, (&pj, v)) in p.iter().zip(values.chunks_exact(d)).enumerate().skip(start) {
        let lane = &mut acc[(j % 16) * d..(j % 16 + 1) * d];
        for (a, &vc) in lane.iter_mut().zip(v) {
            *a = pj.mul_add(vc, *a);
        }
    }
    for (c, o) in out.iter_mut().enumerate() {
        *o = reduce16(&std::array::from_fn(|l| acc[l * d + c]));
    }
}

/// The same sum as `ggml_vec_dot_f32` over the (zero-padded, multiple of 64) keys.
fn weighted_values_dot(p: &[f32], values: &[f32], start: usize, out: &mut [f32]) {
    let d = out.len();
    let mut acc = vec![0f32; 64 * d]; // (accumulator · 16 + lane, c)
    for (j, (&pj, v)) in p.iter().zip(values.chunks_exact(d)).enumerate().skip(start) {
        let slot = &mut acc[(j % 64) * d..(j % 64 + 1) * d];
        for (a, &vc) in slot.iter_mut().zip(v) {
            *a = pj.mul_add(vc, *a);
        }
    }
    for (c, o) in out.iter_mut().enumerate() {
        let gathered: [[f32; 16]; 4] =
            std::array::from_fn(|k| std::array::from_fn(|l| acc[(16 * k + l) * d + c]));
        *o = fold_accumulators(&gathered);
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
    fn attention_matches_naive_with_gqa_and_cache() {
        let (n_heads, n_kv, d) = (6, 2, 16);
        // 150 positions: more than two key tiles, with a prefix already cached.
        let (past, t) = (100, 50);
        let k = pseudo_random((past + t) * n_kv * d, 1);
        let v = pseudo_random((past + t) * n_kv * d, 2);
        let q = pseudo_random(t * n_heads * d, 3);
        let mut cache = KvCache::new(n_kv, d);
        cache.append(&k[..past * n_kv * d], &v[..past * n_kv * d]);
        cache.append(&k[past * n_kv * d..], &v[past * n_kv * d..]);
        for window in [None, Some(1), Some(37), Some(120)] {
            let ours = causal_attention(&q, n_heads, &cache, 1.0 / (d as f32).sqrt(), window);
            let reference = naive(
                &q,
                &k,
                &v,
                n_heads,
                n_kv,
                d,
                past,
                window.unwrap_or(usize::MAX),
            );
            let max_diff = ours
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max_diff < 1e-4, "window {window:?}: max diff {max_diff}");
        }
    }

    #[test]
    fn truncate_then_append_overwrites() {
        let mut cache = KvCache::new(1, 2);
        cache.append(&[1.0, 1.0, 2.0, 2.0], &[1.0, 1.0, 2.0, 2.0]);
        cache.truncate(1);
        cache.append(&[3.0, 3.0], &[3.0, 3.0]);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.head_keys(0), &[1.0, 1.0, 3.0, 3.0]);
    }
}

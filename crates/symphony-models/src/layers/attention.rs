//! Causal self-attention over a KV cache, tiled with an online softmax.
//!
//! Scores are computed one tile of keys at a time and folded into a running maximum, sum and
//! weighted value accumulator (the FlashAttention recurrence), so a long prompt never holds the
//! full `queries × keys` score matrix: memory per (query, head) is one tile of scores.

use rayon::prelude::*;

/// Keys scored per tile.
const KEY_TILE: usize = 64;

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

    /// Bytes held by the cache buffers.
    pub fn allocated_bytes(&self) -> usize {
        (self.k.capacity() + self.v.capacity()) * std::mem::size_of::<f32>()
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
/// query `i` sees keys `0..=cache.len() - t + i`. Returns `(t, n_heads, head_dim)`.
pub fn causal_attention(q: &[f32], n_heads: usize, cache: &KvCache, scale: f32) -> Vec<f32> {
    let d = cache.head_dim;
    let t = q.len() / (n_heads * d);
    let group = n_heads / cache.n_kv_heads;
    let first_pos = cache.len - t;
    let mut out = vec![0f32; q.len()];
    // One unit of work per (query, head): independent, and enough of them even in decode.
    out.par_chunks_mut(d).enumerate().for_each_init(
        || vec![0f32; KEY_TILE],
        |scores, (unit, out)| {
            let (row, head) = (unit / n_heads, unit % n_heads);
            let kv_head = head / group;
            let query = &q[unit * d..(unit + 1) * d];
            let n_keys = first_pos + row + 1;
            attend_one(
                query,
                &cache.head_keys(kv_head)[..n_keys * d],
                &cache.head_values(kv_head)[..n_keys * d],
                scale,
                scores,
                out,
            );
        },
    );
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise without reassociating.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

fn attend_one(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let d = query.len();
    let n_keys = keys.len() / d;
    let mut running_max = f32::NEG_INFINITY;
    let mut running_sum = 0f32;
    out.fill(0.0);
    for tile_start in (0..n_keys).step_by(KEY_TILE) {
        let tile_len = KEY_TILE.min(n_keys - tile_start);
        let mut tile_max = f32::NEG_INFINITY;
        for j in 0..tile_len {
            let key = &keys[(tile_start + j) * d..(tile_start + j + 1) * d];
            let s = dot(query, key) * scale;
            scores[j] = s;
            tile_max = tile_max.max(s);
        }
        let new_max = running_max.max(tile_max);
        let correction = (running_max - new_max).exp();
        if correction != 1.0 {
            running_sum *= correction;
            out.iter_mut().for_each(|o| *o *= correction);
        }
        for j in 0..tile_len {
            let p = (scores[j] - new_max).exp();
            running_sum += p;
            let value = &values[(tile_start + j) * d..(tile_start + j + 1) * d];
            for (o, v) in out.iter_mut().zip(value) {
                *o += p * v;
            }
        }
        running_max = new_max;
    }
    let inv = 1.0 / running_sum;
    out.iter_mut().for_each(|o| *o *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Textbook attention: the full score matrix, softmax, weighted sum, in f64.
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n_heads: usize,
        n_kv: usize,
        d: usize,
        past: usize,
    ) -> Vec<f32> {
        let t = q.len() / (n_heads * d);
        let total = k.len() / (n_kv * d);
        let mut out = vec![0f32; q.len()];
        for i in 0..t {
            for h in 0..n_heads {
                let kh = h / (n_heads / n_kv);
                let qv = &q[(i * n_heads + h) * d..][..d];
                let visible = (past + i + 1).min(total);
                let scores: Vec<f64> = (0..visible)
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
                    let val: f64 = (0..visible)
                        .map(|j| e[j] / z * v[(j * n_kv + kh) * d + x] as f64)
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
    fn tiled_attention_matches_naive_with_gqa_and_cache() {
        let (n_heads, n_kv, d) = (6, 2, 16);
        // 150 positions: more than two key tiles, with a prefix already cached.
        let (past, t) = (100, 50);
        let k = pseudo_random((past + t) * n_kv * d, 1);
        let v = pseudo_random((past + t) * n_kv * d, 2);
        let q = pseudo_random(t * n_heads * d, 3);
        let mut cache = KvCache::new(n_kv, d);
        cache.append(&k[..past * n_kv * d], &v[..past * n_kv * d]);
        cache.append(&k[past * n_kv * d..], &v[past * n_kv * d..]);
        let ours = causal_attention(&q, n_heads, &cache, 1.0 / (d as f32).sqrt());
        let reference = naive(&q, &k, &v, n_heads, n_kv, d, past);
        let max_diff = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-4, "max diff {max_diff}");
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

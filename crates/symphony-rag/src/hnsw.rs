//! A Hierarchical Navigable Small World graph (Malkov & Yashunin, 2016) over unit vectors,
//! for approximate nearest neighbours by cosine similarity (a dot product, since the
//! vectors are normalised).
//!
//! Every node lives on layer 0 and, with probability falling by `1/M` per layer, on higher
//! layers too. A search greedily descends from the top layer's entry point, then explores
//! layer 0 with a beam of `ef` candidates. Insertion links a node to `M` neighbours per
//! layer (`2M` on layer 0), chosen by the paper's diversity heuristic so that links reach
//! in different directions instead of crowding into one cluster.
//!
//! Removal leaves a tombstone: the node still routes searches but is never returned.
//!
//! The file format (little-endian) is written whole to a temporary file and renamed over
//! the old one, so a crash leaves either the old index or the new one:
//! `b"SYMHNSW1"`, dim u32, m u32, applied_seq u64, entry u32 (u32::MAX for none), n u32,
//! then per node: key u64, removed u8, level u8, the vector (dim f32), and per layer
//! `0..=level` a neighbour count u32 and the neighbours (u32 each).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use symphony_models::kernels::dot_f32 as dot;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"SYMHNSW1";

/// A similarity with a total order, for the heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

#[derive(Debug, Clone)]
struct Node {
    key: u64,
    removed: bool,
    /// Neighbours on layers `0..=level`.
    links: Vec<Vec<u32>>,
}

#[derive(Debug, Clone)]
pub struct Hnsw {
    dim: usize,
    m: usize,
    ef_construction: usize,
    nodes: Vec<Node>,
    /// Node `i`'s vector is `vectors[i * dim..(i + 1) * dim]`.
    vectors: Vec<f32>,
    by_key: HashMap<u64, u32>,
    entry: Option<u32>,
    /// The last store operation reflected here (see the collection's op log).
    pub applied_seq: u64,
    rng: u64,
}

impl Hnsw {
    /// An empty index for `dim`-dimensional vectors with `m` links per node and layer.
    pub fn new(dim: usize, m: usize, ef_construction: usize) -> Self {
        Self {
            dim,
            m: m.max(2),
            ef_construction: ef_construction.max(m),
            nodes: Vec::new(),
            vectors: Vec::new(),
            by_key: HashMap::new(),
            entry: None,
            applied_seq: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Live (not removed) entries.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn contains(&self, key: u64) -> bool {
        self.by_key.contains_key(&key)
    }

    /// The keys of the live entries.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_key.keys().copied()
    }

    /// The live entries' keys and vectors.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &[f32])> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| !node.removed)
            .map(|(i, node)| (node.key, self.vector(i as u32)))
    }

    /// Nodes in the graph, tombstones included: when they outnumber the live ones, a
    /// rebuild pays off.
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    fn vector(&self, node: u32) -> &[f32] {
        &self.vectors[node as usize * self.dim..][..self.dim]
    }

    fn random_level(&mut self) -> usize {
        // xorshift64*: reproducible graphs for a given insertion order.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let uniform = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let level = (-uniform.ln() / (self.m as f64).ln()).floor() as usize;
        level.min(16)
    }

    /// Adds `vector` (unit length) under `key`; a key already present is replaced.
    pub fn insert(&mut self, key: u64, vector: &[f32]) -> Result<()> {
        if vector.len() != self.dim {
            return Err(Error::Dimension {
                expected: self.dim,
                found: vector.len(),
            });
        }
        self.remove(key);
        let id = self.nodes.len() as u32;
        let level = self.random_level();
        self.vectors.extend_from_slice(vector);
        self.nodes.push(Node {
            key,
            removed: false,
            links: vec![Vec::new(); level + 1],
        });
        self.by_key.insert(key, id);
        let Some(mut entry) = self.entry else {
            self.entry = Some(id);
            return Ok(());
        };
        let top = self.nodes[entry as usize].links.len() - 1;
        // Greedy descent through the layers above the new node's.
        for layer in (level + 1..=top).rev() {
            entry = self.greedy(vector, entry, layer);
        }
        let mut entries = vec![entry];
        for layer in (0..=level.min(top)).rev() {
            let found = self.search_layer(vector, &entries, self.ef_construction, layer);
            let max_links = if layer == 0 { 2 * self.m } else { self.m };
            let chosen = self.select_neighbours(&found, self.m);
            self.nodes[id as usize].links[layer] = chosen.clone();
            for &n in &chosen {
                self.link(n, id, layer, max_links);
            }
            entries = found.iter().map(|s| s.1).collect();
        }
        if level > top {
            self.entry = Some(id);
        }
        Ok(())
    }

    /// Adds the link `from -> to`, pruning `from`'s list back to `max_links` by the same
    /// heuristic when it overflows.
    fn link(&mut self, from: u32, to: u32, layer: usize, max_links: usize) {
        let links = &mut self.nodes[from as usize].links[layer];
        links.push(to);
        if links.len() <= max_links {
            return;
        }
        let base = self.vector(from).to_vec();
        let candidates: Vec<Scored> = self.nodes[from as usize].links[layer]
            .iter()
            .map(|&n| Scored(dot(&base, self.vector(n)), n))
            .collect();
        let kept = self.select_neighbours(&candidates, max_links);
        self.nodes[from as usize].links[layer] = kept;
    }

    /// The paper's heuristic: take candidates best first, keeping one only if it is closer
    /// to the base than to every neighbour kept so far; fill up with the best of the rest.
    fn select_neighbours(&self, candidates: &[Scored], m: usize) -> Vec<u32> {
        let mut sorted = candidates.to_vec();
        sorted.sort_by(|a, b| b.cmp(a));
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        let mut skipped = Vec::new();
        for &Scored(similarity, node) in &sorted {
            if kept.len() >= m {
                break;
            }
            let v = self.vector(node);
            let diverse = kept.iter().all(|&k| dot(v, self.vector(k)) < similarity);
            if diverse {
                kept.push(node);
            } else {
                skipped.push(node);
            }
        }
        for node in skipped {
            if kept.len() >= m {
                break;
            }
            kept.push(node);
        }
        kept
    }

    fn greedy(&self, query: &[f32], mut current: u32, layer: usize) -> u32 {
        let mut best = dot(query, self.vector(current));
        loop {
            let mut improved = false;
            for &n in &self.nodes[current as usize].links[layer] {
                let s = dot(query, self.vector(n));
                if s > best {
                    best = s;
                    current = n;
                    improved = true;
                }
            }
            if !improved {
                return current;
            }
        }
    }

    /// Beam search on one layer; returns up to `ef` nodes, best first.
    fn search_layer(&self, query: &[f32], entries: &[u32], ef: usize, layer: usize) -> Vec<Scored> {
        let mut visited: HashSet<u32> = entries.iter().copied().collect();
        // Candidates to expand, best first; results kept, worst on top.
        let mut candidates: BinaryHeap<Scored> = BinaryHeap::new();
        let mut results: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
        for &e in entries {
            let s = Scored(dot(query, self.vector(e)), e);
            candidates.push(s);
            results.push(Reverse(s));
        }
        while results.len() > ef {
            results.pop();
        }
        while let Some(current) = candidates.pop() {
            let worst = results.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
            if current.0 < worst && results.len() >= ef {
                break;
            }
            for &n in &self.nodes[current.1 as usize].links[layer] {
                if !visited.insert(n) {
                    continue;
                }
                let s = Scored(dot(query, self.vector(n)), n);
                let worst = results.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
                if results.len() < ef || s.0 > worst {
                    candidates.push(s);
                    results.push(Reverse(s));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        let mut out: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
        out.sort_by(|a, b| b.cmp(a));
        out
    }

    /// Up to `k` live entries most similar to `query`, best first, as `(key, cosine)`.
    /// `ef` (at least `k`) trades speed for recall.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        let Some(mut entry) = self.entry else {
            return Vec::new();
        };
        if query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let top = self.nodes[entry as usize].links.len() - 1;
        for layer in (1..=top).rev() {
            entry = self.greedy(query, entry, layer);
        }
        // Tombstones still fill the beam: widen it by their share.
        let removed = self.nodes.len() - self.by_key.len();
        let ef = ef.max(k) + removed.min(ef.max(k));
        self.search_layer(query, &[entry], ef, 0)
            .into_iter()
            .filter(|s| !self.nodes[s.1 as usize].removed)
            .take(k)
            .map(|s| (self.nodes[s.1 as usize].key, s.0))
            .collect()
    }

    /// Tombstones `key`; returns whether it was there.
    pub fn remove(&mut self, key: u64) -> bool {
        match self.by_key.remove(&key) {
            Some(id) => {
                self.nodes[id as usize].removed = true;
                true
            }
            None => false,
        }
    }

    /// The live entries re-inserted into a fresh graph: drops the tombstones.
    pub fn rebuilt(&self) -> Result<Self> {
        let mut fresh = Self::new(self.dim, self.m, self.ef_construction);
        fresh.applied_seq = self.applied_seq;
        for (id, node) in self.nodes.iter().enumerate() {
            if !node.removed {
                fresh.insert(node.key, self.vector(id as u32))?;
            }
        }
        Ok(fresh)
    }

    /// Writes the index to `path` atomically (a temporary file, synced, then renamed).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let io = |e| Error::io(&tmp, e);
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut w = BufWriter::new(file);
        let mut put = |bytes: &[u8]| w.write_all(bytes);
        (|| -> std::io::Result<()> {
            put(MAGIC)?;
            put(&(self.dim as u32).to_le_bytes())?;
            put(&(self.m as u32).to_le_bytes())?;
            put(&self.applied_seq.to_le_bytes())?;
            put(&self.entry.unwrap_or(u32::MAX).to_le_bytes())?;
            put(&(self.nodes.len() as u32).to_le_bytes())?;
            for (id, node) in self.nodes.iter().enumerate() {
                put(&node.key.to_le_bytes())?;
                put(&[node.removed as u8, (node.links.len() - 1) as u8])?;
                for x in self.vector(id as u32) {
                    put(&x.to_le_bytes())?;
                }
                for links in &node.links {
                    put(&(links.len() as u32).to_le_bytes())?;
                    for n in links {
                        put(&n.to_le_bytes())?;
                    }
                }
            }
            Ok(())
        })()
        .map_err(io)?;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Ok(())
    }

    /// Reads an index `save` wrote. A damaged file is an error (the caller rebuilds).
    pub fn load(path: &Path, ef_construction: usize) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut r = BufReader::new(file);
        let corrupt = |what: &str| Error::CorruptIndex {
            path: path.to_path_buf(),
            message: what.to_string(),
        };
        let mut buf8 = [0u8; 8];
        let mut buf4 = [0u8; 4];
        let mut u32_ = |r: &mut BufReader<std::fs::File>| -> Result<u32> {
            r.read_exact(&mut buf4).map_err(|_| corrupt("truncated"))?;
            Ok(u32::from_le_bytes(buf4))
        };
        r.read_exact(&mut buf8).map_err(|_| corrupt("truncated"))?;
        if &buf8 != MAGIC {
            return Err(corrupt("not a Symphony HNSW file"));
        }
        let dim = u32_(&mut r)? as usize;
        let m = u32_(&mut r)? as usize;
        r.read_exact(&mut buf8).map_err(|_| corrupt("truncated"))?;
        let applied_seq = u64::from_le_bytes(buf8);
        let entry = u32_(&mut r)?;
        let n = u32_(&mut r)? as usize;
        // Each node takes at least its key, flags, vector and one count.
        if dim == 0 || (n as u64) * (14 + 4 * dim as u64) > len {
            return Err(corrupt("the node count does not fit the file"));
        }
        let mut index = Self::new(dim, m, ef_construction);
        index.applied_seq = applied_seq;
        index.vectors.reserve(n * dim);
        for id in 0..n {
            r.read_exact(&mut buf8).map_err(|_| corrupt("truncated"))?;
            let key = u64::from_le_bytes(buf8);
            let mut flags = [0u8; 2];
            r.read_exact(&mut flags).map_err(|_| corrupt("truncated"))?;
            let mut raw = vec![0u8; 4 * dim];
            r.read_exact(&mut raw).map_err(|_| corrupt("truncated"))?;
            index.vectors.extend(
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            let mut links = Vec::with_capacity(flags[1] as usize + 1);
            for _ in 0..=flags[1] {
                let count = u32_(&mut r)? as usize;
                if count > 4 * m + 1 {
                    return Err(corrupt("a node has more links than the graph allows"));
                }
                let mut layer = Vec::with_capacity(count);
                for _ in 0..count {
                    let n_id = u32_(&mut r)?;
                    if n_id as usize >= n {
                        return Err(corrupt("a link points past the last node"));
                    }
                    layer.push(n_id);
                }
                links.push(layer);
            }
            let removed = flags[0] != 0;
            if !removed {
                index.by_key.insert(key, id as u32);
            }
            index.nodes.push(Node {
                key,
                removed,
                links,
            });
        }
        index.entry = match entry {
            u32::MAX => None,
            e if (e as usize) < n => Some(e),
            _ => return Err(corrupt("the entry point is past the last node")),
        };
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                let v: Vec<f32> = (0..dim)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect()
    }

    fn exact(data: &[Vec<f32>], query: &[f32], k: usize, skip: &HashSet<u64>) -> Vec<u64> {
        let mut scored: Vec<(u64, f32)> = data
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(&(*i as u64)))
            .map(|(i, v)| (i as u64, dot(query, v)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.into_iter().take(k).map(|(i, _)| i).collect()
    }

    /// Recall@10 against brute force, with a tenth of the entries removed.
    #[test]
    fn recall_matches_brute_force_and_tombstones_are_never_returned() {
        let (n, dim, k) = (2000, 32, 10);
        let data = unit_vectors(n, dim, 7);
        let mut index = Hnsw::new(dim, 16, 100);
        for (i, v) in data.iter().enumerate() {
            index.insert(i as u64, v).unwrap();
        }
        let removed: HashSet<u64> = (0..n as u64).filter(|i| i % 10 == 3).collect();
        for &key in &removed {
            assert!(index.remove(key));
        }
        assert_eq!(index.len(), n - removed.len());
        let queries = unit_vectors(100, dim, 99);
        let mut hits = 0;
        for q in &queries {
            let got: Vec<u64> = index
                .search(q, k, 64)
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            assert!(got.iter().all(|key| !removed.contains(key)));
            let truth = exact(&data, q, k, &removed);
            hits += got.iter().filter(|key| truth.contains(key)).count();
        }
        let recall = hits as f64 / (queries.len() * k) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[test]
    fn save_and_load_round_trip_and_damage_is_detected() {
        let data = unit_vectors(300, 16, 3);
        let mut index = Hnsw::new(16, 8, 50);
        for (i, v) in data.iter().enumerate() {
            index.insert(100 + i as u64, v).unwrap();
        }
        index.remove(105);
        index.applied_seq = 42;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.hnsw");
        index.save(&path).unwrap();
        let loaded = Hnsw::load(&path, 50).unwrap();
        assert_eq!(loaded.applied_seq, 42);
        assert_eq!(loaded.len(), 299);
        assert!(!loaded.contains(105));
        for q in unit_vectors(10, 16, 5) {
            assert_eq!(index.search(&q, 5, 32), loaded.search(&q, 5, 32));
        }
        // A truncated file is refused, not half-read.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            Hnsw::load(&path, 50),
            Err(Error::CorruptIndex { .. })
        ));
    }

    #[test]
    fn a_replaced_key_has_one_entry() {
        let data = unit_vectors(3, 8, 1);
        let mut index = Hnsw::new(8, 4, 10);
        index.insert(1, &data[0]).unwrap();
        index.insert(1, &data[1]).unwrap();
        assert_eq!(index.len(), 1);
        let hit = index.search(&data[1], 1, 10);
        assert_eq!(hit[0].0, 1);
        assert!((hit[0].1 - 1.0).abs() < 1e-5);
        assert!(matches!(
            index.insert(2, &[0.0; 3]),
            Err(Error::Dimension { .. })
        ));
    }
}

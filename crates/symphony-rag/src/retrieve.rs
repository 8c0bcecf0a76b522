//! Retrieval: nearest vectors, BM25, or both fused by reciprocal rank; then metadata
//! filters and, optionally, maximal marginal relevance for diverse results.

use std::collections::HashMap;

use serde::Serialize;
use symphony_models::embedding::Embedder;
use symphony_models::kernels::dot_f32 as dot;

use crate::db::ChunkRecord;
use crate::error::{Error, Result};
use crate::Collection;

/// Reciprocal rank fusion's constant (Cormack et al., 2009): a document ranked `r` by a
/// retriever scores `1 / (RRF_K + r)`.
const RRF_K: f32 = 60.0;
/// HNSW beam width for queries, at least `top_k`.
pub const EF_SEARCH: usize = 96;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Vector,
    Bm25,
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "vector" => Ok(Mode::Vector),
            "bm25" => Ok(Mode::Bm25),
            "hybrid" => Ok(Mode::Hybrid),
            other => Err(Error::InvalidQuery(format!(
                "unknown retrieval mode '{other}' (vector, bm25 or hybrid)"
            ))),
        }
    }
}

/// Keeps only chunks whose document matches every condition given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// The document's path starts with this.
    pub path_prefix: Option<String>,
    /// The document's format: text, markdown, html or pdf.
    pub format: Option<String>,
    /// The chunk's heading path contains this.
    pub heading: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.path_prefix.is_none() && self.format.is_none() && self.heading.is_none()
    }

    fn keeps(&self, c: &ChunkRecord) -> bool {
        self.path_prefix
            .as_ref()
            .is_none_or(|p| c.path.starts_with(p))
            && self.format.as_ref().is_none_or(|f| &c.format == f)
            && self
                .heading
                .as_ref()
                .is_none_or(|h| c.heading.as_deref().is_some_and(|x| x.contains(h.as_str())))
    }
}

#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub top_k: usize,
    pub mode: Mode,
    pub filter: Filter,
    /// Maximal marginal relevance: `Some(lambda)` trades relevance (1.0) for diversity
    /// (0.0) among the candidates.
    pub mmr: Option<f32>,
}

impl QueryOptions {
    pub fn new(top_k: usize, mode: Mode) -> Self {
        Self {
            top_k,
            mode,
            filter: Filter::default(),
            mmr: None,
        }
    }
}

/// A retrieved chunk. `score` is the ranking score of the mode (cosine, BM25 or fused);
/// the retrievers' own scores are there when they found it.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub chunk: ChunkRecord,
    pub score: f32,
    pub vector_score: Option<f32>,
    pub bm25_score: Option<f32>,
    /// The reranking model's log-odds that the chunk answers the question, when reranked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_score: Option<f32>,
}

pub(crate) fn query(
    collection: &Collection,
    embedder: &Embedder,
    question: &str,
    options: &QueryOptions,
) -> Result<Vec<Hit>> {
    let k = options.top_k;
    if k == 0 {
        return Ok(Vec::new());
    }
    // More candidates than asked for: fusion, filters and MMR choose among them.
    let widen = if options.filter.is_empty() { 1 } else { 10 };
    let pool = (k * 4).max(40) * widen;
    let needs_vector = options.mode != Mode::Bm25 || options.mmr.is_some();
    let query_vector = match needs_vector {
        true => Some(embedder.embed(&[question])?.remove(0)),
        false => None,
    };
    let vector_hits = match (options.mode, &query_vector) {
        (Mode::Vector | Mode::Hybrid, Some(q)) => {
            collection.vectors.search(q, pool, EF_SEARCH.max(pool))
        }
        _ => Vec::new(),
    };
    let text_hits = match options.mode {
        Mode::Bm25 | Mode::Hybrid => collection.text.search(question, pool)?,
        Mode::Vector => Vec::new(),
    };
    let vector_score: HashMap<u64, f32> = vector_hits.iter().copied().collect();
    let bm25_score: HashMap<u64, f32> = text_hits.iter().copied().collect();
    let ranked: Vec<(u64, f32)> = match options.mode {
        Mode::Vector => vector_hits,
        Mode::Bm25 => text_hits,
        Mode::Hybrid => fuse(&[&vector_hits, &text_hits]),
    };
    let ids: Vec<u64> = ranked.iter().map(|(id, _)| *id).collect();
    let score: HashMap<u64, f32> = ranked.iter().copied().collect();
    let mut hits: Vec<Hit> = collection
        .db
        .chunks(&ids)?
        .into_iter()
        .filter(|c| options.filter.keeps(c))
        .map(|chunk| Hit {
            score: score[&chunk.chunk_id],
            vector_score: vector_score.get(&chunk.chunk_id).copied(),
            bm25_score: bm25_score.get(&chunk.chunk_id).copied(),
            rerank_score: None,
            chunk,
        })
        .collect();
    if let (Some(lambda), Some(q)) = (options.mmr, &query_vector) {
        hits = mmr(collection, q, hits, k, lambda)?;
    }
    hits.truncate(k);
    Ok(hits)
}

/// Reciprocal rank fusion of several rankings, best first.
fn fuse(rankings: &[&[(u64, f32)]]) -> Vec<(u64, f32)> {
    let mut fused: HashMap<u64, f32> = HashMap::new();
    for ranking in rankings {
        for (rank, (id, _)) in ranking.iter().enumerate() {
            *fused.entry(*id).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<(u64, f32)> = fused.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Maximal marginal relevance (Carbonell & Goldstein, 1998): picks, one at a time, the
/// candidate most similar to the query and least similar to those already picked.
fn mmr(
    collection: &Collection,
    query: &[f32],
    candidates: Vec<Hit>,
    k: usize,
    lambda: f32,
) -> Result<Vec<Hit>> {
    let mut vectors = Vec::with_capacity(candidates.len());
    for hit in &candidates {
        let v = collection
            .db
            .embedding(hit.chunk.chunk_id)?
            .unwrap_or_default();
        vectors.push(v);
    }
    let relevance: Vec<f32> = vectors.iter().map(|v| dot(query, v)).collect();
    let mut chosen: Vec<usize> = Vec::new();
    let mut left: Vec<usize> = (0..candidates.len()).collect();
    while chosen.len() < k && !left.is_empty() {
        let (pos, _) = left
            .iter()
            .enumerate()
            .map(|(pos, &i)| {
                let redundancy = chosen
                    .iter()
                    .map(|&j| dot(&vectors[i], &vectors[j]))
                    .fold(f32::NEG_INFINITY, f32::max)
                    .max(0.0);
                (pos, lambda * relevance[i] - (1.0 - lambda) * redundancy)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("candidates left");
        chosen.push(left.remove(pos));
    }
    let mut slots: Vec<Option<Hit>> = candidates.into_iter().map(Some).collect();
    Ok(chosen.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_fusion_rewards_agreement() {
        let vector = [(1, 0.9), (2, 0.8), (3, 0.7)];
        let bm25 = [(3, 12.0), (4, 10.0), (1, 5.0)];
        let fused = fuse(&[&vector, &bm25]);
        let order: Vec<u64> = fused.iter().map(|(id, _)| *id).collect();
        // 1 is first and third; 3 third and first: tied, broken by id. 2 and 4 appear once.
        assert_eq!(order, vec![1, 3, 2, 4]);
        assert!((fused[0].1 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
    }
}

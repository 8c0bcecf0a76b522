//! Symphony's HNSW beside `hnsw_rs` and `instant-distance` on one collection's vectors:
//! recall@10 against exact search, build time, query latency (p50, p95) and heap memory.
//!
//!     symphony-ann-bench VECTORS.hnsw QUESTIONS.jsonl [--queries N]
//!
//! VECTORS.hnsw is a collection's index file (its vectors are the corpus; every index is
//! built again from them, one insert at a time, with the collection's M and
//! ef_construction); QUESTIONS.jsonl holds one query embedding (a JSON array) per line.
//! Prints one JSON object.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::json;
use symphony_rag::hnsw::Hnsw;

/// Counts the bytes live on the heap, so each index's memory is what it allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const K: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (index_path, questions_path) = match args.as_slice() {
        [_, index, questions, ..] => (index, questions),
        _ => {
            eprintln!("usage: symphony-ann-bench VECTORS.hnsw QUESTIONS.jsonl [--queries N]");
            std::process::exit(2);
        }
    };
    let limit = args
        .iter()
        .position(|a| a == "--queries")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse::<usize>().expect("--queries N"));

    let stored = Hnsw::load(index_path.as_ref(), symphony_rag::HNSW_EF_CONSTRUCTION)
        .expect("the collection's index loads");
    let corpus: Vec<(u64, Vec<f32>)> = stored.entries().map(|(k, v)| (k, v.to_vec())).collect();
    drop(stored);
    let dim = corpus[0].1.len();
    let mut queries: Vec<Vec<f32>> = std::fs::read_to_string(questions_path)
        .expect("the questions file reads")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON array per line"))
        .collect();
    if let Some(n) = limit {
        queries.truncate(n);
    }
    let (m, ef_construction, ef_search) = (
        symphony_rag::HNSW_M,
        symphony_rag::HNSW_EF_CONSTRUCTION,
        symphony_rag::EF_SEARCH,
    );

    // Exact search: the truth every index is measured against (recall needs its top ten as
    // a set, not in order).
    let (exact, exact_ms) = time_queries(&queries, |q| {
        let mut scored: Vec<(f32, u64)> = corpus.iter().map(|(k, v)| (dot(q, v), *k)).collect();
        scored.select_nth_unstable_by(K, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(K);
        scored.into_iter().map(|(_, k)| k).collect()
    });

    let mut results = Vec::new();

    // Symphony.
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut ours = Hnsw::new(dim, m, ef_construction);
    for (key, v) in &corpus {
        ours.insert(*key, v).unwrap();
    }
    let build_s = start.elapsed().as_secs_f64();
    let memory = LIVE.load(Ordering::Relaxed) - before;
    let (found, times) = time_queries(&queries, |q| {
        ours.search(q, K, ef_search)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    });
    results.push(report("symphony", build_s, memory, &found, &exact, &times));
    drop(ours);

    // hnsw_rs, one insert at a time as ours, then its parallel insert. Its dot-product
    // distance asserts `1 - dot >= 0`, which rounding breaks for two copies of one vector
    // (the corpus has repeated passages): it gets the vectors scaled by 0.9999, which keeps
    // every ranking.
    let scaled: Vec<(u64, Vec<f32>)> = corpus
        .iter()
        .map(|(k, v)| (*k, v.iter().map(|x| x * 0.9999).collect()))
        .collect();
    let scaled_queries: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| q.iter().map(|x| x * 0.9999).collect())
        .collect();
    for parallel in [false, true] {
        let before = LIVE.load(Ordering::Relaxed);
        let start = Instant::now();
        let theirs = hnsw_rs::hnsw::Hnsw::<f32, hnsw_rs::anndists::dist::DistDot>::new(
            m,
            corpus.len(),
            16,
            ef_construction,
            hnsw_rs::anndists::dist::DistDot {},
        );
        if parallel {
            let data: Vec<(&Vec<f32>, usize)> =
                scaled.iter().map(|(k, v)| (v, *k as usize)).collect();
            theirs.parallel_insert(&data);
        } else {
            for (key, v) in &scaled {
                theirs.insert((v.as_slice(), *key as usize));
            }
        }
        let build_s = start.elapsed().as_secs_f64();
        let memory = LIVE.load(Ordering::Relaxed) - before;
        let (found, times) = time_queries(&scaled_queries, |q| {
            theirs
                .search(q, K, ef_search)
                .into_iter()
                .map(|n| n.d_id as u64)
                .collect()
        });
        let name = if parallel {
            "hnsw_rs (parallel insert)"
        } else {
            "hnsw_rs"
        };
        results.push(report(name, build_s, memory, &found, &exact, &times));
    }

    // instant-distance: it builds in parallel, with its own M (32 on layer 0).
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let points: Vec<Unit> = corpus.iter().map(|(_, v)| Unit(v.clone())).collect();
    let keys: Vec<u64> = corpus.iter().map(|(k, _)| *k).collect();
    let theirs = instant_distance::Builder::default()
        .ef_construction(ef_construction)
        .ef_search(ef_search)
        .build(points, keys);
    let build_s = start.elapsed().as_secs_f64();
    let memory = LIVE.load(Ordering::Relaxed) - before;
    let (found, times) = time_queries(&queries, |q| {
        let mut search = instant_distance::Search::default();
        theirs
            .search(&Unit(q.to_vec()), &mut search)
            .take(K)
            .map(|item| *item.value)
            .collect()
    });
    results.push(report(
        "instant-distance (parallel build)",
        build_s,
        memory,
        &found,
        &exact,
        &times,
    ));

    let out = json!({
        "vectors": corpus.len(),
        "dimension": dim,
        "queries": queries.len(),
        "m": m,
        "ef_construction": ef_construction,
        "ef_search": ef_search,
        "exact_query_p50_ms": exact_ms[exact_ms.len() / 2],
        "vector_bytes": corpus.len() * dim * 4,
        "indexes": results,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

#[derive(Clone)]
struct Unit(Vec<f32>);

impl instant_distance::Point for Unit {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - dot(&self.0, &other.0)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    symphony_models::kernels::dot_f32(a, b)
}

/// Each query's keys, and its latency in milliseconds (sorted).
fn time_queries(
    queries: &[Vec<f32>],
    mut search: impl FnMut(&[f32]) -> Vec<u64>,
) -> (Vec<Vec<u64>>, Vec<f64>) {
    let mut found = Vec::with_capacity(queries.len());
    let mut times = Vec::with_capacity(queries.len());
    for q in queries {
        let start = Instant::now();
        let keys = search(q);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        found.push(keys);
    }
    times.sort_by(f64::total_cmp);
    (found, times)
}

fn report(
    name: &str,
    build_s: f64,
    memory: usize,
    found: &[Vec<u64>],
    exact: &[Vec<u64>],
    times: &[f64],
) -> serde_json::Value {
    let hits: usize = found
        .iter()
        .zip(exact)
        .map(|(f, e)| f.iter().filter(|k| e.contains(k)).count())
        .sum();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    json!({
        "index": name,
        "recall_at_10": hits as f64 / (exact.len() * K) as f64,
        "build_s": build_s,
        "query_p50_ms": pct(0.5),
        "query_p95_ms": pct(0.95),
        "heap_bytes": memory,
    })
}

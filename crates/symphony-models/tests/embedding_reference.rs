//! all-MiniLM-L6-v2 against sentence-transformers: tokenizer ids exactly, sentence
//! embeddings to cosine >= 0.9999 (golden files by scripts/reference/make_embedding_golden.py).
//!
//! The model comes from the store (`symphony models fetch all-minilm`, which the README's
//! test command runs) or from the directory in `SYMPHONY_TEST_MINILM`.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;
use symphony_models::embedding::{Embedder, Pooling};

const STORE_NAME: &str = "all-minilm";
const ENV: &str = "SYMPHONY_TEST_MINILM";

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let dir = match std::env::var_os(ENV) {
            Some(p) => PathBuf::from(p),
            None => {
                let store = symphony_store::Store::from_env().expect("a data directory");
                match store.get(STORE_NAME) {
                    Ok(manifest) => store.blob_path(&manifest),
                    Err(e) => panic!(
                        "{e}\nrun `symphony models fetch {STORE_NAME}` (the README's test command does), or set {ENV}"
                    ),
                }
            }
        };
        Embedder::load(&dir).unwrap_or_else(|e| panic!("{} loads: {e}", dir.display()))
    })
}

fn golden(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden/all-minilm-l6-v2")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("golden files are JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn wordpiece_ids_match_the_reference_exactly() {
    let embedder = embedder();
    let golden = golden("tokenizer.json");
    assert_eq!(
        golden["max_seq_length"].as_u64().unwrap() as usize,
        embedder.max_seq_length
    );
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 200);
    let mut wrong = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected = ids(&case["ids"]);
        let got = embedder.tokenize(text);
        if got != expected {
            wrong.push(format!(
                "{text:?}\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn sentence_embeddings_match_sentence_transformers() {
    let embedder = embedder();
    assert_eq!(embedder.pooling, Pooling::Mean);
    assert!(embedder.normalize);
    let golden = golden("embeddings.json");
    assert_eq!(
        golden["dimension"].as_u64().unwrap() as usize,
        embedder.dimension()
    );
    let cases = golden["texts"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    // All at once (batched by length), and each alone: both must match the reference.
    let batched = embedder.embed(&texts).unwrap();
    for (i, case) in cases.iter().enumerate() {
        let expected: Vec<f32> = case["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let n_tokens = case["n_tokens"].as_u64().unwrap() as usize;
        assert_eq!(
            embedder.tokenize(texts[i]).len(),
            n_tokens,
            "{:?}",
            texts[i]
        );
        let alone = embedder.embed(&[texts[i]]).unwrap().remove(0);
        for (how, got) in [("batched", &batched[i]), ("alone", &alone)] {
            let cos = cosine(got, &expected);
            assert!(cos >= 0.9999, "{how} {:?}: cosine {cos}", texts[i]);
            let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
        }
    }
    // Different texts are not embedded alike: the check above is not trivially met.
    assert!(cosine(&batched[0], &batched[3]) < 0.9);
}

//! `symphony rag` end to end with the real all-MiniLM-L6-v2 embedder: ingest, re-ingest,
//! query in every mode, and a collection that survives `kill -9` at random moments.
//!
//! Collections go to a temporary `SYMPHONY_COLLECTIONS`; the embedder comes from the store
//! (`symphony models fetch all-minilm`, which scripts/test.sh runs).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn symphony(collections: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(args)
        .env("SYMPHONY_COLLECTIONS", collections)
        .output()
        .expect("symphony runs")
}

fn ok(collections: &Path, args: &[&str]) -> String {
    let out = symphony(collections, args);
    assert!(
        out.status.success(),
        "symphony {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(collections: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(collections, args)).expect("JSON output")
}

/// Deterministic filler prose: `n` sentences about `topic`.
fn prose(topic: &str, seed: u64, n: usize) -> String {
    const WORDS: &[&str] = &[
        "river", "engine", "garden", "signal", "harbor", "lantern", "meadow", "circuit", "orchard",
        "canyon", "beacon", "glacier", "market", "violin", "compass", "quarry",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::new();
    for _ in 0..n {
        let mut sentence = vec![topic.to_string()];
        for _ in 0..10 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            sentence.push(WORDS[(state % WORDS.len() as u64) as usize].to_string());
        }
        out.push_str(&sentence.join(" "));
        out.push_str(". ");
    }
    out
}

#[test]
fn ingest_query_reingest_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let (collections, docs) = (dir.path().join("collections"), dir.path().join("docs"));
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(
        docs.join("saturn.md"),
        "# Saturn\n\nSaturn is the sixth planet from the Sun and has 146 known moons.\n\n\
         ## Rings\n\nIts rings are made mostly of water ice.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("sub/bread.html"),
        "<html><head><title>Bread</title></head><body><p>Sourdough bread rises with a \
         starter of wild yeast and lactic bacteria.</p></body></html>",
    )
    .unwrap();
    std::fs::write(
        docs.join("tea.txt"),
        "Green tea is steeped at about 80 degrees Celsius.",
    )
    .unwrap();
    std::fs::write(docs.join("ignored.png"), [0u8, 1, 2]).unwrap();

    ok(
        &collections,
        &[
            "rag",
            "create",
            "kb",
            "--chunking",
            "markdown",
            "--chunk-tokens",
            "64",
        ],
    );
    let report = json(
        &collections,
        &["rag", "ingest", "kb", docs.to_str().unwrap(), "--json"],
    );
    assert_eq!(report["added"], 3, "{report}");
    assert_eq!(report["failed"], 0);

    // Each mode finds the right document first; hits carry path, chunk id, span and text.
    for mode in ["vector", "bm25", "hybrid"] {
        let hits = json(
            &collections,
            &[
                "rag",
                "query",
                "kb",
                "How many moons does Saturn have?",
                "--mode",
                mode,
                "--json",
            ],
        );
        let first = &hits[0];
        assert!(
            first["path"].as_str().unwrap().ends_with("saturn.md"),
            "{mode}: {hits}"
        );
        assert!(
            first["text"].as_str().unwrap().contains("146"),
            "{mode}: {hits}"
        );
        assert!(
            first["chunk_id"].as_u64().is_some()
                && first["end_char"].as_u64() > first["start_char"].as_u64()
        );
    }
    let hits = json(
        &collections,
        &[
            "rag",
            "query",
            "kb",
            "wild yeast starter",
            "--json",
            "--top-k",
            "1",
        ],
    );
    assert!(
        hits[0]["path"].as_str().unwrap().ends_with("bread.html"),
        "{hits}"
    );
    assert_eq!(hits[0]["title"], "Bread");
    // The span points at the chunk's text in the extracted document.
    let hits = json(
        &collections,
        &[
            "rag",
            "query",
            "kb",
            "rings of ice",
            "--json",
            "--heading",
            "Rings",
        ],
    );
    assert_eq!(hits[0]["heading"], "Saturn > Rings", "{hits}");
    // Filters: only HTML.
    let hits = json(
        &collections,
        &[
            "rag",
            "query",
            "kb",
            "Saturn moons",
            "--json",
            "--format",
            "html",
        ],
    );
    assert!(
        hits.as_array()
            .unwrap()
            .iter()
            .all(|h| h["format"] == "html"),
        "{hits}"
    );

    // Unchanged files are skipped; a changed one replaces its chunks.
    let report = json(
        &collections,
        &["rag", "ingest", "kb", docs.to_str().unwrap(), "--json"],
    );
    assert_eq!(report["unchanged"], 3, "{report}");
    std::fs::write(
        docs.join("tea.txt"),
        "Oolong tea is partly oxidised before drying.",
    )
    .unwrap();
    let report = json(
        &collections,
        &["rag", "ingest", "kb", docs.to_str().unwrap(), "--json"],
    );
    assert_eq!(
        (report["replaced"].as_u64(), report["unchanged"].as_u64()),
        (Some(1), Some(2))
    );
    let hits = json(
        &collections,
        &["rag", "query", "kb", "Celsius", "--mode", "bm25", "--json"],
    );
    assert!(
        hits.as_array().unwrap().is_empty(),
        "old chunks are gone: {hits}"
    );
    let check = json(&collections, &["rag", "check", "kb", "--json"]);
    assert_eq!(
        check["vector_missing"].as_array().unwrap().len(),
        0,
        "{check}"
    );

    let listed = json(&collections, &["rag", "ls", "--json"]);
    assert_eq!(listed[0]["name"], "kb");
    assert_eq!(listed[0]["documents"], 3);
    // Errors are clear and change nothing.
    let out = symphony(&collections, &["rag", "query", "nope", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no collection 'nope'"));
    let out = symphony(&collections, &["rag", "create", "kb"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    let out = symphony(&collections, &["rag", "create", "bad/name"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid collection name"));
    ok(&collections, &["rag", "rm", "kb"]);
    assert!(json(&collections, &["rag", "ls", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
}

/// Kills the ingesting process at random moments; after each kill the database and both
/// indexes must hold exactly the same chunks, and a final ingest must complete the corpus.
#[test]
fn a_collection_killed_mid_ingest_reopens_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (collections, docs) = (dir.path().join("collections"), dir.path().join("docs"));
    std::fs::create_dir_all(&docs).unwrap();
    let n_files = 240;
    for i in 0..n_files {
        let text = format!(
            "{}\n\n{}",
            prose(&format!("topic{i}"), i, 6),
            prose("shared", i + 1000, 4)
        );
        std::fs::write(docs.join(format!("doc{i:03}.txt")), text).unwrap();
    }
    ok(
        &collections,
        &[
            "rag",
            "create",
            "crash",
            "--chunking",
            "fixed",
            "--chunk-tokens",
            "48",
            "--overlap",
            "8",
        ],
    );
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut state = seed | 1;
    let mut kills = 0;
    for round in 0..6 {
        // Some files change between rounds, so kills also land in replacements.
        for i in (round * 7..n_files).step_by(40) {
            let text = prose(&format!("changed{round}"), i + round, 5);
            std::fs::write(docs.join(format!("doc{i:03}.txt")), text).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_symphony"))
            .args(["rag", "ingest", "crash", docs.to_str().unwrap()])
            .env("SYMPHONY_COLLECTIONS", &collections)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let wait = Duration::from_millis(300 + state % 2500);
        let started = Instant::now();
        while started.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let check = json(&collections, &["rag", "check", "crash", "--json"]);
        for key in [
            "vector_missing",
            "vector_extra",
            "text_missing",
            "text_extra",
        ] {
            assert!(
                check[key].as_array().unwrap().is_empty(),
                "round {round} (seed {seed}, killed after {wait:?}): {check}"
            );
        }
    }
    assert!(kills > 0, "no ingest was killed (seed {seed})");
    let report = json(
        &collections,
        &["rag", "ingest", "crash", docs.to_str().unwrap(), "--json"],
    );
    assert_eq!(report["failed"], 0, "{report}");
    let listed = json(&collections, &["rag", "ls", "--json"]);
    assert_eq!(listed[0]["documents"], n_files, "{listed}");
    let check = json(&collections, &["rag", "check", "crash", "--json"]);
    assert_eq!(check["chunks"], listed[0]["chunks"], "{check}");
    // A document no round changed is found by its own topic word.
    let hits = json(
        &collections,
        &[
            "rag", "query", "crash", "topic123", "--mode", "bm25", "--json", "--top-k", "1",
        ],
    );
    assert!(
        hits[0]["path"].as_str().unwrap().ends_with("doc123.txt"),
        "{hits}"
    );
}

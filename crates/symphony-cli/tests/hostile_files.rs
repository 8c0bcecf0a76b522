//! Hostile files and paths given to the `symphony` binary: symlink cycles under `rag ingest`,
//! checkpoints with subdirectories, crafted model files whose sizes overflow, shard indexes
//! that point outside the checkpoint, and leftovers of killed imports.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use symphony_models::gguf::writer::{to_bytes, TensorToWrite};
use symphony_models::quant::GgmlType;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `symphony` with `env`, killed after `limit` so that a hang fails the test rather
/// than the whole run. `None` when it had to be killed.
fn run(args: &[&str], env: &[(&str, &Path)], limit: Duration) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .env("SYMPHONY_THREADS", "1")
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("symphony runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

/// An import into the store at `home` that must fail cleanly: exit status 1 (not 101, a
/// panic), no panic text, and nothing stored. Returns the error output.
fn refused_import(home: &Path, path: &Path) -> String {
    let o = run(
        &["models", "import", path.to_str().unwrap(), "--name", "x"],
        &[("SYMPHONY_HOME", home)],
        Duration::from_secs(120),
    )
    .expect("import finishes");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let stored = std::fs::read_dir(home.join("manifests")).map_or(0, |d| d.count());
    assert_eq!(stored, 0, "nothing is stored: {err}");
    err
}

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tiny")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// D7: `ln -s . d/l1; ln -s . d/l2` made `rag ingest` walk forever with memory growing, one
/// self-link read the same file 41 times, and a link out of the tree was followed.
#[test]
fn rag_ingest_does_not_follow_directory_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let (collections, docs, outside) = (
        tmp.path().join("collections"),
        tmp.path().join("d"),
        tmp.path().join("outside"),
    );
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(docs.join("a.txt"), "hi").unwrap();
    std::fs::write(outside.join("secret.txt"), "not part of the tree").unwrap();
    std::os::unix::fs::symlink(".", docs.join("l1")).unwrap();
    std::os::unix::fs::symlink(".", docs.join("l2")).unwrap();
    std::os::unix::fs::symlink(&outside, docs.join("out")).unwrap();
    let env = [("SYMPHONY_COLLECTIONS", collections.as_path())];
    let limit = Duration::from_secs(300);
    let o = run(&["rag", "create", "C"], &env, limit).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &["rag", "ingest", "C", docs.to_str().unwrap(), "--json"],
        &env,
        limit,
    )
    .expect("the ingest ends");
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["added"], 1, "a.txt once, nothing else: {report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["unchanged"], 0, "no file seen twice: {report}");

    // A symlinked directory named explicitly is still ingested.
    let o = run(
        &[
            "rag",
            "ingest",
            "C",
            docs.join("out").to_str().unwrap(),
            "--json",
        ],
        &env,
        limit,
    )
    .expect("the ingest ends");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["added"], 1, "{report}");
}

/// D8: importing a sentence-transformers checkpoint copied only its top-level files, so
/// `1_Pooling/` was lost and the stored model could not load. With it, the low one: a
/// killed import's `.import-*` copy stayed in the store forever; the next import removes it.
#[test]
fn import_keeps_checkpoint_subdirectories_and_clears_stale_temporaries() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let checkpoint = tmp.path().join("minilm");
    copy_dir(&common::stored("all-minilm"), &checkpoint);
    assert!(
        checkpoint.join("1_Pooling/config.json").is_file(),
        "the packaged all-minilm has its pooling module in a subdirectory"
    );

    let mut exited = Command::new("true").spawn().unwrap();
    let dead = exited.id();
    exited.wait().unwrap();
    let stale_blob = home.join(format!("blobs/.import-{dead}-1-0"));
    let stale_staging = home.join(format!("downloads/.import-{dead}"));
    std::fs::create_dir_all(stale_blob.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&stale_staging).unwrap();
    std::fs::write(&stale_blob, "half a model").unwrap();
    std::fs::write(stale_staging.join("model.safetensors"), "half a model").unwrap();

    let env = [("SYMPHONY_HOME", home.as_path())];
    let limit = Duration::from_secs(300);
    let o = run(
        &[
            "models",
            "import",
            checkpoint.to_str().unwrap(),
            "--name",
            "x",
        ],
        &env,
        limit,
    )
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stale_blob.exists(), "a killed import's copy is removed");
    assert!(
        !stale_staging.exists(),
        "a killed import's staging is removed"
    );

    let o = run(&["models", "path", "x"], &env, limit).unwrap();
    let stored = PathBuf::from(String::from_utf8(o.stdout).unwrap().trim());
    assert!(
        stored.join("1_Pooling/config.json").is_file(),
        "{}",
        stored.display()
    );
    let o = run(&["embed", "-m", "x", "--json", "hello world"], &env, limit).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["dimension"], 384, "{out}");
}

/// Low: importing a directory that is no checkpoint said "No such device".
#[test]
fn importing_a_plain_directory_says_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("notes");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "hi").unwrap();
    let err = refused_import(&tmp.path().join("home"), &dir);
    assert!(
        err.contains("is a directory but not a model checkpoint") && err.contains("config.json"),
        "{err}"
    );
    assert!(!err.contains("No such device"), "{err}");
}

/// D9: a GGUF F32 tensor with dims `[2^62 + 576]` wrapped its byte count and the import
/// panicked (exit 101); safetensors `data_offsets` near 2^64 passed the bounds check by
/// overflow.
#[test]
fn crafted_sizes_are_refused_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");

    let gguf = tmp.path().join("crafted.gguf");
    std::fs::write(
        &gguf,
        to_bytes(
            &[],
            &[TensorToWrite {
                name: "w".into(),
                dims: vec![(1u64 << 62) + 576],
                ggml_type: GgmlType::F32,
                data: vec![0u8; 2304],
            }],
        ),
    )
    .unwrap();
    let err = refused_import(&home, &gguf);
    assert!(
        err.contains("tensor 'w'") && err.contains("overflow"),
        "{err}"
    );

    let checkpoint = tmp.path().join("crafted");
    copy_dir(&tiny("qwen2"), &checkpoint);
    let begin = u64::MAX - 7;
    let header = format!(
        r#"{{"model.embed_tokens.weight":{{"dtype":"F32","shape":[1],"data_offsets":[{begin},{}]}}}}"#,
        begin + 4
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + 64, 0);
    std::fs::write(checkpoint.join("model.safetensors"), bytes).unwrap();
    let err = refused_import(&home, &checkpoint);
    assert!(err.contains("truncated or corrupt"), "{err}");
}

/// D10: `weight_map` values like `../../../../etc/passwd` were opened, and the error showed
/// the file's size and first bytes.
#[test]
fn shard_index_cannot_name_files_outside_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "0123456789 a secret outside the checkpoint").unwrap();
    for shard in ["../secret".to_string(), secret.display().to_string()] {
        let checkpoint = tmp.path().join("ckpt");
        let _ = std::fs::remove_dir_all(&checkpoint);
        copy_dir(&tiny("llama"), &checkpoint);
        let index_path = checkpoint.join("model.safetensors.index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
        index["weight_map"]["lm_head.weight"] = shard.clone().into();
        std::fs::write(&index_path, index.to_string()).unwrap();
        let err = refused_import(&tmp.path().join("home"), &checkpoint);
        assert!(err.contains("plain file name"), "{shard}: {err}");
        assert!(
            !err.contains("header of") && !err.contains("bytes of the file"),
            "{shard}: the file outside was read: {err}"
        );
    }
}

/// Low: nonsensical hyperparameters were accepted at import. An encoder whose
/// `max_position_embeddings` cannot hold `[CLS]` and `[SEP]` panicked as it loaded.
#[test]
fn nonsensical_hyperparameters_are_refused_at_import() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let cases: [(&str, serde_json::Value, &str); 2] = [
        (
            "max_position_embeddings",
            1.into(),
            "max_position_embeddings 1",
        ),
        ("layer_norm_eps", (-1.0).into(), "layer_norm_eps -1"),
    ];
    let source = common::stored("all-minilm");
    for (key, value, expected) in cases {
        let checkpoint = tmp.path().join(format!("minilm-{key}"));
        copy_dir(&source, &checkpoint);
        let config = checkpoint.join("config.json");
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        json[key] = value;
        std::fs::write(&config, json.to_string()).unwrap();
        let err = refused_import(&home, &checkpoint);
        assert!(err.contains(expected), "{key}: {err}");
    }

    let checkpoint = tmp.path().join("qwen2");
    copy_dir(&tiny("qwen2"), &checkpoint);
    let config = checkpoint.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    json["max_position_embeddings"] = 0.into();
    std::fs::write(&config, json.to_string()).unwrap();
    let err = refused_import(&home, &checkpoint);
    assert!(err.contains("context_length is 0"), "{err}");
}

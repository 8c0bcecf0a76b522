//! The store under concurrent writers, aliases, and checkpoint directories.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use symphony_store::{ModelMeta, Store};

fn meta() -> ModelMeta {
    ModelMeta {
        format: "gguf".into(),
        architecture: "llama".into(),
        quantization: "Q8_0".into(),
        parameters: 1,
        context_length: 8,
        has_chat_template: true,
        embedding: false,
    }
}

fn blob_names(home: &Path) -> BTreeSet<String> {
    fs::read_dir(home.join("blobs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Eight threads import, alias and remove models over the same few names and contents at
/// once. Afterwards every name points at a blob that exists, every blob is named by some
/// name, and no temporary file is left.
#[test]
fn concurrent_writers_cannot_corrupt_the_store() {
    let home = tempfile::tempdir().unwrap();
    let sources = tempfile::tempdir().unwrap();
    let contents: Vec<_> = (0..3)
        .map(|i| {
            let p = sources.path().join(format!("m{i}.gguf"));
            fs::write(&p, vec![i as u8; 200_000 + i * 1000]).unwrap();
            p
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..8usize {
            let store = Store::at(home.path());
            let contents = &contents;
            scope.spawn(move || {
                for round in 0..25usize {
                    let name = format!("model{}", (t + round) % 4);
                    let src = &contents[(t * 7 + round) % 3];
                    store.import(src, &name, meta(), |_, _| {}).unwrap();
                    match round % 3 {
                        0 => {
                            let _ = store.copy(&name, &format!("alias{}", t % 3));
                        }
                        1 => {
                            let _ = store.remove(&name); // May race with another remover.
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    let store = Store::at(home.path());
    let manifests = store.list().unwrap();
    let named: BTreeSet<String> = manifests.iter().map(|m| m.blob.clone()).collect();
    for m in &manifests {
        let bytes = fs::read(store.blob_path(m)).unwrap();
        assert_eq!(bytes.len() as u64, m.size_bytes, "{}", m.name);
    }
    let on_disk: BTreeSet<String> = blob_names(home.path());
    assert_eq!(
        on_disk, named,
        "every blob named, every name's blob present, no temp files"
    );
    let leftovers: Vec<_> = walk(home.path())
        .into_iter()
        .filter(|p| p.contains(".tmp-") || p.contains(".import-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p.display().to_string());
    }
    out
}

#[test]
fn aliases_share_the_blob_until_the_last_name_goes() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::at(home.path());
    let src = home.path().join("x.gguf");
    fs::write(&src, b"weights").unwrap();
    let m = store.import(&src, "qwen:0.5b", meta(), |_, _| {}).unwrap();
    let alias = store.copy("qwen:0.5b", "coder").unwrap();
    assert_eq!(alias.name, "coder");
    assert_eq!(alias.blob, m.blob);
    assert!(store.get("coder:latest").unwrap().meta.has_chat_template);
    store.remove("qwen:0.5b").unwrap();
    assert!(store.blob_path(&alias).is_file());
    store.remove("coder").unwrap();
    assert!(blob_names(home.path()).is_empty(), "space freed");
    assert!(store.copy("missing", "x").is_err());
}

#[test]
fn checkpoint_directories_are_stored_whole() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::at(home.path());
    let make = |tag: &str| {
        let dir = home.path().join(format!("download-{tag}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.json"), b"{}").unwrap();
        fs::write(dir.join("model.safetensors"), b"tensors").unwrap();
        fs::write(dir.join("model.safetensors.part"), b"leftover").unwrap();
        dir
    };
    let a = store
        .import_checkpoint(
            &make("a"),
            "tiny",
            meta(),
            "hf:org/tiny",
            &Default::default(),
        )
        .unwrap();
    assert!(a.blob.ends_with(".hf"));
    assert_eq!(a.size_bytes, 2 + 7);
    let dir = store.blob_path(&a);
    assert_eq!(fs::read(dir.join("model.safetensors")).unwrap(), b"tensors");
    // The same files again under another name: one blob.
    let b = store
        .import_checkpoint(
            &make("b"),
            "tiny:v2",
            meta(),
            "hf:org/tiny",
            &Default::default(),
        )
        .unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(blob_names(home.path()).len(), 1);
    // Hashes a pull already computed are taken as given, to the same result.
    let known = [
        ("config.json", sha256_hex(b"{}")),
        ("model.safetensors", sha256_hex(b"tensors")),
    ]
    .map(|(f, h)| (f.to_string(), h))
    .into_iter()
    .collect();
    let c = store
        .import_checkpoint(&make("c"), "tiny:v3", meta(), "hf:org/tiny", &known)
        .unwrap();
    assert_eq!(
        (c.sha256.as_str(), c.size_bytes),
        (a.sha256.as_str(), a.size_bytes)
    );
    store.remove("tiny:v3").unwrap();
    store.remove("tiny").unwrap();
    store.remove("tiny:v2").unwrap();
    assert!(blob_names(home.path()).is_empty());
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

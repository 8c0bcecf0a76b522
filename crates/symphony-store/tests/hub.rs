//! Hub downloads against a local imitation of the hub's HTTP endpoints (see
//! `common/imitation_hub.rs`): listing, redirects, verification, resume and offline mode.

mod common;

use common::imitation_hub::{HubFile, ImitationHub};
use sha2::{Digest, Sha256};
use symphony_store::hub::{select, HubClient, HubRef, Selection};

/// Deterministic bytes that do not compress or repeat.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        })
        .collect()
}

fn gguf_repo() -> (Vec<u8>, Vec<HubFile>) {
    let weights = noise(3 << 20, 7);
    let files = vec![
        HubFile::new("README.md", b"# A model\n".to_vec(), false),
        HubFile::new("model-Q8_0.gguf", noise(1000, 1), true),
        HubFile::new("model-Q4_K_M.gguf", weights.clone(), true),
    ];
    (weights, files)
}

fn client(hub: &ImitationHub) -> HubClient {
    HubClient::new(hub.endpoint.clone(), None, false)
}

#[test]
fn lists_selects_and_downloads_through_the_redirect() {
    let (weights, files) = gguf_repo();
    let hub = ImitationHub::start(vec![("org/model-GGUF", files)]);
    let r = HubRef::parse("hf:org/model-GGUF").unwrap();
    let listing = client(&hub).list_files(&r).unwrap();
    assert_eq!(listing.len(), 3);
    let Selection::Gguf(file) = select(&listing, None, &r.repo).unwrap() else {
        panic!("a GGUF repo")
    };
    assert_eq!(file.path, "model-Q4_K_M.gguf");
    assert_eq!(
        file.sha256.as_deref(),
        Some(hex(&Sha256::digest(&weights)).as_str())
    );
    let dir = tempfile::tempdir().unwrap();
    let mut last = (0, 0);
    let verified = client(&hub)
        .download(&r, &file, dir.path(), |d, t| last = (d, t))
        .unwrap();
    assert_eq!(std::fs::read(&verified.path).unwrap(), weights);
    assert_eq!(Some(verified.sha256()), file.sha256.as_deref());
    assert_eq!(last, (weights.len() as u64, weights.len() as u64));
    assert!(
        hub.seen().iter().any(|s| s.path.starts_with("/cdn/")),
        "followed the redirect"
    );
}

#[test]
fn an_interrupted_transfer_resumes_with_a_range_request() {
    let (weights, files) = gguf_repo();
    let hub = ImitationHub::start(vec![("org/model-GGUF", files)]);
    let r = HubRef::parse("hf:org/model-GGUF:model-Q4_K_M.gguf").unwrap();
    let listing = client(&hub).list_files(&r).unwrap();
    let Selection::Gguf(file) = select(&listing, r.file.as_deref(), &r.repo).unwrap() else {
        panic!()
    };
    let cut = 1_000_000;
    hub.cut_next_transfer("model-Q4_K_M.gguf", cut);
    let dir = tempfile::tempdir().unwrap();
    let path = client(&hub)
        .download(&r, &file, dir.path(), |_, _| {})
        .unwrap()
        .path;
    assert_eq!(std::fs::read(&path).unwrap(), weights, "whole and verified");
    let ranges: Vec<Option<u64>> = hub
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/cdn/"))
        .map(|s| s.range_start)
        .collect();
    assert_eq!(
        ranges,
        [None, Some(cut as u64)],
        "second request resumes at the cut"
    );
}

#[test]
fn a_partial_file_from_a_killed_process_is_resumed() {
    let (weights, files) = gguf_repo();
    let hub = ImitationHub::start(vec![("org/model-GGUF", files)]);
    let r = HubRef::parse("hf:org/model-GGUF").unwrap();
    let listing = client(&hub).list_files(&r).unwrap();
    let Selection::Gguf(file) = select(&listing, None, &r.repo).unwrap() else {
        panic!()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model-Q4_K_M.gguf.part"), &weights[..12345]).unwrap();
    let path = client(&hub)
        .download(&r, &file, dir.path(), |_, _| {})
        .unwrap()
        .path;
    assert_eq!(std::fs::read(&path).unwrap(), weights);
    let cdn: Vec<_> = hub
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/cdn/"))
        .collect();
    assert_eq!(cdn.len(), 1);
    assert_eq!(cdn[0].range_start, Some(12345));
}

#[test]
fn a_corrupt_download_is_refused_and_removed() {
    let (_, mut files) = gguf_repo();
    files[2].listed_sha256 = Some("0".repeat(64));
    let hub = ImitationHub::start(vec![("org/model-GGUF", files)]);
    let r = HubRef::parse("hf:org/model-GGUF").unwrap();
    let listing = client(&hub).list_files(&r).unwrap();
    let Selection::Gguf(file) = select(&listing, None, &r.repo).unwrap() else {
        panic!()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = client(&hub)
        .download(&r, &file, dir.path(), |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn small_files_are_checked_by_git_blob_id() {
    let config = br#"{"model_type": "llama"}"#.to_vec();
    let hub = ImitationHub::start(vec![(
        "org/ckpt",
        vec![
            HubFile::new("config.json", config.clone(), false),
            HubFile::new("model.safetensors", noise(4096, 3), true),
        ],
    )]);
    let r = HubRef::parse("hf:org/ckpt").unwrap();
    let listing = client(&hub).list_files(&r).unwrap();
    let Selection::Safetensors(files) = select(&listing, None, &r.repo).unwrap() else {
        panic!("a checkpoint")
    };
    let dir = tempfile::tempdir().unwrap();
    for f in &files {
        client(&hub).download(&r, f, dir.path(), |_, _| {}).unwrap();
    }
    assert_eq!(
        std::fs::read(dir.path().join("config.json")).unwrap(),
        config
    );
}

#[test]
fn offline_mode_and_missing_repositories() {
    let (_, files) = gguf_repo();
    let hub = ImitationHub::start(vec![("org/model-GGUF", files)]);
    let offline = HubClient::new(hub.endpoint.clone(), None, true);
    let err = offline
        .list_files(&HubRef::parse("hf:org/model-GGUF").unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("offline"), "{err}");
    assert!(hub.seen().is_empty(), "offline mode made no request");
    let err = client(&hub)
        .list_files(&HubRef::parse("hf:org/missing").unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("404") && err.contains("org/missing"), "{err}");
    let unreachable = HubClient::new("http://127.0.0.1:9".into(), None, false);
    let err = unreachable
        .list_files(&HubRef::parse("hf:org/model-GGUF").unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach"), "{err}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_token_is_sent_as_a_bearer_header() {
    let (_, files) = gguf_repo();
    let hub = ImitationHub::start(vec![("org/model-GGUF", files)]);
    let with_token = HubClient::new(hub.endpoint.clone(), Some("hf_secret".into()), false);
    let r = HubRef::parse("hf:org/model-GGUF").unwrap();
    with_token.list_files(&r).unwrap();
    assert_eq!(
        hub.seen()[0].authorization.as_deref(),
        Some("Bearer hf_secret")
    );
}

/// A long listing comes in pages, each naming the next in a `Link` header; all are read.
#[test]
fn paged_listings_are_followed() {
    let files: Vec<HubFile> = (0..7)
        .map(|i| HubFile::new(&format!("f{i}.txt"), vec![i as u8; 3], false))
        .collect();
    let hub = ImitationHub::start(vec![("org/many", files)]);
    hub.page_listings(3);
    let r = HubRef::parse("hf:org/many").unwrap();
    let listing = client(&hub).list_files(&r).unwrap();
    let paths: Vec<&str> = listing.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["f0.txt", "f1.txt", "f2.txt", "f3.txt", "f4.txt", "f5.txt", "f6.txt"]
    );
    let listing_requests = hub
        .seen()
        .iter()
        .filter(|s| s.path.contains("/tree/"))
        .count();
    assert_eq!(listing_requests, 3);
}

/// A listing from a hostile or broken endpoint that names files outside the repository is
/// refused before anything is written: the download folder joins these paths.
#[test]
fn listed_paths_outside_the_repository_are_refused() {
    for path in [
        "../../escaped.gguf",
        "/tmp/escaped.gguf",
        "sub/../../escaped.gguf",
    ] {
        let hub = ImitationHub::start(vec![(
            "org/evil",
            vec![HubFile::new(path, noise(1000, 3), true)],
        )]);
        let r = HubRef::parse("hf:org/evil").unwrap();
        let e = client(&hub).list_files(&r).unwrap_err().to_string();
        assert!(
            e.contains("not a path inside the repository"),
            "{path}: {e}"
        );
    }
    // And a file handed to the downloader directly.
    let (_, files) = gguf_repo();
    let hub = ImitationHub::start(vec![("org/model-GGUF", files)]);
    let r = HubRef::parse("hf:org/model-GGUF").unwrap();
    let mut file = client(&hub).list_files(&r).unwrap().remove(1);
    file.path = "../escaped.gguf".into();
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("downloads");
    std::fs::create_dir_all(&inner).unwrap();
    let e = client(&hub)
        .download(&r, &file, &inner, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a path inside the repository"), "{e}");
    assert!(!dir.path().join("escaped.gguf").exists());
    assert!(!dir.path().join("escaped.gguf.part").exists());
}

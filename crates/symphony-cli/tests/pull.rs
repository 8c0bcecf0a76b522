//! `symphony pull` end to end: the binary against a local imitation of the Hugging Face Hub
//! (the real hub cannot be reached from the test machine; see `imitation_hub.rs`), then the
//! pulled models run.

mod common;
#[path = "../../symphony-store/tests/common/imitation_hub.rs"]
mod imitation_hub;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::smollm2;
use imitation_hub::{HubFile, ImitationHub};

fn symphony(home: &Path, endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(args)
        .env("SYMPHONY_HOME", home)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .expect("symphony runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The tiny Qwen2 checkpoint of tests/fixtures/tiny as a hub repository.
fn tiny_qwen2_repo() -> Vec<HubFile> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny/qwen2");
    let mut files: Vec<HubFile> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "reference.json")
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let lfs = name.ends_with(".safetensors");
            HubFile::new(&name, std::fs::read(&p).unwrap(), lfs)
        })
        .collect();
    files.push(HubFile::new("README.md", b"# tiny\n".to_vec(), false));
    files
}

#[test]
fn pull_a_checkpoint_resume_run_alias_and_go_offline() {
    let hub = ImitationHub::start(vec![("tiny/qwen2", tiny_qwen2_repo())]);
    let home = tempfile::tempdir().unwrap();
    // The weights transfer is cut after 100 kB; the pull resumes it with a range request.
    hub.cut_next_transfer("model.safetensors", 100_000);
    let o = symphony(
        home.path(),
        &hub.endpoint,
        &["pull", "hf:tiny/qwen2", "--name", "tiny"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("pulled hf:tiny/qwen2 as tiny"),
        "{}",
        text(&o)
    );
    assert!(
        hub.seen().iter().any(|s| s.range_start == Some(100_000)),
        "resumed at the cut: {:?}",
        hub.seen()
    );
    assert!(
        !hub.seen().iter().any(|s| s.path.ends_with("README.md")),
        "only the checkpoint's files are fetched"
    );

    let o = symphony(home.path(), "", &["models", "show", "tiny", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let show: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(show["format"], "safetensors");
    assert_eq!(show["architecture"], "qwen2");
    assert_eq!(show["quantization"], "F16");
    assert_eq!(show["has_chat_template"], true);
    assert_eq!(show["manifest"]["source"], "hf:tiny/qwen2");
    assert_eq!(show["manifest"]["has_chat_template"], true);

    // `run hf:...` finds what was pulled from there.
    let o = symphony(
        home.path(),
        "",
        &[
            "run",
            "hf:tiny/qwen2",
            "Hello",
            "--raw",
            "-n",
            "4",
            "--temperature",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    // It runs, as stored and quantized at load.
    for extra in [&[][..], &["--quantize", "q8_0"][..]] {
        let mut args = vec![
            "run",
            "tiny",
            "The quick brown fox",
            "--raw",
            "-n",
            "8",
            "--temperature",
            "0",
        ];
        args.extend_from_slice(extra);
        let o = symphony(home.path(), "", &args);
        assert!(o.status.success(), "{extra:?}: {}", text(&o));
        assert!(!o.stdout.is_empty(), "{extra:?}: generated text");
    }

    // An alias shares the files; removing both frees them.
    let o = symphony(home.path(), "", &["models", "cp", "tiny", "qwen-tiny:f16"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = symphony(home.path(), "", &["models", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["blob"], list[1]["blob"]);

    // Offline: no request, and the stored model is enough.
    let before = hub.seen().len();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_symphony"));
    let o = cmd
        .args(["pull", "hf:tiny/qwen2", "--name", "tiny"])
        .env("SYMPHONY_HOME", home.path())
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(hub.seen().len(), before, "offline mode made no request");
    let o = symphony(
        home.path(),
        &hub.endpoint,
        &["pull", "hf:tiny/other", "--offline"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("not found"), "{}", text(&o));
    assert_eq!(hub.seen().len(), before);

    for name in ["tiny", "qwen-tiny:f16"] {
        let o = symphony(home.path(), "", &["models", "rm", name]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let blobs = std::fs::read_dir(home.path().join("blobs"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "space freed");

    // In a fresh store, `run hf:...` pulls first.
    let fresh = tempfile::tempdir().unwrap();
    let o = symphony(
        fresh.path(),
        &hub.endpoint,
        &[
            "run",
            "hf:tiny/qwen2",
            "Hello",
            "--raw",
            "-n",
            "4",
            "--temperature",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = symphony(fresh.path(), "", &["models", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["name"], "qwen2");
}

#[test]
fn pull_errors_are_clear_and_store_nothing() {
    let mut repo = tiny_qwen2_repo();
    for f in repo.iter_mut().filter(|f| f.path == "model.safetensors") {
        f.listed_sha256 = Some("ab".repeat(32));
    }
    let hub = ImitationHub::start(vec![("tiny/corrupt", repo)]);
    let home = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["pull", "hf:tiny/corrupt"], "sha256 mismatch"),
        (&["pull", "hf:tiny/missing"], "404"),
        (&["pull", "tiny/corrupt"], "expected hf:ORG/REPO"),
        (
            &["pull", "hf:tiny/corrupt:nope.gguf"],
            "no file 'nope.gguf'",
        ),
    ];
    for (args, expected) in cases {
        let o = symphony(home.path(), &hub.endpoint, args);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(text(&o).contains(expected), "{args:?}: {}", text(&o));
    }
    let o = symphony(home.path(), "", &["models", "list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
}

/// A GGUF repository with two quantizations: the pull picks Q4_K_M unless told otherwise,
/// and the pulled file is the one the hub lists, byte for byte, and runs.
#[test]
fn pull_a_gguf_file_by_name() {
    let weights = std::fs::read(smollm2()).unwrap();
    let hub = ImitationHub::start(vec![(
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
        vec![
            HubFile::new("smollm2-135m-instruct-q4_1.gguf", weights, true),
            HubFile::new(
                "smollm2-135m-instruct-q4_k_m.gguf",
                b"not this one".to_vec(),
                true,
            ),
        ],
    )]);
    let home = tempfile::tempdir().unwrap();
    let o = symphony(
        home.path(),
        &hub.endpoint,
        &[
            "pull",
            "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smollm2-135m-instruct-q4_1.gguf",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = symphony(home.path(), "", &["models", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["name"], "smollm2-135m-instruct-gguf");
    assert_eq!(list[0]["format"], "gguf");
    assert_eq!(
        list[0]["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    let o = symphony(
        home.path(),
        "",
        &[
            "run",
            "smollm2-135m-instruct-gguf",
            "The capital of France is",
            "--raw",
            "-n",
            "2",
            "--temperature",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(" Paris"),
        "{}",
        text(&o)
    );
    // Without a file name the Q4_K_M file is chosen; it is no model, so nothing is stored.
    let o = symphony(
        home.path(),
        &hub.endpoint,
        &[
            "pull",
            "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
            "--name",
            "other",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("smollm2-135m-instruct-q4_k_m.gguf"),
        "{}",
        text(&o)
    );
    let o = symphony(home.path(), "", &["models", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

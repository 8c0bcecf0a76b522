//! Defects found by probing `symphony serve` with hostile values after the first round of
//! fixes: each test reproduces one as it was found.

mod common;

use std::process::{Command, Stdio};

use common::server::*;

/// A misspelt limit used to make a key without that limit: `quota` (the CLI's flag) for
/// `token_quota` was ignored and the key was unlimited.
#[test]
fn admin_keys_refuse_unknown_fields_and_take_the_clis_quota_name() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys = keys.to_str().unwrap();
    let admin = symphony(
        &[
            "keys",
            "create",
            "root",
            "--role",
            "admin",
            "--api-keys",
            keys,
        ],
        &[],
    );
    let server = Server::start_with(&["--api-keys", keys], &[], &[]);
    let url = format!("{}/v1/admin/keys", server.base);
    let (status, body) = call(
        "POST",
        &url,
        Some(&admin),
        Some(r#"{"name":"typo","role":"user","qouta":10}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("qouta"), "{body}");
    let (status, body) = call(
        "POST",
        &url,
        Some(&admin),
        Some(r#"{"name":"metered","role":"user","quota":10,"rpm":5}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (_, listed) = call("GET", &url, Some(&admin), None);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let metered = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "metered")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        (&metered["token_quota"], &metered["rpm"]),
        (&serde_json::json!(10), &serde_json::json!(5))
    );
    assert!(!listed.to_string().contains("typo"), "{listed}");
}

/// `serve` with a scheduler that can hold nothing started, then failed every load.
#[test]
fn scheduler_sizes_of_zero_are_refused_at_start() {
    for flag in ["--kv-cache-tokens", "--max-batch-tokens", "--max-running"] {
        let out = Command::new(env!("CARGO_BIN_EXE_symphony"))
            .args(["serve", "--port", "0", "--no-auth", flag, "0"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("at least 1"),
            "{flag}: {stderr}"
        );
    }
}

/// `--kv-cache-tokens 99999999999999` aborted the whole server at the first load
/// ("memory allocation of 76800000000000000 bytes failed").
#[test]
fn a_kv_cache_larger_than_the_memory_budget_is_an_error_not_an_abort() {
    let mut server = Server::spawn(&["--no-auth", "--kv-cache-tokens", "99999999999999"], &[]);
    let base = server.base.clone();
    let (status, body) = call(
        "POST",
        &format!("{base}/v1/completions"),
        None,
        Some(r#"{"model":"smollm2","prompt":"Hi","max_tokens":1}"#),
    );
    assert!((400..600).contains(&status), "{status} {body}");
    assert!(body.contains("--kv-cache-tokens"), "{body}");
    // Still serving: the process did not abort.
    let (status, _) = call("GET", &format!("{base}/health"), None, None);
    assert_eq!(status, 200);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "{}",
        server.log()
    );
}

/// A `/v1/completions` request with many prompts charged the first prompt's tokens only, so
/// a quota bought 64 prompts for the price of one.
#[test]
fn every_prompt_of_a_request_is_charged() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys = keys.to_str().unwrap();
    let metered = symphony(
        &[
            "keys",
            "create",
            "metered",
            "--role",
            "user",
            "--quota",
            "200",
            "--api-keys",
            keys,
        ],
        &[],
    );
    let server = Server::start_with(&["--api-keys", keys], &[], &[]);
    let url = format!("{}/v1/completions", server.base);
    // Eight prompts of about forty tokens each: over 300 tokens in all, one prompt's worth
    // well under the quota.
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(4);
    let body = serde_json::json!({
        "model": "smollm2",
        "prompt": vec![prompt; 8],
        "max_tokens": 1,
        "temperature": 0,
    });
    let (status, reply) = call("POST", &url, Some(&metered), Some(&body.to_string()));
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert!(
        reply["usage"]["prompt_tokens"].as_u64() > Some(200),
        "{reply}"
    );
    let small = r#"{"model":"smollm2","prompt":"Hi","max_tokens":1}"#;
    let (status, body) = call("POST", &url, Some(&metered), Some(small));
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("quota"), "{body}");
}

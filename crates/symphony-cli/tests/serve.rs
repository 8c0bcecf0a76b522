//! `symphony serve` as clients use it: the official `openai` and `ollama` Python packages
//! (tests/clients/*.py) and `curl`, against a real server on a loopback port with SmolLM2.
//!
//! The Python clients come from the virtual environment scripts/test.sh makes
//! (`SYMPHONY_TEST_PYTHON`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::*;

const GREEDY_CHAT: &str = r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"temperature":0}"#;

#[test]
fn the_official_openai_client_works() {
    let server = Server::start(&[]);
    run_client(&server, "openai_client.py");
}

#[test]
fn the_official_ollama_client_works() {
    let server = Server::start(&[]);
    run_client(&server, "ollama_client.py");
}

// JSON Schema, regex and grammar constraints and tool calls, through both official clients,
// checked with `jsonschema`, `re` and `lark` (tests/clients/structured_client.py). Three
// tests, each with its own server, so that the test runner spreads them over the cores.

/// Sampled outputs of every schema validate: SmolLM2's, plus regex, grammar and Ollama's
/// `format`.
#[test]
fn structured_output_holds_for_official_clients() {
    let server = Server::start(&[]);
    run_client_tests(
        &server,
        "structured_client.py",
        &["Schemas", "RegexAndGrammar", "Ollama.test_format_schema"],
        &[("SYMPHONY_STRUCTURED_MODELS", "smollm2")],
    );
}

/// Sampled outputs of every schema validate: Qwen2.5-Coder-0.5B's.
#[test]
fn structured_output_holds_for_a_second_model() {
    let server = Server::start(&[]);
    run_client_tests(
        &server,
        "structured_client.py",
        &["Schemas.test_sampled_outputs_parse_and_validate"],
        &[("SYMPHONY_STRUCTURED_MODELS", "qwen2.5-coder:0.5b")],
    );
}

/// Tool calls and their round trips, through the OpenAI and Ollama clients.
#[test]
fn tool_calls_hold_for_official_clients() {
    let server = Server::start(&[]);
    run_client_tests(
        &server,
        "structured_client.py",
        &["Tools", "Ollama.test_tools"],
        &[],
    );
}

/// /v1/embeddings and /api/embed with all-MiniLM-L6-v2 through both official clients, the
/// vectors checked against sentence-transformers' (tests/clients/embeddings_client.py).
#[test]
fn embeddings_work_for_official_clients() {
    let server = Server::start(&[]);
    run_client(&server, "embeddings_client.py");
}

#[test]
fn curl_gets_sse_ndjson_errors_and_metrics() {
    let server = Server::start(&[]);
    let base = &server.base;
    let (status, body) = curl(&[&format!("{base}/health")]);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    // Server-sent events, ending with [DONE].
    let (status, body) = curl(&[
        &format!("{base}/v1/chat/completions"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"stream":true,"temperature":0}"#,
    ]);
    assert_eq!(status, 200, "{body}");
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    // A role chunk, 4 token chunks, a finish chunk.
    assert_eq!(events.len(), 1 + 4 + 1 + 1, "{body}");

    // Ollama's NDJSON, without a JSON content type, as its docs show it.
    let (status, body) = curl(&[
        &format!("{base}/api/generate"),
        "-d",
        r#"{"model":"smollm2","prompt":"Hi","options":{"num_predict":3,"temperature":0}}"#,
    ]);
    assert_eq!(status, 200, "{body}");
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.last().unwrap()["done"], true);
    assert_eq!(lines.last().unwrap()["eval_count"], 3);

    // Error shapes and codes.
    let (status, body) = curl(&[
        &format!("{base}/v1/chat/completions"),
        "-H",
        "content-type: application/json",
        "-d",
        "{not json",
    ]);
    assert_eq!(status, 400);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let (status, body) = curl(&[&format!("{base}/api/show"), "-d", r#"{"model":"nope"}"#]);
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string());
    let (status, _) = curl(&[&format!("{base}/v1/nowhere")]);
    assert_eq!(status, 404);

    let (status, metrics) = curl(&[&format!("{base}/metrics")]);
    assert_eq!(status, 200);
    for name in [
        "symphony_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1",
        "symphony_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 1",
        "symphony_time_to_first_token_seconds_count 2",
        "symphony_generated_tokens_total 7",
        "symphony_loaded_models 1",
        "symphony_kv_blocks_free{model=\"smollm2\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    // Both generations rendered the same prompt ("Hi" in the chat template), so the second
    // took all of it but its last token from the prefix cache.
    let counter = |name: &str| -> usize {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} ")));
        line.and_then(|l| l.split(' ').nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    let prompt = counter("symphony_prompt_tokens_total");
    assert_eq!(
        counter("symphony_prompt_tokens_cached_total"),
        prompt / 2 - 1
    );
    // Prometheus' own parser reads the loaded model's families under their names and types.
    let families = parse_metrics(&metrics);
    for (name, kind) in [
        ("symphony_running_sequences", "gauge"),
        ("symphony_waiting_sequences", "gauge"),
        ("symphony_kv_blocks_used", "gauge"),
        ("symphony_kv_blocks_free", "gauge"),
        ("symphony_prefix_cache_hit_rate", "gauge"),
        ("symphony_preemptions", "counter"),
    ] {
        assert_eq!(families[name]["type"], kind, "{name}: {families}");
        assert_eq!(
            families[name]["samples"][0][1]["model"], "smollm2",
            "{name}: {families}"
        );
    }
    // Every request was logged as one JSON line with its id, the caller's own when it sent
    // one (`x-request-id`).
    let (status, _) = curl(&[
        "-H",
        "x-request-id: caller-chose-this",
        &format!("{base}/health"),
    ]);
    assert_eq!(status, 200);
    // The line is written before the reply; the test reads stderr on a thread of its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("caller-chose-this") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log();
    let requests: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains(r#""event":"request""#))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(requests.len() >= 7, "{log}");
    for line in &requests {
        assert!(line["span"]["request_id"].is_string(), "{line}");
        assert!(line["status"].is_u64(), "{line}");
    }
    assert!(
        requests
            .iter()
            .any(|l| l["span"]["request_id"] == "caller-chose-this"
                && l["span"]["path"] == "/health"),
        "{log}"
    );
}

#[test]
fn an_oversized_body_is_413() {
    let server = Server::start(&["--max-body-bytes", "1K"]);
    let big = format!(
        r#"{{"model":"smollm2","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4096)
    );
    let (status, body) = curl(&[
        &format!("{}/v1/chat/completions", server.base),
        "-H",
        "content-type: application/json",
        "-d",
        &big,
    ]);
    assert_eq!(status, 413, "{body}");
}

#[test]
fn keys_jwts_and_roles_guard_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys = keys.to_str().unwrap();
    let secret = "a-test-secret-of-enough-length";
    let env = [("SYMPHONY_JWT_SECRET", secret)];
    let key = |name: &str, role: &str| {
        symphony(
            &["keys", "create", name, "--role", role, "--api-keys", keys],
            &[],
        )
    };
    let (reader, user, admin) = (key("r", "reader"), key("u", "user"), key("a", "admin"));
    // The file holds hashes only.
    let stored = std::fs::read_to_string(keys).unwrap();
    assert!(!stored.contains(&user) && stored.contains("sha256:"));

    let server = Server::start_with(&["--api-keys", keys], &[], &env);
    let base = &server.base;
    let chat = format!("{base}/v1/chat/completions");
    let models = format!("{base}/v1/models");
    let admin_keys = format!("{base}/v1/admin/keys");

    assert_eq!(call("GET", &format!("{base}/health"), None, None).0, 200);
    assert_eq!(call("GET", &models, None, None).0, 401);
    assert_eq!(call("GET", &models, Some("sk-sym-wrong"), None).0, 401);
    assert_eq!(call("GET", &models, Some(&reader), None).0, 200);
    // Ollama's routes refuse in Ollama's shape: `error` is a string.
    let (status, body) = call("GET", &format!("{base}/api/tags"), None, None);
    assert_eq!(status, 401);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string());
    let generate =
        r#"{"model":"smollm2","prompt":"Hi","stream":false,"options":{"num_predict":1}}"#;
    let (status, body) = call(
        "POST",
        &format!("{base}/api/generate"),
        Some(&reader),
        Some(generate),
    );
    assert_eq!(status, 403);
    assert!(body.contains("needs user"), "{body}");
    assert_eq!(call("POST", &chat, Some(&reader), Some(GREEDY_CHAT)).0, 403);
    assert_eq!(call("POST", &chat, Some(&user), Some(GREEDY_CHAT)).0, 200);
    assert_eq!(call("GET", &admin_keys, Some(&user), None).0, 403);
    let (status, listed) = call("GET", &admin_keys, Some(&admin), None);
    assert_eq!(status, 200);
    assert!(listed.contains(r#""name":"u""#) && !listed.contains(&user));

    // An admin makes a key over HTTP; it works at once, and stops working when revoked.
    let (status, made) = call(
        "POST",
        &admin_keys,
        Some(&admin),
        Some(r#"{"name":"new","role":"user"}"#),
    );
    assert_eq!(status, 200, "{made}");
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let new_key = made["key"].as_str().unwrap();
    assert_eq!(call("POST", &chat, Some(new_key), Some(GREEDY_CHAT)).0, 200);
    assert_eq!(
        call("DELETE", &format!("{admin_keys}/new"), Some(&admin), None).0,
        200
    );
    assert_eq!(call("POST", &chat, Some(new_key), Some(GREEDY_CHAT)).0, 401);
    // So does a key revoked with the CLI while the server runs.
    symphony(&["keys", "revoke", "u", "--api-keys", keys], &[]);
    assert_eq!(call("POST", &chat, Some(&user), Some(GREEDY_CHAT)).0, 401);

    // JWTs signed with the server's secret, with roles and expiry.
    let token = |role: &str, ttl: &str| {
        symphony(
            &[
                "keys", "token", "--sub", "jwt-user", "--role", role, "--ttl", ttl,
            ],
            &env,
        )
    };
    assert_eq!(
        call("POST", &chat, Some(&token("user", "1h")), Some(GREEDY_CHAT)).0,
        200
    );
    assert_eq!(
        call(
            "POST",
            &chat,
            Some(&token("reader", "1h")),
            Some(GREEDY_CHAT)
        )
        .0,
        403
    );
    assert_eq!(
        call("POST", &chat, Some(&token("user", "0s")), Some(GREEDY_CHAT)).0,
        401
    );
    let forged = symphony(
        &["keys", "token", "--sub", "x", "--role", "admin"],
        &[("SYMPHONY_JWT_SECRET", "some-other-secret-entirely")],
    );
    let (status, body) = call("GET", &models, Some(&forged), None);
    assert_eq!(status, 401);
    assert!(body.contains("signature"), "{body}");
}

/// Rate limits count in fixed minute windows (`unix_time / 60`, as LiteLLM does), so a test
/// whose requests straddle a window's turn sees its count reset: wait for a new window when
/// less than 20 seconds are left of this one (each test's limited requests take a few).
fn start_in_a_fresh_minute() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into_minute = now.as_millis() % 60_000;
    if into_minute > 40_000 {
        std::thread::sleep(Duration::from_millis((60_000 - into_minute) as u64 + 100));
    }
}

#[test]
fn rate_limits_and_the_response_cache() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys = keys.to_str().unwrap();
    let limited = symphony(
        &["keys", "create", "slow", "--rpm", "2", "--api-keys", keys],
        &[],
    );
    let tokens = symphony(
        &["keys", "create", "small", "--tpm", "30", "--api-keys", keys],
        &[],
    );
    let server = Server::start_with(&["--api-keys", keys], &[], &[]);
    let chat = format!("{}/v1/chat/completions", server.base);

    start_in_a_fresh_minute();
    assert_eq!(
        call("POST", &chat, Some(&limited), Some(GREEDY_CHAT)).0,
        200
    );
    assert_eq!(
        call("POST", &chat, Some(&limited), Some(GREEDY_CHAT)).0,
        200
    );
    let response = post_raw(&chat, &limited, GREEDY_CHAT).to_lowercase();
    assert!(response.starts_with("http/1.1 429"), "{response}");
    assert!(response.contains("retry-after: "), "{response}");
    assert!(response.contains("rate_limit_exceeded"), "{response}");

    // Tokens per minute: the first request's prompt and reply use up the 30.
    let long = r#"{"model":"smollm2","messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":20,"temperature":0}"#;
    assert_eq!(call("POST", &chat, Some(&tokens), Some(long)).0, 200);
    assert_eq!(call("POST", &chat, Some(&tokens), Some(long)).0, 429);

    // The response cache answers a repeated deterministic request with the same body.
    let unlimited = symphony(&["keys", "create", "free", "--api-keys", keys], &[]);
    let request = r#"{"model":"smollm2","messages":[{"role":"user","content":"Name a color."}],"max_tokens":8,"temperature":0}"#;
    let (s1, first) = call("POST", &chat, Some(&unlimited), Some(request));
    let (s2, second) = call("POST", &chat, Some(&unlimited), Some(request));
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first, second);
    let (_, metrics) = curl(&[
        "-H",
        &format!("authorization: Bearer {unlimited}"),
        &format!("{}/metrics", server.base),
    ]);
    // Two hits: the rate-limited key's second request, and this one.
    assert!(
        metrics.contains("symphony_response_cache_hits_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("symphony_rate_limited_total 2"),
        "{metrics}"
    );
}

#[test]
fn redis_shares_limits_and_cached_replies_between_servers() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys = keys.to_str().unwrap();
    let key = symphony(
        &["keys", "create", "shared", "--rpm", "3", "--api-keys", keys],
        &[],
    );
    let args = ["--redis", redis.url.as_str()];
    let (a, b) = (
        Server::start_with(&["--api-keys", keys], &args, &[]),
        Server::start_with(&["--api-keys", keys], &args, &[]),
    );
    let chat = |s: &Server| format!("{}/v1/chat/completions", s.base);
    let request = r#"{"model":"smollm2","messages":[{"role":"user","content":"Count to three."}],"max_tokens":6,"seed":11,"temperature":0.9}"#;
    start_in_a_fresh_minute();
    let (s1, from_a) = call("POST", &chat(&a), Some(&key), Some(request));
    assert_eq!(s1, 200, "{from_a}");
    // B has never run it: its reply comes from Redis, byte for byte A's.
    let response = post_raw(&chat(&b), &key, request);
    assert!(
        response.to_lowercase().contains("x-symphony-cache: hit"),
        "{response}"
    );
    assert!(response.ends_with(&from_a), "{response}");
    // Three requests a minute in all, wherever they go.
    assert_eq!(
        call("POST", &chat(&b), Some(&key), Some(GREEDY_CHAT)).0,
        200
    );
    assert_eq!(
        call("POST", &chat(&a), Some(&key), Some(GREEDY_CHAT)).0,
        429
    );
    assert_eq!(
        call("POST", &chat(&b), Some(&key), Some(GREEDY_CHAT)).0,
        429
    );
}

#[test]
fn the_websocket_streams_chat_chunks() {
    let server = Server::start(&[]);
    run_client(&server, "websocket_client.py");
}

fn loaded(server: &Server) -> Vec<String> {
    let (_, ps) = curl(&[&format!("{}/api/ps", server.base)]);
    let ps: serde_json::Value = serde_json::from_str(&ps).unwrap();
    ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

fn generate(server: &Server, model: &str, extra: &str) -> u16 {
    let body = format!(
        r#"{{"model":"{model}","prompt":"Hi","stream":false,"options":{{"num_predict":2}}{extra}}}"#
    );
    curl(&[&format!("{}/api/generate", server.base), "-d", &body]).0
}

#[test]
fn models_load_on_demand_within_the_memory_budget_and_unload_when_idle() {
    // SmolLM2 (~120 MB with this KV cache) and Qwen2.5-Coder-0.5B (~420 MB) do not fit in
    // 500 MB together: loading one makes the other, idle, leave.
    let server = Server::start(&[
        "--max-memory",
        "500M",
        "--kv-cache-tokens",
        "1024",
        "--keep-alive",
        "3s",
    ]);
    assert_eq!(loaded(&server), ["smollm2"]);
    assert_eq!(generate(&server, "qwen2.5-coder:0.5b", ""), 200);
    assert_eq!(loaded(&server), ["qwen2.5-coder:0.5b"]);
    assert_eq!(generate(&server, "smollm2", ""), 200);
    assert_eq!(loaded(&server), ["smollm2"]);
    // The keep-alive passes with no request: nothing stays loaded.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !loaded(&server).is_empty() {
        assert!(
            Instant::now() < deadline,
            "still loaded: {:?}",
            loaded(&server)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Ollama's keep_alive 0 unloads right after the reply (within the registry's 1 s sweep);
    // a longer one keeps it.
    assert_eq!(generate(&server, "smollm2", r#","keep_alive":0"#), 200);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(loaded(&server).is_empty());
    assert_eq!(generate(&server, "smollm2", r#","keep_alive":"1h""#), 200);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(loaded(&server), ["smollm2"]);
    // A model bigger than the whole budget is refused, not loaded.
    let small = Server::start(&["--max-memory", "50M", "--kv-cache-tokens", "1024"]);
    assert_eq!(generate(&small, "qwen2.5-coder:0.5b", ""), 503);
}

/// The chat model that answers from collections in the tests.
const ASK_MODEL: &str = "qwen2.5-coder:1.5b";

fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) = call("POST", url, None, Some(&body.to_string()));
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
    (status, value)
}

/// `/v1/collections/...`: create, upload text, Markdown and a PDF, search in each mode,
/// rerank with a chat model, answer with citations, say "I don't know", remove; and the
/// errors, each with its status.
#[test]
fn collections_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let collections = dir.path().join("collections");
    let server = Server::start_with(
        &["--no-auth"],
        &[],
        &[("SYMPHONY_COLLECTIONS", collections.to_str().unwrap())],
    );
    let base = format!("{}/v1/collections", server.base);
    let create = serde_json::json!({"name": "kb", "chunking": "markdown", "chunk_tokens": 64});
    let (status, summary) = post_json(&base, &create);
    assert_eq!(status, 201, "{summary}");
    assert_eq!(summary["config"]["embedder"], "all-minilm");
    let (status, _) = post_json(&base, &create);
    assert_eq!(status, 409);

    let pdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/docs/probes.pdf");
    let out = Command::new("base64")
        .arg("-w0")
        .arg(&pdf)
        .output()
        .unwrap();
    let pdf_base64 = String::from_utf8(out.stdout).unwrap();
    let documents = serde_json::json!({"documents": [
        {"path": "saturn.md", "text": "# Saturn\n\nSaturn is the sixth planet from the Sun and \
            has 146 known moons.\n\n## Rings\n\nIts rings are made mostly of water ice.\n"},
        {"path": "notes/tea.txt", "text": "Green tea is steeped at about 80 degrees Celsius."},
        {"path": "probes.pdf", "content_base64": pdf_base64},
    ]});
    let (status, added) = post_json(&format!("{base}/kb/documents"), &documents);
    assert_eq!(status, 200, "{added}");
    let statuses: Vec<&str> = added["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["added", "added", "added"], "{added}");
    assert_eq!(added["collection"]["documents"], 3);
    // The same content again changes nothing.
    let (_, again) = post_json(&format!("{base}/kb/documents"), &documents);
    assert_eq!(again["documents"][2]["status"], "unchanged", "{again}");

    for (question, path) in [
        ("How many moons does Saturn have?", "saturn.md"),
        ("What fuel powers the Voyager probes?", "probes.pdf"),
    ] {
        for mode in ["vector", "bm25", "hybrid"] {
            let (status, hits) = post_json(
                &format!("{base}/kb/query"),
                &serde_json::json!({"query": question, "mode": mode, "top_k": 3}),
            );
            assert_eq!(status, 200, "{hits}");
            assert_eq!(hits["data"][0]["path"], path, "{mode}: {hits}");
        }
    }
    let (_, hits) = post_json(
        &format!("{base}/kb/query"),
        &serde_json::json!({"query": "plutonium generators", "filter": {"format": "pdf"}}),
    );
    assert!(
        hits["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["format"] == "pdf"),
        "{hits}"
    );
    assert!(hits["data"][0]["text"]
        .as_str()
        .unwrap()
        .contains("plutonium-238"));

    // Reranked by a chat model: every candidate scored, the right one first.
    let (status, hits) = post_json(
        &format!("{base}/kb/query"),
        &serde_json::json!({"query": "When was Voyager 1 launched?", "top_k": 2,
                            "rerank": "smollm2", "rerank_depth": 5}),
    );
    assert_eq!(status, 200, "{hits}");
    let data = hits["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["path"], "probes.pdf", "{hits}");
    assert!(data[0]["text"].as_str().unwrap().contains("1977"), "{hits}");
    assert!(
        data[0]["rerank_score"].as_f64().unwrap() >= data[1]["rerank_score"].as_f64().unwrap(),
        "{hits}"
    );

    // An answer with a citation that points into the source.
    let (status, answer) = post_json(
        &format!("{base}/kb/ask"),
        &serde_json::json!({"question": "How many moons does Saturn have?",
                            "model": ASK_MODEL, "top_k": 3}),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["answer"].as_str().unwrap().contains("146"),
        "{answer}"
    );
    let citation = &answer["citations"][0];
    assert_eq!(citation["path"], "saturn.md", "{answer}");
    assert!(citation["end_char"].as_u64() > citation["start_char"].as_u64());
    // Nothing in the collection is about this.
    let (status, answer) = post_json(
        &format!("{base}/kb/ask"),
        &serde_json::json!({"question": "Who won the 1998 football World Cup?",
                            "model": ASK_MODEL}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answer"], "I don't know.", "{answer}");
    assert_eq!(answer["citations"], serde_json::json!([]));

    // Errors: each with its status and a message that says what is wrong.
    let cases = [
        (
            format!("{base}/nope/query"),
            serde_json::json!({"query": "x"}),
            404,
            "no collection 'nope'",
        ),
        (
            format!("{base}/kb/query"),
            serde_json::json!({"query": "x", "mode": "fuzzy"}),
            400,
            "unknown retrieval mode",
        ),
        (
            format!("{base}/kb/query"),
            serde_json::json!({"query": "x", "top_k": 0}),
            400,
            "top_k",
        ),
        (
            format!("{base}/kb/ask"),
            serde_json::json!({"question": "x", "model": "nope"}),
            404,
            "nope",
        ),
        (
            format!("{base}/kb/documents"),
            serde_json::json!({"documents": [{"path": "a.txt"}]}),
            400,
            "exactly one of",
        ),
        (
            format!("{base}/kb/documents"),
            serde_json::json!({"documents": [{"path": "b.pdf", "content_base64": "JVBERi0xLjQgbm9wZQ=="}]}),
            400,
            "not a readable PDF",
        ),
        (
            base.clone(),
            serde_json::json!({"name": "../up"}),
            400,
            "invalid collection name",
        ),
        (
            base.clone(),
            serde_json::json!({"name": "big", "chunk_tokens": 4000}),
            400,
            "do not fit",
        ),
    ];
    for (url, body, want, needle) in cases {
        let (status, error) = post_json(&url, &body);
        assert_eq!(status, want, "{url} {body}: {error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{url} {body}: {error}");
    }
    // The failed upload stored nothing.
    let (status, body) = call("GET", &format!("{base}/kb"), None, None);
    assert_eq!(status, 200, "{body}");
    let shown: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["documents"], 3, "{shown}");

    let (status, _) = call(
        "DELETE",
        &format!("{base}/kb/documents?path=notes/tea.txt"),
        None,
        None,
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        "DELETE",
        &format!("{base}/kb/documents?path=notes/tea.txt"),
        None,
        None,
    );
    assert_eq!(status, 404);
    let (status, body) = call("GET", &base, None, None);
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, &listed["data"][0]["documents"]),
        (200, &serde_json::json!(2))
    );
    // The command line sees the same collection.
    let out = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(["rag", "check", "kb"])
        .env("SYMPHONY_COLLECTIONS", &collections)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (status, _) = call("DELETE", &format!("{base}/kb"), None, None);
    assert_eq!(status, 200);
    let (status, _) = call("GET", &format!("{base}/kb"), None, None);
    assert_eq!(status, 404);
}

/// The `data:` payloads of a server-sent event stream, as JSON.
fn sse_events(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

fn get_json(url: &str) -> (u16, serde_json::Value) {
    let (status, text) = curl(&[url]);
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
    (status, value)
}

/// `/v1/agents/...` with Qwen2.5-Coder-0.5B: a run streamed as server-sent events, a run
/// started in the background and followed, a pause for approval decided over HTTP, the
/// same runs seen by `symphony agent ls`, and the errors, each with its status.
#[test]
fn agents_run_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("accountant.yaml"),
        "name: accountant\nmodel: qwen2.5-coder:0.5b\ntools: [calculator]\nmax_steps: 5\n",
    )
    .unwrap();
    std::fs::write(
        agents.join("secretary.yaml"),
        "name: secretary\nmodel: qwen2.5-coder:0.5b\ntools: [write_file]\nworkspace: desk\n\
         approval: [write_file]\nmax_steps: 4\n",
    )
    .unwrap();
    std::fs::write(
        agents.join("broken.yaml"),
        "name: broken\ntools: [browser]\n",
    )
    .unwrap();
    let runs = dir.path().join("runs.sqlite");
    let runs_env = [("SYMPHONY_AGENT_RUNS", runs.to_str().unwrap())];
    let server = Server::start_with(
        &["--no-auth"],
        &["--agents", agents.to_str().unwrap()],
        &runs_env,
    );
    let url = |path: &str| format!("{}{path}", server.base);

    let (status, list) = get_json(&url("/v1/agents"));
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["accountant", "secretary"], "{list}");
    let broken = &list["data"][1];
    assert_eq!(broken["file"], "broken.yaml");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("missing field `model`"),
        "{list}"
    );

    // A run streamed: the events as they happen, the summary last.
    let start = serde_json::json!({
        "agent": "accountant",
        "task": "A warehouse holds 1234 boxes of 5678 screws each, plus 91011 loose screws. \
                 How many screws is that in all? Use the calculator.",
        "stream": true,
    });
    let (status, body) = call(
        "POST",
        &url("/v1/agents/runs"),
        None,
        Some(&start.to_string()),
    );
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let events = sse_events(&body);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "run", "{body}");
    let id = events[0]["id"].as_str().unwrap().to_string();
    assert_eq!(kinds[1..3], ["tool_call", "tool_result"], "{body}");
    assert_eq!(events[2]["output"], "7097663", "{body}");
    let summary = events.last().unwrap();
    assert_eq!(summary["type"], "summary", "{body}");
    assert_eq!(summary["ending"], "answered", "{body}");
    let answer = summary["answer"].as_str().unwrap().replace(',', "");
    assert!(answer.contains("7097663"), "{body}");
    let (status, run) = get_json(&url(&format!("/v1/agents/runs/{id}")));
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (run["status"].as_str(), run["live"].as_bool()),
        (Some("answered"), Some(false))
    );
    assert!(run["tool_calls"].as_u64().unwrap() >= 1, "{run}");
    assert_eq!(run["messages"][3]["content"], "7097663", "{run}");
    // A run that has ended: its events are its state.
    let (_, body) = curl(&[&url(&format!("/v1/agents/runs/{id}/events"))]);
    assert_eq!(sse_events(&body)[0]["status"], "answered", "{body}");

    // A run in the background, followed; the call that needs approval pauses it.
    let start = serde_json::json!({
        "agent": "secretary",
        "task": "Write the text 'Meeting moved to 3pm' into the file meeting.txt.",
    });
    let (status, started) = post_json(&url("/v1/agents/runs"), &start);
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let (_, body) = curl(&[&url(started["events"].as_str().unwrap())]);
    let events = sse_events(&body);
    let waiting = events
        .iter()
        .find(|e| e["type"] == "approval_needed")
        .unwrap_or_else(|| panic!("no approval asked: {body}"));
    assert_eq!(waiting["name"], "write_file");
    assert!(!events.iter().any(|e| e["type"] == "tool_result"), "{body}");
    assert_eq!(
        events.last().unwrap()["ending"],
        "awaiting_approval",
        "{body}"
    );
    let written = agents.join("desk/meeting.txt");
    assert!(!written.exists(), "the call ran before it was approved");
    let (_, run) = get_json(&url(&format!("/v1/agents/runs/{id}")));
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    assert_eq!(run["awaiting_approval"]["name"], "write_file", "{run}");
    let (status, e) = post_json(
        &url(&format!("/v1/agents/runs/{id}/resume")),
        &serde_json::json!({}),
    );
    assert_eq!(status, 409, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("/approve"),
        "{e}"
    );

    // The command line sees the server's runs: one store.
    let ls = symphony(&["agent", "ls", "--json"], &runs_env);
    let listed: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let statuses: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["agent"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("secretary", "awaiting_approval"),
            ("accountant", "answered")
        ],
        "{ls}"
    );

    // Approved over HTTP, the call runs and the run goes on to its answer.
    let approve = serde_json::json!({"approve": true, "stream": true});
    let (status, body) = call(
        "POST",
        &url(&format!("/v1/agents/runs/{id}/approve")),
        None,
        Some(&approve.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let events = sse_events(&body);
    let result = events
        .iter()
        .find(|e| e["type"] == "tool_result")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(result["error"], false, "{body}");
    assert!(std::fs::read_to_string(&written)
        .unwrap()
        .contains("Meeting moved to 3pm"));
    assert_eq!(events.last().unwrap()["ending"], "answered", "{body}");

    // Errors, each with its status.
    let cases = [
        (
            "POST",
            "/v1/agents/runs",
            r#"{"agent":"nobody","task":"x"}"#,
            404,
            "no agent 'nobody'",
        ),
        (
            "POST",
            "/v1/agents/runs",
            r#"{"agent":"accountant","task":" "}"#,
            400,
            "`task` is empty",
        ),
        (
            "POST",
            "/v1/agents/runs",
            r#"{"agent":"accountant"}"#,
            400,
            "missing field `task`",
        ),
        (
            "POST",
            "/v1/agents/runs",
            r#"{"agent":"broken","task":"x"}"#,
            500,
            "missing field `model`",
        ),
        (
            "POST",
            &format!("/v1/agents/runs/{id}/approve"),
            "{}",
            409,
            "not waiting for an approval",
        ),
        (
            "POST",
            &format!("/v1/agents/runs/{id}/resume"),
            "",
            409,
            "has ended",
        ),
        (
            "GET",
            "/v1/agents/runs/run_none",
            "",
            404,
            "no run 'run_none'",
        ),
    ];
    for (method, path, body, expected, message) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (status, text) = call(method, &url(path), None, body);
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(text.contains(message), "{method} {path}: {text}");
    }
}

/// `symphony serve --jwt-issuer URL --jwt-audience NAME`: an OpenID Connect provider's tokens
/// (the test provider of the server crate: keys from `cryptography`, tokens from PyJWT),
/// its keys found by discovery.
#[test]
fn an_identity_providers_tokens_are_accepted_by_its_issuer_url() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../symphony-server/tests/oidc_provider.py"
    );
    let mut provider = Command::new(python())
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the provider starts");
    let mut line = String::new();
    BufReader::new(provider.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let issuer = format!(
        "http://127.0.0.1:{}",
        line.trim().trim_start_matches("PORT ")
    );
    let sign = |kid: &str, aud: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = serde_json::json!({"kid": kid, "claims": {
            "sub": "ana", "role": "reader", "iss": issuer, "aud": aud, "exp": now + 600}});
        call(
            "POST",
            &format!("{issuer}/sign"),
            None,
            Some(&body.to_string()),
        )
        .1
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let server = Server::spawn(
        &[
            "--api-keys",
            keys.to_str().unwrap(),
            "--jwt-issuer",
            &issuer,
            "--jwt-audience",
            "symphony",
        ],
        &[],
    );
    let models = format!("{}/v1/models", server.base);
    assert_eq!(
        call("GET", &models, Some(&sign("rsa-1", "symphony")), None).0,
        200
    );
    assert_eq!(
        call("GET", &models, Some(&sign("ec-1", "symphony")), None).0,
        200
    );
    let (status, body) = call("GET", &models, Some(&sign("rsa-1", "another-app")), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("audience"), "{body}");
    let _ = provider.kill();
    let _ = provider.wait();
}

//! `symphony serve` as clients use it: the official `openai` and `ollama` Python packages
//! (tests/clients/*.py) and `curl`, against a real server on a loopback port with SmolLM2.
//!
//! The Python clients come from the virtual environment scripts/test.sh makes
//! (`SYMPHONY_TEST_PYTHON`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `symphony serve`, killed on drop. Its log is kept for failure messages.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_symphony"))
            .args(["serve", "--no-auth", "--port", "0", "--preload", "smollm2"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("symphony serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("symphony serve: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server did not start: {:?}", log.lock().unwrap()));
        let server = Self { child, base, log };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let (status, _) = curl(&[&format!("{}/ready", self.base)]);
            if status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("/ready never answered 200: {:?}", self.log.lock().unwrap());
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl; returns the HTTP status and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "-N", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn python() -> PathBuf {
    match std::env::var_os("SYMPHONY_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "SYMPHONY_TEST_PYTHON is not set: run the tests with scripts/test.sh, which makes a \
             virtual environment with the openai and ollama packages"
        ),
    }
}

fn run_client(server: &Server, script: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .env("SYMPHONY_BASE_URL", &server.base)
        .output()
        .expect("python runs");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed:\n{report}\n--- server log ---\n{}",
        server.log()
    );
    // unittest prints "OK" last when every test passed; make sure tests did run.
    assert!(
        report.contains("Ran ") && !report.contains("Ran 0 tests"),
        "{report}"
    );
}

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
    // Every request was logged as one JSON line with its id.
    let log = server.log();
    let requests = log
        .lines()
        .filter(|l| l.contains(r#""event":"request""#))
        .count();
    assert!(requests >= 6, "{log}");
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

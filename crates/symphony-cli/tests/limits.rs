//! The server's limits under hostile requests, against a real `symphony serve` with SmolLM2:
//! durations that would overflow a clock, one request asking for thousands of sequences,
//! rate limits and revocation over the chat WebSocket, and tokens charged for streams the
//! client cuts short.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;

const GREEDY_CHAT: &str = r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"temperature":0}"#;

/// D2: Ollama `keep_alive` values that overflow `Instant + Duration` (or `from_secs_f64`) are
/// refused with 400, and the server goes on serving every route afterwards.
#[test]
fn hostile_keep_alive_is_refused_and_every_route_keeps_serving() {
    let server = Server::start(&[]);
    let base = &server.base;
    for (route, body) in [
        (
            "generate",
            r#"{"model":"smollm2","prompt":"Hi","stream":false,"options":{"num_predict":1},"keep_alive":KEEP}"#,
        ),
        (
            "chat",
            r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"stream":false,"options":{"num_predict":1},"keep_alive":KEEP}"#,
        ),
    ] {
        for keep in [
            "1.8e19",
            "18000000000000000000",
            "1e300",
            r#""1e300""#,
            r#""inf""#,
        ] {
            let (status, reply) = call(
                "POST",
                &format!("{base}/api/{route}"),
                None,
                Some(&body.replace("KEEP", keep)),
            );
            assert_eq!(status, 400, "keep_alive {keep} on /api/{route}: {reply}");
            assert!(reply.contains("keep_alive"), "{reply}");
        }
        // `/api/ps` computes each model's expiry: it must answer after each attempt.
        let (status, ps) = call("GET", &format!("{base}/api/ps"), None, None);
        assert_eq!(status, 200, "{ps}\n{}", server.log());
        assert!(ps.contains("smollm2"), "{ps}");
    }
    let (status, metrics) = call("GET", &format!("{base}/metrics"), None, None);
    assert_eq!(status, 200, "{metrics}");
    let generate = r#"{"model":"smollm2","prompt":"Hi","stream":false,"options":{"num_predict":1},"keep_alive":"10m"}"#;
    let (status, reply) = call(
        "POST",
        &format!("{base}/api/generate"),
        None,
        Some(generate),
    );
    assert_eq!(status, 200, "{reply}");
    let (status, chat) = call(
        "POST",
        &format!("{base}/v1/chat/completions"),
        None,
        Some(GREEDY_CHAT),
    );
    assert_eq!(status, 200, "{chat}");
    assert_eq!(call("GET", &format!("{base}/health"), None, None).0, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// D2: `serve --keep-alive 1e300` and `--request-timeout 1e300` are command-line errors
/// naming the problem, not a panic at start.
#[test]
fn huge_durations_on_the_command_line_are_errors_not_panics() {
    for (flag, value) in [
        ("--keep-alive", "1e300"),
        ("--request-timeout", "1e300"),
        ("--request-timeout", "inf"),
        ("--keep-alive", "1.8e19"),
        ("--response-cache-ttl", "1e300"),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_symphony"))
            .args(["serve", "--no-auth", "--port", "0", flag, value])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It must refuse at once; a server that starts anyway is stopped, and fails below.
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        let status = status.unwrap_or_else(|| panic!("{flag} {value} was accepted: {stderr}"));
        assert_eq!(status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains(flag) && stderr.contains(value), "{stderr}");
    }
}

/// D3: the issue's 22 KB `/v1/completions` body (2,000 prompts × n 16) is refused before any
/// sequence is queued, as is a smaller one whose prompts × n exceed `--max-waiting`; other
/// callers are served right after.
#[test]
fn one_completions_request_cannot_fill_the_queue() {
    let server = Server::start(&["--max-waiting", "8"]);
    let url = format!("{}/v1/completions", server.base);
    // As Python's `json.dumps` writes `[[1,2,3]]*2000`: 22 KB.
    let prompts = |count: usize| format!("[{}]", vec!["[1, 2, 3]"; count].join(", "));
    let body = |count: usize, n: usize| {
        format!(
            r#"{{"model":"smollm2","prompt":{},"n":{n},"max_tokens":1,"stream":true}}"#,
            prompts(count)
        )
    };
    let hostile = body(2000, 16);
    assert!(hostile.len() > 20_000);
    let (status, reply) = curl(&[
        "--max-time",
        "60",
        "-X",
        "POST",
        &url,
        "-H",
        "content-type: application/json",
        "-d",
        &hostile,
    ]);
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("prompts per request"), "{reply}");
    // Within the prompt cap, but 10 × 16 = 160 sequences against a queue of 8.
    let (status, reply) = call("POST", &url, None, Some(&body(10, 16)));
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply.contains("160 sequences") && reply.contains("--max-waiting"),
        "{reply}"
    );
    // Nothing of them waits: the queue is empty, and a request that fits is answered.
    let (_, metrics) = call("GET", &format!("{}/metrics", server.base), None, None);
    let waiting = metrics
        .lines()
        .find(|l| l.starts_with("symphony_waiting_sequences{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(waiting.ends_with(" 0"), "{waiting}");
    let (status, reply) = call("POST", &url, None, Some(&body(4, 2)));
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = call(
        "POST",
        &format!("{}/v1/chat/completions", server.base),
        None,
        Some(GREEDY_CHAT),
    );
    assert_eq!(status, 200, "{reply}");
}

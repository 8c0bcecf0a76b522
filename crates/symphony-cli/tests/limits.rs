//! The server's limits under hostile requests, against a real `symphony serve` with SmolLM2:
//! durations that would overflow a clock, one request asking for thousands of sequences,
//! rate limits and revocation over the chat WebSocket, and tokens charged for streams the
//! client cuts short.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;

const GREEDY_CHAT: &str = r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"temperature":0}"#;

/// Rate limits count in fixed minute windows: wait for a new one when less than 20 seconds
/// are left of this one, so that a test's limited requests fall in one window.
fn start_in_a_fresh_minute() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into_minute = now.as_millis() % 60_000;
    if into_minute > 40_000 {
        std::thread::sleep(Duration::from_millis((60_000 - into_minute) as u64 + 100));
    }
}

fn key(keys: &str, name: &str, limits: &[&str]) -> String {
    let mut args = vec!["keys", "create", name, "--api-keys", keys];
    args.extend(limits);
    symphony(&args, &[])
}

/// Runs a Python script with the `websockets` client; `SYMPHONY_WS_URL` and `SYMPHONY_KEY`
/// are set for it. Returns its stdout (the script prints what it saw).
fn websocket_script(server: &Server, key: &str, script: &str) -> String {
    let url = server.base.replace("http://", "ws://") + "/v1/chat/ws";
    run_python(
        server,
        &["-c", script],
        &[("SYMPHONY_WS_URL", &url), ("SYMPHONY_KEY", key)],
    )
}

/// The part the Python scripts share: `ask(ws, request)` sends one chat request and returns
/// "answer" once `[DONE]` arrives, or the error message's status and text.
const WS_PRELUDE: &str = r#"
import json, os
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed

URL = os.environ["SYMPHONY_WS_URL"]
HEADERS = {"authorization": "Bearer " + os.environ["SYMPHONY_KEY"]}
REQUEST = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}],
           "max_tokens": 1, "temperature": 0}

def ask(ws, request=REQUEST):
    try:
        ws.send(json.dumps(request) if isinstance(request, dict) else request)
        while True:
            message = ws.recv(timeout=120)
            if message == "[DONE]":
                return "answer"
            data = json.loads(message)
            if "error" in data:
                return "error %d %s" % (data["error"]["status"], data["error"]["message"])
    except ConnectionClosed as e:
        return "closed %s" % (e.rcvd.code if e.rcvd else None)
"#;

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

/// D4 (a): each WebSocket message counts against the key's requests per minute: an rpm-2
/// key gets two answers, then errors.
#[test]
fn websocket_messages_are_each_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys = keys.to_str().unwrap();
    let limited = key(keys, "slow", &["--rpm", "2"]);
    let server = Server::start_with(&["--api-keys", keys], &[], &[]);
    start_in_a_fresh_minute();
    let seen = websocket_script(
        &server,
        &limited,
        &format!(
            "{WS_PRELUDE}\nwith connect(URL, additional_headers=HEADERS) as ws:\n    \
             for _ in range(6):\n        print(ask(ws))\n"
        ),
    );
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 6, "{seen}");
    assert_eq!(&lines[..2], ["answer", "answer"], "{seen}");
    for line in &lines[2..] {
        assert!(
            line.starts_with("error 429") && line.contains("requests per minute"),
            "{seen}"
        );
    }
}

/// D4 (c): a key revoked while its WebSocket is open stops working on that socket's next
/// message; the socket is closed.
#[test]
fn a_revoked_key_stops_working_on_an_open_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys = keys.to_str().unwrap();
    let doomed = key(keys, "doomed", &[]);
    let server = Server::start_with(&["--api-keys", keys], &[], &[]);
    let keys_path = keys.to_string();
    let exe = env!("CARGO_BIN_EXE_symphony");
    let script = format!(
        "{WS_PRELUDE}\nimport subprocess\nwith connect(URL, additional_headers=HEADERS) as ws:\n    \
         print(ask(ws))\n    \
         subprocess.run([{exe:?}, 'keys', 'revoke', 'doomed', '--api-keys', {keys_path:?}], check=True)\n    \
         print(ask(ws))\n    print(ask(ws))\n"
    );
    let seen = websocket_script(&server, &doomed, &script);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 3, "{seen}");
    assert_eq!(lines[0], "answer", "{seen}");
    assert!(
        lines[1].starts_with("error 401") && lines[1].contains("invalid API key"),
        "{seen}"
    );
    assert!(lines[2].starts_with("closed"), "{seen}");
}

/// (low) A WebSocket message is held to `--max-body-bytes` like a request body.
#[test]
fn websocket_messages_are_held_to_the_body_limit() {
    let server = Server::start(&["--max-body-bytes", "2K"]);
    let script = format!(
        "{WS_PRELUDE}\nwith connect(URL) as ws:\n    \
         print(ask(ws))\n    \
         big = dict(REQUEST, messages=[{{'role': 'user', 'content': 'Hi ' * 2000}}])\n    \
         print(ask(ws, big))\n"
    );
    let seen = websocket_script(&server, "unused", &script);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 2, "{seen}");
    assert_eq!(lines[0], "answer", "{seen}");
    assert!(
        lines[1].starts_with("error 413") && lines[1].contains("--max-body-bytes"),
        "{seen}"
    );
}

/// Sends a streamed chat request over a raw socket and hangs up once the first generated
/// token's chunk has arrived, long before the stream's end.
fn cut_stream_after_first_token(server: &Server, key: &str) {
    let addr = server.base.trim_start_matches("http://");
    let body = r#"{"model":"smollm2","messages":[{"role":"user","content":"Tell me a long story about a dragon."}],"max_tokens":200,"temperature":0,"stream":true}"#;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut data_lines = 0;
    for line in BufReader::new(stream.try_clone().unwrap()).lines() {
        let line = line.expect("the stream goes on until we hang up");
        assert!(!line.contains("[DONE]"), "the stream ended before the cut");
        // The first `data:` chunk is the opening (role only); the second carries a token.
        if line.starts_with("data: ") {
            data_lines += 1;
            if data_lines == 2 {
                break;
            }
        }
    }
    stream.shutdown(std::net::Shutdown::Both).unwrap();
}

/// Polls with a request the handler refuses (400, charging no tokens) until the limiter
/// refuses it first (429); returns the 429 response, head included.
fn wait_for_limit(server: &Server, key: &str) -> String {
    let url = format!("{}/v1/chat/completions", server.base);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = post_raw(&url, key, "{}");
        if response.starts_with("HTTP/1.1 429") {
            return response;
        }
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{response}\n{}",
            server.log()
        );
        assert!(
            Instant::now() < deadline,
            "the cut stream's tokens were never charged: {response}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// D4 (b): a stream the client cuts one chunk in is still charged the tokens it used, for
/// tokens per minute and for a quota; a spent quota's 429 does not pretend it resets.
#[test]
fn a_stream_cut_short_still_charges_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys = keys.to_str().unwrap();
    let per_minute = key(keys, "per-minute", &["--tpm", "10"]);
    let quota = key(keys, "quota", &["--quota", "10"]);
    let server = Server::start_with(&["--api-keys", keys], &[], &[]);
    start_in_a_fresh_minute();

    cut_stream_after_first_token(&server, &per_minute);
    let refused = wait_for_limit(&server, &per_minute).to_lowercase();
    assert!(refused.contains("tokens per minute"), "{refused}");
    assert!(refused.contains("retry-after: "), "{refused}");

    cut_stream_after_first_token(&server, &quota);
    let refused = wait_for_limit(&server, &quota).to_lowercase();
    assert!(
        refused.contains("token quota") && refused.contains("does not reset"),
        "{refused}"
    );
    // A quota never resets: no Retry-After promising otherwise.
    assert!(!refused.contains("retry-after"), "{refused}");
}

/// (low) JWTs without `exp` would never expire: refused by default (`--jwt-require-exp`).
#[test]
fn jwts_without_exp_are_refused() {
    let secret = "a-test-secret-of-enough-length";
    let env = [("SYMPHONY_JWT_SECRET", secret)];
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let server = Server::start_with(&["--api-keys", keys.to_str().unwrap()], &[], &env);
    let chat = format!("{}/v1/chat/completions", server.base);
    let forever = symphony_server::auth::sign_jwt(
        &serde_json::json!({"sub": "forever", "role": "user"}),
        secret.as_bytes(),
    );
    let (status, body) = call("POST", &chat, Some(&forever), Some(GREEDY_CHAT));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("exp"), "{body}");
    let expiring = symphony(
        &["keys", "token", "--sub", "timely", "--role", "user"],
        &env,
    );
    assert_eq!(
        call("POST", &chat, Some(&expiring), Some(GREEDY_CHAT)).0,
        200
    );
}

/// (low) The README's curl examples for the `/v1` JSON routes send a JSON content type
/// (those routes answer 415 to curl's default form type, as the OpenAI routes do).
#[test]
fn readme_curl_examples_send_json() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let mut checked = 0;
    for line in readme.lines().filter(|l| l.contains("curl ")) {
        let posts_json = line.contains(" -d '") || line.contains(" --data");
        if line.contains("/v1/") && posts_json {
            assert!(
                line.to_lowercase()
                    .contains("content-type: application/json"),
                "{line}"
            );
        }
        if line.contains("/v1/") && (posts_json || line.contains("--json")) {
            checked += 1;
        }
    }
    assert!(checked >= 5, "found {checked} examples");
}

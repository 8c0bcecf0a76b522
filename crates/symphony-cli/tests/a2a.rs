//! Agent2Agent interop with the official Python SDK (`a2a-sdk`) on both sides: its client
//! talks to an agent `symphony serve` exposes, and an agent built with it joins a
//! `symphony crew` as a member.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::server::{python, run_client_tests, Server};
use serde_json::Value;

#[test]
fn the_a2a_sdk_client_talks_to_a_symphony_agent() {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("fruit.yaml"),
        "name: fruit\nmodel: qwen2.5-coder:0.5b\ninstructions: You answer in as few words as \
         you can.\nmax_steps: 2\n",
    )
    .unwrap();
    let runs = dir.path().join("runs.sqlite");
    let server = Server::start_with(
        &["--no-auth"],
        &["--agents", agents.to_str().unwrap()],
        &[("SYMPHONY_AGENT_RUNS", runs.to_str().unwrap())],
    );
    run_client_tests(
        &server,
        "a2a_client.py",
        &[],
        &[("SYMPHONY_A2A_AGENT", "fruit")],
    );
}

/// The SDK's echo agent on a free port, killed on drop.
struct EchoAgent {
    child: Child,
    url: String,
}

impl EchoAgent {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients/a2a_echo_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the echo agent did not start");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for EchoAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_remote_a2a_agent_joins_a_crew() {
    let echo = EchoAgent::start();
    let home = tempfile::tempdir().unwrap();
    let qwen = common::stored("qwen2.5-coder:0.5b");
    let crew = home.path().join("crew.yaml");
    std::fs::write(
        &crew,
        format!(
            "name: relay\nmodel: {}\nbudget: {{max_steps: 4, max_tokens: 4000}}\nagents:\n  \
             echo: {{role: Repeater, goal: repeat, a2a: {}}}\n  \
             counter: {{role: Counter, goal: count letters}}\ntasks:\n  \
             - {{id: relay, agent: echo, description: \"{{goal}}\"}}\n  \
             - {{id: count, agent: counter, description: \"How many words are in the \
             repeated text? Answer with a number.\", depends_on: [relay]}}\n",
            qwen.display(),
            echo.url
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .env("SYMPHONY_HOME", home.path())
        .args(["crew", "run"])
        .arg(&crew)
        .args(["the quick brown fox", "--json", "--max-tokens", "16"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages = report["messages"].as_array().unwrap();
    // The remote agent's reply came back over A2A and went on to the next task.
    let reply = messages
        .iter()
        .find(|m| m["sender"] == "echo" && m["performative"] == "inform")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(reply["content"], "echo: the quick brown fox");
    let next = messages
        .iter()
        .find(|m| m["receivers"][0] == "counter" && m["performative"] == "request")
        .unwrap();
    assert!(next["content"]
        .as_str()
        .unwrap()
        .contains("echo: the quick brown fox"));
    assert_eq!(report["status"]["state"], "completed");
}

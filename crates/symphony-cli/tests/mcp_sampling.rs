//! An agent's MCP server that asks for sampling is answered by the agent's own model: in
//! the terminal (`symphony agent run`, the model run in-process) and on the server (a run
//! started over HTTP, the request queued on the model's scheduler like the run's turns).
//! The server is the real `@modelcontextprotocol/server-everything`, whose
//! `trigger-sampling-request` tool sends `sampling/createMessage`; the model is the real
//! Qwen2.5-Coder-0.5B, made to call that tool by `tool_choice: required`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::*;
use serde_json::{json, Value};

fn everything_server() -> PathBuf {
    common::npm_bin().join("mcp-server-everything")
}

/// An agent that must ask the everything server's sampling tool first.
fn write_agent(dir: &Path) -> PathBuf {
    let file = dir.join("asker.yaml");
    std::fs::write(
        &file,
        format!(
            "name: asker\nmodel: qwen2.5-coder:0.5b\ntool_choice: required\nmax_steps: 2\n\
             instructions: Answer by asking the language model through trigger-sampling-request.\n\
             mcp_servers:\n  - name: everything\n    command: [node, {:?}, stdio]\n\
             \x20   tools: [trigger-sampling-request]\n",
            everything_server()
        ),
    )
    .unwrap();
    file
}

const TASK: &str = "What is the capital of France?";

/// The sampling tool's result among `events`: the server quotes the sampled message, whose
/// model is the agent's.
fn assert_sampled(events: &[Value]) {
    let result = events
        .iter()
        .find(|e| e["type"] == "tool_result" && e["name"] == "trigger-sampling-request")
        .unwrap_or_else(|| panic!("no sampling call: {events:?}"));
    let output = result["output"].as_str().unwrap();
    assert_eq!(result["error"], false, "{output}");
    assert!(output.contains("LLM sampling result"), "{output}");
    assert!(
        output.contains("\"model\": \"qwen2.5-coder:0.5b\""),
        "{output}"
    );
    assert!(output.contains("\"role\": \"assistant\""), "{output}");
}

#[test]
fn the_terminals_agent_samples_with_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_agent(dir.path());
    let runs = dir.path().join("runs.sqlite");
    let out = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(["agent", "run", file.to_str().unwrap(), TASK, "--json"])
        .env("SYMPHONY_AGENT_RUNS", &runs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_sampled(&events);
}

#[test]
fn the_servers_agent_samples_through_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    write_agent(&agents);
    let runs = dir.path().join("runs.sqlite");
    let server = Server::spawn(
        &["--no-auth", "--agents", agents.to_str().unwrap()],
        &[("SYMPHONY_AGENT_RUNS", runs.to_str().unwrap())],
    );
    server.wait_ready();
    let (status, started) = call(
        "POST",
        &format!("{}/v1/agents/runs", server.base),
        None,
        Some(&json!({"agent": "asker", "task": TASK}).to_string()),
    );
    assert_eq!(status, 202, "{started}\n{}", server.log());
    let started: Value = serde_json::from_str(&started).unwrap();
    let id = started["id"].as_str().unwrap();
    // The event stream ends with the run.
    let (_, body) = curl(&[&format!("{}/v1/agents/runs/{id}/events", server.base)]);
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect();
    assert_sampled(&events);
}

//! `symphony agent run` end to end: an agent file, the real Qwen2.5-Coder-0.5B, the
//! calculator, and the events as JSON lines.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn agent_run(home: &Path, file: &Path, task: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(["agent", "run", file.to_str().unwrap(), task, "--json"])
        .env("SYMPHONY_HOME", home)
        .output()
        .expect("symphony runs")
}

#[test]
fn an_agent_file_runs_to_an_answer_with_its_events_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("accountant.yaml");
    let model = common::stored("qwen2.5-coder:0.5b");
    std::fs::write(
        &file,
        format!(
            "name: accountant\nmodel: {}\ntools: [calculator]\nloop: react\nmax_steps: 5\n",
            model.display()
        ),
    )
    .unwrap();
    let o = agent_run(
        &dir.path().join("home"),
        &file,
        "A warehouse holds 1234 boxes of 5678 screws each, plus 91011 loose screws. \
         How many screws is that in all? Use the calculator.",
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "tool_call", "{stdout}");
    assert_eq!(events[0]["name"], "calculator");
    assert_eq!(kinds[1], "tool_result");
    assert_eq!(events[1]["output"], "7097663", "{stdout}");
    let answer = &events[events.len() - 2];
    assert_eq!(answer["type"], "answer");
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .replace(',', "")
            .contains("7097663"),
        "{stdout}"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["ending"], "answered");
    assert!(summary["tool_calls"].as_u64().unwrap() >= 1);
}

#[test]
fn a_bad_agent_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "name: x\nmodel: smollm2\ntools: [browser]\n").unwrap();
    let o = agent_run(dir.path(), &file, "anything");
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("unknown tool 'browser'"), "{stderr}");
    assert!(stderr.contains("calculator, read_file"), "{stderr}");
}

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

/// The JSON lines of a `--json` run that succeeded.
fn json_events(o: &Output) -> Vec<serde_json::Value> {
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
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
    let mut events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // First the run's id, under which it is stored and can be resumed.
    let run = events.remove(0);
    assert_eq!(run["type"], "run", "{stdout}");
    assert!(run["id"].as_str().unwrap().starts_with("run_"));
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

/// A run killed (SIGKILL) right after its first tool result resumes from its checkpoint:
/// the finished call is not run again, no turn is lost or repeated, and it answers.
#[test]
fn a_killed_run_resumes_without_losing_or_repeating_a_step() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(dir.path().join("office/notes")).unwrap();
    std::fs::write(
        dir.path().join("office/notes/wifi.txt"),
        "Office wifi\nnetwork: symphony-guest\npassword: tulip-4721\n",
    )
    .unwrap();
    let file = dir.path().join("clerk.yaml");
    let model = common::stored("qwen2.5-coder:0.5b");
    std::fs::write(
        &file,
        format!(
            "name: clerk\nmodel: {}\ntools: [read_file, list_files]\nworkspace: office\nmax_steps: 6\n",
            model.display()
        ),
    )
    .unwrap();
    let task = "What is the office wifi password? It is written in notes/wifi.txt.";
    let mut child = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(["agent", "run", file.to_str().unwrap(), task, "--json"])
        .env("SYMPHONY_HOME", &home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut id = String::new();
    let mut before = Vec::new();
    for line in lines.by_ref() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["type"] == "run" {
            id = event["id"].as_str().unwrap().to_string();
        }
        let done = event["type"] == "tool_result";
        before.push(event);
        if done {
            break;
        }
    }
    // SIGKILL: no chance to clean up, as in a crash.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(id.starts_with("run_"), "{before:?}");
    assert_eq!(
        before.last().unwrap()["output"]
            .as_str()
            .unwrap()
            .lines()
            .last(),
        Some("password: tulip-4721")
    );

    let ls = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(["agent", "ls", "--json"])
        .env("SYMPHONY_HOME", &home)
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["status"], "running");
    assert_eq!(runs[0]["steps"], 1);

    let o = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(["agent", "resume", &id, "--json"])
        .env("SYMPHONY_HOME", &home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The resumed run starts at step 2: step 1 and its result are not redone.
    let first_step = after.iter().find_map(|e| e["step"].as_u64()).unwrap();
    assert_eq!(first_step, 2, "{stdout}");
    let summary = after.last().unwrap();
    assert_eq!(summary["ending"], "answered");
    assert_eq!(
        summary["tool_calls"], 1,
        "read_file ran once in all: {stdout}"
    );
    let answer = &after[after.len() - 2];
    assert!(
        answer["text"].as_str().unwrap().contains("tulip-4721"),
        "{stdout}"
    );

    let show = Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(["agent", "show", &id, "--json"])
        .env("SYMPHONY_HOME", &home)
        .output()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let messages = state["messages"].as_array().unwrap();
    let call_ids: Vec<&str> = messages
        .iter()
        .flat_map(|m| m["tool_calls"].as_array().into_iter().flatten())
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let mut unique = call_ids.clone();
    unique.dedup();
    assert_eq!(call_ids, unique, "a turn was repeated: {call_ids:?}");
    let results: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["tool_call_id"].as_str())
        .collect();
    assert_eq!(
        results.len(),
        call_ids.len(),
        "every call has exactly one result"
    );
    assert_eq!(state["step"], summary["steps"]);
}

/// A call of a tool marked for approval, with no one at a terminal to ask: the run pauses
/// (checkpointed, status `awaiting_approval`), nothing is written; another process approves
/// it with `agent approve`, and the run continues from there to its answer.
#[test]
fn a_call_needing_approval_pauses_the_run_until_agent_approve() {
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let file = dir.path().join("secretary.yaml");
    let model = common::stored("qwen2.5-coder:0.5b");
    std::fs::write(
        &file,
        format!(
            "name: secretary\nmodel: {}\ntools: [write_file]\nworkspace: desk\n\
             approval: [write_file]\nmax_steps: 4\n",
            model.display()
        ),
    )
    .unwrap();
    let symphony = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_symphony"))
            .args(args)
            .env("SYMPHONY_HOME", &home)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = symphony(&[
        "agent",
        "run",
        file.to_str().unwrap(),
        "Write the text 'Meeting moved to 3pm' into the file meeting.txt.",
        "--json",
    ]);
    let before = json_events(&o);
    let id = before[0]["id"].as_str().unwrap().to_string();
    let waiting = before
        .iter()
        .find(|e| e["type"] == "approval_needed")
        .unwrap_or_else(|| panic!("no approval asked: {before:?}"));
    assert_eq!(waiting["name"], "write_file");
    assert!(
        !before.iter().any(|e| e["type"] == "tool_result"),
        "{before:?}"
    );
    assert_eq!(before.last().unwrap()["ending"], "awaiting_approval");
    let written = dir.path().join("desk/meeting.txt");
    assert!(!written.exists(), "the call ran before it was approved");

    let ls = symphony(&["agent", "ls", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(runs[0]["status"], "awaiting_approval");
    let resumed = symphony(&["agent", "resume", &id]);
    assert!(!resumed.status.success());
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains("agent approve"),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );

    let after = json_events(&symphony(&["agent", "approve", &id, "--json"]));
    let result = after
        .iter()
        .find(|e| e["type"] == "tool_result")
        .unwrap_or_else(|| panic!("{after:?}"));
    assert_eq!(result["error"], false, "{after:?}");
    assert!(
        std::fs::read_to_string(&written)
            .unwrap()
            .contains("Meeting moved to 3pm"),
        "{after:?}"
    );
    assert_eq!(after.last().unwrap()["ending"], "answered", "{after:?}");
    let again = symphony(&["agent", "approve", &id]);
    assert!(
        !again.status.success(),
        "a finished run has nothing to approve"
    );
}

/// `symphony agent bench`: the shipped suite, one task, scored; and its usage errors.
#[test]
fn the_task_suite_runs_and_scores_a_task() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/agent-tasks.yaml");
    let bench = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_symphony"))
            .args(["agent", "bench", "--suite", suite.to_str().unwrap()])
            .args(args)
            .output()
            .expect("symphony runs")
    };
    let o = bench(&["--tasks", "wifi", "--json"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let task = &lines[0];
    assert_eq!(task["id"], "wifi");
    assert_eq!(task["passed"], true, "{stdout}");
    assert!(task["tool_calls"].as_u64().unwrap() >= 1, "{stdout}");
    assert!(task["answer"].as_str().unwrap().contains("tulip-4721"));
    let summary = &lines[1];
    assert_eq!(summary["loop"], "react");
    assert_eq!(summary["tool_choice"], "required");
    let all = summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "all")
        .unwrap();
    assert_eq!(
        (all["passed"].as_u64(), all["tasks"].as_u64()),
        (Some(1), Some(1))
    );

    let o = bench(&["--loop", "debate", "--tasks", "wifi"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--loop debate: react, plan or reflect"));
    let o = bench(&["--tool-choice", "always", "--tasks", "wifi"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tool-choice always: auto or required"));
}

/// Long-term memory through the binary: one run keeps a fact with `remember`; a later run,
/// another process with a new conversation and no episodes shown, answers from it.
#[test]
fn a_fact_remembered_in_one_run_answers_a_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let file = dir.path().join("clerk.yaml");
    std::fs::write(
        &file,
        format!(
            "name: clerk\nmodel: {}\ntool_choice: required\nmax_steps: 3\n\
             memory: {{episodes: 0, embedder: {}}}\n",
            common::stored("qwen2.5-coder:0.5b").display(),
            common::stored("all-minilm").display()
        ),
    )
    .unwrap();
    let first = json_events(&agent_run(
        &home,
        &file,
        "Remember this for later: the storeroom door code is 4417.",
    ));
    assert!(
        first.iter().any(|e| e["type"] == "tool_call"
            && e["name"] == "remember"
            && e["arguments"].to_string().contains("4417")),
        "{first:?}"
    );
    assert!(home.join("agents/memory.sqlite").exists());
    let second = json_events(&agent_run(
        &home,
        &file,
        "What is the code of the storeroom door?",
    ));
    let answer = second
        .iter()
        .rev()
        .find(|e| e["type"] == "answer")
        .unwrap_or_else(|| panic!("no answer: {second:?}"));
    assert!(
        answer["text"].as_str().unwrap().contains("4417"),
        "{second:?}"
    );
}

//! `symphony crew` end to end on the real Qwen2.5-Coder-0.5B: the live conversation as
//! FIPA messages, `--json`, a run killed with SIGKILL and resumed from its last finished
//! task, and bad crew files.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn symphony(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_symphony"));
    command
        .env("SYMPHONY_HOME", home)
        .env("SYMPHONY_AGENT_RUNS", home.join("runs.sqlite"));
    command
}

/// A home of the test's own (its crew runs apart from other tests'); the crews name the
/// model by its file in the user's store.
fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn with_stored_model(yaml: &str) -> String {
    let qwen = common::stored("qwen2.5-coder:0.5b");
    let line = format!("model: {}", qwen.display());
    match yaml.contains("model: qwen2.5-coder:0.5b") {
        true => yaml.replace("model: qwen2.5-coder:0.5b", &line),
        false => yaml.replacen("\nbudget:", &format!("\n{line}\nbudget:"), 1),
    }
}

fn run(command: &mut Command) -> Output {
    command.output().expect("symphony runs")
}

/// The example crew, on the stored model.
fn crew_file(home: &Path) -> std::path::PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../symphony-teams/crews/research-and-write.yaml");
    let file = home.join("research-and-write.yaml");
    std::fs::write(
        &file,
        with_stored_model(&std::fs::read_to_string(example).unwrap()),
    )
    .unwrap();
    file
}

#[test]
fn a_crew_prints_its_conversation_and_json() {
    let home = home();
    let goal = "How many legs do 3 spiders and 2 ants have together?";
    let o = run(symphony(home.path())
        .args(["crew", "run"])
        .arg(crew_file(home.path()))
        .arg(goal));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("── request conductor → researcher [research]"),
        "{out}"
    );
    assert!(
        out.contains("── inform writer → conductor [write]"),
        "{out}"
    );

    let o = run(symphony(home.path())
        .args(["crew", "run", "--json"])
        .arg(crew_file(home.path()))
        .arg(goal));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["status"]["state"], "completed");
    assert!(!report["result"].as_str().unwrap().is_empty());
    let messages = report["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    let conversation = report["run_id"].as_str().unwrap();
    for m in messages {
        for key in [
            "performative",
            "sender",
            "receivers",
            "conversation_id",
            "content",
        ] {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
        assert_eq!(m["conversation_id"], conversation);
    }
    assert_eq!(messages[0]["performative"], "request");
    assert_eq!(messages[3]["performative"], "inform");
    assert_eq!(messages[3]["content"], report["result"]);
    assert!(report["usage"]["steps"].as_u64().unwrap() >= 2);
    assert!(report["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

const THREE_STEPS: &str = r#"
name: three-steps
budget: {max_steps: 10, max_tokens: 20000}
agents:
  counter: {role: Counter, goal: Count carefully.}
tasks:
  - {id: first, agent: counter, description: "Write the numbers from 1 to 20, one per line."}
  - {id: second, agent: counter, description: "Write the numbers from 21 to 40, one per line.", depends_on: [first]}
  - {id: third, agent: counter, description: "Say how many numbers were written in all.", depends_on: [second]}
"#;

#[test]
fn a_crew_killed_mid_run_resumes_from_its_last_finished_task() {
    let home = home();
    let file = home.path().join("three.yaml");
    std::fs::write(&file, with_stored_model(THREE_STEPS)).unwrap();
    let mut child = symphony(home.path())
        .args(["crew", "run", "--json"])
        .arg(&file)
        .arg("counting")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 as soon as the first task's result is on disk.
    let runs = home.path().join("crews/runs");
    let deadline = Instant::now() + Duration::from_secs(300);
    let id = loop {
        assert!(Instant::now() < deadline, "the first task never finished");
        let saved = std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let run: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                (!run["results"].as_object()?.is_empty())
                    .then(|| run["id"].as_str().unwrap().to_string())
            });
        if let Some(id) = saved {
            break id;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let saved: Value =
        serde_json::from_slice(&std::fs::read(runs.join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(saved["status"]["state"], "running", "killed before the end");

    let o = run(symphony(home.path()).args(["crew", "resume", &id, "--json"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["status"]["state"], "completed");
    let requests: Vec<&str> = report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["performative"] == "request")
        .map(|m| m["reply_with"].as_str().unwrap())
        .collect();
    assert_eq!(
        requests,
        ["first", "second", "third"],
        "each task asked once"
    );

    let again = run(symphony(home.path()).args(["crew", "resume", &id]));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already finished"));
}

#[test]
fn bad_crew_files_and_unknown_runs_are_refused_clearly() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("bad.yaml");
    std::fs::write(
        &file,
        THREE_STEPS.replace("depends_on: [second]", "depends_on: [fourth]"),
    )
    .unwrap();
    let o = run(symphony(home.path())
        .args(["crew", "run"])
        .arg(&file)
        .arg("x"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("depends on unknown `fourth`"), "{err}");

    let o = run(symphony(home.path()).args(["crew", "resume", "crew-123"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no crew run `crew-123`"));
    let o = run(symphony(home.path()).args(["crew", "resume", "../../etc/passwd"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a crew run id"));
}

/// The server runs a crew and streams its messages as server-sent events; the run is saved
/// where `symphony crew` keeps runs, and only its starter sees it.
#[test]
fn the_server_streams_a_crews_messages() {
    let crews = tempfile::tempdir().unwrap();
    let env = [("SYMPHONY_CREWS", crews.path().to_str().unwrap())];
    let server = common::server::Server::start_with(&["--no-auth"], &[], &env);
    let body = serde_json::json!({
        "crew": "research-and-write",
        "goal": "How many legs do 2 cats have?",
        "stream": true,
        "max_tokens": 24,
    });
    let (status, text) = common::server::curl(&[
        "-N",
        "-X",
        "POST",
        &format!("{}/v1/crews/runs", server.base),
        "-H",
        "content-type: application/json",
        "-d",
        &body.to_string(),
    ]);
    assert_eq!(status, 200, "{text}");
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let acts: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| {
            (
                e["message"]["performative"].as_str().unwrap(),
                e["message"]["sender"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        acts,
        [
            ("request", "conductor"),
            ("inform", "researcher"),
            ("request", "conductor"),
            ("inform", "writer"),
        ],
        "{text}"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["status"]["state"], "completed", "{summary}");
    let id = summary["id"].as_str().unwrap();

    // The saved run, through the API and on disk.
    let (status, run) = common::server::curl(&[&format!("{}/v1/crews/runs/{id}", server.base)]);
    assert_eq!(status, 200, "{run}");
    let run: Value = serde_json::from_str(&run).unwrap();
    assert_eq!(run["messages"].as_array().unwrap().len(), 4);
    assert_eq!(run["result"], summary["result"]);
    assert!(crews
        .path()
        .join("runs")
        .join(format!("{id}.json"))
        .exists());

    // Only the operator's crews run: no paths, no unknown names.
    for crew in ["../etc/passwd", "no-such-crew"] {
        let body = serde_json::json!({"crew": crew, "goal": "g"});
        let (status, text) = common::server::curl(&[
            "-X",
            "POST",
            &format!("{}/v1/crews/runs", server.base),
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
        ]);
        assert_eq!(status, 404, "{text}");
    }
}

//! The ReAct loop end to end on a real model: Qwen2.5-Coder-0.5B from the store
//! (scripts/test.sh fetches it), greedy, its calls in its own `<tool_call>` format held to
//! the tools' schemas by the engine's constrained decoding.

use std::path::PathBuf;

use serde_json::Value;
use symphony_agents::tools::{Calculator, Workspace};
use symphony_agents::{react, AgentConfig, Approval, Ending, EngineChat, Event, ToolRegistry};
use symphony_models::Model;

fn qwen() -> Model {
    let store = symphony_store::Store::from_env().expect("a data directory");
    let name = "qwen2.5-coder:0.5b";
    let path: PathBuf = match store.get(name) {
        Ok(manifest) => store.blob_path(&manifest),
        Err(e) => {
            panic!("{e}\nrun `symphony models fetch {name}` (the README's test command does)")
        }
    };
    Model::load(path).expect("Qwen loads")
}

/// Runs `task`, returning the answer and the tool calls made, in order.
fn run(model: &Model, tools: &ToolRegistry, task: &str) -> (String, Vec<(String, Value)>, Ending) {
    let mut chat = EngineChat::new(model).unwrap();
    let mut calls = Vec::new();
    let outcome = react(
        &mut chat,
        tools,
        &AgentConfig::default(),
        task,
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
    (outcome.answer, calls, outcome.ending)
}

#[test]
fn the_model_uses_the_calculator_and_answers_with_its_result() {
    let model = qwen();
    let mut tools = ToolRegistry::new();
    tools.register(Calculator).unwrap();
    let (answer, calls, ending) = run(
        &model,
        &tools,
        "A warehouse holds 1234 boxes of 5678 screws each, plus 91011 loose screws. \
         How many screws is that in all? Use the calculator.",
    );
    assert_eq!(ending, Ending::Answered);
    assert!(
        !calls.is_empty() && calls.iter().all(|(n, _)| n == "calculator"),
        "{calls:?}"
    );
    assert!(
        answer.replace([',', ' '], "").contains("7097663"),
        "{answer}"
    );
}

#[test]
fn the_model_reads_a_workspace_file_to_answer() {
    let model = qwen();
    let dir = tempfile::tempdir().unwrap();
    let workspace = Workspace::new(dir.path()).unwrap();
    std::fs::create_dir_all(dir.path().join("notes")).unwrap();
    std::fs::write(
        dir.path().join("notes/wifi.txt"),
        "Office wifi\nnetwork: symphony-guest\npassword: tulip-4721\n",
    )
    .unwrap();
    let (read, list, _) = workspace.tools();
    let mut tools = ToolRegistry::new();
    tools.register(read).unwrap();
    tools.register(list).unwrap();
    let (answer, calls, ending) = run(
        &model,
        &tools,
        "What is the office wifi password? It is written in notes/wifi.txt.",
    );
    assert_eq!(ending, Ending::Answered);
    assert!(
        calls
            .iter()
            .any(|(n, a)| n == "read_file" && a["path"] == "notes/wifi.txt"),
        "{calls:?}"
    );
    assert!(answer.contains("tulip-4721"), "{answer}");
}

/// Reflection on the real model: the draft is computed with the calculator, a critic held to
/// the critique schema checks it against a rubric the draft misses (no thousands
/// separators), and the run goes on to a revision that is critiqued in turn, within the
/// revision limit. Whether the small model manages the revision is not asserted; that the
/// loop drafts, judges, revises and stops is.
#[test]
fn a_reflection_critiques_the_draft_and_revises_within_the_limit() {
    use symphony_agents::{run_reflect, RunState};
    let model = qwen();
    let mut tools = ToolRegistry::new();
    tools.register(Calculator).unwrap();
    let config = AgentConfig {
        rubric: Some(
            "The answer writes the total with commas as thousands separators, like 1,234,567."
                .into(),
        ),
        max_revisions: 1,
        max_steps: 4,
        ..AgentConfig::default()
    };
    let mut state = RunState::new(
        &config,
        "A warehouse holds 1234 boxes of 5678 screws each, plus 91011 loose screws. \
         How many screws is that in all? Use the calculator.",
    );
    let mut events = Vec::new();
    let outcome = run_reflect(
        &mut EngineChat::new(&model).unwrap(),
        &tools,
        &config,
        &mut state,
        &mut |_, _| Approval::Allow,
        &mut |e| {
            eprintln!("{}", serde_json::to_string(e).unwrap());
            events.push(e.clone());
        },
        &mut symphony_agents::react::InMemory,
    )
    .unwrap();
    let drafts: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Answer { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let verdicts: Vec<(bool, &str)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Critique { pass, feedback, .. } => Some((*pass, feedback.as_str())),
            _ => None,
        })
        .collect();
    // The first draft has no separators ("7097663"), and the critic says so.
    assert!(drafts[0].contains("7097663"), "{drafts:?}");
    assert!(!verdicts[0].0, "{verdicts:?}");
    assert!(!verdicts[0].1.is_empty(), "a failing critique says why");
    // One revision at most, each draft critiqued, the last draft the answer.
    assert_eq!(drafts.len(), 2, "{drafts:?}");
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    assert!(matches!(events.last(), Some(Event::Critique { .. })));
    assert_eq!(outcome.ending, Ending::Answered);
    assert_eq!(outcome.answer, drafts[1]);
    assert!(
        outcome.answer.replace(',', "").contains("7097663"),
        "{}",
        outcome.answer
    );
    assert_eq!(state.critiques, 2);
}

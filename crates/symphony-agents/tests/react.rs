//! The agent loops end to end on real models: Qwen2.5-Coder-0.5B (1.5B for planning) from
//! the store (scripts/test.sh fetches them), greedy, their calls in their own `<tool_call>`
//! format held to the tools' schemas by the engine's constrained decoding.

mod common;

use common::stored;
use serde_json::Value;
use symphony_agents::tools::{Calculator, Workspace};
use symphony_agents::{react, AgentConfig, Approval, Ending, EngineChat, Event, ToolRegistry};
use symphony_models::Model;

fn qwen() -> Model {
    stored("qwen2.5-coder:0.5b")
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

/// Plan-and-execute on the real model (Qwen2.5-Coder-1.5B: the 0.5B copies the planner's
/// example instead of planning): two files to read, which do not depend on each other, and a
/// sum that depends on both. The independent steps run at the same time, each in a session of
/// its own; the answer is written from the steps' results.
#[test]
fn a_plan_runs_independent_steps_and_answers_from_their_results() {
    use symphony_agents::{run_plan, ChatModel, RunState};
    let model = stored("qwen2.5-coder:1.5b");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("north.txt"), "apples: 12\npears: 30\n").unwrap();
    std::fs::write(dir.path().join("south.txt"), "apples: 25\npears: 7\n").unwrap();
    let workspace = Workspace::new(dir.path()).unwrap();
    let mut tools = ToolRegistry::new();
    tools.register(workspace.tools().0).unwrap();
    tools.register(Calculator).unwrap();
    let config = AgentConfig {
        max_steps: 3,
        ..AgentConfig::default()
    };
    let mut state = RunState::new(
        &config,
        "How many apples are there in the two shops together? The north shop's stock is in \
         north.txt and the south shop's in south.txt.",
    );
    let open = || -> Result<Box<dyn ChatModel + Send + '_>, symphony_agents::Error> {
        Ok(Box::new(EngineChat::new(&model)?))
    };
    let mut events = Vec::new();
    let outcome = run_plan(
        &mut EngineChat::new(&model).unwrap(),
        Some(&open),
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
    let plan = events
        .iter()
        .find_map(|e| match e {
            Event::Plan { steps, .. } => Some(steps.clone()),
            _ => None,
        })
        .expect("a plan");
    let independent = plan.iter().filter(|s| s.after.is_empty()).count();
    assert!(independent >= 2, "{plan:?}");
    assert!(plan.iter().any(|s| s.after.len() >= 2), "{plan:?}");
    let done: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepDone { id, ok: true, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), plan.len(), "every step finished: {events:?}");
    assert_eq!(outcome.ending, Ending::Answered);
    assert!(outcome.answer.contains("37"), "{}", outcome.answer);
}

/// A budget far smaller than the work: the prompt is measured with the model's own
/// tokenizer before every turn, and the early turns are summarised by the model itself,
/// keeping the facts they found.
#[test]
fn older_turns_are_summarised_within_a_small_token_budget() {
    let model = qwen();
    let dir = tempfile::tempdir().unwrap();
    for (file, manager, street, count) in [
        ("north.txt", "Ada Moreno", "12 Quarry Lane", 418),
        ("south.txt", "Ben Okafor", "7 Harbour Road", 273),
        ("east.txt", "Cleo Varga", "90 Mill Street", 156),
    ] {
        std::fs::write(
            dir.path().join(file),
            format!(
                "Depot report\nManager: {manager}\nAddress: {street}\nOpen: Monday to Friday, \
                 7am to 6pm\nItems in stock: {count}\nLast audit: March, no findings.\n"
            ),
        )
        .unwrap();
    }
    let workspace = Workspace::new(dir.path()).unwrap();
    let mut tools = ToolRegistry::new();
    tools.register(workspace.tools().0).unwrap();
    let budget = 480;
    let config = AgentConfig {
        max_steps: 6,
        context_tokens: Some(budget),
        ..AgentConfig::default()
    };
    let mut chat = EngineChat::new(&model).unwrap();
    let mut summaries = Vec::new();
    let outcome = react(
        &mut chat,
        &tools,
        &config,
        "Three depot reports: north.txt, south.txt and east.txt. Read them one at a time \
         (one read_file call per file), then tell me how many items in stock the three \
         depots have in all.",
        &mut |_, _| Approval::Allow,
        &mut |e| {
            eprintln!("{}", serde_json::to_string(e).unwrap());
            if let Event::Summary {
                tokens_before,
                tokens_after,
                text,
                ..
            } = e
            {
                summaries.push((*tokens_before, *tokens_after, text.clone()));
            }
        },
    )
    .unwrap();
    assert!(!summaries.is_empty(), "the budget never made a summary");
    for (before, after, _) in &summaries {
        assert!(*before > budget && *after <= budget, "{summaries:?}");
    }
    // The notes keep what the summarised reports said.
    assert!(
        summaries[0].2.contains("418") && summaries[0].2.contains("273"),
        "{summaries:?}"
    );
    // The run still ends in an answer. (Its content is not checked: after the turns are
    // summarised the 0.5B re-reads a file, then tends to answer with its notes.)
    assert_eq!(outcome.ending, Ending::Answered);
}

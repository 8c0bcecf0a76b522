//! Crew runs over scripted models (test doubles standing for the model, so that order,
//! conditions, budgets and resumption can be checked exactly); tests/crew.rs in the CLI
//! runs crews on a real model.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use symphony_agents::{CallMode, ChatModel, ModelTurn, ToolRegistry};
use symphony_engine::SamplingParams;
use symphony_types::{ChatMessage, ToolSpec};

use super::*;
use crate::acl::{Message, Performative};

/// Answers every turn with `reply(prompt)`, costing 10 + 5 tokens; logs the prompts and
/// the temperature each was answered at.
struct Scripted {
    name: &'static str,
    log: Log,
    reply: fn(&str) -> String,
    sampling: SamplingParams,
}

/// Who was asked what, at which temperature.
type Log = Arc<Mutex<Vec<(String, String, f32)>>>;

impl Scripted {
    fn new(name: &'static str, log: &Log, reply: fn(&str) -> String) -> Self {
        Self {
            name,
            log: Arc::clone(log),
            reply,
            sampling: SamplingParams::greedy(),
        }
    }
}

impl ChatModel for Scripted {
    fn turn(
        &mut self,
        messages: &[ChatMessage],
        _: &[ToolSpec],
        _: CallMode,
    ) -> Result<ModelTurn, symphony_agents::Error> {
        let prompt = messages.last().unwrap().content.clone();
        self.log.lock().unwrap().push((
            self.name.to_string(),
            prompt.clone(),
            self.sampling.temperature,
        ));
        Ok(ModelTurn {
            content: (self.reply)(&prompt),
            calls: Vec::new(),
            prompt_tokens: 10,
            completion_tokens: 5,
        })
    }

    fn structured(
        &mut self,
        messages: &[ChatMessage],
        _: &Value,
    ) -> Result<ModelTurn, symphony_agents::Error> {
        self.turn(messages, &[], CallMode::Answer)
    }

    fn sampling_mut(&mut self) -> Option<&mut SamplingParams> {
        Some(&mut self.sampling)
    }
}

const CREW: &str = r#"
name: t
budget: {max_steps: 10, max_tokens: 1000}
agents:
  scout: {role: Scout, goal: look}
  scribe: {role: Scribe, goal: write}
tasks:
  - {id: look, agent: scout, description: "look at {goal}"}
  - {id: left, agent: scout, description: "left of {goal}", depends_on: [look]}
  - {id: write, agent: scribe, description: "write {goal}", depends_on: [look, left]}
  - {id: fix, agent: scribe, description: "fix it", depends_on: [write], when: {task: write, contains: TODO}}
"#;

fn members(log: &Log) -> Members<'static> {
    let mut members = Members::new();
    for (name, reply) in [
        (
            "scout",
            (|p: &str| format!("saw {}", p.len())) as fn(&str) -> String,
        ),
        ("scribe", |_| "final text".to_string()),
        ("conductor", |_| r#"{"agent": "scribe"}"#.to_string()),
    ] {
        let chat = Scripted::new(name, log, reply);
        members.add(name, Box::new(chat), ToolRegistry::new());
    }
    members
}

fn run(run: &mut CrewRun, stop_after: Option<usize>) -> Vec<Message> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut members = members(&log);
    let mut saved = 0;
    let mut sent = Vec::new();
    let mut save = |_: &CrewRun| {
        saved += 1;
        match stop_after {
            Some(n) if saved >= n => Err("stopped".to_string()),
            _ => Ok(()),
        }
    };
    let _ = run_crew(run, &mut members, &mut save, &mut |m| sent.push(m.clone()));
    sent
}

#[test]
fn tasks_run_in_order_with_their_inputs_and_conditions() {
    let spec = CrewSpec::from_yaml(CREW).unwrap();
    let mut crew = CrewRun::new("r1", spec, "the hill");
    let sent = run(&mut crew, None);
    assert_eq!(crew.status, Status::Completed);
    let acts: Vec<(Performative, &str, &str)> = sent
        .iter()
        .map(|m| (m.performative, m.sender.as_str(), m.receivers[0].as_str()))
        .collect();
    use Performative::{Inform, Request};
    assert_eq!(
        acts,
        [
            (Request, "conductor", "scout"),
            (Inform, "scout", "conductor"),
            (Request, "conductor", "scout"),
            (Inform, "scout", "conductor"),
            (Request, "conductor", "scribe"),
            (Inform, "scribe", "conductor"),
        ]
    );
    // Fan-in: the writer reads both results; the goal is filled in.
    let write_request = &sent[4].content;
    assert!(
        write_request.starts_with("write the hill"),
        "{write_request}"
    );
    assert!(
        write_request.contains("### look (by scout)")
            && write_request.contains("### left (by scout)")
    );
    assert!(sent
        .iter()
        .all(|m| m.conversation_id.as_deref() == Some("r1")));
    assert_eq!(sent[1].in_reply_to.as_deref(), Some("look"));
    // `fix` only runs when the writing has a TODO.
    assert!(matches!(crew.results["fix"], TaskResult::Skipped { .. }));
    assert_eq!(crew.result.as_deref(), Some("final text"));
    assert_eq!(
        crew.usage,
        Usage {
            steps: 3,
            prompt_tokens: 30,
            completion_tokens: 15
        }
    );
    assert_eq!(crew.messages, sent);
}

#[test]
fn budgets_stop_a_crew_whatever_its_file_says() {
    let tight = CREW.replace("max_steps: 10", "max_steps: 2");
    let spec = CrewSpec::from_yaml(&tight).unwrap();
    let mut crew = CrewRun::new("r2", spec, "g");
    run(&mut crew, None);
    assert_eq!(
        crew.status,
        Status::OutOfBudget {
            spent: "2 of 2 steps".into()
        }
    );
    assert_eq!(crew.results.len(), 2);

    let greedy = CREW.replace("max_tokens: 1000", "max_tokens: 20");
    let spec = CrewSpec::from_yaml(&greedy).unwrap();
    let mut crew = CrewRun::new("r3", spec, "g");
    run(&mut crew, None);
    assert!(matches!(crew.status, Status::OutOfBudget { .. }));
    assert_eq!(
        crew.usage.steps, 2,
        "15 tokens a turn: the third turn would start past 20"
    );
}

#[test]
fn a_stopped_run_resumes_after_its_last_finished_task() {
    let spec = CrewSpec::from_yaml(CREW).unwrap();
    let mut crew = CrewRun::new("r4", spec, "g");
    // The process dies when saving the second task's result: the state that was saved
    // holds the first task only.
    run(&mut crew, Some(1));
    let mut saved = crew.clone();
    saved.results.retain(|id, _| id == "look");
    saved.messages.truncate(2);
    let resumed = run(&mut saved, None);
    assert_eq!(saved.status, Status::Completed);
    let requests: Vec<&str> = resumed
        .iter()
        .filter(|m| m.performative == Performative::Request)
        .map(|m| m.reply_with.as_deref().unwrap())
        .collect();
    assert_eq!(requests, ["left", "write"], "`look` is not asked again");
    assert_eq!(saved.messages.len(), 6);
}

#[test]
fn a_hierarchical_crew_lets_its_manager_choose() {
    let managed = CREW
        .replace("name: t", "name: t\nprocess: hierarchical")
        .replace("{id: write, agent: scribe,", "{id: write,");
    let spec = CrewSpec::from_yaml(&managed).unwrap();
    let mut crew = CrewRun::new("r5", spec, "g");
    let sent = run(&mut crew, None);
    assert_eq!(crew.status, Status::Completed);
    let note = sent
        .iter()
        .find(|m| m.content.contains("takes `write`"))
        .unwrap();
    assert_eq!(note.content, "scribe takes `write`");
    assert_eq!(crew.usage.steps, 4, "three tasks and one choice");
}

const CONTRACT: &str = r#"
name: c
budget: {max_steps: 20, max_tokens: 10000}
coordinator: boss
agents:
  boss: {role: Coordinator, goal: delegate}
  sloppy: {role: Editor, goal: write code}
  careful: {role: Editor, goal: write code}
tasks:
  - {id: code, candidates: [sloppy, careful], kind: code, check: python, description: "write {goal}"}
"#;

/// Bids confidently and writes a program whose test fails (the feedback is not enough).
fn sloppy(prompt: &str) -> String {
    if prompt.contains("Bid for it") {
        r#"{"confidence": 0.95, "estimated_tokens": 100}"#.into()
    } else {
        "```python\ndef add(a, b):\n    return a - b\n\nassert add(2, 2) == 4\n```".into()
    }
}

/// Bids modestly and writes a program that passes its test.
fn careful(prompt: &str) -> String {
    if prompt.contains("Bid for it") {
        r#"{"confidence": 0.6, "estimated_tokens": 120}"#.into()
    } else {
        "Here:\n```python\ndef add(a, b):\n    return a + b\n\nassert add(2, 2) == 4\nprint('ok')\n```"
            .into()
    }
}

fn contract_members(record: TrackRecordOf) -> (Members<'static>, Log) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut members = Members::new();
    for (name, reply) in [
        ("boss", (|_: &str| String::new()) as fn(&str) -> String),
        ("sloppy", sloppy),
        ("careful", careful),
    ] {
        let chat = Scripted::new(name, &log, reply);
        members.add(name, Box::new(chat), ToolRegistry::new());
    }
    members.record = record;
    (members, log)
}

type TrackRecordOf = crate::delegation::TrackRecord;

#[test]
fn a_contract_goes_to_the_next_bidder_when_the_winner_fails_its_check() {
    let spec = CrewSpec::from_yaml(CONTRACT).unwrap();
    let mut crew = CrewRun::new("c1", spec, "an adder");
    let (mut members, log) = contract_members(TrackRecordOf::default());
    let mut sent = Vec::new();
    run_crew(&mut crew, &mut members, &mut |_| Ok(()), &mut |m| {
        sent.push(m.clone())
    })
    .unwrap();
    assert_eq!(crew.status, Status::Completed, "{:?}", crew.status);
    let acts: Vec<(Performative, &str)> = sent
        .iter()
        .map(|m| (m.performative, m.sender.as_str()))
        .collect();
    use Performative::*;
    let round = |tries: usize, winner: &'static str, loser: Option<&'static str>| {
        let mut acts = vec![(CallForProposal, "boss"), (Propose, winner)];
        if let Some(loser) = loser {
            acts.push((Propose, loser));
            acts.extend([(AcceptProposal, "boss"), (RejectProposal, "boss")]);
        } else {
            acts.push((AcceptProposal, "boss"));
        }
        for i in 0..tries {
            acts.extend([(Inform, winner), (Disconfirm, "boss")]);
            if i + 1 < tries {
                acts.push((Request, "boss"));
            }
        }
        acts
    };
    // Round 1: both bid, the confident one wins (no record yet) and fails its check three
    // times; round 2: only the other is left, and its program passes.
    let mut want = round(MAX_TRIES, "sloppy", Some("careful"));
    want.extend([
        (CallForProposal, "boss"),
        (Propose, "careful"),
        (AcceptProposal, "boss"),
        (Inform, "careful"),
        (Confirm, "boss"),
    ]);
    assert_eq!(acts, want);
    assert!(sent
        .iter()
        .filter(|m| m.performative != Request
            && m.performative != Inform
            && m.performative != Confirm
            && m.performative != Disconfirm)
        .all(|m| m.protocol.as_deref() == Some("fipa-contract-net")));
    // The feedback names the failure; the result is the program that passed.
    let retry = sent.iter().find(|m| m.performative == Request).unwrap();
    assert!(
        retry.content.contains("AssertionError"),
        "{}",
        retry.content
    );
    assert!(crew.result.as_deref().unwrap().contains("return a + b"));
    assert!(matches!(&crew.results["code"], TaskResult::Done { agent, .. } if agent == "careful"));
    // Retries are sampled (greedy again, a model repeats its program), and the agent's
    // decoding is greedy again afterwards.
    let temperatures = |name: &str| -> Vec<f32> {
        let log = log.lock().unwrap();
        log.iter()
            .filter(|(who, prompt, _)| who == name && !prompt.contains("Bid for it"))
            .map(|(_, _, t)| *t)
            .collect()
    };
    assert_eq!(temperatures("sloppy"), [0.0, 0.7, 0.7]);
    assert_eq!(temperatures("careful"), [0.0]);
    let sloppy = members.chat("sloppy").unwrap().sampling_mut().unwrap();
    assert_eq!(
        (sloppy.temperature, sloppy.seed),
        (0.0, SamplingParams::greedy().seed)
    );
    // The record learnt both outcomes.
    assert_eq!(members.record.of(&"sloppy".into(), "code"), (0, 1));
    assert_eq!(members.record.of(&"careful".into(), "code"), (1, 0));
}

#[test]
fn the_coordinator_sends_work_to_whoever_delivers() {
    // After six contracts each the record outweighs the sloppy agent's confident bids
    // (after three, UCB1's exploration bonus still gives it another try).
    let mut record = TrackRecordOf::default();
    for _ in 0..6 {
        record.record(&"sloppy".into(), "code", false);
        record.record(&"careful".into(), "code", true);
    }
    let spec = CrewSpec::from_yaml(CONTRACT).unwrap();
    let mut crew = CrewRun::new("c2", spec, "an adder");
    let (mut members, _) = contract_members(record);
    let mut sent = Vec::new();
    run_crew(&mut crew, &mut members, &mut |_| Ok(()), &mut |m| {
        sent.push(m.clone())
    })
    .unwrap();
    assert_eq!(crew.status, Status::Completed);
    let accepted: Vec<&str> = sent
        .iter()
        .filter(|m| m.performative == Performative::AcceptProposal)
        .map(|m| m.receivers[0].as_str())
        .collect();
    assert_eq!(accepted, ["careful"]);
    assert_eq!(crew.usage.steps, 3, "two bids and one answer");
}

//! Plan-and-execute: a plan of steps with dependencies, each step a small ReAct run,
//! independent steps at the same time, a new plan when a step fails, and an answer written
//! from the steps' results.
//!
//! The planner is one turn held to a JSON Schema: at most six steps, each with an `id`, a
//! `task` and `after` (the ids it needs the results of). Dependencies on steps that do not
//! come earlier in the list are dropped, so a plan is always acyclic. A step runs as a ReAct
//! run of its own (fresh context: the overall task, the results it builds on, its task);
//! steps whose dependencies are done form a wave, and when the caller can open more than one
//! model session (a [`ChatFactory`]) and no tool needs approval, a wave's steps run on
//! threads of their own. A step that ends without an answer, or whose every tool call
//! failed, fails; the planner then plans the rest again (at most `max_replans` times), told
//! what is done and what failed.
//!
//! Durable like the other loops: the plan and each step's result are assistant messages of
//! the run's conversation (named `plan` and `step N`), checkpointed as they come. A run
//! stopped inside a step redoes that step when resumed; finished steps are not redone.

mod planner;

use std::collections::BTreeMap;
use std::thread;

use symphony_types::{ChatMessage, Role};

use crate::error::Error;
use crate::model::{CallMode, ChatModel};
use crate::react::react;
use crate::registry::ToolRegistry;
use crate::run::{
    AgentConfig, Approval, Approver, Checkpoint, Ending, Event, Harness, RunOutcome, RunState,
    ToolChoice,
};
pub use planner::MAX_PLAN_STEPS;
use planner::{done_so_far, make_plan, progress, step_name};
// Named here too, where they were first defined.
pub use crate::run::{ChatFactory, PlanStep};

/// Plans made again after a failed step, at most.
pub const MAX_REPLANS: usize = 2;

/// [`plan_loop`] with its harness given part by part.
#[allow(clippy::too_many_arguments)]
pub fn run_plan(
    model: &mut dyn ChatModel,
    more: Option<&ChatFactory<'_>>,
    tools: &ToolRegistry,
    config: &AgentConfig,
    state: &mut RunState,
    approve: &mut Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
    checkpoint: &mut dyn Checkpoint,
) -> Result<RunOutcome, Error> {
    let mut harness = Harness {
        model,
        more,
        tools,
        config,
        approve,
        on_event,
        checkpoint,
    };
    plan_loop(&mut harness, state)
}

/// Runs (or resumes) a plan-and-execute run from `state`; see the module's description.
/// `h.more` opens further sessions for steps that can run at the same time; without it
/// steps run one after another.
pub fn plan_loop(h: &mut Harness<'_, '_>, state: &mut RunState) -> Result<RunOutcome, Error> {
    if state.step == 0 {
        h.checkpoint.save(state)?;
    }
    let tools = h.tools;
    // The run's own system prompt (its vars filled, memories and examples chosen when it
    // started) is what the planner and the steps are told, resumed or not: the caller's
    // config may only know the agent file's defaults.
    let own = state
        .messages
        .first()
        .filter(|m| m.role == Role::System)
        .map(|m| AgentConfig {
            instructions: m.content.clone(),
            ..h.config.clone()
        });
    let config = own.as_ref().unwrap_or(h.config);
    let parallel_ok = h.more.is_some()
        && !tools
            .names()
            .any(|n| tools.get(n).is_some_and(|t| t.needs_approval()));
    loop {
        if state.ending.is_some() {
            return Ok(state.outcome());
        }
        let progress = progress(state);
        let failed = progress
            .as_ref()
            .is_some_and(|p| p.results.values().any(Result::is_err));
        let replan = progress.is_none()
            || (failed
                && progress
                    .as_ref()
                    .is_some_and(|p| p.plans_made <= MAX_REPLANS));
        if replan {
            make_plan(h, config, state)?;
            continue;
        }
        let progress = progress.expect("planned");
        let ready: Vec<PlanStep> = if failed {
            // Out of re-plans: answer from what is done.
            Vec::new()
        } else {
            progress
                .plan
                .iter()
                .filter(|s| !progress.results.contains_key(&s.id))
                .filter(|s| s.after.iter().all(|a| progress.results.contains_key(a)))
                .cloned()
                .collect()
        };
        if ready.is_empty() {
            return answer(h, state);
        }
        let results: BTreeMap<u32, String> = progress
            .results
            .iter()
            .filter_map(|(id, r)| r.as_ref().ok().map(|r| (*id, r.clone())))
            .collect();
        let tasks: BTreeMap<u32, &str> = progress
            .plan
            .iter()
            .map(|s| (s.id, s.task.as_str()))
            .collect();
        let prompt = |step: &PlanStep| {
            let needed: Vec<String> = step
                .after
                .iter()
                .filter_map(|a| Some(format!("- {} → {}", tasks.get(a)?, results.get(a)?.trim())))
                .collect();
            let needed = if needed.is_empty() {
                String::new()
            } else {
                format!("Results you build on:\n{}\n\n", needed.join("\n"))
            };
            format!(
                "You are doing one step of a larger task.\nThe larger task: {}\n\n{needed}\
                 Your step: {}\nDo only this step: use a tool only if the step needs it, and \
                 as soon as you have the step's result, answer with it in one short sentence.",
                state.task, step.task
            )
        };
        // A step decides for itself whether it needs a tool ("add the two results" does
        // not), except that a run held to `tool_choice: required` stays held until its first
        // call, as a ReAct run is: without it the 1.5B answered every file lookup of the
        // agent suite from its plan alone, never opening the file.
        let tool_choice = if config.tool_choice == ToolChoice::Required && state.tool_calls == 0 {
            ToolChoice::Required
        } else {
            ToolChoice::Auto
        };
        let step_config = AgentConfig {
            tool_choice,
            ..config.clone()
        };
        let config = &step_config;
        let mut finished: Vec<(PlanStep, StepRun)> = Vec::new();
        match h.more {
            Some(open) if parallel_ok && ready.len() > 1 => {
                let prompts: Vec<String> = ready.iter().map(prompt).collect();
                let runs = thread::scope(|scope| {
                    let handles: Vec<_> = prompts
                        .iter()
                        .map(|p| {
                            scope.spawn(move || -> Result<StepRun, Error> {
                                let mut chat = open()?;
                                let mut events = Vec::new();
                                let outcome = react(
                                    chat.as_mut(),
                                    tools,
                                    config,
                                    p,
                                    &mut |_, _| Approval::Deny,
                                    &mut |e| events.push(e.clone()),
                                )?;
                                Ok(StepRun { outcome, events })
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a step thread panicked"))
                        .collect::<Vec<_>>()
                });
                for (step, run) in ready.into_iter().zip(runs) {
                    finished.push((step, run?));
                }
            }
            _ => {
                // One step at a time, its events live.
                let step = ready.into_iter().next().expect("not empty");
                let outcome = react(
                    h.model,
                    tools,
                    config,
                    &prompt(&step),
                    h.approve,
                    h.on_event,
                )?;
                finished.push((
                    step,
                    StepRun {
                        outcome,
                        events: Vec::new(),
                    },
                ));
            }
        }
        for (step, run) in finished {
            for e in &run.events {
                (h.on_event)(e);
            }
            record_step(h, state, &step, &run.outcome)?;
        }
    }
}

/// A finished step's run, with the events it had when it ran on another thread.
struct StepRun {
    outcome: RunOutcome,
    events: Vec<Event>,
}

fn record_step(
    h: &mut Harness<'_, '_>,
    state: &mut RunState,
    step: &PlanStep,
    outcome: &RunOutcome,
) -> Result<(), Error> {
    let results: Vec<&ChatMessage> = outcome
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .collect();
    let all_failed = !results.is_empty() && results.iter().all(|m| m.content.starts_with("Error:"));
    let ok = outcome.ending == Ending::Answered && !outcome.answer.trim().is_empty() && !all_failed;
    let text = if ok {
        outcome.answer.trim().to_string()
    } else if all_failed {
        format!(
            "every tool call failed; the last error: {}",
            results.last().map_or("", |m| m.content.as_str())
        )
    } else {
        "the step ended without a result".to_string()
    };
    state.step += outcome.steps;
    state.tool_calls += outcome.tool_calls;
    state.prompt_tokens += outcome.prompt_tokens;
    state.completion_tokens += outcome.completion_tokens;
    let mut message = ChatMessage::assistant(text.clone());
    message.name = Some(if ok {
        step_name(step.id)
    } else {
        format!("{} failed", step_name(step.id))
    });
    state.messages.push(message);
    h.checkpoint.save(state)?;
    (h.on_event)(&Event::StepDone {
        step: state.step,
        id: step.id,
        task: step.task.clone(),
        result: text,
        ok,
    });
    Ok(())
}

/// The final answer, written from the steps' results in a fresh round.
fn answer(h: &mut Harness<'_, '_>, state: &mut RunState) -> Result<RunOutcome, Error> {
    let request = format!(
        "Results of the steps:\n{}\n\nUsing these results, answer my question: {}",
        done_so_far(state).join("\n"),
        state.task
    );
    state.round_start = state.messages.len();
    state.messages.push(ChatMessage::user(request));
    let turn = h.model.turn(&state.context(), &[], CallMode::Answer)?;
    state.count_turn(&turn);
    state.ending = Some(if turn.content.is_empty() {
        Ending::StepLimit
    } else {
        Ending::Answered
    });
    state
        .messages
        .push(ChatMessage::assistant(turn.content.clone()));
    h.checkpoint.save(state)?;
    (h.on_event)(&Event::Answer {
        step: state.step,
        text: turn.content,
    });
    Ok(state.outcome())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use serde_json::{json, Value};

    use super::*;
    use crate::model::ModelTurn;
    use symphony_types::ToolSpec;

    /// Replays plans (structured turns) and answers (plain turns) in order, recording what it
    /// was shown. It stands in for the model in these tests of the loop's logic only; the
    /// end-to-end test runs a real one.
    struct Scripted {
        plans: VecDeque<Value>,
        answers: VecDeque<ModelTurn>,
        seen: Vec<String>,
        /// Each turn's first message (its system prompt).
        systems: Vec<String>,
        /// Each plain turn's call mode.
        modes: Vec<CallMode>,
    }

    impl Scripted {
        fn new(plans: Vec<Value>, answers: Vec<&'static str>) -> Self {
            Self::with_turns(plans, answers.into_iter().map(say).collect())
        }

        fn with_turns(plans: Vec<Value>, answers: Vec<ModelTurn>) -> Self {
            Self {
                plans: plans.into(),
                answers: answers.into(),
                seen: Vec::new(),
                systems: Vec::new(),
                modes: Vec::new(),
            }
        }
    }

    impl ChatModel for Scripted {
        fn turn(
            &mut self,
            messages: &[ChatMessage],
            _: &[ToolSpec],
            mode: CallMode,
        ) -> Result<ModelTurn, crate::Error> {
            self.seen.push(messages.last().unwrap().content.clone());
            self.systems.push(messages[0].content.clone());
            self.modes.push(mode);
            Ok(self.answers.pop_front().expect("an answer"))
        }

        fn structured(
            &mut self,
            messages: &[ChatMessage],
            _: &Value,
        ) -> Result<ModelTurn, crate::Error> {
            self.seen.push(messages.last().unwrap().content.clone());
            self.systems.push(messages[0].content.clone());
            Ok(ModelTurn {
                content: self.plans.pop_front().expect("a plan").to_string(),
                ..ModelTurn::default()
            })
        }
    }

    /// A plain turn: text, no calls.
    fn say(text: &str) -> ModelTurn {
        ModelTurn {
            content: text.into(),
            ..ModelTurn::default()
        }
    }

    fn step(id: u32, task: &str, after: &[u32]) -> Value {
        json!({"id": id, "task": task, "after": after})
    }

    /// Keeps every checkpoint; fails (as a crash would stop the run) after `limit` saves.
    struct Saves {
        states: Vec<RunState>,
        limit: usize,
    }

    impl Checkpoint for Saves {
        fn save(&mut self, state: &RunState) -> Result<(), crate::Error> {
            if self.states.len() == self.limit {
                return Err(crate::Error::Runs("crashed".into()));
            }
            self.states.push(state.clone());
            Ok(())
        }
    }

    fn run(
        model: &mut Scripted,
        state: &mut RunState,
        saves: &mut Saves,
    ) -> (Result<RunOutcome, crate::Error>, Vec<Event>) {
        let mut events = Vec::new();
        let outcome = run_plan(
            model,
            None,
            &ToolRegistry::new(),
            &AgentConfig::default(),
            state,
            &mut |_, _| Approval::Allow,
            &mut |e| events.push(e.clone()),
            saves,
        );
        (outcome, events)
    }

    #[test]
    fn the_planner_and_the_steps_are_told_the_runs_own_instructions() {
        let mut model = Scripted::new(
            vec![json!({"steps": [step(1, "Count them", &[])]})],
            vec!["3", "There are 3."],
        );
        // The run started with its vars filled; the loop is given only the file's defaults.
        let started = AgentConfig {
            instructions: "You keep the books of Acme.".into(),
            ..AgentConfig::default()
        };
        let mut state = RunState::new(&started, "How many?");
        let mut saves = Saves {
            states: Vec::new(),
            limit: usize::MAX,
        };
        let (outcome, _) = run(&mut model, &mut state, &mut saves);
        assert_eq!(outcome.unwrap().answer, "There are 3.");
        assert_eq!(model.systems.len(), 3, "{:?}", model.systems);
        assert!(
            model
                .systems
                .iter()
                .all(|s| s.starts_with("You keep the books of Acme.")),
            "{:?}",
            model.systems
        );
    }

    #[test]
    fn steps_run_after_what_they_need_and_the_answer_uses_their_results() {
        let mut model = Scripted::new(
            vec![json!({"steps": [
                step(1, "Find the north total", &[]),
                step(2, "Find the south total", &[]),
                step(3, "Add the totals", &[1, 2]),
            ]})],
            vec!["12", "25", "37", "There are 37."],
        );
        let config = AgentConfig::default();
        let mut state = RunState::new(&config, "How many in all?");
        let mut saves = Saves {
            states: Vec::new(),
            limit: usize::MAX,
        };
        let (outcome, events) = run(&mut model, &mut state, &mut saves);
        let outcome = outcome.unwrap();
        assert_eq!(outcome.answer, "There are 37.");
        assert_eq!(outcome.ending, Ending::Answered);
        let done: Vec<(u32, String)> = events
            .iter()
            .filter_map(|e| match e {
                Event::StepDone { id, result, ok, .. } => {
                    assert!(ok);
                    Some((*id, result.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(done, [(1, "12".into()), (2, "25".into()), (3, "37".into())]);
        // The planner saw the task; step 3 saw what it needs; the answer saw every result.
        assert!(model.seen[0].starts_with("Task: How many in all?"));
        assert!(!model.seen[1].contains("Results you build on"));
        assert!(
            model.seen[3].contains("- Find the north total → 12")
                && model.seen[3].contains("- Find the south total → 25")
                && model.seen[3].contains("Your step: Add the totals"),
            "{}",
            model.seen[3]
        );
        assert!(model.seen[4].contains("- Add the totals → 37"));
    }

    #[test]
    fn a_failed_step_is_planned_around() {
        let mut model = Scripted::new(
            vec![
                json!({"steps": [step(1, "Ask the oracle", &[])]}),
                json!({"steps": [step(1, "Count by hand", &[])]}),
            ],
            // The first step answers nothing, also when asked again: it failed.
            vec!["", "", "7", "Seven."],
        );
        let mut state = RunState::new(&AgentConfig::default(), "How many?");
        let mut saves = Saves {
            states: Vec::new(),
            limit: usize::MAX,
        };
        let (outcome, events) = run(&mut model, &mut state, &mut saves);
        assert_eq!(outcome.unwrap().answer, "Seven.");
        let plans = events
            .iter()
            .filter(|e| matches!(e, Event::Plan { .. }))
            .count();
        assert_eq!(plans, 2);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::StepDone {
                ok: false,
                id: 1,
                ..
            }
        )));
        // The second planner (after the step's two turns) was told what failed.
        assert!(
            model.seen[3].contains("- Ask the oracle → FAILED: the step ended without a result"),
            "{}",
            model.seen[3]
        );
    }

    #[test]
    fn a_resumed_plan_does_not_redo_finished_steps() {
        let plan = json!({"steps": [step(1, "First", &[]), step(2, "Second", &[1])]});
        // Step 2's result is lost in the crash.
        let mut model = Scripted::new(vec![plan], vec!["one", "lost"]);
        let mut state = RunState::new(&AgentConfig::default(), "Do both.");
        // Saves: the start, the plan, step 1; the crash comes on saving step 2.
        let mut saves = Saves {
            states: Vec::new(),
            limit: 3,
        };
        let (outcome, _) = run(&mut model, &mut state, &mut saves);
        assert!(outcome.is_err());
        let mut resumed = saves.states.last().unwrap().clone();
        let mut model = Scripted::new(Vec::new(), vec!["two", "Both done."]);
        let mut saves = Saves {
            states: Vec::new(),
            limit: usize::MAX,
        };
        let (outcome, events) = run(&mut model, &mut resumed, &mut saves);
        assert_eq!(outcome.unwrap().answer, "Both done.");
        // No new plan, step 1 not redone: the first thing run is step 2, built on step 1.
        assert!(!events.iter().any(|e| matches!(e, Event::Plan { .. })));
        assert!(
            model.seen[0].contains("- First → one") && model.seen[0].contains("Your step: Second")
        );
    }

    #[test]
    fn a_required_run_holds_its_steps_to_a_call_until_the_first_one() {
        let plan = json!({"steps": [step(1, "Work out 6 * 7", &[]), step(2, "Double it", &[1])]});
        let call = ModelTurn {
            calls: vec![("calculator".into(), json!({"expression": "6 * 7"}))],
            ..ModelTurn::default()
        };
        let mut model = Scripted::with_turns(
            vec![plan],
            vec![call, say("42"), say("84"), say("It is 84.")],
        );
        let mut tools = ToolRegistry::new();
        tools.register(crate::tools::Calculator).unwrap();
        let config = AgentConfig {
            tool_choice: ToolChoice::Required,
            ..AgentConfig::default()
        };
        let mut state = RunState::new(&config, "What is twice 6 * 7?");
        let mut saves = Saves {
            states: Vec::new(),
            limit: usize::MAX,
        };
        let outcome = run_plan(
            &mut model,
            None,
            &tools,
            &config,
            &mut state,
            &mut |_, _| Approval::Allow,
            &mut |_| {},
            &mut saves,
        )
        .unwrap();
        assert_eq!(outcome.answer, "It is 84.");
        assert_eq!(outcome.tool_calls, 1);
        // Step 1 must call before it answers; once the run has called a tool, step 2 (which
        // only doubles a result) may answer at once, and the answer is words.
        assert_eq!(
            model.modes,
            [
                CallMode::Required,
                CallMode::Auto,
                CallMode::Auto,
                CallMode::Answer
            ]
        );
    }
}

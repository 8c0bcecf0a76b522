//! The ReAct loop: the model thinks, calls tools, reads their results, and answers.
//!
//! Each step is one assistant turn. A turn with calls runs them (through the registry: time
//! limits, errors turned into observations) and feeds each result back as a `tool` message;
//! a turn without calls is the answer. Guards: a step limit (the last step must answer), a
//! wall-clock budget, and loop detection: a call identical to an earlier one is not run
//! again; the model is shown the earlier result and must answer on the next turn (a call
//! that failed gets one chance to be corrected first).
//!
//! The loop's shared types (its state, events, checkpoints and approvals) live in
//! [`crate::run`]; they are named here too, where they were first defined, so that
//! `react::RunState` and the like keep working.

mod calls;

use std::time::Instant;

use symphony_types::{ChatMessage, ToolCall};

use crate::context::{fit, REPLY_RESERVE};
use crate::error::Error;
use crate::model::{CallMode, ChatModel};
use crate::registry::ToolRegistry;
pub use crate::run::{
    AgentConfig, Approval, Approver, Checkpoint, Ending, Event, Harness, InMemory, RunOutcome,
    RunState, ToolChoice, DEFAULT_INSTRUCTIONS,
};

/// Runs `task` to an answer, in memory.
pub fn react(
    model: &mut dyn ChatModel,
    tools: &ToolRegistry,
    config: &AgentConfig,
    task: &str,
    approve: &mut Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<RunOutcome, Error> {
    let mut state = RunState::new(config, task);
    run_react(
        model,
        tools,
        config,
        &mut state,
        approve,
        on_event,
        &mut InMemory,
    )
}

/// [`react_loop`] with its harness given part by part.
pub fn run_react(
    model: &mut dyn ChatModel,
    tools: &ToolRegistry,
    config: &AgentConfig,
    state: &mut RunState,
    approve: &mut Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
    checkpoint: &mut dyn Checkpoint,
) -> Result<RunOutcome, Error> {
    let mut harness = Harness {
        model,
        more: None,
        tools,
        config,
        approve,
        on_event,
        checkpoint,
    };
    react_loop(&mut harness, state)
}

/// Runs (or resumes) the loop from `state`, checkpointing after each model turn and each
/// tool result: a run stopped at any point resumes without repeating a turn or a finished
/// call (calls that had not finished are run on resuming).
pub fn react_loop(h: &mut Harness<'_, '_>, state: &mut RunState) -> Result<RunOutcome, Error> {
    let started = Instant::now();
    let specs = h.tools.specs();
    // Counted from the current answer's start (see `step_base`).
    let max_steps = state.step_base + h.config.max_steps.max(1);
    if state.step == 0 {
        h.checkpoint.save(state)?;
    }
    loop {
        if state.ending.is_some() || state.awaiting_approval.is_some() {
            return Ok(state.outcome());
        }
        let pending = state.pending_calls();
        if !pending.is_empty() {
            calls::run_calls(h, state, pending)?;
            continue;
        }
        if state.step >= max_steps {
            // Only reached by a state saved by an older, larger limit.
            state.ending = Some(Ending::StepLimit);
            h.checkpoint.save(state)?;
            continue;
        }
        let step = state.step + 1;
        let out_of_time = h.config.time_budget.is_some_and(|b| started.elapsed() >= b);
        let mut added = Vec::new();
        if (step == max_steps || out_of_time) && !state.must_answer {
            state.must_answer = true;
            let why = if out_of_time {
                "time budget spent"
            } else {
                "last step"
            };
            (h.on_event)(&Event::Notice {
                step,
                text: format!("{why}: the model must answer now"),
            });
        }
        if state.must_answer && !state.answer_asked {
            // Small models answer a direct request far more reliably than they stop
            // calling on their own; the request stays in the transcript.
            // The task is restated: a plan step's run must answer its step, not the larger
            // task its prompt also names (the 1.5B did, with the task left out or put first).
            added.push(ChatMessage::user(format!(
                "Using the results above, answer my question now, without calling tools: {}",
                state.task
            )));
            state.answer_asked = true;
        }
        let mode = if state.must_answer {
            CallMode::Answer
        } else if h.config.tool_choice == ToolChoice::Required && state.tool_calls == 0 {
            CallMode::Required
        } else {
            CallMode::Auto
        };
        let budget = h.config.context_tokens.or_else(|| {
            h.model
                .context_length()
                .map(|n| n.saturating_sub(REPLY_RESERVE))
        });
        let context = fit(h.model, state, &added, &specs, budget, h.on_event)?;
        let turn = h.model.turn(&context, &specs, mode)?;
        state.count_turn(&turn);
        let mut events = Vec::new();
        if turn.calls.is_empty()
            && turn.content.is_empty()
            && !state.must_answer
            && step < max_steps
        {
            // An empty reply is no answer (the 1.5B sometimes stops right after a tool
            // result): the model is asked for one, as on its last step.
            state.must_answer = true;
            (h.on_event)(&Event::Notice {
                step,
                text: "the model replied with nothing; asked for the answer".into(),
            });
            state.messages.extend(added);
            h.checkpoint.save(state)?;
            continue;
        }
        if turn.calls.is_empty() {
            state.ending = Some(if turn.content.is_empty() && state.must_answer {
                Ending::StepLimit
            } else {
                Ending::Answered
            });
            events.push(Event::Answer {
                step,
                text: turn.content.clone(),
            });
            added.push(ChatMessage::assistant(turn.content));
        } else {
            if !turn.content.is_empty() {
                events.push(Event::Thought {
                    step,
                    text: turn.content.clone(),
                });
            }
            let mut assistant = ChatMessage::assistant(turn.content);
            assistant.tool_calls = turn
                .calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, arguments))| ToolCall {
                    id: format!("call_{step}_{i}"),
                    name,
                    arguments,
                })
                .collect();
            for call in &assistant.tool_calls {
                events.push(Event::ToolCall {
                    step,
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                });
            }
            added.push(assistant);
        }
        state.messages.extend(added);
        // Saved before it is reported: whatever a reader has seen survives a crash.
        h.checkpoint.save(state)?;
        for e in &events {
            (h.on_event)(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use serde_json::json;

    use serde_json::Value;
    use symphony_types::Role;

    use super::*;
    use crate::model::ModelTurn;
    use crate::tools::Calculator;
    use crate::ToolRegistry;

    /// A model that replays prepared turns and records the mode of each request. It stands
    /// in for the model only in these tests of the loop's logic; the end-to-end tests run a
    /// real one.
    struct Scripted {
        turns: VecDeque<ModelTurn>,
        modes: Vec<CallMode>,
        seen: Vec<Vec<ChatMessage>>,
    }

    impl Scripted {
        fn new(turns: Vec<ModelTurn>) -> Self {
            Self {
                turns: turns.into(),
                modes: Vec::new(),
                seen: Vec::new(),
            }
        }
    }

    impl ChatModel for Scripted {
        fn turn(
            &mut self,
            messages: &[ChatMessage],
            _tools: &[symphony_types::ToolSpec],
            mode: CallMode,
        ) -> Result<ModelTurn, crate::Error> {
            self.modes.push(mode);
            self.seen.push(messages.to_vec());
            let mut turn = self.turns.pop_front().expect("the script ran out");
            if mode == CallMode::Answer {
                turn.calls.clear();
            }
            Ok(turn)
        }

        fn structured(&mut self, _: &[ChatMessage], _: &Value) -> Result<ModelTurn, crate::Error> {
            unreachable!("a ReAct run asks for no structured turn")
        }
    }

    fn call(name: &str, arguments: Value) -> ModelTurn {
        ModelTurn {
            calls: vec![(name.into(), arguments)],
            ..ModelTurn::default()
        }
    }

    fn say(text: &str) -> ModelTurn {
        ModelTurn {
            content: text.into(),
            ..ModelTurn::default()
        }
    }

    fn calculator() -> ToolRegistry {
        let mut tools = ToolRegistry::new();
        tools.register(Calculator).unwrap();
        tools
    }

    fn run(
        model: &mut Scripted,
        tools: &ToolRegistry,
        max_steps: usize,
    ) -> (RunOutcome, Vec<Event>) {
        let mut events = Vec::new();
        let config = AgentConfig {
            max_steps,
            ..AgentConfig::default()
        };
        let outcome = react(
            model,
            tools,
            &config,
            "What is 6 * 7?",
            &mut |_, _| Approval::Allow,
            &mut |e| events.push(e.clone()),
        )
        .unwrap();
        (outcome, events)
    }

    #[test]
    fn a_call_is_run_and_its_result_fed_back_before_the_answer() {
        let mut model = Scripted::new(vec![
            call("calculator", json!({"expression": "6 * 7"})),
            say("6 * 7 is 42."),
        ]);
        let (outcome, events) = run(&mut model, &calculator(), 5);
        assert_eq!(outcome.answer, "6 * 7 is 42.");
        assert_eq!(outcome.ending, Ending::Answered);
        assert_eq!((outcome.steps, outcome.tool_calls), (2, 1));
        let tool_message = &model.seen[1][3];
        assert_eq!(tool_message.role, Role::Tool);
        assert_eq!(tool_message.content, "42");
        assert_eq!(tool_message.tool_call_id.as_deref(), Some("call_1_0"));
        assert_eq!(model.seen[1][2].tool_calls[0].name, "calculator");
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Event::ToolCall { .. } => "call",
                Event::ToolResult { .. } => "result",
                Event::Answer { .. } => "answer",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["call", "result", "answer"]);
    }

    #[test]
    fn tool_errors_become_observations() {
        let mut model = Scripted::new(vec![
            call("calculator", json!({"expression": "6 / 0"})),
            call("calculate", json!({"expression": "6 * 7"})),
            say("42"),
        ]);
        let (outcome, events) = run(&mut model, &calculator(), 5);
        assert_eq!(outcome.answer, "42");
        let errors: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::ToolResult {
                    output,
                    error: true,
                    ..
                } => Some(output.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            errors,
            [
                "Error: division by zero",
                "Error: there is no tool named \"calculate\"; the tools are: calculator"
            ]
        );
    }

    #[test]
    fn a_repeated_call_is_not_run_again_and_the_model_must_answer() {
        let same = json!({"expression": "6 * 7"});
        let mut model = Scripted::new(vec![
            call("calculator", same.clone()),
            call("calculator", same),
            say("It is 42."),
        ]);
        let (outcome, events) = run(&mut model, &calculator(), 8);
        assert_eq!(outcome.tool_calls, 1);
        assert_eq!(
            model.modes,
            [CallMode::Auto, CallMode::Auto, CallMode::Answer]
        );
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Notice { text, .. } if text.contains("repeated call"))));
        let seen = &model.seen[2];
        let repeat = &seen[seen.len() - 2];
        assert_eq!(repeat.role, Role::Tool);
        assert!(
            repeat.content.contains("already made; its result was: 42"),
            "{}",
            repeat.content
        );
        let ask = seen.last().unwrap();
        assert_eq!(ask.role, Role::User);
        assert!(
            ask.content
                .ends_with("without calling tools: What is 6 * 7?"),
            "{}",
            ask.content
        );
        assert_eq!(outcome.answer, "It is 42.");
    }

    #[test]
    fn a_failed_call_repeated_gets_one_chance_to_be_corrected() {
        let bad = json!({"expression": "1 / 0"});
        let mut model = Scripted::new(vec![
            call("calculator", bad.clone()),
            call("calculator", bad.clone()),
            call("calculator", bad),
            say("It cannot be computed."),
        ]);
        let (outcome, _) = run(&mut model, &calculator(), 8);
        assert_eq!(outcome.tool_calls, 1);
        // The first repeat is answered with the failure and a hint, the model may call
        // again; the second repeat ends the calling.
        assert_eq!(
            model.modes,
            [
                CallMode::Auto,
                CallMode::Auto,
                CallMode::Auto,
                CallMode::Answer
            ]
        );
        let first_repeat = &model.seen[2].last().unwrap().content;
        assert!(
            first_repeat.starts_with("This exact call already failed: Error:")
                && first_repeat.contains("call the tool with other arguments"),
            "{first_repeat}"
        );
        let second_repeat = &model.seen[3][model.seen[3].len() - 2].content;
        assert!(
            second_repeat.starts_with("This exact call was already made; its result was: Error:"),
            "{second_repeat}"
        );
        assert_eq!(outcome.answer, "It cannot be computed.");
    }

    #[test]
    fn an_empty_reply_is_no_answer() {
        let mut model = Scripted::new(vec![
            call("calculator", json!({"expression": "6 * 7"})),
            say(""),
            say("It is 42."),
        ]);
        let (outcome, events) = run(&mut model, &calculator(), 6);
        assert_eq!(outcome.answer, "It is 42.");
        assert_eq!(outcome.ending, Ending::Answered);
        assert_eq!(
            model.modes,
            [CallMode::Auto, CallMode::Auto, CallMode::Answer]
        );
        assert!(events.iter().any(
            |e| matches!(e, Event::Notice { text, .. } if text.contains("replied with nothing"))
        ));
        let asked = model.seen[2].last().unwrap();
        assert!(
            asked.content.starts_with("Using the results above"),
            "{}",
            asked.content
        );
    }

    #[test]
    fn the_last_step_must_answer() {
        let mut model = Scripted::new(vec![
            call("calculator", json!({"expression": "1 + 1"})),
            call("calculator", json!({"expression": "2 + 2"})),
            ModelTurn {
                content: "Enough: 4.".into(),
                calls: vec![("calculator".into(), json!({"expression": "3 + 3"}))],
                ..ModelTurn::default()
            },
        ]);
        let (outcome, _) = run(&mut model, &calculator(), 3);
        assert_eq!(
            model.modes,
            [CallMode::Auto, CallMode::Auto, CallMode::Answer]
        );
        assert_eq!((outcome.steps, outcome.tool_calls), (3, 2));
        assert_eq!(outcome.answer, "Enough: 4.");
    }

    #[test]
    fn a_required_tool_choice_holds_until_the_first_call() {
        let mut model = Scripted::new(vec![
            call("calculator", json!({"expression": "6 * 7"})),
            say("42."),
        ]);
        let config = AgentConfig {
            tool_choice: ToolChoice::Required,
            ..AgentConfig::default()
        };
        let outcome = react(
            &mut model,
            &calculator(),
            &config,
            "What is 6 * 7?",
            &mut |_, _| Approval::Allow,
            &mut |_| {},
        )
        .unwrap();
        // Required before any call, then the model may answer; the spec key reads the same.
        assert_eq!(model.modes, [CallMode::Required, CallMode::Auto]);
        assert_eq!(outcome.answer, "42.");
        let choice: ToolChoice = serde_json::from_value(json!("required")).unwrap();
        assert_eq!(choice, ToolChoice::Required);
    }

    #[test]
    fn a_denied_call_is_reported_to_the_model() {
        struct Guarded;
        impl crate::Tool for Guarded {
            fn spec(&self) -> symphony_types::ToolSpec {
                symphony_types::ToolSpec {
                    name: "delete_everything".into(),
                    description: None,
                    parameters: json!({"type": "object"}),
                }
            }
            fn call(&self, _: Value) -> Result<String, crate::ToolError> {
                panic!("a denied call must not run")
            }
            fn needs_approval(&self) -> bool {
                true
            }
        }
        let mut tools = ToolRegistry::new();
        tools.register(Guarded).unwrap();
        let mut model = Scripted::new(vec![
            call("delete_everything", json!({})),
            say("I may not."),
        ]);
        let mut asked = Vec::new();
        let outcome = react(
            &mut model,
            &tools,
            &AgentConfig::default(),
            "Clean up.",
            &mut |name, _| {
                asked.push(name.to_string());
                Approval::Deny
            },
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(asked, ["delete_everything"]);
        assert_eq!(outcome.tool_calls, 0);
        assert_eq!(
            model.seen[1].last().unwrap().content,
            "Error: a person denied this call."
        );
    }

    /// Keeps every checkpoint, as a store would.
    struct Saved(Vec<RunState>);

    impl Checkpoint for Saved {
        fn save(&mut self, state: &RunState) -> Result<(), crate::Error> {
            self.0.push(state.clone());
            Ok(())
        }
    }

    #[test]
    fn a_call_waiting_for_approval_pauses_the_run_until_a_decision() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Transfer(Arc<AtomicUsize>);
        impl crate::Tool for Transfer {
            fn spec(&self) -> symphony_types::ToolSpec {
                symphony_types::ToolSpec {
                    name: "transfer".into(),
                    description: None,
                    parameters: json!({"type": "object"}),
                }
            }
            fn call(&self, _: Value) -> Result<String, crate::ToolError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok("sent".into())
            }
            fn needs_approval(&self) -> bool {
                true
            }
        }
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tools = ToolRegistry::new();
        tools.register(Transfer(Arc::clone(&runs))).unwrap();
        let config = AgentConfig::default();
        let mut model = Scripted::new(vec![
            call("transfer", json!({"amount": 10})),
            say("Sent 10."),
        ]);
        let mut state = RunState::new(&config, "Send 10.");
        let mut saved = Saved(Vec::new());
        let mut events = Vec::new();
        let outcome = run_react(
            &mut model,
            &tools,
            &config,
            &mut state,
            &mut |_, _| Approval::Pause,
            &mut |e| events.push(e.clone()),
            &mut saved,
        )
        .unwrap();
        assert_eq!(outcome.ending, Ending::AwaitingApproval);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        assert_eq!(model.seen.len(), 1);
        assert!(matches!(
            events.last(),
            Some(Event::ApprovalNeeded { name, id, .. }) if name == "transfer" && id == "call_1_0"
        ));
        // What a store holds at the pause says so: another process can decide.
        let mut stored = saved.0.last().unwrap().clone();
        assert_eq!(stored.awaiting_approval.as_deref(), Some("call_1_0"));
        assert_eq!(stored.ending, None);

        let decided = stored.decide(true).unwrap();
        assert_eq!(decided.name, "transfer");
        assert!(
            stored.decide(true).is_err(),
            "a second decision has no call"
        );
        let outcome = run_react(
            &mut model,
            &tools,
            &config,
            &mut stored,
            &mut |_, _| panic!("a decided call is not asked about again"),
            &mut |_| {},
            &mut InMemory,
        )
        .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(outcome.ending, Ending::Answered);
        assert_eq!(outcome.answer, "Sent 10.");
        assert_eq!(model.seen[1].last().unwrap().content, "sent");
    }
}

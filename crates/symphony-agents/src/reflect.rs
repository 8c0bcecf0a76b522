//! Reflection: draft, critique, revise, until the critique passes the rubric or the
//! revisions run out.
//!
//! A draft is a ReAct run (tools allowed). The critique is one turn held to a JSON Schema,
//! `{"feedback": string, "pass": boolean}`, by constrained decoding: the critic, prompted as
//! a reviewer in a fresh context, reads the task, the tool results, the answer and the
//! rubric, says what is wrong first and judges after. A failed critique's feedback becomes the next user message and the same
//! conversation continues to a revised answer, with a fresh step allowance. Everything lives
//! in the run's conversation (a critique is an assistant message named `critique`) and its
//! small state, so a reflection is checkpointed and resumed like any other run.

use serde::Deserialize;
use serde_json::{json, Value};
use symphony_types::{ChatMessage, Role};

use crate::error::Error;
use crate::model::ChatModel;
use crate::react::react_loop;
use crate::registry::ToolRegistry;
use crate::run::{AgentConfig, Approver, Checkpoint, Ending, Event, Harness, RunOutcome, RunState};

/// The rubric when an agent gives none.
pub const DEFAULT_RUBRIC: &str = "The answer responds to every part of the task, agrees with \
the tool results in the conversation, and states the result directly.";

/// What the critic must write.
fn critique_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "feedback": {"type": "string", "maxLength": 600},
            "pass": {"type": "boolean"},
        },
        "required": ["feedback", "pass"],
        "additionalProperties": false,
        // JSON spaced as models write it: `{"feedback": "...", "pass": true}`. Without the
        // space after the colon, small models lose the thread inside the string.
        "x-guidance": {"whitespace_flexible": false, "key_separator": ": ", "item_separator": ", "},
    })
}

#[derive(Deserialize)]
struct Critique {
    feedback: String,
    pass: bool,
}

/// The reviewer's request: the task, what the tools returned, the answer, the rubric.
fn review_prompt(state: &RunState, answer: &str, rubric: &str) -> String {
    format!(
        "Task: {}\n\n{}Answer to review:\n{answer}\n\nRubric: {rubric}\n\n\
         Check each requirement of the rubric against the answer. Reply in JSON: \
         \"feedback\" names every requirement the answer misses and how to fix it (empty if \
         none), \"pass\" is true only if the answer meets all of them.",
        state.task,
        tool_results(state),
    )
}

/// The run's tool results so far, as a list (empty when there are none).
fn tool_results(state: &RunState) -> String {
    let results: Vec<String> = state
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool && !m.content.starts_with("This exact call"))
        .map(|m| {
            format!(
                "- {}: {}",
                m.name.as_deref().unwrap_or("tool"),
                m.content.trim()
            )
        })
        .collect();
    if results.is_empty() {
        return String::new();
    }
    format!("Tool results:\n{}\n\n", results.join("\n"))
}

/// [`reflect_loop`] with its harness given part by part.
pub fn run_reflect(
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
    reflect_loop(&mut harness, state)
}

/// Runs (or resumes) a reflection from `state`; see the module's description.
pub fn reflect_loop(h: &mut Harness<'_, '_>, state: &mut RunState) -> Result<RunOutcome, Error> {
    let config = h.config;
    let rubric = config.rubric.as_deref().unwrap_or(DEFAULT_RUBRIC);
    loop {
        let outcome = react_loop(h, state)?;
        // Paused, or out of steps without an answer: nothing to critique.
        if outcome.ending != Ending::Answered || state.passed {
            return Ok(outcome);
        }
        // Each draft is critiqued, the last one too, so the run says whether it passed.
        if state.critiques > config.max_revisions {
            return Ok(outcome);
        }
        // The critic reads the task, the tools' results and the answer afresh, as a
        // reviewer: a model asked inside its own conversation tends to approve itself.
        let context = vec![
            ChatMessage::system(
                "You are a strict reviewer. You check an answer against a rubric, one \
                 requirement at a time, and pass it only if it meets every requirement \
                 exactly.",
            ),
            ChatMessage::user(review_prompt(state, &outcome.answer, rubric)),
        ];
        let turn = h.model.structured(&context, &critique_schema())?;
        state.count_turn(&turn);
        // The grammar guarantees the shape; a reply cut by the token limit is a failed review.
        let critique: Critique = serde_json::from_str(&turn.content).unwrap_or(Critique {
            feedback: "The review was cut off; check the answer again.".into(),
            pass: false,
        });
        state.critiques += 1;
        state.passed = critique.pass;
        let revise = !critique.pass && state.critiques <= config.max_revisions;
        if revise {
            // The reviewer's exchange stays out of the conversation: a model shown its own
            // JSON verdict answers with more JSON. Only the feedback goes in.
            // A fresh round: the task, what is known, the draft and the feedback. In the
            // draft's own conversation a small model repeats the draft word for word.
            let request = format!(
                "Task: {}\n\n{}Your previous answer:\n{}\n\nA reviewer says: {}\n\n\
                 Answer the task again, applying the reviewer's correction.",
                state.task,
                tool_results(state),
                outcome.answer,
                critique.feedback
            );
            state.round_start = state.messages.len();
            state.messages.push(ChatMessage::user(request));
            state.ending = None;
            state.must_answer = false;
            state.answer_asked = false;
            state.step_base = state.step;
        }
        // Saved before it is reported, as every step is.
        h.checkpoint.save(state)?;
        (h.on_event)(&Event::Critique {
            step: state.step,
            round: state.critiques,
            pass: critique.pass,
            feedback: critique.feedback,
        });
        if !revise {
            return Ok(state.outcome());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::model::{CallMode, ModelTurn};
    use crate::run::InMemory;
    use symphony_types::ToolSpec;

    /// Replays answers and critiques in order; stands in for the model in these tests of
    /// the loop's logic only (the end-to-end test runs a real one).
    struct Scripted {
        answers: VecDeque<&'static str>,
        critiques: VecDeque<Value>,
        seen: Vec<Vec<ChatMessage>>,
    }

    impl ChatModel for Scripted {
        fn turn(
            &mut self,
            messages: &[ChatMessage],
            _: &[ToolSpec],
            _: CallMode,
        ) -> Result<ModelTurn, crate::Error> {
            self.seen.push(messages.to_vec());
            Ok(ModelTurn {
                content: self.answers.pop_front().expect("an answer").into(),
                ..ModelTurn::default()
            })
        }

        fn structured(
            &mut self,
            messages: &[ChatMessage],
            _: &Value,
        ) -> Result<ModelTurn, crate::Error> {
            self.seen.push(messages.to_vec());
            Ok(ModelTurn {
                content: self.critiques.pop_front().expect("a critique").to_string(),
                ..ModelTurn::default()
            })
        }
    }

    fn reflect(model: &mut Scripted, max_revisions: usize) -> (RunOutcome, Vec<Event>) {
        let config = AgentConfig {
            rubric: Some("Exactly three fruits, one per line.".into()),
            max_revisions,
            max_steps: 2,
            ..AgentConfig::default()
        };
        let mut state = RunState::new(&config, "Name three fruits.");
        let mut events = Vec::new();
        let outcome = run_reflect(
            model,
            &ToolRegistry::new(),
            &config,
            &mut state,
            &mut |_, _| unreachable!("no tools"),
            &mut |e| events.push(e.clone()),
            &mut InMemory,
        )
        .unwrap();
        (outcome, events)
    }

    #[test]
    fn a_failed_critique_leads_to_a_revision_that_is_critiqued_again() {
        let mut model = Scripted {
            answers: ["apple, pear", "apple\npear\nplum"].into(),
            critiques: [
                json!({"feedback": "Only two fruits, on one line.", "pass": false}),
                json!({"feedback": "", "pass": true}),
            ]
            .into(),
            seen: Vec::new(),
        };
        let (outcome, events) = reflect(&mut model, 2);
        assert_eq!(outcome.answer, "apple\npear\nplum");
        assert_eq!(outcome.ending, Ending::Answered);
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Answer { text, .. } => format!("answer {text:?}"),
                Event::Critique { round, pass, .. } => format!("critique {round} {pass}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "answer \"apple, pear\"",
                "critique 1 false",
                "answer \"apple\\npear\\nplum\"",
                "critique 2 true"
            ]
        );
        // The critic sees the rubric; the reviser sees the feedback.
        let critic = model.seen[1].last().unwrap();
        assert!(
            critic.content.contains("Exactly three fruits"),
            "{critic:?}"
        );
        let reviser = model.seen[2].last().unwrap();
        assert_eq!(reviser.role, Role::User);
        assert!(
            reviser
                .content
                .contains("A reviewer says: Only two fruits, on one line."),
            "{reviser:?}"
        );
        assert!(
            reviser
                .content
                .contains("Your previous answer:\napple, pear"),
            "{reviser:?}"
        );
        // The revision round starts afresh: system prompt, then the revision request.
        assert_eq!(model.seen[2].len(), 2);
        // A revision gets its own steps: the limit of 2 counts from the feedback.
        assert_eq!(outcome.steps, 4);
    }

    #[test]
    fn revisions_stop_at_the_limit_and_the_last_draft_is_the_answer() {
        let fail = json!({"feedback": "Still wrong.", "pass": false});
        let mut model = Scripted {
            answers: ["one", "two"].into(),
            critiques: [fail.clone(), fail].into(),
            seen: Vec::new(),
        };
        let (outcome, events) = reflect(&mut model, 1);
        assert_eq!(outcome.answer, "two");
        assert_eq!(outcome.ending, Ending::Answered);
        let verdicts: Vec<bool> = events
            .iter()
            .filter_map(|e| match e {
                Event::Critique { pass, .. } => Some(*pass),
                _ => None,
            })
            .collect();
        assert_eq!(verdicts, [false, false]);
        assert!(model.answers.is_empty() && model.critiques.is_empty());
    }
}

//! The ReAct loop: the model thinks, calls tools, reads their results, and answers.
//!
//! Each step is one assistant turn. A turn with calls runs them (through the registry: time
//! limits, errors turned into observations) and feeds each result back as a `tool` message;
//! a turn without calls is the answer. Guards: a step limit (the last step must answer), a
//! wall-clock budget, and loop detection: a call identical to an earlier one is not run
//! again; the model is shown the earlier result and must answer on the next turn (a call
//! that failed gets one chance to be corrected first).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use symphony_types::{ChatMessage, Role, ToolCall};

use crate::model::{CallMode, ChatModel, ModelTurn};
use crate::registry::ToolRegistry;

/// How one agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The system prompt.
    pub instructions: String,
    /// Model turns at most; the last one must answer.
    pub max_steps: usize,
    /// Wall-clock time for the whole run; once spent, the next turn must answer.
    pub time_budget: Option<Duration>,
    /// Reflection: what a good answer must meet (the critic's yardstick).
    pub rubric: Option<String>,
    /// Reflection: revisions after the first draft, at most.
    pub max_revisions: usize,
    /// The prompt's budget in tokens; older turns are summarised beyond it. `None`: the
    /// model's context length less room for the reply.
    pub context_tokens: Option<usize>,
    /// Whether the model may answer before it has called a tool.
    pub tool_choice: ToolChoice,
}

/// OpenAI's `tool_choice` for a run: whether the first turn may answer without a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model calls tools or answers, as it sees fit.
    #[default]
    Auto,
    /// Until the run has called a tool, every turn must call one; from then on, `auto`.
    /// For agents whose every task needs a tool: small models otherwise answer a question
    /// about a file without reading it. Falling back to `auto` after the first call (as
    /// OpenAI's Agents SDK does) keeps the model from calling for ever.
    Required,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            instructions: DEFAULT_INSTRUCTIONS.into(),
            max_steps: 8,
            time_budget: None,
            rubric: None,
            max_revisions: 2,
            context_tokens: None,
            tool_choice: ToolChoice::Auto,
        }
    }
}

pub const DEFAULT_INSTRUCTIONS: &str = "You are a helpful assistant. Use the tools when they \
help; when you have what you need, answer the user directly and briefly.";

/// What happens during a run, in order, for the CLI and the API to stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Text the model wrote beside its calls.
    Thought {
        step: usize,
        text: String,
    },
    ToolCall {
        step: usize,
        id: String,
        name: String,
        arguments: Value,
    },
    ToolResult {
        step: usize,
        id: String,
        name: String,
        output: String,
        error: bool,
    },
    /// A call needs a person's approval and none could be asked now: the run pauses until
    /// it is approved or denied (`symphony agent approve RUN [--deny]`).
    ApprovalNeeded {
        step: usize,
        id: String,
        name: String,
        arguments: Value,
    },
    /// Reflection: the critic's verdict on the answer just given.
    Critique {
        step: usize,
        round: usize,
        pass: bool,
        feedback: String,
    },
    /// Plan-and-execute: the plan made (again, after a failed step).
    Plan {
        step: usize,
        steps: Vec<crate::plan::PlanStep>,
    },
    /// Plan-and-execute: a step of the plan finished (`ok: false`: it failed).
    StepDone {
        step: usize,
        id: u32,
        task: String,
        result: String,
        ok: bool,
    },
    /// Older turns were summarised to keep the prompt within its token budget.
    Summary {
        step: usize,
        /// Messages the summary stands for (this time).
        messages: usize,
        tokens_before: usize,
        tokens_after: usize,
        text: String,
    },
    /// A guard stepped in (loop caught, step limit or budget near); the model must answer.
    Notice {
        step: usize,
        text: String,
    },
    Answer {
        step: usize,
        text: String,
    },
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Answered,
    /// The last allowed turn still did not answer (the model wrote nothing).
    StepLimit,
    /// Not an end: the run waits for a call to be approved or denied, and resumes then.
    AwaitingApproval,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub answer: String,
    pub ending: Ending,
    pub steps: usize,
    pub tool_calls: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The whole conversation, system prompt first.
    pub messages: Vec<ChatMessage>,
}

/// Where a run stands: the conversation and a few counters. Everything else (which calls
/// were made, with what result) is read from the conversation, so a run checkpointed as its
/// messages plus this small state resumes exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub task: String,
    pub messages: Vec<ChatMessage>,
    /// Model turns taken.
    pub step: usize,
    /// The next turn must answer (a guard stepped in).
    pub must_answer: bool,
    /// The request to answer has been added to the conversation.
    pub answer_asked: bool,
    pub tool_calls: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Set when the run has ended.
    pub ending: Option<Ending>,
    /// People's decisions on calls that needed approval, by call id (`true`: approved).
    /// Recorded before the call runs, so a resumed run never asks twice.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approvals: BTreeMap<String, bool>,
    /// The call the run is paused on, waiting for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_approval: Option<String>,
    /// Turns taken before the current answer was asked for: the step limit counts from
    /// here (a reflection's revision gets the same number of steps as its first draft).
    #[serde(default)]
    pub step_base: usize,
    /// Where the current round's messages start (0: the whole conversation). The model
    /// sees the system prompt and the messages from here: a reflection's revision starts a
    /// fresh round, so the model is not drawn to repeat its earlier answer word for word.
    #[serde(default)]
    pub round_start: usize,
    /// Reflection: critiques made, and whether the last one passed.
    #[serde(default)]
    pub critiques: usize,
    #[serde(default)]
    pub passed: bool,
    /// The older turns of the round as the model now sees them, summarised to keep the
    /// prompt within its budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<crate::context::Summary>,
}

impl RunState {
    pub fn new(config: &AgentConfig, task: &str) -> Self {
        Self {
            task: task.to_string(),
            messages: vec![
                ChatMessage::system(config.instructions.clone()),
                ChatMessage::user(task),
            ],
            step: 0,
            must_answer: false,
            answer_asked: false,
            tool_calls: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            ending: None,
            approvals: BTreeMap::new(),
            awaiting_approval: None,
            step_base: 0,
            round_start: 0,
            critiques: 0,
            passed: false,
            summary: None,
        }
    }

    /// Records a person's decision on the call the run waits for, so that resuming it
    /// runs (or refuses) that call. Fails when the run waits for no decision.
    pub fn decide(&mut self, approve: bool) -> Result<ToolCall, crate::Error> {
        let Some(id) = self.awaiting_approval.take() else {
            return Err(crate::Error::Runs(
                "the run is not waiting for an approval".into(),
            ));
        };
        let call = self
            .pending_calls()
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| crate::Error::Runs(format!("call {id} is not pending")))?;
        self.approvals.insert(id, approve);
        Ok(call)
    }

    /// The run as it stands, as a finished run reports it.
    pub fn outcome(&self) -> RunOutcome {
        let answer = match self.messages.last() {
            Some(m) if self.ending.is_some() && m.role == Role::Assistant => m.content.clone(),
            _ => String::new(),
        };
        let ending = match (self.ending, &self.awaiting_approval) {
            (Some(e), _) => e,
            (None, Some(_)) => Ending::AwaitingApproval,
            (None, None) => Ending::StepLimit,
        };
        RunOutcome {
            answer,
            ending,
            steps: self.step,
            tool_calls: self.tool_calls,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            messages: self.messages.clone(),
        }
    }

    /// The call the run is paused on, waiting for a person's decision.
    pub fn awaiting_call(&self) -> Option<ToolCall> {
        let id = self.awaiting_approval.as_ref()?;
        self.pending_calls().into_iter().find(|c| &c.id == id)
    }

    /// The calls of the last assistant turn that have no result yet (a run stopped between
    /// a turn and its tools' results).
    fn pending_calls(&self) -> Vec<ToolCall> {
        let Some(i) = self
            .messages
            .iter()
            .rposition(|m| m.role == Role::Assistant)
        else {
            return Vec::new();
        };
        let answered: Vec<&str> = self.messages[i + 1..]
            .iter()
            .filter_map(|m| m.tool_call_id.as_deref())
            .collect();
        self.messages[i]
            .tool_calls
            .iter()
            .filter(|c| !answered.contains(&c.id.as_str()))
            .cloned()
            .collect()
    }

    /// Counts one model turn: a step and its tokens.
    pub(crate) fn count_turn(&mut self, turn: &ModelTurn) {
        self.step += 1;
        self.prompt_tokens += turn.prompt_tokens;
        self.completion_tokens += turn.completion_tokens;
    }

    /// What the model sees: the system prompt and the current round, its older turns
    /// replaced by their summary when one was written (see [`crate::context`]).
    pub(crate) fn context(&self) -> Vec<ChatMessage> {
        let start = self.round_start.min(self.messages.len());
        let mut out: Vec<ChatMessage> = Vec::new();
        if start > 0 {
            out.extend(
                self.messages
                    .iter()
                    .take(1)
                    .filter(|m| m.role == Role::System)
                    .cloned(),
            );
        }
        match crate::context::current_summary(self) {
            Some(summary) => {
                let head = crate::context::head_end(self);
                out.extend(self.messages[start..head].iter().cloned());
                out.push(crate::context::summary_message(&summary.text));
                out.extend(
                    self.messages[summary.upto.min(self.messages.len())..]
                        .iter()
                        .cloned(),
                );
            }
            None => out.extend(self.messages[start..].iter().cloned()),
        }
        out
    }

    /// The results of earlier calls in this round with the same name and arguments, oldest
    /// first.
    fn earlier_results(&self, call: &ToolCall) -> Vec<String> {
        self.messages[self.round_start.min(self.messages.len())..]
            .iter()
            .flat_map(|m| &m.tool_calls)
            .filter(|c| c.id != call.id && c.name == call.name && c.arguments == call.arguments)
            .filter_map(|earlier| {
                self.messages
                    .iter()
                    .find(|m| m.tool_call_id.as_deref() == Some(earlier.id.as_str()))
                    .map(|m| m.content.clone())
            })
            .collect()
    }
}

/// Saves a run as it goes: called after every change. A conversation only grows, so a store
/// appends the messages past those it holds (deltas) and rewrites only the small state.
pub trait Checkpoint {
    fn save(&mut self, state: &RunState) -> Result<(), crate::Error>;
}

/// No saving: the run lives in memory only.
pub struct InMemory;

impl Checkpoint for InMemory {
    fn save(&mut self, _: &RunState) -> Result<(), crate::Error> {
        Ok(())
    }
}

/// A decision on a call that needs approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    Allow,
    Deny,
    /// No one can decide now: the run is checkpointed and pauses; a decision recorded later
    /// with [`RunState::decide`] lets it resume.
    Pause,
}

impl From<bool> for Approval {
    fn from(allow: bool) -> Self {
        if allow {
            Approval::Allow
        } else {
            Approval::Deny
        }
    }
}

/// Asked before a tool marked as needing approval runs.
pub type Approver<'a> = dyn FnMut(&str, &Value) -> Approval + 'a;

/// Runs `task` to an answer, in memory.
pub fn react(
    model: &mut dyn ChatModel,
    tools: &ToolRegistry,
    config: &AgentConfig,
    task: &str,
    approve: &mut Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<RunOutcome, crate::Error> {
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

/// Runs (or resumes) the loop from `state`, checkpointing after each model turn and each
/// tool result: a run stopped at any point resumes without repeating a turn or a finished
/// call (calls that had not finished are run on resuming).
pub fn run_react(
    model: &mut dyn ChatModel,
    tools: &ToolRegistry,
    config: &AgentConfig,
    state: &mut RunState,
    approve: &mut Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
    checkpoint: &mut dyn Checkpoint,
) -> Result<RunOutcome, crate::Error> {
    let started = Instant::now();
    let specs = tools.specs();
    // Counted from the current answer's start (see `step_base`).
    let max_steps = state.step_base + config.max_steps.max(1);
    if state.step == 0 {
        checkpoint.save(state)?;
    }
    loop {
        if state.ending.is_some() || state.awaiting_approval.is_some() {
            return Ok(state.outcome());
        }
        let pending = state.pending_calls();
        if !pending.is_empty() {
            run_calls(tools, state, pending, approve, on_event, checkpoint)?;
            continue;
        }
        if state.step >= max_steps {
            // Only reached by a state saved by an older, larger limit.
            state.ending = Some(Ending::StepLimit);
            checkpoint.save(state)?;
            continue;
        }
        let step = state.step + 1;
        let out_of_time = config.time_budget.is_some_and(|b| started.elapsed() >= b);
        let mut added = Vec::new();
        if (step == max_steps || out_of_time) && !state.must_answer {
            state.must_answer = true;
            let why = if out_of_time {
                "time budget spent"
            } else {
                "last step"
            };
            on_event(&Event::Notice {
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
        } else if config.tool_choice == ToolChoice::Required && state.tool_calls == 0 {
            CallMode::Required
        } else {
            CallMode::Auto
        };
        let budget = config.context_tokens.or_else(|| {
            model
                .context_length()
                .map(|n| n.saturating_sub(crate::context::REPLY_RESERVE))
        });
        let context = crate::context::fit(model, state, &added, &specs, budget, on_event)?;
        let turn = model.turn(&context, &specs, mode)?;
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
            on_event(&Event::Notice {
                step,
                text: "the model replied with nothing; asked for the answer".into(),
            });
            state.messages.extend(added);
            checkpoint.save(state)?;
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
        checkpoint.save(state)?;
        for e in &events {
            on_event(e);
        }
    }
}

/// Runs the calls of the last turn, one checkpoint per result.
fn run_calls(
    tools: &ToolRegistry,
    state: &mut RunState,
    calls: Vec<ToolCall>,
    approve: &mut Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
    checkpoint: &mut dyn Checkpoint,
) -> Result<(), crate::Error> {
    let step = state.step;
    for call in calls {
        let earlier = state.earlier_results(&call);
        // The first result is the call's real one; later ones are this guard's replies.
        let (output, error) = if let Some(first) = earlier.first() {
            // The same call again is not run: its answer is in the conversation already. A
            // call that failed once gets one chance to be corrected; otherwise the model
            // must answer now.
            let correctable = first.starts_with("Error:") && earlier.len() == 1;
            state.must_answer |= !correctable;
            on_event(&Event::Notice {
                step,
                text: format!("repeated call to {}: not run again", call.name),
            });
            let output = if correctable {
                format!(
                    "This exact call already failed: {first}\nDo not repeat it: call the tool \
                     with other arguments (leave out the optional ones you do not need), or \
                     answer the user."
                )
            } else {
                format!(
                    "This exact call was already made; its result was: {first}\n\
                     Use that result to answer the user now."
                )
            };
            (output, correctable)
        } else if tools.get(&call.name).is_some_and(|t| t.needs_approval())
            && !approved(state, &call, approve, on_event, checkpoint)?
        {
            if state.awaiting_approval.is_some() {
                return Ok(());
            }
            ("Error: a person denied this call.".to_string(), true)
        } else {
            state.tool_calls += 1;
            match tools.call(&call.name, call.arguments.clone()) {
                Ok(text) => (text, false),
                Err(e) => (format!("Error: {e}"), true),
            }
        };
        let mut result = ChatMessage::new(Role::Tool, output.clone());
        result.tool_call_id = Some(call.id.clone());
        result.name = Some(call.name.clone());
        state.messages.push(result);
        // Saved before it is reported: whatever a reader has seen survives a crash.
        checkpoint.save(state)?;
        on_event(&Event::ToolResult {
            step,
            id: call.id,
            name: call.name,
            output,
            error,
        });
    }
    Ok(())
}

/// Whether a call that needs approval may run: a decision recorded earlier stands;
/// otherwise the approver is asked, and its decision recorded before the call runs. On
/// [`Approval::Pause`] the run is marked as waiting and `false` returned.
fn approved(
    state: &mut RunState,
    call: &ToolCall,
    approve: &mut Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
    checkpoint: &mut dyn Checkpoint,
) -> Result<bool, crate::Error> {
    if let Some(&decided) = state.approvals.get(&call.id) {
        return Ok(decided);
    }
    let allow = match approve(&call.name, &call.arguments) {
        Approval::Allow => true,
        Approval::Deny => false,
        Approval::Pause => {
            state.awaiting_approval = Some(call.id.clone());
            checkpoint.save(state)?;
            on_event(&Event::ApprovalNeeded {
                step: state.step,
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            return Ok(false);
        }
    };
    state.approvals.insert(call.id.clone(), allow);
    checkpoint.save(state)?;
    Ok(allow)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use serde_json::json;

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

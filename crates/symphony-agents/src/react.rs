//! The ReAct loop: the model thinks, calls tools, reads their results, and answers.
//!
//! Each step is one assistant turn. A turn with calls runs them (through the registry: time
//! limits, errors turned into observations) and feeds each result back as a `tool` message;
//! a turn without calls is the answer. Guards: a step limit (the last step must answer), a
//! wall-clock budget, and loop detection: a call identical to an earlier one is not run
//! again; the model is shown the earlier result and must answer on the next turn.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use symphony_types::{ChatMessage, Role, ToolCall};

use crate::model::{CallMode, ChatModel};
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
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            instructions: DEFAULT_INSTRUCTIONS.into(),
            max_steps: 8,
            time_budget: None,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Answered,
    /// The last allowed turn still did not answer (the model wrote nothing).
    StepLimit,
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

/// Asked before a tool marked as needing approval runs; `false` denies the call.
pub type Approver<'a> = dyn FnMut(&str, &Value) -> bool + 'a;

/// Runs `task` to an answer.
pub fn react(
    model: &mut dyn ChatModel,
    tools: &ToolRegistry,
    config: &AgentConfig,
    task: &str,
    approve: &mut Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<RunOutcome, crate::Error> {
    let started = Instant::now();
    let specs = tools.specs();
    let mut messages = vec![
        ChatMessage::system(config.instructions.clone()),
        ChatMessage::user(task),
    ];
    let mut done_calls: Vec<(String, String)> = Vec::new();
    let mut must_answer = false;
    let mut answer_asked = false;
    let mut outcome = RunOutcome {
        answer: String::new(),
        ending: Ending::StepLimit,
        steps: 0,
        tool_calls: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        messages: Vec::new(),
    };
    let max_steps = config.max_steps.max(1);
    for step in 1..=max_steps {
        let out_of_time = config.time_budget.is_some_and(|b| started.elapsed() >= b);
        if (step == max_steps || out_of_time) && !must_answer {
            must_answer = true;
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
        let mode = if must_answer {
            if !answer_asked {
                // Small models answer a direct request far more reliably than they stop
                // calling on their own; the request stays in the transcript.
                messages.push(ChatMessage::user(format!(
                    "Using the results above, answer my question now, without calling \
                     tools: {task}"
                )));
                answer_asked = true;
            }
            CallMode::Answer
        } else {
            CallMode::Auto
        };
        let turn = model.turn(&messages, &specs, mode)?;
        outcome.steps = step;
        outcome.prompt_tokens += turn.prompt_tokens;
        outcome.completion_tokens += turn.completion_tokens;
        if turn.calls.is_empty() {
            outcome.answer = turn.content.clone();
            outcome.ending = if turn.content.is_empty() && must_answer {
                Ending::StepLimit
            } else {
                Ending::Answered
            };
            on_event(&Event::Answer {
                step,
                text: turn.content.clone(),
            });
            messages.push(ChatMessage::assistant(turn.content));
            break;
        }
        if !turn.content.is_empty() {
            on_event(&Event::Thought {
                step,
                text: turn.content.clone(),
            });
        }
        let calls: Vec<ToolCall> = turn
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, (name, arguments))| ToolCall {
                id: format!("call_{step}_{i}"),
                name,
                arguments,
            })
            .collect();
        let mut assistant = ChatMessage::assistant(turn.content);
        assistant.tool_calls = calls.clone();
        messages.push(assistant);
        for call in calls {
            on_event(&Event::ToolCall {
                step,
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            let key = (call.name.clone(), call.arguments.to_string());
            let (output, error) = if let Some(i) = done_calls.iter().position(|k| *k == key) {
                // The same call again: its answer is in the conversation already.
                must_answer = true;
                let earlier = tool_output(&messages, i);
                on_event(&Event::Notice {
                    step,
                    text: format!("repeated call to {}: not run again", call.name),
                });
                (
                    format!(
                        "This exact call was already made; its result was: {earlier}\n\
                         Use that result to answer the user now."
                    ),
                    false,
                )
            } else if tools.get(&call.name).is_some_and(|t| t.needs_approval())
                && !approve(&call.name, &call.arguments)
            {
                ("Error: a person denied this call.".to_string(), true)
            } else {
                outcome.tool_calls += 1;
                match tools.call(&call.name, call.arguments.clone()) {
                    Ok(text) => (text, false),
                    Err(e) => (format!("Error: {e}"), true),
                }
            };
            done_calls.push(key);
            on_event(&Event::ToolResult {
                step,
                id: call.id.clone(),
                name: call.name.clone(),
                output: output.clone(),
                error,
            });
            let mut result = ChatMessage::new(Role::Tool, output);
            result.tool_call_id = Some(call.id);
            result.name = Some(call.name);
            messages.push(result);
        }
    }
    outcome.messages = messages;
    Ok(outcome)
}

/// The output of the `i`-th call of the run, read back from its `tool` message.
fn tool_output(messages: &[ChatMessage], i: usize) -> String {
    messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .nth(i)
        .map(|m| m.content.clone())
        .unwrap_or_default()
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
            &mut |_, _| true,
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
                false
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
}

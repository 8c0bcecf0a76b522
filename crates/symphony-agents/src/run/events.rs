//! What happens during a run, as the CLI prints it and the API streams it, and the one
//! piece of a plan an event carries (a plan's step).

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
        steps: Vec<PlanStep>,
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

/// One step of a plan (plan-and-execute): a task, and the steps whose results it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    pub id: u32,
    pub task: String,
    /// The steps whose results this one needs.
    #[serde(default)]
    pub after: Vec<u32>,
}

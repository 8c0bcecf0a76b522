//! How an agent runs: its instructions, its step and time limits, its reflection rubric,
//! its prompt budget and its tool choice, as the agent file or the caller sets them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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

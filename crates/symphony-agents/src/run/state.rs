//! Where a run stands ([`RunState`]): its conversation and a few counters, everything a
//! checkpoint holds and a resumed run starts from; how a run ended, and what a finished
//! run reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use symphony_types::{ChatMessage, Role, ToolCall};

use super::config::AgentConfig;
use super::summary::{summary_message, Summary};
use crate::error::Error;
use crate::model::ModelTurn;

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
    pub summary: Option<Summary>,
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
    pub fn decide(&mut self, approve: bool) -> Result<ToolCall, Error> {
        let Some(id) = self.awaiting_approval.take() else {
            return Err(Error::NotAwaitingApproval);
        };
        let call = self
            .pending_calls()
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::CallNotPending(id.clone()))?;
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
    pub(crate) fn pending_calls(&self) -> Vec<ToolCall> {
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
    /// replaced by their summary when one was written (see the `context` module).
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
        match self.current_summary() {
            Some(summary) => {
                let head = self.head_end();
                out.extend(self.messages[start..head].iter().cloned());
                out.push(summary_message(&summary.text));
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
    pub(crate) fn earlier_results(&self, call: &ToolCall) -> Vec<String> {
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

    /// Where the round's head (its system prompt and task) ends in `messages`.
    pub(crate) fn head_end(&self) -> usize {
        let start = self.round_start.min(self.messages.len());
        self.messages[start..]
            .iter()
            .position(|m| m.role == Role::User)
            .map_or(start, |i| start + i + 1)
    }

    /// The summary in force for the current round, if any.
    pub(crate) fn current_summary(&self) -> Option<&Summary> {
        self.summary
            .as_ref()
            .filter(|s| s.round_start == self.round_start && s.upto > self.head_end())
    }
}

//! The older turns of a round as the model now sees them: a summary kept in the run's
//! state, so a resumed run sees the same prompt (the `context` module writes it).

use serde::{Deserialize, Serialize};
use symphony_types::ChatMessage;

/// Older turns of a round, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The round it belongs to (`RunState::round_start` when it was written).
    pub round_start: usize,
    /// Messages after the round's task and before this index are summarised.
    pub upto: usize,
    pub text: String,
}

/// The summary as the model reads it: its own notes, an assistant turn right after the task
/// (so the conversation still alternates, and an answer request after it reads naturally).
pub(crate) fn summary_message(summary: &str) -> ChatMessage {
    ChatMessage::assistant(format!("My notes on the steps so far:\n{}", summary.trim()))
}

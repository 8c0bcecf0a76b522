//! Work the engine turns away for now: the typed refusal that admission (room in a model's
//! queue, memory for another model) gives its callers. A caller that is not an HTTP client
//! (an agent's turn) can wait it out by matching the type, and only the server decides that
//! it is a 503, with a Retry-After when waiting helps.

use std::time::Duration;

/// The engine cannot take this work now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Overloaded {
    pub message: String,
    /// How long to wait before trying again; `None` when waiting does not help (a model
    /// larger than the memory budget stays larger however long one waits).
    pub retry_after: Option<Duration>,
}

impl Overloaded {
    /// Refused until the work in hand drains: worth trying again after `retry_after`.
    pub fn for_now(message: impl Into<String>, retry_after: Duration) -> Self {
        Self {
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }

    /// Refused however long one waits: only another configuration makes room for it.
    pub fn until_reconfigured(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
        }
    }
}

//! The crate's error: what goes wrong in setting up tools, in storing runs and in running
//! the model. Typed where a caller acts on the kind (a missing run, a run driven elsewhere,
//! a decision nobody waits for), so front ends map kinds, not messages.

use crate::mcp::McpError;

/// Errors in setting up tools and in running the model (not in calling tools: those are
/// [`ToolError`](crate::ToolError)s, shown to the model).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a tool named {0:?} is already registered")]
    Duplicate(String),
    #[error("{0:?} is not a valid tool name: use letters, digits, '_' and '-' (at most 64)")]
    InvalidName(String),
    #[error("invalid agent: {0}")]
    InvalidAgent(String),
    /// The run store (or an agent's memory, or a run's files) failed.
    #[error("agent runs: {0}")]
    Runs(String),
    /// No run of this id is stored.
    #[error("agent runs: no run '{0}' (see `symphony agent ls`)")]
    RunNotFound(String),
    /// A decision was given for a run that waits for none.
    #[error("agent runs: the run is not waiting for an approval")]
    NotAwaitingApproval,
    /// The call a run was paused on has a result already (the state is inconsistent).
    #[error("agent runs: call {0} is not pending")]
    CallNotPending(String),
    /// The run is driven by another process or thread (see [`RunStore::claim`](crate::RunStore::claim)).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Mcp(#[from] McpError),
    #[error(transparent)]
    Engine(#[from] symphony_engine::Error),
    /// The prompt does not fit its token budget, even with older turns summarised.
    #[error("context: {0}")]
    Context(String),
    /// A model served elsewhere (the server's scheduler) could not give a turn.
    #[error("the model: {0}")]
    Model(String),
}

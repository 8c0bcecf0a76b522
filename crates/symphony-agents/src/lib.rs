//! Agents: a model that reasons, with tools that act.
//!
//! This crate holds the action side. A [`Tool`] has a name, a description and its arguments
//! as a JSON Schema (the [`ToolSpec`](symphony_types::ToolSpec) chat templates and the
//! engine's tool-call grammar take); a [`TypedTool`] derives that schema from a Rust type and
//! receives its arguments parsed into it. A [`ToolRegistry`] holds an agent's tools, runs a
//! call under a time limit and turns any failure into an observation the model reads, so a
//! bad call is corrected on the next step instead of ending the run.
//!
//! Built-in tools ([`tools`]): an exact calculator, files confined to one workspace
//! directory, Python run in a sandbox (no network, limited time and memory), web pages from
//! an allowlist (off by default) and search over a RAG collection. The tools
//! of any Model Context Protocol server join them through the [`mcp`] client.
//!
//! The reasoning side: a [`ChatModel`] gives one assistant turn at a time ([`EngineChat`]
//! runs a local model, its calls held to the tools' schemas by constrained decoding), and
//! [`react`] runs the ReAct loop over it with step limits, loop detection and approvals,
//! reporting each [`Event`] as it happens.
//!
//! ```
//! use symphony_agents::{tools::Calculator, ToolRegistry};
//! let mut registry = ToolRegistry::new();
//! registry.register(Calculator)?;
//! let out = registry.call("calculator", serde_json::json!({"expression": "1/3 + 1/6"}));
//! assert_eq!(out.unwrap(), "0.5");
//! # Ok::<(), symphony_agents::Error>(())
//! ```

pub mod context;
pub mod mcp;
pub mod memory;
pub mod model;
pub mod plan;
pub mod react;
pub mod reflect;
mod registry;
pub mod runs;
pub mod spec;
pub mod suite;
mod tool;
pub mod tools;

pub use mcp::{McpClient, McpServerConfig, McpTool};
pub use model::{
    read_turn, structured_request, turn_params, turn_request, CallMode, ChatModel, Completed,
    Completer, EngineChat, ModelTurn,
};
pub use plan::{run_plan, ChatFactory, PlanStep};
pub use react::{
    react, run_react, AgentConfig, Approval, Checkpoint, Ending, Event, RunOutcome, RunState,
    ToolChoice,
};
pub use reflect::run_reflect;
pub use registry::ToolRegistry;
pub use runs::{Claim, RunStore, RunSummary, StoredRun};
pub use spec::{AgentSpec, LoopKind, OpenCollection, ToolEnv};
pub use tool::{parameters_schema, Tool, ToolError, TypedTool};

/// Runs (or resumes) `state` with the loop `kind`.
#[allow(clippy::too_many_arguments)]
/// `more` opens further sessions of the model, for the steps of a plan that can run at the
/// same time (other loops do not use it).
pub fn run_loop(
    kind: LoopKind,
    model: &mut dyn ChatModel,
    more: Option<&ChatFactory<'_>>,
    tools: &ToolRegistry,
    config: &AgentConfig,
    state: &mut RunState,
    approve: &mut react::Approver<'_>,
    on_event: &mut dyn FnMut(&Event),
    checkpoint: &mut dyn Checkpoint,
) -> Result<RunOutcome, Error> {
    match kind {
        LoopKind::React => run_react(model, tools, config, state, approve, on_event, checkpoint),
        LoopKind::Reflect => {
            run_reflect(model, tools, config, state, approve, on_event, checkpoint)
        }
        LoopKind::Plan => run_plan(
            model, more, tools, config, state, approve, on_event, checkpoint,
        ),
    }
}

/// Errors in setting up tools and in running the model (not in calling tools: those are
/// [`ToolError`]s, shown to the model).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a tool named {0:?} is already registered")]
    Duplicate(String),
    #[error("{0:?} is not a valid tool name: use letters, digits, '_' and '-' (at most 64)")]
    InvalidName(String),
    #[error("invalid agent: {0}")]
    InvalidAgent(String),
    #[error("agent runs: {0}")]
    Runs(String),
    /// The run is driven by another process or thread (see [`RunStore::claim`]).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Mcp(#[from] mcp::McpError),
    #[error(transparent)]
    Engine(#[from] symphony_engine::Error),
    /// The prompt does not fit its token budget, even with older turns summarised.
    #[error("context: {0}")]
    Context(String),
    /// A model served elsewhere (the server's scheduler) could not give a turn.
    #[error("the model: {0}")]
    Model(String),
}

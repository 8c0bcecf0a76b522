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
//! reporting each [`Event`] as it happens; [`reflect`] and [`plan`] are the other loops.
//!
//! The layers, bottom up: [`run`] holds what every loop shares (state, events, config,
//! checkpoints, approvals and the [`Harness`] a loop runs with) and imports no loop; the
//! loops and the prompt budget ([`context`]) import `run`, never each other's types; the
//! run store ([`runs`]) keeps runs in SQLite; [`drive`] is the one way a stored run is driven
//! (claimed, its tools built, its loop run, its episode kept), by the CLI and the server.
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
pub mod drive;
mod error;
pub mod mcp;
pub mod memory;
pub mod model;
pub mod plan;
pub mod react;
pub mod reflect;
mod registry;
pub mod run;
pub mod runs;
pub mod spec;
mod sqlite;
pub mod suite;
mod tool;
pub mod tools;

pub use drive::{run_loop, ClaimedRun, Finished, Front};
pub use error::Error;
pub use mcp::{McpClient, McpServer, McpServerConfig, McpTool};
pub use model::{
    read_turn, structured_request, turn_params, turn_request, CallMode, ChatModel, Completed,
    Completer, EngineChat, ModelTurn, ScheduledChat,
};
pub use plan::{plan_loop, run_plan};
pub use react::{react, react_loop, run_react};
pub use reflect::{reflect_loop, run_reflect};
pub use registry::ToolRegistry;
pub use run::{
    AgentConfig, Approval, Approver, ChatFactory, Checkpoint, Ending, Event, Harness, InMemory,
    PlanStep, RunOutcome, RunState, ToolChoice,
};
pub use runs::{Claim, RunStore, RunSummary, StoredRun};
pub use spec::{AgentSpec, BuiltinTools, LoopKind, OpenCollection, ToolEnv, BUILTIN_TOOLS};
pub use tool::{parameters_schema, Tool, ToolError, TypedTool};

//! A run's shared vocabulary, at the bottom of the crate: its configuration, its state and
//! outcome, its events, its checkpoints and approvals, and the [`Harness`] a loop runs with.
//!
//! The loops (`react`, `reflect`, `plan`), the prompt budget (`context`), the run store
//! (`runs`) and the driver (`drive`) all speak these types and import them from here, never
//! from each other; nothing in this module imports a loop.

mod approval;
mod checkpoint;
mod config;
mod events;
mod harness;
mod state;
mod summary;

pub use approval::{Approval, Approver};
pub use checkpoint::{Checkpoint, InMemory};
pub use config::{AgentConfig, ToolChoice, DEFAULT_INSTRUCTIONS};
pub use events::{Event, PlanStep};
pub use harness::{ChatFactory, Harness};
pub use state::{Ending, RunOutcome, RunState};
pub use summary::Summary;

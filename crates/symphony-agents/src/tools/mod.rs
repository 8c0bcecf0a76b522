//! Built-in tools.

mod ask_model;
mod calculator;
mod files;
mod http;
mod jail;
mod sandbox;
mod search;

pub use ask_model::{AskModel, LocalModel, MAX_ANSWER_TOKENS};
pub use calculator::{evaluate, Calculator, Ratio};
pub use files::{ListFiles, ReadFile, Workspace, WriteFile};
pub use http::{AllowRule, HttpFetch};
pub use sandbox::{Ended, Execution, RunPython, SandboxLimits};
pub use search::SearchDocuments;

//! Built-in tools.

mod calculator;
mod files;
mod sandbox;

pub use calculator::{evaluate, Calculator, Ratio};
pub use files::{ListFiles, ReadFile, Workspace, WriteFile};
pub use sandbox::{RunPython, SandboxLimits};

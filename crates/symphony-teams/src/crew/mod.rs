//! Crews: agents with roles and goals working through tasks declared in YAML ([`spec`]),
//! run with budgets that always apply and saved after every task ([`run`], [`store`]).

pub mod run;
pub mod spec;
pub mod store;

pub use run::{run_crew, CrewError, CrewRun, Members, Status, TaskResult, Usage};
pub use spec::{CrewSpec, Process, SpecError};
pub use store::RunFiles;

#[cfg(test)]
mod tests;

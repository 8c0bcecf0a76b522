//! Crews: agents with roles and goals working through tasks declared in YAML ([`spec`]),
//! run with budgets that always apply and saved after every task ([`run`], [`store`]).

mod act;
mod contract;
pub mod members;
pub mod run;
pub mod spec;
pub mod state;
pub mod store;

pub use contract::{check_python, python_program, MAX_TRIES};
pub use members::{ChatFactory, CrewError, Members};
pub use run::run_crew;
pub use spec::{Check, CrewSpec, Process, SpecError};
pub use state::{CrewRun, Status, TaskResult, Usage, CONDUCTOR};
pub use store::RunFiles;

/// The crews that come with Symphony, by name: `symphony crew run NAME GOAL`.
pub const BUILTIN: [(&str, &str); 2] = [
    (
        "research-and-write",
        include_str!("../../crews/research-and-write.yaml"),
    ),
    ("software", include_str!("../../crews/software.yaml")),
];

/// A built-in crew's YAML.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, yaml)| *yaml)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod builtin_tests {
    #[test]
    fn the_builtin_crews_read() {
        for (name, yaml) in super::BUILTIN {
            let spec = super::CrewSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(spec.name, name);
        }
    }
}

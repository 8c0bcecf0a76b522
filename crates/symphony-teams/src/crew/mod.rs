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

/// The crew called `name`: `dir/NAME.yaml` where there is one, else the built-in crew of
/// that name. Names are plain (letters, digits, `-`, `_`), never paths.
pub fn find(dir: &std::path::Path, name: &str) -> Result<CrewSpec, String> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plain {
        return Err(format!("`{name}` is not a crew name"));
    }
    let file = dir.join(format!("{name}.yaml"));
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match builtin(name) {
            Some(yaml) => yaml.to_string(),
            None => {
                let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "no crew `{name}` (the built-in crews: {}; others are files in {})",
                    names.join(", "),
                    dir.display()
                ));
            }
        },
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    CrewSpec::from_yaml(&text).map_err(|e| format!("crew `{name}`: {e}"))
}

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

//! A crew as written in YAML: agents with roles and goals, tasks with dependencies and
//! conditions, a process, and budgets.
//!
//! ```yaml
//! name: research-and-write
//! model: qwen2.5-coder:0.5b
//! process: sequential          # or hierarchical: a manager picks who does each task
//! budget: {max_steps: 12, max_tokens: 30000}
//! agents:
//!   researcher: {role: Researcher, goal: Collect the facts the request needs.}
//!   writer: {role: Writer, goal: Write a short answer from the notes., tools: [calculator]}
//! tasks:
//!   - id: research
//!     agent: researcher
//!     description: "List the facts needed for: {goal}"
//!   - id: write
//!     agent: writer
//!     description: Answer {goal} from the notes.
//!     depends_on: [research]
//!   - id: fix
//!     agent: writer
//!     description: Fill in what the answer leaves open.
//!     depends_on: [write]
//!     when: {task: write, contains: TODO}
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The most model turns and tokens any crew may spend, whatever its YAML says: a crew
/// cannot run for ever.
pub const MAX_STEPS: usize = 64;
pub const MAX_TOKENS: usize = 200_000;
/// Turns one agent may take on one task (its ReAct loop), at most.
pub const MAX_STEPS_PER_TASK: usize = 8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrewSpec {
    pub name: String,
    /// The model every agent uses unless it names its own.
    #[serde(default = "default_model")]
    pub model: String,
    #[serde(default)]
    pub process: Process,
    /// Hierarchical crews: the agent that assigns tasks (default: a built-in manager).
    #[serde(default)]
    pub manager: Option<String>,
    /// Who runs the contract-net of tasks with `candidates` (default: the conductor).
    #[serde(default)]
    pub coordinator: Option<String>,
    #[serde(default)]
    pub budget: Budget,
    pub agents: BTreeMap<String, CrewAgent>,
    pub tasks: Vec<CrewTask>,
    /// The directory the file tools work in, for agents that have them.
    #[serde(default)]
    pub workspace: Option<std::path::PathBuf>,
}

fn default_model() -> String {
    "qwen2.5-coder:0.5b".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    /// Tasks in dependency order, each by its own agent.
    #[default]
    Sequential,
    /// A manager picks the agent for each task as it becomes ready.
    Hierarchical,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default = "default_steps")]
    pub max_steps: usize,
    #[serde(default = "default_tokens")]
    pub max_tokens: usize,
}

fn default_steps() -> usize {
    24
}

fn default_tokens() -> usize {
    60_000
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_steps: default_steps(),
            max_tokens: default_tokens(),
        }
    }
}

impl Budget {
    /// The budget in force: the YAML's, never above [`MAX_STEPS`] and [`MAX_TOKENS`].
    pub fn capped(&self) -> Budget {
        Budget {
            max_steps: self.max_steps.min(MAX_STEPS),
            max_tokens: self.max_tokens.min(MAX_TOKENS),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrewAgent {
    pub role: String,
    pub goal: String,
    #[serde(default)]
    pub backstory: Option<String>,
    /// Built-in tools by name; an agent with tools works in a ReAct loop.
    #[serde(default)]
    pub tools: Vec<String>,
    /// `required`: the agent must call a tool before it may answer (an editor that must run
    /// its code); `auto` (the default): as it sees fit.
    #[serde(default)]
    pub tool_choice: symphony_agents::ToolChoice,
    /// Turns its ReAct loop may take on one task (one try of a checked task), at most
    /// [`MAX_STEPS_PER_TASK`].
    #[serde(default)]
    pub max_steps: Option<usize>,
    #[serde(default)]
    pub model: Option<String>,
    /// A remote agent instead: the base URL of an A2A endpoint (its card is read from
    /// there). It answers with its own model and tools.
    #[serde(default)]
    pub a2a: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrewTask {
    pub id: String,
    /// Who does it; hierarchical crews may leave it to the manager.
    #[serde(default)]
    pub agent: Option<String>,
    /// Agents that bid for the task by contract-net instead: the coordinator awards it to
    /// the best bid (weighed by each agent's track record) and re-awards it to the next if
    /// the winner fails.
    #[serde(default)]
    pub candidates: Vec<String>,
    /// What kind of work it is, for the track records (default: its id).
    #[serde(default)]
    pub kind: Option<String>,
    /// A check its result must pass, or the agent is told why and tries again.
    #[serde(default)]
    pub check: Option<Check>,
    /// The instruction; `{goal}` stands for the crew's goal.
    pub description: String,
    #[serde(default)]
    pub expected_output: Option<String>,
    /// Tasks whose results this one needs (fan-in); several tasks may need one (fan-out).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// A conditional edge: the task runs only if this holds.
    #[serde(default)]
    pub when: Option<Condition>,
}

/// How a task's result is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The result holds a Python program (its last ```python block, or all of it) that
    /// runs to exit status 0 in the sandbox: its own asserts pass.
    Python,
}

/// Holds when the result of `task` contains (or, with `not`, lacks) `contains`, case
/// insensitively.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub task: String,
    pub contains: String,
    #[serde(default)]
    pub not: bool,
}

impl Condition {
    pub fn holds(&self, result: &str) -> bool {
        let found = result
            .to_lowercase()
            .contains(&self.contains.to_lowercase());
        found != self.not
    }
}

/// What is wrong with a crew file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("{0}")]
    Invalid(String),
}

impl CrewSpec {
    /// The models the crew's agents use, each once.
    pub fn models(&self) -> Vec<&str> {
        let mut names: Vec<&str> = vec![self.model.as_str()];
        names.extend(
            self.agents
                .values()
                .filter(|a| a.a2a.is_none())
                .filter_map(|a| a.model.as_deref()),
        );
        names.sort_unstable();
        names.dedup();
        names
    }

    pub fn from_yaml(text: &str) -> Result<CrewSpec, SpecError> {
        let spec: CrewSpec = serde_yaml_ng::from_str(text)?;
        spec.check()?;
        Ok(spec)
    }

    /// Every reference resolves, ids are unique, and the dependencies have no cycle.
    pub fn check(&self) -> Result<(), SpecError> {
        let invalid = |m: String| Err(SpecError::Invalid(m));
        if self.agents.is_empty() {
            return invalid("a crew needs at least one agent".into());
        }
        if self.tasks.is_empty() {
            return invalid("a crew needs at least one task".into());
        }
        let mut ids = BTreeSet::new();
        for task in &self.tasks {
            if !ids.insert(task.id.as_str()) {
                return invalid(format!("two tasks are called `{}`", task.id));
            }
        }
        for task in &self.tasks {
            for agent in &task.candidates {
                if !self.agents.contains_key(agent) {
                    return invalid(format!("task `{}`: no candidate `{agent}`", task.id));
                }
            }
            match &task.agent {
                Some(agent) if !self.agents.contains_key(agent) => {
                    return invalid(format!("task `{}`: no agent `{agent}`", task.id));
                }
                Some(_) if !task.candidates.is_empty() => {
                    return invalid(format!(
                        "task `{}` names an agent and candidates: one or the other",
                        task.id
                    ));
                }
                None if self.process == Process::Sequential && task.candidates.is_empty() => {
                    return invalid(format!(
                        "task `{}` names no agent or candidates (only a hierarchical crew's manager assigns)",
                        task.id
                    ));
                }
                _ => {}
            }
            for dep in &task.depends_on {
                if !ids.contains(dep.as_str()) {
                    return invalid(format!("task `{}` depends on unknown `{dep}`", task.id));
                }
            }
            if let Some(when) = &task.when {
                if !task.depends_on.contains(&when.task) {
                    return invalid(format!(
                        "task `{}`: its condition reads `{}`, which it must depend on",
                        task.id, when.task
                    ));
                }
            }
        }
        if let Some(manager) = &self.manager {
            if !self.agents.contains_key(manager) {
                return invalid(format!("no agent `{manager}` to manage"));
            }
        }
        for (name, agent) in &self.agents {
            if agent.a2a.is_some() && (!agent.tools.is_empty() || agent.model.is_some()) {
                return invalid(format!(
                    "agent `{name}` is a remote A2A agent: its tools and model are its own"
                ));
            }
        }
        if let Some(coordinator) = &self.coordinator {
            if !self.agents.contains_key(coordinator) {
                return invalid(format!("no agent `{coordinator}` to coordinate"));
            }
        }
        self.order().map(|_| ())
    }

    /// The tasks in an order that runs each after its dependencies (their order in the file
    /// where free); an error names a cycle.
    pub fn order(&self) -> Result<Vec<&CrewTask>, SpecError> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::with_capacity(self.tasks.len());
        while order.len() < self.tasks.len() {
            let next = self.tasks.iter().find(|t| {
                !done.contains(t.id.as_str())
                    && t.depends_on.iter().all(|d| done.contains(d.as_str()))
            });
            match next {
                Some(task) => {
                    done.insert(&task.id);
                    order.push(task);
                }
                None => {
                    let stuck: Vec<&str> = self
                        .tasks
                        .iter()
                        .filter(|t| !done.contains(t.id.as_str()))
                        .map(|t| t.id.as_str())
                        .collect();
                    return Err(SpecError::Invalid(format!(
                        "the dependencies of {} go round in a cycle",
                        stuck.join(", ")
                    )));
                }
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREW: &str = r#"
name: t
process: sequential
budget: {max_steps: 1000, max_tokens: 5}
agents:
  a: {role: A, goal: g}
  b: {role: B, goal: g, tools: [calculator]}
tasks:
  - {id: one, agent: a, description: "do {goal}"}
  - {id: two, agent: b, description: x, depends_on: [one]}
  - {id: three, agent: a, description: y, depends_on: [one], when: {task: one, contains: ok}}
  - {id: four, agent: b, description: z, depends_on: [two, three]}
"#;

    #[test]
    fn a_crew_reads_and_orders_its_tasks() {
        let spec = CrewSpec::from_yaml(CREW).unwrap();
        let order: Vec<&str> = spec
            .order()
            .unwrap()
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(order, ["one", "two", "three", "four"]);
        assert_eq!(spec.model, "qwen2.5-coder:0.5b");
        // The YAML cannot lift the hard caps.
        assert_eq!(
            spec.budget.capped(),
            Budget {
                max_steps: MAX_STEPS,
                max_tokens: 5
            }
        );
    }

    #[test]
    fn bad_crews_say_what_is_wrong() {
        let broken = [
            (
                CREW.replace("depends_on: [two, three]", "depends_on: [four]"),
                "cycle",
            ),
            (
                CREW.replace("agent: b, description: z", "agent: c, description: z"),
                "no agent `c`",
            ),
            (
                CREW.replace("depends_on: [one], when", "depends_on: [two], when"),
                "must depend on",
            ),
            (
                CREW.replace("id: two", "id: one"),
                "two tasks are called `one`",
            ),
            (
                CREW.replace("{id: one, agent: a,", "{id: one,"),
                "names no agent",
            ),
            (
                CREW.replace("{id: one, agent: a,", "{id: one, candidates: [a, z],"),
                "no candidate `z`",
            ),
            (
                CREW.replace(
                    "{id: one, agent: a,",
                    "{id: one, agent: a, candidates: [b],",
                ),
                "one or the other",
            ),
            (
                CREW.replace("process: sequential", "process: sequential\ncoordinator: q"),
                "no agent `q` to coordinate",
            ),
            (
                CREW.replace("goal: g}", "goal: g, colour: red}"),
                "unknown field `colour`",
            ),
        ];
        for (yaml, want) in broken {
            let err = CrewSpec::from_yaml(&yaml).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn conditions_read_results() {
        let when = Condition {
            task: "t".into(),
            contains: "TODO".into(),
            not: false,
        };
        assert!(when.holds("still a todo here"));
        assert!(!when.holds("done"));
        let unless = Condition { not: true, ..when };
        assert!(unless.holds("done"));
    }
}

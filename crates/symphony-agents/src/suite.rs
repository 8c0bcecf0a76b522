//! A task suite for agents: tasks with checkable answers (arithmetic word problems, file
//! lookups, multi-step combinations), each run on a fresh workspace with the loop and model
//! under test, scored by whether the answer holds the expected figure or words.
//!
//! ```yaml
//! tasks:
//!   - id: screws
//!     kind: arithmetic
//!     task: A warehouse holds 1234 boxes of 5678 screws each ... How many screws in all?
//!     tools: [calculator]
//!     expect: ["7097663"]        # the answer must contain one of these
//!   - id: wifi
//!     kind: lookup
//!     task: What is the office wifi password? It is in notes/wifi.txt.
//!     tools: [read_file, list_files]
//!     files: {notes/wifi.txt: "password: tulip-4721"}
//!     expect: ["tulip-4721"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::drive::run_loop;
use crate::run::{AgentConfig, Approval, ChatFactory, Ending, Harness, InMemory, RunState};
use crate::spec::LoopKind;
use crate::tools::{Calculator, Workspace};
use crate::{ChatModel, Error, Tool};

/// A suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub tasks: Vec<SuiteTask>,
}

/// One task with its checkable answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteTask {
    pub id: String,
    /// arithmetic, lookup or multi-step: how results are grouped.
    pub kind: String,
    pub task: String,
    /// Built-in tools: calculator, read_file, list_files.
    pub tools: Vec<String>,
    /// Files of the task's workspace, by relative path.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// The answer passes when it contains one of these (commas in numbers ignored, case
    /// ignored).
    pub expect: Vec<String>,
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Arithmetic: an expression whose exact value is the expected answer, so the answer
    /// key is checked by the calculator rather than trusted.
    #[serde(default)]
    pub check: Option<String>,
}

/// How one task went.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub id: String,
    pub kind: String,
    pub passed: bool,
    pub ending: Option<Ending>,
    pub steps: usize,
    pub tool_calls: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub seconds: f64,
    pub answer: String,
    /// Why the run itself failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Suite {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidAgent(format!("{}: {e}", path.display())))?;
        let suite: Self = serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::InvalidAgent(format!("{}: {e}", path.display())))?;
        for t in &suite.tasks {
            for tool in &t.tools {
                if !["calculator", "read_file", "list_files"].contains(&tool.as_str()) {
                    return Err(Error::InvalidAgent(format!(
                        "task {}: the suite's tools are calculator, read_file and list_files, \
                         not '{tool}'",
                        t.id
                    )));
                }
            }
            if t.expect.is_empty() {
                return Err(Error::InvalidAgent(format!(
                    "task {}: `expect` is empty",
                    t.id
                )));
            }
        }
        Ok(suite)
    }
}

/// Whether `answer` holds one of the expected strings, as a whole word or number.
pub fn answer_passes(answer: &str, expect: &[String]) -> bool {
    let normal = |s: &str| {
        // "7,097,663" and "7097663" alike; "$1,250.00" holds "1250".
        let mut out = String::with_capacity(s.len());
        let chars: Vec<char> = s.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            let between_digits = c == ','
                && i > 0
                && chars[i - 1].is_ascii_digit()
                && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
            if !between_digits {
                out.extend(c.to_lowercase());
            }
        }
        out
    };
    let answer = normal(answer);
    expect.iter().any(|e| {
        let e = normal(e);
        // A whole word or number: "5" is not found in "2026-05.pdf", nor "12" in "120".
        answer.match_indices(&e).any(|(at, _)| {
            let before = answer[..at].chars().next_back();
            let after = answer[at + e.len()..].chars().next();
            let joined = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
            let starts_word = e.chars().next().is_some_and(char::is_alphanumeric);
            let ends_word = e.chars().next_back().is_some_and(char::is_alphanumeric);
            !((starts_word && joined(before)) || (ends_word && joined(after)))
        })
    })
}

/// Runs one task with `loop_kind` on `model` (a fresh conversation), in a temporary
/// workspace holding the task's files, under `config` (the task's own `max_steps` first).
pub fn run_task(
    task: &SuiteTask,
    loop_kind: LoopKind,
    model: &mut dyn ChatModel,
    more: Option<&ChatFactory<'_>>,
    config: &AgentConfig,
) -> TaskResult {
    let started = Instant::now();
    let mut result = TaskResult {
        id: task.id.clone(),
        kind: task.kind.clone(),
        passed: false,
        ending: None,
        steps: 0,
        tool_calls: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        seconds: 0.0,
        answer: String::new(),
        error: None,
    };
    let outcome = (|| -> Result<_, Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::Runs(e.to_string()))?;
        for (path, content) in &task.files {
            let file = dir.path().join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::Runs(e.to_string()))?;
            }
            std::fs::write(&file, content).map_err(|e| Error::Runs(e.to_string()))?;
        }
        let workspace = Workspace::new(dir.path()).map_err(|e| Error::Runs(e.to_string()))?;
        let (read, list, _) = workspace.tools();
        let mut tools = crate::ToolRegistry::new();
        for name in &task.tools {
            let tool: Arc<dyn Tool> = match name.as_str() {
                "calculator" => Arc::new(Calculator),
                "read_file" => Arc::new(read.clone()),
                _ => Arc::new(list.clone()),
            };
            tools.register_shared(tool)?;
        }
        let config = AgentConfig {
            max_steps: task.max_steps.unwrap_or(config.max_steps),
            ..config.clone()
        };
        let mut state = RunState::new(&config, &task.task);
        run_loop(
            loop_kind,
            &mut Harness {
                model,
                more,
                tools: &tools,
                config: &config,
                approve: &mut |_, _| Approval::Allow,
                on_event: &mut |_| {},
                checkpoint: &mut InMemory,
            },
            &mut state,
        )
    })();
    match outcome {
        Ok(o) => {
            result.passed = o.ending == Ending::Answered && answer_passes(&o.answer, &task.expect);
            result.ending = Some(o.ending);
            result.steps = o.steps;
            result.tool_calls = o.tool_calls;
            result.prompt_tokens = o.prompt_tokens;
            result.completion_tokens = o.completion_tokens;
            result.answer = o.answer;
        }
        Err(e) => result.error = Some(e.to_string()),
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked_loosely_but_not_too_loosely() {
        let expect = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(answer_passes(
            "That is 7,097,663 screws.",
            &expect(&["7097663"])
        ));
        assert!(answer_passes(
            "The password is Tulip-4721",
            &expect(&["tulip-4721"])
        ));
        assert!(answer_passes(
            "It costs $1,250.",
            &expect(&["1250", "1 250"])
        ));
        assert!(!answer_passes("About 7 million.", &expect(&["7097663"])));
        // A list "1, 2" is not the number 12.
        assert!(!answer_passes("Totals: 1, 2", &expect(&["12"])));
        // Whole numbers and words only: a file name holding the digit is no answer.
        assert!(!answer_passes(
            "2026-05.pdf (1 bytes)",
            &expect(&["5", "five"])
        ));
        assert!(!answer_passes("It holds 120 items.", &expect(&["12"])));
        assert!(answer_passes("There are 5 files.", &expect(&["5", "five"])));
        assert!(answer_passes("It costs 2315.25.", &expect(&["2315.25"])));
    }

    #[test]
    fn the_shipped_suite_loads_and_is_big_enough() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/agent-tasks.yaml");
        let suite = Suite::load(&path).unwrap();
        assert!(suite.tasks.len() >= 30, "{}", suite.tasks.len());
        let mut ids: Vec<&str> = suite.tasks.iter().map(|t| t.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), suite.tasks.len(), "task ids repeat");
        for kind in ["arithmetic", "lookup", "multi-step"] {
            assert!(
                suite.tasks.iter().filter(|t| t.kind == kind).count() >= 8,
                "{kind}"
            );
        }
        // Every arithmetic answer key is what the calculator gives for the problem.
        for t in suite.tasks.iter().filter(|t| t.check.is_some()) {
            let value = crate::tools::evaluate(t.check.as_deref().unwrap()).unwrap();
            assert_eq!(value.to_string(), t.expect[0], "{}", t.id);
        }
        let checked = suite.tasks.iter().filter(|t| t.check.is_some()).count();
        assert!(checked >= 15, "{checked}");
    }
}

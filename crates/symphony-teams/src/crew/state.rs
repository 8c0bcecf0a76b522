//! A crew run's state, as saved after every task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::CrewSpec;
use crate::acl::Message;

/// Who asks for the tasks of a sequential crew (and of a hierarchical one without a
/// manager agent).
pub const CONDUCTOR: &str = "conductor";

/// A crew run as saved: enough to resume it and to show everything it said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrewRun {
    pub id: String,
    pub goal: String,
    /// The crew as it was when the run started: a resumed run finishes what it began.
    pub spec: CrewSpec,
    /// Finished tasks by id.
    pub results: BTreeMap<String, TaskResult>,
    pub messages: Vec<Message>,
    pub usage: Usage,
    pub status: Status,
    /// The last finished task's output.
    pub result: Option<String>,
    /// Who started it, when a server did for a caller (a run of the command line has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TaskResult {
    Done {
        agent: String,
        output: String,
    },
    /// Its condition did not hold.
    Skipped {
        reason: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Model turns.
    pub steps: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    pub fn tokens(&self) -> usize {
        self.prompt_tokens + self.completion_tokens
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    Running,
    Completed,
    /// Stopped by its budget with tasks left.
    OutOfBudget {
        spent: String,
    },
    Failed {
        task: String,
        error: String,
    },
}

impl CrewRun {
    /// A fresh run id: `crew-MILLIS-PID-N`, unique in this process (N counts its runs) and
    /// between processes (the pid), and sortable by start.
    pub fn fresh_id() -> String {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("crew-{millis}-{}-{n}", std::process::id())
    }

    pub fn new(id: impl Into<String>, spec: CrewSpec, goal: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            goal: goal.into(),
            spec,
            results: BTreeMap::new(),
            messages: Vec::new(),
            usage: Usage::default(),
            status: Status::Running,
            result: None,
            owner: None,
        }
    }
}

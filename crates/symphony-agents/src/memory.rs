//! Memory that outlives a run, and the prompt a run starts from.
//!
//! - **Long-term memory**: facts an agent was asked to keep, embedded, searched by meaning
//!   (the `remember` and `recall` tools), and the ones nearest a new task shown with it.
//! - **Episodic memory**: each answered run is kept as an episode (its task and answer); a new
//!   run is shown the past episodes most like its task.
//! - **Few-shot examples** from the agent file, the nearest to the task chosen.
//! - **Template variables**: `{{name}}` in the instructions, filled from the agent file's
//!   `vars` and the run's own.
//!
//! One SQLite file holds every agent's memories (`$SYMPHONY_HOME/agents/memory.sqlite`),
//! each row with its agent's name, its kind, its text and its embedding; search is exact
//! (cosine over the agent's rows), which stays fast for the thousands of rows an agent
//! gathers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use symphony_models::embedding::Embedder;

use crate::tool::{ToolError, TypedTool};
use crate::Error;

/// What a memory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fact,
    Episode,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Fact => "fact",
            Kind::Episode => "episode",
        }
    }
}

/// A memory found by a search, with its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Recalled {
    pub text: String,
    pub score: f32,
}

/// One agent's memories.
pub struct Memory {
    conn: Mutex<Connection>,
    embedder: Arc<Embedder>,
    agent: String,
}

fn db_error(e: rusqlite::Error) -> Error {
    Error::Runs(format!("memory: {e}"))
}

impl Memory {
    /// The memories of `agent` in the file `path` (made if missing).
    pub fn open(path: &Path, agent: &str, embedder: Arc<Embedder>) -> Result<Self, Error> {
        let conn = crate::sqlite::open_sqlite(
            path,
            "CREATE TABLE IF NOT EXISTS memories (
                 id INTEGER PRIMARY KEY,
                 agent TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 text TEXT NOT NULL,
                 embedding BLOB NOT NULL,
                 created_at INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS memories_by_agent ON memories (agent, kind);",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            embedder,
            agent: agent.to_string(),
        })
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, Error> {
        let mut v = self
            .embedder
            .embed(&[text])
            .map_err(|e| Error::Runs(format!("memory: embedding: {e}")))?;
        Ok(normalised(v.pop().unwrap_or_default()))
    }

    /// Keeps `text`. The same text kept twice is kept once.
    pub fn remember(&self, kind: Kind, text: &str) -> Result<(), Error> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let embedding = self.embed(text)?;
        let bytes: Vec<u8> = embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM memories WHERE agent = ?1 AND kind = ?2 AND text = ?3)",
                params![self.agent, kind.as_str(), text],
                |r| r.get(0),
            )
            .map_err(db_error)?;
        if !exists {
            conn.execute(
                "INSERT INTO memories (agent, kind, text, embedding, created_at)
                 VALUES (?1, ?2, ?3, ?4, strftime('%s', 'now'))",
                params![self.agent, kind.as_str(), text, bytes],
            )
            .map_err(db_error)?;
        }
        Ok(())
    }

    /// The `k` memories of `kind` nearest `query` in meaning, nearest first, with a cosine
    /// similarity of at least `min_score`.
    pub fn recall(
        &self,
        kind: Kind,
        query: &str,
        k: usize,
        min_score: f32,
    ) -> Result<Vec<Recalled>, Error> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let q = self.embed(query)?;
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn
            .prepare("SELECT text, embedding FROM memories WHERE agent = ?1 AND kind = ?2")
            .map_err(db_error)?;
        let rows = stmt
            .query_map(params![self.agent, kind.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(db_error)?;
        let mut found = Vec::new();
        for row in rows {
            let (text, bytes) = row.map_err(db_error)?;
            let v = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            let score: f32 = v.zip(&q).map(|(a, b)| a * b).sum();
            if score >= min_score {
                found.push(Recalled { text, score });
            }
        }
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        found.truncate(k);
        Ok(found)
    }

    /// How many memories of `kind` the agent has.
    pub fn count(&self, kind: Kind) -> Result<usize, Error> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.query_row(
            "SELECT COUNT(*) FROM memories WHERE agent = ?1 AND kind = ?2",
            params![self.agent, kind.as_str()],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as usize)
        .map_err(db_error)
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The `remember` tool: keeps a fact in the agent's long-term memory.
pub struct Remember(pub Arc<Memory>);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberArgs {
    /// The fact, in one sentence that makes sense on its own later.
    pub fact: String,
}

impl TypedTool for Remember {
    type Args = RememberArgs;

    fn name(&self) -> String {
        "remember".into()
    }

    fn description(&self) -> String {
        "Keeps a fact in your long-term memory, for this and later tasks.".into()
    }

    fn run(&self, args: RememberArgs) -> Result<String, ToolError> {
        if args.fact.trim().is_empty() {
            return Err(ToolError::Failed("the fact is empty".into()));
        }
        self.0
            .remember(Kind::Fact, &args.fact)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok("Remembered.".into())
    }
}

/// The `recall` tool: searches the agent's long-term memory by meaning.
pub struct Recall(pub Arc<Memory>);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallArgs {
    /// What to look for, in words.
    pub query: String,
}

impl TypedTool for Recall {
    type Args = RecallArgs;

    fn name(&self) -> String {
        "recall".into()
    }

    fn description(&self) -> String {
        "Searches your long-term memory for facts kept earlier.".into()
    }

    fn run(&self, args: RecallArgs) -> Result<String, ToolError> {
        let found = self
            .0
            .recall(Kind::Fact, &args.query, 5, 0.2)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        if found.is_empty() {
            return Ok("Nothing in memory matches.".into());
        }
        Ok(found
            .iter()
            .map(|r| format!("- {}", r.text))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// The agent file's `memory` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// The `remember` and `recall` tools, and the kept facts nearest the task shown with it.
    #[serde(default = "yes")]
    pub facts: bool,
    /// Past runs most like the task, shown at the start (0: none). Every answered run is
    /// kept as an episode.
    #[serde(default = "default_episodes")]
    pub episodes: usize,
    /// The encoder memories and examples are compared with.
    #[serde(default = "default_embedder")]
    pub embedder: String,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            facts: true,
            episodes: default_episodes(),
            embedder: default_embedder(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_episodes() -> usize {
    2
}

pub fn default_embedder() -> String {
    "all-minilm".into()
}

/// A worked example for few-shot prompting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub task: String,
    pub answer: String,
}

/// Facts nearest the task shown with it, at most.
const FACTS_SHOWN: usize = 5;
/// Memories less similar than this to the task are not shown.
const MIN_SIMILARITY: f32 = 0.3;

/// `{{name}}` in `template` replaced by `vars[name]`; a name with no value is an error that
/// lists it.
pub fn fill_template(template: &str, vars: &BTreeMap<String, String>) -> Result<String, Error> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut missing = Vec::new();
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let name = after[..close].trim();
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => {
                missing.push(name.to_string());
                out.push_str(&rest[open..open + 2 + close + 2]);
            }
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    if !missing.is_empty() {
        return Err(Error::InvalidAgent(format!(
            "the instructions use {} with no value (give it under `vars` or with --var)",
            missing
                .iter()
                .map(|m| format!("{{{{{m}}}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(out)
}

/// What a run starts from besides its task: the instructions filled in, and the memories
/// and examples that bear on the task.
pub struct Preamble<'a> {
    pub instructions: &'a str,
    pub vars: &'a BTreeMap<String, String>,
    pub examples: &'a [Example],
    pub few_shot: usize,
    pub memory: Option<(&'a Memory, &'a MemoryConfig)>,
    /// For choosing examples when there is no memory.
    pub embedder: Option<&'a Embedder>,
}

impl Preamble<'_> {
    /// The system prompt for `task`.
    pub fn system_prompt(&self, task: &str) -> Result<String, Error> {
        let mut prompt = fill_template(self.instructions, self.vars)?;
        if let Some((memory, config)) = self.memory {
            if config.facts {
                let facts = memory.recall(Kind::Fact, task, FACTS_SHOWN, MIN_SIMILARITY)?;
                if !facts.is_empty() {
                    prompt.push_str("\n\nFacts you remember that may help:");
                    for f in facts {
                        prompt.push_str(&format!("\n- {}", f.text));
                    }
                }
            }
            let episodes = memory.recall(Kind::Episode, task, config.episodes, MIN_SIMILARITY)?;
            if !episodes.is_empty() {
                prompt.push_str("\n\nPast tasks like this one, and your answers:");
                for e in episodes {
                    prompt.push_str(&format!("\n\n{}", e.text));
                }
            }
        }
        let examples = self.chosen_examples(task)?;
        if !examples.is_empty() {
            prompt.push_str("\n\nExamples of tasks and good answers:");
            for e in examples {
                prompt.push_str(&format!("\n\nTask: {}\nAnswer: {}", e.task, e.answer));
            }
        }
        Ok(prompt)
    }

    /// The `few_shot` examples nearest the task in meaning, nearest first (all of them, in
    /// order, when there is no encoder to compare with or no more than `few_shot`).
    fn chosen_examples(&self, task: &str) -> Result<Vec<&Example>, Error> {
        let n = self.few_shot.min(self.examples.len());
        let embedder = self
            .embedder
            .or_else(|| self.memory.map(|(m, _)| m.embedder()));
        let Some(embedder) = embedder.filter(|_| n < self.examples.len()) else {
            return Ok(self.examples.iter().take(n).collect());
        };
        let mut texts: Vec<&str> = vec![task];
        texts.extend(self.examples.iter().map(|e| e.task.as_str()));
        let vectors = embedder
            .embed(&texts)
            .map_err(|e| Error::Runs(format!("choosing examples: {e}")))?;
        let vectors: Vec<Vec<f32>> = vectors.into_iter().map(normalised).collect();
        let mut scored: Vec<(f32, &Example)> = self
            .examples
            .iter()
            .zip(&vectors[1..])
            .map(|(e, v)| (v.iter().zip(&vectors[0]).map(|(a, b)| a * b).sum(), e))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(scored.into_iter().take(n).map(|(_, e)| e).collect())
    }
}

/// The episode kept for an answered run.
pub fn episode(task: &str, answer: &str) -> String {
    format!("Task: {}\nAnswer: {}", task.trim(), answer.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_and_missing_names_are_listed() {
        let vars: BTreeMap<String, String> = [("company".to_string(), "Acme".to_string())].into();
        assert_eq!(
            fill_template(
                "You work for {{company}}; {{ company }} sells anvils.",
                &vars
            )
            .unwrap(),
            "You work for Acme; Acme sells anvils."
        );
        assert_eq!(
            fill_template("Braces { } and {{ open", &vars).unwrap(),
            "Braces { } and {{ open"
        );
        let e = fill_template("Hi {{user}} from {{city}}", &vars)
            .unwrap_err()
            .to_string();
        assert!(e.contains("{{user}}, {{city}} with no value"), "{e}");
    }
}

//! Durable runs: every run's conversation and state in SQLite, so that a run killed at any
//! point resumes from its last checkpoint (`symphony agent resume RUN`).
//!
//! Messages are stored once each, appended as the run goes (a long run costs one row per
//! message, not a copy of the conversation per step); the state row is small and rewritten
//! with each checkpoint, in the same transaction as the messages it follows.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::react::{Checkpoint, RunState};
use crate::spec::AgentSpec;
use crate::Error;

/// The runs of one user (`$SYMPHONY_HOME/agents/runs.sqlite`).
pub struct RunStore {
    conn: Connection,
}

/// A run as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub agent: String,
    pub task: String,
    /// `running` (or stopped mid-way: resumable), `awaiting_approval` (paused until a call
    /// is approved or denied), `answered` or `step_limit`.
    pub status: String,
    pub steps: usize,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A stored run, whole.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub id: String,
    pub spec: AgentSpec,
    pub state: RunState,
}

/// An agents' database at `path` (made, with its directory, if missing), in WAL mode with a
/// busy timeout, `schema` applied. WAL: a committed write survives the process being killed
/// at any moment; the timeout: the CLI and a server take turns at the same file.
pub(crate) fn open_sqlite(path: &Path, schema: &str) -> Result<Connection, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Runs(format!("{}: {e}", dir.display())))?;
    }
    let conn = Connection::open(path).map_err(db_error)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
        .map_err(db_error)?;
    conn.execute_batch(schema).map_err(db_error)?;
    Ok(conn)
}

fn db_error(e: rusqlite::Error) -> Error {
    Error::Runs(e.to_string())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl RunStore {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let conn = open_sqlite(
            path,
            "CREATE TABLE IF NOT EXISTS runs (
                 id TEXT PRIMARY KEY,
                 agent TEXT NOT NULL,
                 spec TEXT NOT NULL,
                 task TEXT NOT NULL,
                 state TEXT NOT NULL,
                 status TEXT NOT NULL,
                 steps INTEGER NOT NULL,
                 created_at INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS messages (
                 run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                 seq INTEGER NOT NULL,
                 message TEXT NOT NULL,
                 PRIMARY KEY (run_id, seq)
             );",
        )?;
        Ok(Self { conn })
    }

    /// Records a new run of `spec` on `state` (its first messages are saved by the loop's
    /// first checkpoint). Returns its id.
    pub fn create(&self, spec: &AgentSpec, state: &RunState) -> Result<String, Error> {
        let id = format!(
            "run_{:x}{:04x}",
            now(),
            std::process::id() as u16 ^ rand_u16()
        );
        let spec_json = serde_json::to_string(spec).map_err(|e| Error::Runs(e.to_string()))?;
        self.conn
            .execute(
                "INSERT INTO runs (id, agent, spec, task, state, status, steps, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', 0, ?6, ?6)",
                params![id, spec.name, spec_json, state.task, state_json(state)?, now()],
            )
            .map_err(db_error)?;
        Ok(id)
    }

    /// The checkpoint sink for run `id`.
    pub fn checkpoint<'a>(&'a mut self, id: &'a str) -> RunCheckpoint<'a> {
        RunCheckpoint { store: self, id }
    }

    fn save(&mut self, id: &str, state: &RunState) -> Result<(), Error> {
        let tx = self.conn.transaction().map_err(db_error)?;
        let stored = tx
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE run_id = ?1",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db_error)? as usize;
        // A conversation only grows: the messages past those stored are the new ones.
        for (i, m) in state.messages.iter().enumerate().skip(stored) {
            let json = serde_json::to_string(m).map_err(|e| Error::Runs(e.to_string()))?;
            tx.execute(
                "INSERT INTO messages (run_id, seq, message) VALUES (?1, ?2, ?3)",
                params![id, i as i64, json],
            )
            .map_err(db_error)?;
        }
        let status = match state.ending {
            None if state.awaiting_approval.is_some() => "awaiting_approval".to_string(),
            None => "running".to_string(),
            Some(e) => serde_json::to_value(e)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        };
        tx.execute(
            "UPDATE runs SET state = ?2, status = ?3, steps = ?4, updated_at = ?5 WHERE id = ?1",
            params![id, state_json(state)?, status, state.step as i64, now()],
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)
    }

    /// A run with its whole conversation.
    pub fn load(&self, id: &str) -> Result<StoredRun, Error> {
        let row: Option<(String, String)> = self
            .conn
            .query_row("SELECT spec, state FROM runs WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(db_error)?;
        let Some((spec, state)) = row else {
            return Err(Error::Runs(format!(
                "no run '{id}' (see `symphony agent ls`)"
            )));
        };
        let spec: AgentSpec =
            serde_json::from_str(&spec).map_err(|e| Error::Runs(e.to_string()))?;
        let mut state: RunState =
            serde_json::from_str(&state).map_err(|e| Error::Runs(e.to_string()))?;
        let mut stmt = self
            .conn
            .prepare("SELECT message FROM messages WHERE run_id = ?1 ORDER BY seq")
            .map_err(db_error)?;
        state.messages = stmt
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(db_error)?
            .map(|m| {
                let m = m.map_err(db_error)?;
                serde_json::from_str(&m).map_err(|e| Error::Runs(e.to_string()))
            })
            .collect::<Result<_, Error>>()?;
        Ok(StoredRun {
            id: id.to_string(),
            spec,
            state,
        })
    }

    /// Every run, newest first.
    pub fn list(&self) -> Result<Vec<RunSummary>, Error> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, agent, task, status, steps, created_at, updated_at FROM runs
                 ORDER BY created_at DESC, id DESC",
            )
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RunSummary {
                    id: r.get(0)?,
                    agent: r.get(1)?,
                    task: r.get(2)?,
                    status: r.get(3)?,
                    steps: r.get::<_, i64>(4)? as usize,
                    created_at: r.get::<_, i64>(5)? as u64,
                    updated_at: r.get::<_, i64>(6)? as u64,
                })
            })
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }
}

/// The state without its messages, which are stored apart.
fn state_json(state: &RunState) -> Result<String, Error> {
    let mut v = serde_json::to_value(state).map_err(|e| Error::Runs(e.to_string()))?;
    v["messages"] = serde_json::Value::Array(Vec::new());
    Ok(v.to_string())
}

/// A little randomness for run ids, from the clock's nanoseconds.
fn rand_u16() -> u16 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u16)
}

/// Saves one run's checkpoints into its store.
pub struct RunCheckpoint<'a> {
    store: &'a mut RunStore,
    id: &'a str,
}

impl Checkpoint for RunCheckpoint<'_> {
    fn save(&mut self, state: &RunState) -> Result<(), Error> {
        self.store.save(self.id, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::react::{AgentConfig, RunState};
    use symphony_types::ChatMessage;

    #[test]
    fn checkpoints_append_messages_and_a_run_loads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RunStore::open(&dir.path().join("runs.sqlite")).unwrap();
        let spec = AgentSpec::from_yaml("name: a\nmodel: m\ntools: [calculator]\n").unwrap();
        let mut state = RunState::new(&AgentConfig::default(), "What is 2 + 2?");
        let id = store.create(&spec, &state).unwrap();
        store.checkpoint(&id).save(&state).unwrap();
        state.messages.push(ChatMessage::assistant("4"));
        state.step = 1;
        state.ending = Some(crate::Ending::Answered);
        store.checkpoint(&id).save(&state).unwrap();

        let loaded = store.load(&id).unwrap();
        assert_eq!(loaded.state, state);
        assert_eq!(loaded.spec, spec);
        let count: i64 = store
            .conn
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE run_id = ?1",
                [&id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(count, 3);
        let runs = store.list().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].status.as_str(), runs[0].steps), ("answered", 1));
        assert!(store
            .load("run_missing")
            .unwrap_err()
            .to_string()
            .contains("no run"));
    }
}

//! Durable runs: every run's conversation and state in SQLite, so that a run killed at any
//! point resumes from its last checkpoint (`symphony agent resume RUN`).
//!
//! Messages are stored once each, appended as the run goes (a long run costs one row per
//! message, not a copy of the conversation per step); the state row is small and rewritten
//! with each checkpoint, in the same transaction as the messages it follows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::Error;
use crate::run::{Checkpoint, RunState};
use crate::spec::AgentSpec;
use crate::sqlite::open_sqlite;

/// The runs of one user (`$SYMPHONY_HOME/agents/runs.sqlite`).
pub struct RunStore {
    conn: Connection,
    path: PathBuf,
}

/// This process's hold on one run (from [`RunStore::claim`]). Dropping it gives the run up,
/// so that a driver that fails or panics part-way never keeps its run from being resumed.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    id: String,
    token: Option<String>,
}

impl Claim {
    /// Gives the run up now, saying whether that worked (a drop gives it up silently).
    pub fn release(mut self) -> Result<(), Error> {
        self.give_up()
    }

    fn give_up(&mut self) -> Result<(), Error> {
        let Some(token) = self.token.take() else {
            return Ok(());
        };
        let conn = Connection::open(&self.path).map_err(db_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_error)?;
        // Only if this claim still holds it: a stale claim frees nothing.
        conn.execute(
            "UPDATE runs SET driver = NULL WHERE id = ?1 AND driver = ?2",
            params![self.id, token],
        )
        .map_err(db_error)?;
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = self.give_up();
    }
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
    /// Who started the run over the API (a key's name or a token's subject); `None` for a
    /// run started on the command line, which is the machine's user's own.
    pub owner: Option<String>,
}

/// A stored run, whole.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub id: String,
    pub spec: AgentSpec,
    pub state: RunState,
    /// As in [`RunSummary::owner`].
    pub owner: Option<String>,
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
        // Stores made before runs had drivers, or owners, get the columns.
        for column in ["driver", "owner"] {
            let has_column: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM pragma_table_info('runs') WHERE name = ?1)",
                    [column],
                    |r| r.get(0),
                )
                .map_err(db_error)?;
            if !has_column {
                conn.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {column} TEXT"))
                    .map_err(db_error)?;
            }
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Takes run `id` for this caller to drive, so that two processes (the server and `agent
    /// resume`, say) or two threads never append to one run at once. Refused while the
    /// holder lives ([`Error::Busy`]); a holder that died (killed mid-run) holds nothing.
    pub fn claim(&mut self, id: &str) -> Result<Claim, Error> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let holder: Option<Option<String>> = tx
            .query_row("SELECT driver FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(db_error)?;
        let Some(holder) = holder else {
            return Err(Error::RunNotFound(id.to_string()));
        };
        if let Some(holder) = holder.filter(|h| driver_alive(h)) {
            let pid = holder.split(':').next().unwrap_or_default();
            return Err(Error::Busy(format!(
                "run {id} is being driven by process {pid} already"
            )));
        }
        let claim = new_driver();
        tx.execute(
            "UPDATE runs SET driver = ?2 WHERE id = ?1",
            params![id, claim],
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        Ok(Claim {
            path: self.path.clone(),
            id: id.to_string(),
            token: Some(claim),
        })
    }

    /// Records a new run of `spec` on `state`, started by `owner` (see
    /// [`RunSummary::owner`]); its first messages are saved by the loop's first checkpoint.
    /// Returns its id.
    pub fn create(
        &self,
        spec: &AgentSpec,
        state: &RunState,
        owner: Option<&str>,
    ) -> Result<String, Error> {
        let spec_json = serde_json::to_string(spec).map_err(|e| Error::Runs(e.to_string()))?;
        let state_json = state_json(state)?;
        // Ids are the second and 32 mixed bits; the server and several CLI processes may
        // start runs in the same second, so an id already taken is drawn again.
        let mut attempts = 0;
        loop {
            let id = format!("run_{:x}{:08x}", now(), id_bits());
            let inserted = self.conn.execute(
                "INSERT INTO runs
                     (id, agent, spec, task, state, status, steps, created_at, updated_at, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', 0, ?6, ?6, ?7)",
                params![
                    id,
                    spec.name,
                    spec_json,
                    state.task,
                    state_json,
                    now(),
                    owner
                ],
            );
            match inserted {
                Ok(_) => return Ok(id),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation && attempts < 16 =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(db_error(e)),
            }
        }
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
        let row: Option<(String, String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT spec, state, owner FROM runs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db_error)?;
        let Some((spec, state, owner)) = row else {
            return Err(Error::RunNotFound(id.to_string()));
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
            owner,
        })
    }

    /// Every run, newest first.
    pub fn list(&self) -> Result<Vec<RunSummary>, Error> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, agent, task, status, steps, created_at, updated_at, owner FROM runs
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
                    owner: r.get(7)?,
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

/// A claim on a run: this process (its pid and start time, so that a later process given
/// the same pid is not taken for it) and a number of its own.
fn new_driver() -> String {
    static CLAIMS: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let started = process_start(pid).unwrap_or_default();
    format!("{pid}:{started}:{}", CLAIMS.fetch_add(1, Ordering::Relaxed))
}

/// Whether the process that made `claim` still runs. Where processes cannot be looked at
/// (no `/proc`), only this process's own claims count as alive.
fn driver_alive(claim: &str) -> bool {
    let mut parts = claim.split(':');
    let (Some(Ok(pid)), Some(started)) = (parts.next().map(str::parse::<u32>), parts.next()) else {
        return false;
    };
    if pid == std::process::id() {
        return true;
    }
    process_start(pid).is_some_and(|s| s == started)
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22), if it runs.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_string)
}

/// 32 bits for a run id: the clock's nanoseconds, the process and a counter, mixed, so two
/// runs started at once in one process, or in two, differ.
fn id_bits() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut x = nanos ^ std::process::id().rotate_left(16) ^ count.wrapping_mul(0x9e37_79b9);
    // A 32-bit finaliser (murmur3's): nearby inputs give unrelated ids.
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^ (x >> 16)
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
    use crate::run::{AgentConfig, RunState};
    use symphony_types::ChatMessage;

    #[test]
    fn checkpoints_append_messages_and_a_run_loads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RunStore::open(&dir.path().join("runs.sqlite")).unwrap();
        let spec = AgentSpec::from_yaml("name: a\nmodel: m\ntools: [calculator]\n").unwrap();
        let mut state = RunState::new(&AgentConfig::default(), "What is 2 + 2?");
        let id = store.create(&spec, &state, None).unwrap();
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

    #[test]
    fn a_run_keeps_who_started_it_and_older_stores_gain_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite");
        // A store as made before runs had owners, holding one run.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE runs (id TEXT PRIMARY KEY, agent TEXT NOT NULL, spec TEXT NOT NULL,
                     task TEXT NOT NULL, state TEXT NOT NULL, status TEXT NOT NULL,
                     steps INTEGER NOT NULL, created_at INTEGER NOT NULL,
                     updated_at INTEGER NOT NULL, driver TEXT);",
            )
            .unwrap();
        }
        let store = RunStore::open(&path).unwrap();
        let spec = AgentSpec::from_yaml("name: a\nmodel: m\n").unwrap();
        let state = RunState::new(&AgentConfig::default(), "x");
        let theirs = store.create(&spec, &state, Some("alice")).unwrap();
        let local = store.create(&spec, &state, None).unwrap();
        assert_eq!(store.load(&theirs).unwrap().owner.as_deref(), Some("alice"));
        assert_eq!(store.load(&local).unwrap().owner, None);
        let owners: std::collections::BTreeMap<_, _> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.owner))
            .collect();
        assert_eq!(owners[&theirs].as_deref(), Some("alice"));
        assert_eq!(owners[&local], None);
    }

    #[test]
    fn runs_started_at_once_from_two_stores_get_ids_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite");
        // Two handles on one file, as the server and a CLI process have.
        let (a, b) = (
            RunStore::open(&path).unwrap(),
            RunStore::open(&path).unwrap(),
        );
        let spec = AgentSpec::from_yaml("name: a\nmodel: m\ntools: [calculator]\n").unwrap();
        let state = RunState::new(&AgentConfig::default(), "What is 2 + 2?");
        let mut ids = std::collections::BTreeSet::new();
        for _ in 0..300 {
            assert!(ids.insert(a.create(&spec, &state, None).unwrap()));
            assert!(ids.insert(b.create(&spec, &state, None).unwrap()));
        }
        assert_eq!(a.list().unwrap().len(), 600);
        assert!(ids.iter().all(|id| id.starts_with("run_")));
    }

    #[test]
    fn a_run_is_driven_by_one_claim_at_a_time_and_a_dead_driver_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.sqlite");
        let mut store = RunStore::open(&path).unwrap();
        let spec = AgentSpec::from_yaml("name: a\nmodel: m\n").unwrap();
        let id = store
            .create(&spec, &RunState::new(&AgentConfig::default(), "x"), None)
            .unwrap();
        let claim = store.claim(&id).unwrap();
        // Another claim, here or from another handle on the file, waits for the release.
        let mut other = RunStore::open(&path).unwrap();
        let e = other.claim(&id).unwrap_err().to_string();
        assert!(
            e.contains(&format!("driven by process {}", std::process::id())),
            "{e}"
        );
        assert!(matches!(other.claim(&id), Err(Error::Busy(_))));
        claim.release().unwrap();
        let claim = other.claim(&id).unwrap();
        assert!(store.claim(&id).is_err());
        // A driver that fails or panics part-way gives the run up as its claim drops.
        std::thread::spawn(move || {
            let _held = claim;
            panic!("the driver failed");
        })
        .join()
        .unwrap_err();
        let claim = store.claim(&id).unwrap();

        let admin = RunStore::open(&path).unwrap();
        // A stale claim (given up, the run taken by another since) frees nothing.
        let stale = Claim {
            path: path.clone(),
            id: id.clone(),
            token: Some("1:1:1".into()),
        };
        stale.release().unwrap();
        assert!(other.claim(&id).is_err());
        drop(claim);
        let set_driver = |driver: &str| {
            admin
                .conn
                .execute(
                    "UPDATE runs SET driver = ?2 WHERE id = ?1",
                    params![id, driver],
                )
                .unwrap();
        };
        if std::path::Path::new("/proc/self/stat").exists() {
            // A live process of another pid holds the run until it is gone.
            let mut child = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap();
            let started = process_start(child.id()).unwrap();
            set_driver(&format!("{}:{started}:0", child.id()));
            let e = store.claim(&id).unwrap_err().to_string();
            assert!(e.contains(&format!("process {}", child.id())), "{e}");
            child.kill().unwrap();
            child.wait().unwrap();
            store.claim(&id).unwrap();
            // A live pid with another start time: the pid was given to another process.
            assert!(process_start(1).is_some());
            set_driver("1:99999999999:0");
            store.claim(&id).unwrap();
        }
        // A process that is gone (killed mid-run) holds nothing.
        set_driver("4294967295:1:0");
        store.claim(&id).unwrap();
        assert!(store
            .claim("run_missing")
            .unwrap_err()
            .to_string()
            .contains("no run"));
    }
}

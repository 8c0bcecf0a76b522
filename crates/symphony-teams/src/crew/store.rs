//! Crew runs on disk: one JSON file a run, replaced atomically (written beside, then
//! renamed), so a process killed mid-write leaves the previous state whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::run::CrewRun;

/// The directory of crew runs.
pub struct RunFiles {
    dir: PathBuf,
}

impl RunFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, id: &str) -> Result<PathBuf, String> {
        let safe = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !safe {
            return Err(format!("`{id}` is not a crew run id"));
        }
        Ok(self.dir.join(format!("{id}.json")))
    }

    pub fn save(&self, run: &CrewRun) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let path = self.path(&run.id)?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| e.to_string())?;
        file.write_all(&serde_json::to_vec_pretty(run).expect("plain data"))
            .and_then(|_| file.as_file().sync_all())
            .map_err(|e| e.to_string())?;
        file.persist(&path).map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn load(&self, id: &str) -> Result<CrewRun, String> {
        let path = self.path(id)?;
        let text = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("no crew run `{id}` in {}", self.dir.display()),
            _ => format!("{}: {e}", path.display()),
        })?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

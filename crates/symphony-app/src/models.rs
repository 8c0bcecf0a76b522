//! [`Models`]: from a reference to a file in the store (fetching or pulling it first when
//! that is allowed), to an opened model or embedder. Both front ends go through here, so
//! they accept the same references.

use std::path::{Path, PathBuf};

use symphony_models::embedding::{is_embedding_checkpoint, Embedder};
use symphony_models::{ChatTemplate, LoadOptions, Model};
use symphony_store::hub::HubRef;
use symphony_store::{packages, Manifest, Store};

use crate::error::{Error, Result};
use crate::fetch::fetch_packaged;
use crate::home::Home;
use crate::import;
use crate::model_ref::ModelRef;
use crate::progress::{Event, Progress};
use crate::pull::{pull, Pulled};

/// Whether a packaged model the store lacks is fetched when something first uses it, as
/// Ollama pulls; off (`--no-fetch`, `SYMPHONY_OFFLINE=1`), the error names the command to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    Fetch,
    Refuse,
}

/// The models of one [`Home`].
#[derive(Debug, Clone)]
pub struct Models {
    home: Home,
    store: Store,
    first_use: FirstUse,
}

impl Models {
    pub fn new(home: Home, first_use: FirstUse) -> Self {
        let store = home.store();
        Self {
            home,
            store,
            first_use,
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn first_use(&self) -> FirstUse {
        self.first_use
    }

    /// The store's manifest for `name`; a packaged model not yet in the store is fetched
    /// first, unless fetching on first use is off.
    pub fn stored_or_fetched(&self, name: &str, progress: &mut dyn Progress) -> Result<Manifest> {
        let missing = match self.store.get(name) {
            Ok(manifest) => return Ok(manifest),
            Err(e) => e,
        };
        let Some(packaged) = packages::find(name) else {
            return Err(missing.into());
        };
        if self.first_use == FirstUse::Refuse {
            return Err(Error::FetchOff {
                name: name.to_string(),
                packaged: packaged.name,
            });
        }
        progress.report(Event::FetchingOnFirstUse {
            requested: name,
            packaged,
        });
        if let Some(manifest) = fetch_packaged(&self.home, packaged.name, progress)? {
            progress.report(Event::FetchedOnFirstUse {
                manifest: &manifest,
            });
        }
        Ok(self.store.get(packaged.name)?)
    }

    /// See [`fetch_packaged`].
    pub fn fetch_packaged(
        &self,
        name: &str,
        progress: &mut dyn Progress,
    ) -> Result<Option<Manifest>> {
        fetch_packaged(&self.home, name, progress)
    }

    /// What was pulled from `reference`, if anything.
    pub fn pulled(&self, reference: &HubRef) -> Result<Option<Manifest>> {
        let source = reference.display();
        Ok(self.store.list()?.into_iter().find(|m| m.source == source))
    }

    /// Pulls `reference` from the Hugging Face Hub into the store as `name` (default: the
    /// repository's name). `offline` (or `HF_HUB_OFFLINE=1`) only checks the store.
    pub fn pull(
        &self,
        reference: &HubRef,
        name: Option<&str>,
        offline: bool,
        progress: &mut dyn Progress,
    ) -> Result<Pulled> {
        pull(&self.home, reference, name, offline, progress)
    }

    /// Copies a `.gguf` file or checkpoint directory into the store as `name` (default:
    /// from the file name), once it is known to load.
    pub fn import(
        &self,
        path: &Path,
        name: Option<&str>,
        progress: &mut dyn Progress,
    ) -> Result<Manifest> {
        import::import(&self.home, path, name, progress)
    }

    /// The file (or checkpoint directory) a reference names. `hf:ORG/REPO[:FILE]` is what
    /// was pulled from there, pulled first if needed (as `ollama run hf.co/...` does); a
    /// packaged model is fetched on first use (see [`FirstUse`]).
    pub fn resolve(&self, spec: &str, progress: &mut dyn Progress) -> Result<PathBuf> {
        let manifest = match ModelRef::parse(spec)? {
            ModelRef::Path(path) => return Ok(path),
            ModelRef::Hub(reference) => match self.pulled(&reference)? {
                Some(m) => m,
                None => {
                    self.pull(&reference, None, false, progress)?;
                    self.pulled(&reference)?.ok_or(Error::PulledMissing)?
                }
            },
            ModelRef::Stored(name) => self.stored_or_fetched(&name, progress)?,
        };
        let path = self.store.blob_path(&manifest);
        if !path.exists() {
            return Err(Error::BlobMissing {
                spec: spec.to_string(),
                path,
            });
        }
        Ok(path)
    }

    /// A generative model, with `chat_template` (a Jinja file) over its own when given.
    /// An embedding model is refused: it makes vectors, not text.
    pub fn open_model(
        &self,
        spec: &str,
        chat_template: Option<&Path>,
        options: LoadOptions,
        progress: &mut dyn Progress,
    ) -> Result<Model> {
        let path = self.resolve(spec, progress)?;
        if is_embedding_checkpoint(&path) {
            return Err(Error::IsEmbedder {
                spec: spec.to_string(),
            });
        }
        let mut model = Model::load_with(&path, options).map_err(|cause| Error::LoadModel {
            spec: spec.to_string(),
            cause: Box::new(cause),
        })?;
        if let Some(file) = chat_template {
            model.chat_template = Some(read_chat_template(file, &model)?);
        }
        Ok(model)
    }

    /// An embedding model (a sentence-transformers encoder); a generative one is refused.
    pub fn open_embedder(&self, spec: &str, progress: &mut dyn Progress) -> Result<Embedder> {
        let path = self.resolve(spec, progress)?;
        if !is_embedding_checkpoint(&path) {
            return Err(Error::NotAnEmbedder {
                spec: spec.to_string(),
            });
        }
        Embedder::load(&path).map_err(|cause| Error::LoadEmbedder {
            spec: spec.to_string(),
            cause: Box::new(cause),
        })
    }
}

/// A chat template from a file, with the model's own BOS and EOS texts.
fn read_chat_template(file: &Path, model: &Model) -> Result<ChatTemplate> {
    let source = std::fs::read_to_string(file).map_err(|cause| Error::ReadChatTemplate {
        path: file.to_path_buf(),
        cause,
    })?;
    let text = |id: Option<u32>| {
        id.and_then(|id| model.tokenizer.token_text(id))
            .unwrap_or("")
            .to_string()
    };
    let (bos, eos) = (text(model.tokenizer.bos), text(model.tokenizer.eos));
    ChatTemplate::new(&source, &bos, &eos).map_err(|cause| Error::ChatTemplate {
        path: file.to_path_buf(),
        cause: Box::new(cause),
    })
}

#[cfg(test)]
mod tests {
    use symphony_store::ModelMeta;

    use super::*;
    use crate::progress::Quiet;

    fn models(first_use: FirstUse) -> (tempfile::TempDir, Models) {
        let home = tempfile::tempdir().unwrap();
        let models = Models::new(Home::at(home.path()), first_use);
        (home, models)
    }

    /// A file stored under `name` as the store takes it (the store does not read formats).
    fn store_file(models: &Models, name: &str) -> Manifest {
        let file = models.home().root().join("input.bin");
        std::fs::write(&file, b"not a model").unwrap();
        let meta = ModelMeta {
            format: "gguf".into(),
            architecture: "llama".into(),
            quantization: "Q4_1".into(),
            parameters: 1,
            context_length: 8,
            has_chat_template: false,
            embedding: false,
        };
        models.store().import(&file, name, meta, |_, _| {}).unwrap()
    }

    #[test]
    fn a_path_resolves_to_itself_and_a_stored_name_to_its_blob() {
        let (_home, models) = models(FirstUse::Refuse);
        let file = tempfile::NamedTempFile::new().unwrap();
        let spec = file.path().to_str().unwrap();
        assert_eq!(models.resolve(spec, &mut Quiet).unwrap(), file.path());
        let manifest = store_file(&models, "mine");
        let blob = models.resolve("mine", &mut Quiet).unwrap();
        assert_eq!(blob, models.store().blob_path(&manifest));
        std::fs::remove_file(&blob).unwrap();
        let missing = models.resolve("mine", &mut Quiet).unwrap_err();
        assert!(matches!(missing, Error::BlobMissing { .. }), "{missing}");
    }

    #[test]
    fn a_missing_name_is_not_found_and_a_packaged_one_names_its_command_when_not_fetched() {
        let (_home, models) = models(FirstUse::Refuse);
        let unknown = models.resolve("nosuchmodel", &mut Quiet).unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("model 'nosuchmodel' not found"),
            "{unknown}"
        );
        let packaged = models.resolve("smollm2", &mut Quiet).unwrap_err();
        assert!(
            packaged
                .to_string()
                .contains("run `symphony models fetch smollm2`"),
            "{packaged}"
        );
        // Refused before anything is downloaded.
        assert!(!models.home().downloads().exists());
    }

    #[test]
    fn what_does_not_load_is_not_imported() {
        let (_home, models) = models(FirstUse::Refuse);
        let file = models.home().root().join("Some Model.gguf");
        std::fs::write(&file, b"not a model").unwrap();
        let err = models.import(&file, None, &mut Quiet).unwrap_err();
        assert!(matches!(err, Error::Unloadable { .. }), "{}", err.report());
        assert!(
            err.report().contains("cannot be loaded: "),
            "{}",
            err.report()
        );
        assert!(models.store().list().unwrap().is_empty());
        assert_eq!(crate::import::default_name(&file).unwrap(), "some-model");
    }
}

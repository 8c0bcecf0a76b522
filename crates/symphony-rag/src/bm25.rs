//! The BM25 full-text index: tantivy, on disk, one document per chunk.
//!
//! Text is cut at non-alphanumerics, lowercased, stripped of English stop words and stemmed
//! (Snowball English), so "running runners" finds "runner ran run". Each commit carries the
//! sequence number of the last store operation it reflects (tantivy's commit payload), which
//! is how the collection knows, after a crash, which operations to replay.

use std::path::{Path, PathBuf};

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Error, Result};

const ANALYZER: &str = "symphony_en";
/// Memory for the writer's in-RAM segment before it flushes.
const WRITER_HEAP_BYTES: usize = 64 << 20;

pub struct FullTextIndex {
    path: PathBuf,
    index: Index,
    writer: IndexWriter,
    reader: IndexReader,
    chunk_id: Field,
    text: Field,
    analyzer: TextAnalyzer,
}

fn analyzer() -> TextAnalyzer {
    let stop_words = StopWordFilter::new(Language::English).expect("English stop words");
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop_words)
        .filter(Stemmer::new(Language::English))
        .build()
}

impl FullTextIndex {
    /// Opens the index in `dir`, creating an empty one if there is none.
    pub fn open(dir: &Path) -> Result<Self> {
        let err = |e: tantivy::TantivyError| Error::FullText {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut builder = Schema::builder();
        let chunk_id = builder.add_u64_field(
            "chunk_id",
            NumericOptions::default().set_indexed().set_fast(),
        );
        let text = builder.add_text_field(
            "text",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(ANALYZER)
                    .set_index_option(IndexRecordOption::WithFreqs),
            ),
        );
        let schema = builder.build();
        let directory =
            tantivy::directory::MmapDirectory::open(dir).map_err(|e| Error::FullText {
                path: dir.to_path_buf(),
                message: e.to_string(),
            })?;
        let index = Index::open_or_create(directory, schema).map_err(err)?;
        index.tokenizers().register(ANALYZER, analyzer());
        // One indexing thread: chunks arrive a few at a time, and the cores are embedding.
        let writer = index
            .writer_with_num_threads(1, WRITER_HEAP_BYTES)
            .map_err(err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        Ok(Self {
            path: dir.to_path_buf(),
            index,
            writer,
            reader,
            chunk_id,
            text,
            analyzer: analyzer(),
        })
    }

    fn err(&self, e: tantivy::TantivyError) -> Error {
        Error::FullText {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The sequence number of the last committed operation (0 for a new index).
    pub fn applied_seq(&self) -> Result<u64> {
        let metas = self.index.load_metas().map_err(|e| self.err(e))?;
        Ok(metas.payload.and_then(|p| p.parse().ok()).unwrap_or(0))
    }

    pub fn add(&mut self, chunk_id: u64, text: &str) -> Result<()> {
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.chunk_id, chunk_id);
        doc.add_text(self.text, text);
        self.writer.add_document(doc).map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn remove(&mut self, chunk_id: u64) {
        self.writer
            .delete_term(Term::from_field_u64(self.chunk_id, chunk_id));
    }

    /// Makes everything added and removed so far durable, recording `seq` with it, and
    /// visible to searches.
    pub fn commit(&mut self, seq: u64) -> Result<()> {
        let path = self.path.clone();
        let err = |e: tantivy::TantivyError| Error::FullText {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut prepared = self.writer.prepare_commit().map_err(err)?;
        prepared.set_payload(&seq.to_string());
        prepared.commit().map_err(err)?;
        self.reader.reload().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Drops every document (before a rebuild from the store).
    pub fn clear(&mut self) -> Result<()> {
        self.writer
            .delete_all_documents()
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The query's terms, analysed like the indexed text.
    fn terms(&self, query: &str) -> Vec<Term> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(query);
        let mut terms = Vec::new();
        while stream.advance() {
            let term = Term::from_field_text(self.text, &stream.token().text);
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        terms
    }

    /// Up to `k` chunks by BM25 score against any of the query's terms, best first.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<(u64, f32)>> {
        let terms = self.terms(query);
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .into_iter()
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs));
                (Occur::Should, q)
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(k).order_by_score())
            .map_err(|e| self.err(e))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let column = searcher
                .segment_reader(address.segment_ord)
                .fast_fields()
                .u64("chunk_id")
                .map_err(|e| self.err(e))?;
            if let Some(id) = column.first(address.doc_id) {
                hits.push((id, score));
            }
        }
        Ok(hits)
    }

    /// Every chunk id in the committed index (for consistency checks).
    pub fn chunk_ids(&self) -> Result<Vec<u64>> {
        let searcher = self.reader.searcher();
        let mut ids = Vec::new();
        for segment in searcher.segment_readers() {
            let column = segment
                .fast_fields()
                .u64("chunk_id")
                .map_err(|e| self.err(e))?;
            let alive = segment.alive_bitset();
            for doc in 0..segment.max_doc() {
                if alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                ids.extend(column.first(doc));
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The number of live documents.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

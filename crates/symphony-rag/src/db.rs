//! The collection's database, the source of truth: documents, chunks (text, span,
//! embedding, metadata) and the operation log, in SQLite with a write-ahead log.
//!
//! A document's chunks are replaced in one transaction, which also appends an `add` or
//! `remove` operation per chunk to `ops`. The vector and full-text indexes are derived: each
//! remembers the sequence number of the last operation it reflects, and on open replays the
//! operations after it. So whatever moment a process dies at, the indexes come back to
//! exactly the chunks the database holds.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    content_sha256 TEXT NOT NULL,
    format TEXT NOT NULL,
    title TEXT,
    bytes INTEGER NOT NULL,
    ingested_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    heading TEXT,
    n_tokens INTEGER NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    added INTEGER NOT NULL,
    chunk_id INTEGER NOT NULL
);
";

/// A chunk to store.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub start_char: usize,
    pub end_char: usize,
    pub heading: Option<String>,
    pub n_tokens: usize,
    pub text: String,
    pub embedding: Vec<f32>,
}

/// A document to store, with its chunks.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub path: String,
    pub content_sha256: String,
    pub format: String,
    pub title: Option<String>,
    pub bytes: u64,
}

/// A stored chunk with its document.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChunkRecord {
    pub chunk_id: u64,
    pub document_id: u64,
    pub path: String,
    pub title: Option<String>,
    pub format: String,
    pub ordinal: usize,
    pub start_char: usize,
    pub end_char: usize,
    pub heading: Option<String>,
    pub n_tokens: usize,
    pub text: String,
}

/// One entry of the operation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub seq: u64,
    pub added: bool,
    pub chunk_id: u64,
}

/// A stored document.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DocumentRecord {
    pub id: u64,
    pub path: String,
    pub format: String,
    pub title: Option<String>,
    pub bytes: u64,
    pub chunks: u64,
}

pub struct Db {
    conn: Connection,
    path: PathBuf,
}

/// A chunk as it is embedded and indexed: under its heading path, unless it starts with
/// its own heading line.
pub fn indexed_text(heading: Option<&str>, text: &str) -> String {
    match heading {
        Some(h) if !text.starts_with('#') => format!("{h}\n\n{text}"),
        _ => text.to_string(),
    }
}

pub fn embedding_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn blob_to_embedding(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Db {
    pub fn open(path: &Path) -> Result<Self> {
        let err = |source| Error::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        // WAL: a transaction is durable at commit and a crash never leaves a half-written one;
        // NORMAL sync is enough for that against a killed process.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The stored content hash of the document at `path`, if any.
    pub fn document_hash(&self, path: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT content_sha256 FROM documents WHERE path = ?1",
                [path],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Stores `doc` with `chunks`, replacing whatever was stored for its path, in one
    /// transaction. Returns the new chunk ids and the last operation's sequence number.
    pub fn replace_document(
        &mut self,
        doc: &NewDocument,
        chunks: &[NewChunk],
    ) -> Result<(Vec<u64>, u64)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let path = self.path.clone();
        let err = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        remove_in(&tx, &doc.path).map_err(err)?;
        tx.execute(
            "INSERT INTO documents(path, content_sha256, format, title, bytes, ingested_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                doc.path,
                doc.content_sha256,
                doc.format,
                doc.title,
                doc.bytes as i64,
                now
            ],
        )
        .map_err(err)?;
        let document_id = tx.last_insert_rowid();
        let mut ids = Vec::with_capacity(chunks.len());
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO chunks(document_id, ordinal, start_char, end_char, heading,
                                        n_tokens, text, embedding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            let mut log = tx
                .prepare("INSERT INTO ops(added, chunk_id) VALUES (1, ?1)")
                .map_err(err)?;
            for (ordinal, c) in chunks.iter().enumerate() {
                insert
                    .execute(params![
                        document_id,
                        ordinal as i64,
                        c.start_char as i64,
                        c.end_char as i64,
                        c.heading,
                        c.n_tokens as i64,
                        c.text,
                        embedding_to_blob(&c.embedding),
                    ])
                    .map_err(err)?;
                let id = tx.last_insert_rowid();
                log.execute([id]).map_err(err)?;
                ids.push(id as u64);
            }
        }
        let seq = last_seq_in(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok((ids, seq))
    }

    /// Removes the document at `path` and its chunks; returns the last sequence number.
    pub fn remove_document(&mut self, path: &str) -> Result<Option<u64>> {
        let db_path = self.path.clone();
        let err = |source| Error::Sqlite {
            path: db_path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let removed = remove_in(&tx, path).map_err(err)?;
        let seq = last_seq_in(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(removed.then_some(seq))
    }

    pub fn last_seq(&self) -> Result<u64> {
        last_seq_in(&self.conn).map_err(|e| self.err(e))
    }

    /// Operations after `seq`, in order.
    pub fn ops_after(&self, seq: u64) -> Result<Vec<Op>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, added, chunk_id FROM ops WHERE seq > ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([seq as i64], |r| {
                Ok(Op {
                    seq: r.get::<_, i64>(0)? as u64,
                    added: r.get::<_, i64>(1)? != 0,
                    chunk_id: r.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Forgets operations every index has applied (the newest is kept: it carries the
    /// sequence counter forward).
    pub fn trim_ops(&self, applied: u64) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM ops WHERE seq <= ?1 AND seq < (SELECT MAX(seq) FROM ops)",
                [applied as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// What the indexes hold of a chunk, if it is stored: its text under its heading path
    /// (as it was embedded), and its embedding.
    pub fn chunk_text_and_embedding(&self, id: u64) -> Result<Option<(String, Vec<f32>)>> {
        self.conn
            .query_row(
                "SELECT heading, text, embedding FROM chunks WHERE id = ?1",
                [id as i64],
                |r| {
                    let heading: Option<String> = r.get(0)?;
                    let text: String = r.get(1)?;
                    Ok((
                        indexed_text(heading.as_deref(), &text),
                        blob_to_embedding(&r.get::<_, Vec<u8>>(2)?),
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn embedding(&self, id: u64) -> Result<Option<Vec<f32>>> {
        self.conn
            .query_row(
                "SELECT embedding FROM chunks WHERE id = ?1",
                [id as i64],
                |r| Ok(blob_to_embedding(&r.get::<_, Vec<u8>>(0)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The chunks with these ids (those that exist), in the order given.
    pub fn chunks(&self, ids: &[u64]) -> Result<Vec<ChunkRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.id, c.document_id, d.path, d.title, d.format, c.ordinal, c.start_char,
                        c.end_char, c.heading, c.n_tokens, c.text
                 FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let row = stmt
                .query_row([id as i64], |r| {
                    Ok(ChunkRecord {
                        chunk_id: r.get::<_, i64>(0)? as u64,
                        document_id: r.get::<_, i64>(1)? as u64,
                        path: r.get(2)?,
                        title: r.get(3)?,
                        format: r.get(4)?,
                        ordinal: r.get::<_, i64>(5)? as usize,
                        start_char: r.get::<_, i64>(6)? as usize,
                        end_char: r.get::<_, i64>(7)? as usize,
                        heading: r.get(8)?,
                        n_tokens: r.get::<_, i64>(9)? as usize,
                        text: r.get(10)?,
                    })
                })
                .optional()
                .map_err(|e| self.err(e))?;
            out.extend(row);
        }
        Ok(out)
    }

    /// Every chunk id, ascending.
    pub fn chunk_ids(&self) -> Result<Vec<u64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM chunks ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok(r.get::<_, i64>(0)? as u64))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    pub fn documents(&self) -> Result<Vec<DocumentRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT d.id, d.path, d.format, d.title, d.bytes,
                        (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id)
                 FROM documents d ORDER BY d.path",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DocumentRecord {
                    id: r.get::<_, i64>(0)? as u64,
                    path: r.get(1)?,
                    format: r.get(2)?,
                    title: r.get(3)?,
                    bytes: r.get::<_, i64>(4)? as u64,
                    chunks: r.get::<_, i64>(5)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// `(documents, chunks)`.
    pub fn counts(&self) -> Result<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.err(e))
    }
}

/// Deletes the document at `path` (and, by cascade, its chunks), logging a `remove` per
/// chunk. Returns whether there was one.
fn remove_in(tx: &Connection, path: &str) -> rusqlite::Result<bool> {
    let Some(doc_id) = tx
        .query_row("SELECT id FROM documents WHERE path = ?1", [path], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
    else {
        return Ok(false);
    };
    tx.execute(
        "INSERT INTO ops(added, chunk_id)
         SELECT 0, id FROM chunks WHERE document_id = ?1 ORDER BY id",
        [doc_id],
    )?;
    tx.execute("DELETE FROM chunks WHERE document_id = ?1", [doc_id])?;
    tx.execute("DELETE FROM documents WHERE id = ?1", [doc_id])?;
    Ok(true)
}

fn last_seq_in(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM ops", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|s| s as u64)
}

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("collection database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("full-text index {}: {message}", path.display())]
    FullText { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    CorruptIndex { path: PathBuf, message: String },
    #[error("a vector has {found} dimensions; the collection's embedder gives {expected}")]
    Dimension { expected: usize, found: usize },
    #[error("no collection '{name}' in {} (create it with `symphony rag create {name}`)", home.display())]
    NotFound { name: String, home: PathBuf },
    #[error("collection '{0}' exists already")]
    Exists(String),
    #[error("invalid collection name '{0}': use letters, digits, '-', '_' and '.'")]
    InvalidName(String),
    #[error("{}: {message}", path.display())]
    Extract { path: PathBuf, message: String },
    #[error("the collection was made with the embedder '{expected}' ({expected_dim} dimensions); '{found}' cannot search it")]
    EmbedderMismatch {
        expected: String,
        expected_dim: usize,
        found: String,
    },
    #[error("invalid chunking: {0}")]
    Chunking(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error(transparent)]
    Model(#[from] symphony_models::Error),
    #[error(transparent)]
    Engine(#[from] symphony_engine::Error),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

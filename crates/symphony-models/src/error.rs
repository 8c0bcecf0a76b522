//! The one error type of the models crate.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Files.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}: at offset {offset}: {message}", path.display())]
    Gguf {
        path: PathBuf,
        offset: u64,
        message: String,
    },

    #[error("{}: metadata key '{key}' is missing", path.display())]
    MissingMetadata { path: PathBuf, key: String },

    #[error("{}: metadata key '{key}': expected {expected}, found {found}", path.display())]
    MetadataType {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("{}: {message}", path.display())]
    InvalidMetadata { path: PathBuf, message: String },

    #[error("{}: tensor '{name}' is missing", path.display())]
    MissingTensor { path: PathBuf, name: String },

    #[error("{}: tensor '{tensor}' has type {ggml_type}, which Symphony cannot compute with yet", path.display())]
    UnsupportedTensorType {
        path: PathBuf,
        tensor: String,
        ggml_type: &'static str,
    },

    #[error("{}: tensor '{tensor}' has shape {found:?}, expected {expected:?}", path.display())]
    TensorShape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("{}: architecture '{arch}' is not supported (supported: {supported})", path.display())]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        /// The names the table of architectures knows, comma-separated.
        supported: String,
    },

    // Text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("the model has no chat template (metadata 'tokenizer.chat_template'); pass a template explicitly or use raw mode")]
    NoChatTemplate,

    #[error("chat template: {0}")]
    ChatTemplate(String),

    // Compute.
    #[error(
        "context length exceeded: {requested} tokens requested, the model's context holds {limit}"
    )]
    ContextLength { requested: usize, limit: usize },

    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange { id: u32, n_vocab: usize },

    #[error("empty input: at least one token is needed")]
    EmptyInput,

    #[error(
        "block table too short: {positions} positions need {} blocks, the table has {blocks} \
         (of a store of {store_blocks})", positions.div_ceil(crate::KV_BLOCK_SIZE)
    )]
    BlockTable {
        positions: usize,
        blocks: usize,
        store_blocks: usize,
    },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

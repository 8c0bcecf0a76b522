//! The JSON files of a checkpoint (`config.json`, `tokenizer.json`, the shard index), read
//! with errors that name the file.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Reads and parses one JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::InvalidMetadata {
        path: path.to_path_buf(),
        message: format!("not valid JSON: {e}"),
    })
}

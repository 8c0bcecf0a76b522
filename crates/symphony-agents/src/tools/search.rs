//! `search_documents`: the retriever of a RAG collection as a tool, so an agent answers from
//! the user's documents. The schema and the observation (numbered passages with their
//! sources) are the ones `symphony rag` gives models, from [`symphony_rag::tool`].

use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::Value;
use symphony_models::embedding::Embedder;
use symphony_rag::tool::{run_search, search_tool};
use symphony_rag::Collection;
use symphony_types::ToolSpec;

use crate::tool::{Tool, ToolError};

/// Searches one collection with the embedder it was built with.
pub struct SearchDocuments {
    source: Source,
    embedder: Embedder,
    name: String,
}

/// Where the collection is.
enum Source {
    /// Open for the tool's life (an agent run): no reopening per call. Collections keep
    /// SQLite connections, which one thread uses at a time.
    Open(Box<Mutex<Collection>>),
    /// Opened at each call and closed after (a long-lived server): an open collection is
    /// locked, and `symphony rag ingest` must not wait for the server to stop.
    Named { root: PathBuf, collection: String },
}

impl SearchDocuments {
    pub fn new(collection: Collection, embedder: Embedder) -> Self {
        Self {
            source: Source::Open(Box::new(Mutex::new(collection))),
            embedder,
            name: symphony_rag::tool::SEARCH_TOOL.into(),
        }
    }

    /// The collection `collection` under `root`, opened at each call.
    pub fn reopening(root: impl Into<PathBuf>, collection: &str, embedder: Embedder) -> Self {
        Self {
            source: Source::Named {
                root: root.into(),
                collection: collection.to_string(),
            },
            embedder,
            name: symphony_rag::tool::SEARCH_TOOL.into(),
        }
    }

    /// The tool under another name than `search_documents`: one per collection where
    /// several are offered together (`search_handbook`, `search_wiki`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    fn search(&self, collection: &Collection, arguments: &Value) -> Result<String, ToolError> {
        match run_search(collection, &self.embedder, arguments) {
            Ok((observation, _hits)) => Ok(observation),
            Err(symphony_rag::Error::InvalidQuery(reason)) => Err(ToolError::InvalidArguments {
                tool: self.name.clone(),
                reason,
            }),
            Err(e) => Err(ToolError::Failed(e.to_string())),
        }
    }
}

impl Tool for SearchDocuments {
    fn spec(&self) -> ToolSpec {
        let spec = match &self.source {
            Source::Open(collection) => {
                search_tool(collection.lock().unwrap_or_else(|e| e.into_inner()).name())
            }
            Source::Named { collection, .. } => search_tool(collection),
        };
        ToolSpec {
            name: self.name.clone(),
            ..spec
        }
    }

    fn call(&self, arguments: Value) -> Result<String, ToolError> {
        match &self.source {
            Source::Open(collection) => {
                let collection = collection.lock().unwrap_or_else(|e| e.into_inner());
                self.search(&collection, &arguments)
            }
            Source::Named { root, collection } => {
                let collection = Collection::open(root, collection)
                    .map_err(|e| ToolError::Failed(e.to_string()))?;
                self.search(&collection, &arguments)
            }
        }
    }
}

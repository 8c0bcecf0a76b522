//! `search_documents`: the retriever of a RAG collection as a tool, so an agent answers from
//! the user's documents. The schema and the observation (numbered passages with their
//! sources) are the ones `symphony rag` gives models, from [`symphony_rag::tool`].

use std::sync::Mutex;

use serde_json::Value;
use symphony_models::embedding::Embedder;
use symphony_rag::tool::{run_search, search_tool};
use symphony_rag::Collection;
use symphony_types::ToolSpec;

use crate::tool::{Tool, ToolError};

/// Searches one collection with the embedder it was built with.
pub struct SearchDocuments {
    /// Collections keep SQLite connections, which one thread uses at a time.
    collection: Mutex<Collection>,
    embedder: Embedder,
}

impl SearchDocuments {
    pub fn new(collection: Collection, embedder: Embedder) -> Self {
        Self {
            collection: Mutex::new(collection),
            embedder,
        }
    }
}

impl Tool for SearchDocuments {
    fn spec(&self) -> ToolSpec {
        let collection = self.collection.lock().unwrap_or_else(|e| e.into_inner());
        search_tool(collection.name())
    }

    fn call(&self, arguments: Value) -> Result<String, ToolError> {
        let collection = self.collection.lock().unwrap_or_else(|e| e.into_inner());
        match run_search(&collection, &self.embedder, &arguments) {
            Ok((observation, _hits)) => Ok(observation),
            Err(symphony_rag::Error::InvalidQuery(reason)) => Err(ToolError::InvalidArguments {
                tool: symphony_rag::tool::SEARCH_TOOL.into(),
                reason,
            }),
            Err(e) => Err(ToolError::Failed(e.to_string())),
        }
    }
}

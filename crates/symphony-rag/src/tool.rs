//! The retriever as a tool a model can call: [`search_tool`] describes it in the form chat
//! templates and the engine's tool-call grammar take (`ToolSpec`), and [`run_search`] runs a
//! call's arguments against a collection and writes the observation the model reads next:
//! the passages, numbered, each with where it came from, so that the model can cite them.

use serde::Deserialize;
use serde_json::{json, Value};
use symphony_models::embedding::Embedder;
use symphony_types::ToolSpec;

use crate::retrieve::{Hit, Mode, QueryOptions};
use crate::{Collection, Error, Result};

/// The tool's name, as the model calls it.
pub const SEARCH_TOOL: &str = "search_documents";
/// Passages a call may ask for.
const MAX_TOOL_TOP_K: u64 = 10;

/// The search tool over the collection `collection`, described for the model.
pub fn search_tool(collection: &str) -> ToolSpec {
    ToolSpec {
        name: SEARCH_TOOL.into(),
        description: Some(format!(
            "Searches the document collection '{collection}' and returns the passages that \
             best match the query, numbered, with their source."
        )),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for, in words."},
                "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOOL_TOP_K,
                          "description": "How many passages (default 3)."}
            },
            "required": ["query"],
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArguments {
    query: String,
    top_k: Option<u64>,
}

/// Runs a call of the search tool. Arguments that do not fit the tool's schema are an
/// [`Error::InvalidQuery`], whose message is meant to be shown to the model as the
/// observation so it can correct the call.
pub fn run_search(
    collection: &Collection,
    embedder: &Embedder,
    arguments: &Value,
) -> Result<(String, Vec<Hit>)> {
    let args: SearchArguments = serde_json::from_value(arguments.clone()).map_err(|e| {
        Error::InvalidQuery(format!(
            "{SEARCH_TOOL} takes {{\"query\": string, \"top_k\"?: integer}}: {e}"
        ))
    })?;
    if args.query.trim().is_empty() {
        return Err(Error::InvalidQuery(format!(
            "{SEARCH_TOOL}: the query is empty"
        )));
    }
    let top_k = args.top_k.unwrap_or(3).clamp(1, MAX_TOOL_TOP_K) as usize;
    let hits = collection.query(
        embedder,
        &args.query,
        &QueryOptions::new(top_k, Mode::Hybrid),
    )?;
    Ok((observation(&hits), hits))
}

/// The passages as the model reads them.
pub fn observation(hits: &[Hit]) -> String {
    if hits.is_empty() {
        return "No passage matches the query.".into();
    }
    let mut out = String::new();
    for (i, h) in hits.iter().enumerate() {
        let c = &h.chunk;
        out.push_str(&format!(
            "[{}] {} (chunk {}, characters {}..{})\n{}\n\n",
            i + 1,
            c.path,
            c.chunk_id,
            c.start_char,
            c.end_char,
            c.text.trim()
        ));
    }
    out.truncate(out.trim_end().len());
    out
}

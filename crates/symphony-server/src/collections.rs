//! Document collections over HTTP (`/v1/collections/...`): the same collections as
//! `symphony rag`, in the same directory, so a collection ingested from the command line is
//! queried from an application and the other way round.
//!
//! - `GET /v1/collections`, `POST /v1/collections` (create), `GET|DELETE /v1/collections/{name}`
//! - `POST /v1/collections/{name}/documents`: add or replace documents sent in the body
//! - `DELETE /v1/collections/{name}/documents?path=P`
//! - `POST /v1/collections/{name}/query`: ranked chunks
//! - `POST /v1/collections/{name}/ask`: an answer from a chat model with numbered citations
//!
//! A collection is opened per request on a blocking thread: opening takes the collection's
//! lock, so requests to one collection (and a `symphony rag ingest` running beside the
//! server) take turns, while different collections are served in parallel.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use symphony_engine::{GenerationParams, SamplingParams};
use symphony_models::embedding::Embedder;
use symphony_rag::answer::{answer_messages, citations, is_relevant, DONT_KNOW};
use symphony_rag::chunking::Chunking;
use symphony_rag::extract::Format;
use symphony_rag::rerank::LlmReranker;
use symphony_rag::{Collection, CollectionConfig, FileOutcome, Filter, Hit, Mode, QueryOptions};

use crate::auth::Principal;
use crate::error::{ApiError, JsonBody};
use crate::generation::{self, Job};
use crate::openai::from_value;
use crate::util::blocking;
use crate::SharedState;

/// Documents one request may add.
const MAX_DOCUMENTS: usize = 256;
/// Chunks one query may return, and candidates one rerank may score.
const MAX_TOP_K: usize = 100;
const MAX_RERANK_DEPTH: usize = 50;

fn root(state: &SharedState) -> PathBuf {
    state.config.collections.clone()
}

fn open(root: &std::path::Path, name: &str) -> Result<Collection, ApiError> {
    Collection::open(root, name).map_err(ApiError::from)
}

/// The collection's settings, read without loading its embedder.
async fn config_of(state: &SharedState, name: &str) -> Result<CollectionConfig, ApiError> {
    let (root, name) = (root(state), name.to_string());
    blocking(move || Ok(open(&root, &name)?.config.clone())).await
}

async fn embedder_for(
    state: &SharedState,
    config: &CollectionConfig,
) -> Result<Arc<Embedder>, ApiError> {
    Ok(state
        .registry
        .embedder(&config.embedder, None)
        .await?
        .embedder
        .clone())
}

pub async fn list(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let root = root(&state);
    let all = blocking(move || Collection::list(&root).map_err(ApiError::from)).await?;
    Ok(Json(json!({"object": "list", "data": all})))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRequest {
    name: String,
    #[serde(default = "default_chunking")]
    chunking: String,
    #[serde(default = "default_chunk_tokens")]
    chunk_tokens: usize,
    #[serde(default = "default_overlap")]
    overlap: usize,
    #[serde(default = "default_embedder")]
    embedder: String,
}

fn default_chunking() -> String {
    "recursive".into()
}
fn default_chunk_tokens() -> usize {
    200
}
fn default_overlap() -> usize {
    20
}
fn default_embedder() -> String {
    "all-minilm".into()
}

pub async fn create(
    State(state): State<SharedState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: CreateRequest = from_value(&body)?;
    let chunking = Chunking::new(&req.chunking, req.chunk_tokens, req.overlap)?;
    let loaded = state.registry.embedder(&req.embedder, None).await?;
    let limit = loaded.embedder.max_seq_length;
    if req.chunk_tokens + 2 > limit {
        return Err(ApiError::invalid_param(
            "chunk_tokens",
            format!(
                "chunks of {} tokens do not fit '{}', which reads at most {limit} (with [CLS] and [SEP])",
                req.chunk_tokens, req.embedder
            ),
        ));
    }
    let config = CollectionConfig::new(chunking, &req.embedder, &loaded.embedder);
    let root = root(&state);
    let summary = blocking(move || {
        Collection::create(&root, &req.name, config)
            .and_then(|c| c.summary())
            .map_err(ApiError::from)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

pub async fn show(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let root = root(&state);
    blocking(move || {
        let collection = open(&root, &name)?;
        let summary = collection.summary()?;
        let documents = collection.documents()?;
        let mut value = serde_json::to_value(summary).expect("summary serialises");
        value["documents_list"] = serde_json::to_value(documents).expect("records serialise");
        Ok(Json(value))
    })
    .await
}

pub async fn remove(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let root = root(&state);
    let gone = name.clone();
    blocking(move || Collection::remove(&root, &name).map_err(ApiError::from)).await?;
    Ok(Json(
        json!({"id": gone, "object": "collection", "deleted": true}),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Document {
    /// The name the document is known by (its chunks cite it); sending the same path again
    /// replaces the document when its content changed.
    path: String,
    /// The content as text...
    text: Option<String>,
    /// ...or as base64 bytes (PDF).
    content_base64: Option<String>,
    /// text, markdown, html or pdf; by default from the path's extension, else text.
    format: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddRequest {
    documents: Vec<Document>,
}

fn parse_format(name: &str) -> Result<Format, ApiError> {
    Ok(match name {
        "text" => Format::Text,
        "markdown" => Format::Markdown,
        "html" => Format::Html,
        "pdf" => Format::Pdf,
        other => {
            return Err(ApiError::invalid_param(
                "format",
                format!("unknown format '{other}' (text, markdown, html or pdf)"),
            ))
        }
    })
}

pub async fn add_documents(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let req: AddRequest = from_value(&body)?;
    if req.documents.is_empty() || req.documents.len() > MAX_DOCUMENTS {
        return Err(ApiError::invalid_param(
            "documents",
            format!("send between 1 and {MAX_DOCUMENTS} documents"),
        ));
    }
    // Everything is checked before anything is stored: a bad document refuses the request.
    let mut docs = Vec::with_capacity(req.documents.len());
    for d in req.documents {
        let format = match &d.format {
            Some(f) => parse_format(f)?,
            None => Format::of(std::path::Path::new(&d.path)).unwrap_or(Format::Text),
        };
        let bytes = match (d.text, d.content_base64) {
            (Some(t), None) => t.into_bytes(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| {
                    ApiError::invalid_param(
                        "content_base64",
                        format!("{}: not base64: {e}", d.path),
                    )
                })?,
            _ => {
                return Err(ApiError::invalid_param(
                    "documents",
                    format!("{}: give exactly one of text and content_base64", d.path),
                ))
            }
        };
        if d.path.trim().is_empty() {
            return Err(ApiError::invalid_param("path", "a document needs a path"));
        }
        docs.push((d.path, format, bytes));
    }
    let config = config_of(&state, &name).await?;
    let embedder = embedder_for(&state, &config).await?;
    let root = root(&state);
    blocking(move || {
        let mut collection = open(&root, &name)?;
        let mut results = Vec::with_capacity(docs.len());
        for (path, format, bytes) in docs {
            let outcome = collection.ingest_document(&path, format, &bytes, &embedder)?;
            let (status, chunks) = match outcome {
                FileOutcome::Added { chunks } => ("added", chunks),
                FileOutcome::Replaced { chunks } => ("replaced", chunks),
                FileOutcome::Unchanged => ("unchanged", 0),
            };
            results.push(json!({"path": path, "status": status, "chunks": chunks}));
        }
        let summary = collection.summary()?;
        Ok(Json(json!({"documents": results, "collection": summary})))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveDocument {
    path: String,
}

pub async fn remove_document(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(q): Query<RemoveDocument>,
) -> Result<Json<Value>, ApiError> {
    let root = root(&state);
    let path = q.path.clone();
    let removed = blocking(move || {
        open(&root, &name)?
            .remove_document_key(&q.path)
            .map_err(ApiError::from)
    })
    .await?;
    if !removed {
        return Err(ApiError::not_found(format!(
            "no document '{path}' in the collection"
        )));
    }
    Ok(Json(json!({"path": path, "deleted": true})))
}

/// Retrieval settings of `query` and `ask`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Retrieval {
    #[serde(default = "default_top_k")]
    top_k: usize,
    #[serde(default = "default_mode")]
    mode: String,
    mmr: Option<f32>,
    #[serde(default)]
    filter: FilterRequest,
    /// A chat model that reranks the candidates.
    rerank: Option<String>,
    #[serde(default = "default_rerank_depth")]
    rerank_depth: usize,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FilterRequest {
    path_prefix: Option<String>,
    format: Option<String>,
    heading: Option<String>,
}

fn default_top_k() -> usize {
    5
}
fn default_mode() -> String {
    "hybrid".into()
}
fn default_rerank_depth() -> usize {
    20
}

impl Retrieval {
    fn options(&self) -> Result<QueryOptions, ApiError> {
        if !(1..=MAX_TOP_K).contains(&self.top_k) {
            return Err(ApiError::invalid_param(
                "top_k",
                format!("top_k must be between 1 and {MAX_TOP_K}"),
            ));
        }
        if !(1..=MAX_RERANK_DEPTH).contains(&self.rerank_depth) {
            return Err(ApiError::invalid_param(
                "rerank_depth",
                format!("rerank_depth must be between 1 and {MAX_RERANK_DEPTH}"),
            ));
        }
        let mode: Mode = self
            .mode
            .parse()
            .map_err(|e: symphony_rag::Error| ApiError::invalid_param("mode", e.to_string()))?;
        if let Some(l) = self.mmr.filter(|l| !(0.0..=1.0).contains(l)) {
            return Err(ApiError::invalid_param(
                "mmr",
                format!("mmr must be between 0 and 1, not {l}"),
            ));
        }
        Ok(QueryOptions {
            top_k: self.top_k,
            mode,
            mmr: self.mmr,
            filter: Filter {
                path_prefix: self.filter.path_prefix.clone(),
                format: self.filter.format.clone(),
                heading: self.filter.heading.clone(),
            },
        })
    }
}

/// Retrieves (and reranks, when asked) on a blocking thread.
async fn retrieve(
    state: &SharedState,
    name: String,
    question: String,
    retrieval: &Retrieval,
) -> Result<(Vec<Hit>, Arc<Embedder>), ApiError> {
    let options = retrieval.options()?;
    if question.trim().is_empty() {
        return Err(ApiError::invalid_param("query", "the query is empty"));
    }
    let config = config_of(state, &name).await?;
    let embedder = embedder_for(state, &config).await?;
    let reranker = match &retrieval.rerank {
        Some(model) => Some(state.registry.get(model, None).await?),
        None => None,
    };
    let depth = retrieval.rerank_depth;
    let root = root(state);
    let for_hits = embedder.clone();
    let hits = blocking(move || {
        let collection = open(&root, &name)?;
        let mut reranker = reranker.as_ref().map(|m| LlmReranker::new(m.model()));
        symphony_rag::rerank::search(
            &collection,
            &for_hits,
            reranker.as_mut(),
            &question,
            &options,
            depth,
        )
        .map_err(ApiError::from)
    })
    .await?;
    Ok((hits, embedder))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct QueryRequest {
    query: String,
    #[serde(flatten)]
    retrieval: Retrieval,
}

pub async fn query(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let req: QueryRequest = from_value(&body)?;
    let started = std::time::Instant::now();
    let (hits, _) = retrieve(&state, name, req.query, &req.retrieval).await?;
    Ok(Json(json!({
        "object": "list",
        "data": hits,
        "took_ms": started.elapsed().as_secs_f64() * 1e3,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct AskRequest {
    question: String,
    /// The chat model that writes the answer.
    model: String,
    #[serde(default)]
    temperature: f32,
    #[serde(default = "default_answer_tokens")]
    max_tokens: usize,
    #[serde(default)]
    seed: u64,
    #[serde(flatten)]
    retrieval: Retrieval,
}

fn default_answer_tokens() -> usize {
    256
}

pub async fn ask(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let req: AskRequest = from_value(&body)?;
    if !(0.0..=2.0).contains(&req.temperature) {
        return Err(ApiError::invalid_param(
            "temperature",
            "temperature must be between 0 and 2",
        ));
    }
    // The model first: an unknown one is the client's error before any retrieval work.
    let model = state.registry.get(&req.model, None).await?;
    let question = req.question.clone();
    let (hits, embedder) = retrieve(&state, name, req.question, &req.retrieval).await?;
    let relevant = {
        let (embedder, question, hits) = (embedder.clone(), question.clone(), hits.clone());
        blocking(move || is_relevant(&embedder, &question, &hits).map_err(ApiError::from)).await?
    };
    if !relevant {
        return Ok(Json(json!({
            "answer": DONT_KNOW, "citations": [], "sources": [], "usage": null,
        })));
    }
    let messages = answer_messages(&question, &hits);
    let prompt = generation::chat_prompt(&model, messages, Vec::new())
        .await
        .map_err(|e| ApiError::bad_request(e.message))?;
    let room = model.model().context_length().saturating_sub(prompt.len());
    let job = Job {
        params: GenerationParams {
            max_tokens: req.max_tokens.min(room),
            sampling: SamplingParams {
                temperature: req.temperature,
                seed: req.seed,
                ..SamplingParams::default()
            },
            stop: Vec::new(),
            ignore_eos: false,
            constraint: None,
        },
        prompt,
        logprobs: None,
        prompt_logprobs: false,
        n: 1,
    };
    let rx = generation::start(&state, &principal, &model, job)?;
    let choice = generation::collect(&state, rx, 1).await?.remove(0);
    let answer = choice.text.trim().to_string();
    let cited = citations(&answer, &hits);
    let usage = choice.completion.as_ref().map(|c| {
        json!({
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
        })
    });
    Ok(Json(json!({
        "answer": answer,
        "citations": cited,
        "sources": hits,
        "model": model.name,
        "usage": usage,
    })))
}

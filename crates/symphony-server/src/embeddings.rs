//! Embeddings: OpenAI's `POST /v1/embeddings`, Ollama's `POST /api/embed` and its older
//! `POST /api/embeddings`.
//!
//! Inputs longer than the model's `max_seq_length` are cut there, as sentence-transformers
//! and Ollama (`truncate: true`, its default) do; Ollama's `truncate: false` makes them an
//! error instead.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use symphony_models::tokenizer::TokenId;

use crate::auth::Principal;
use crate::error::{ApiError, JsonBody, OllamaError};
use crate::ollama::{keep_alive, parse};
use crate::registry::LoadedEmbedder;
use crate::SharedState;

// Replies are typed structs rather than `json!` values: `json!` would widen every f32 to an
// f64 and print its noise digits, making replies half again as long.

#[derive(Serialize, utoipa::ToSchema)]
pub struct OpenAiReply {
    object: &'static str,
    data: Vec<OpenAiEmbedding>,
    model: String,
    usage: Usage,
}

#[derive(Serialize, utoipa::ToSchema)]
struct OpenAiEmbedding {
    object: &'static str,
    index: usize,
    embedding: Encoded,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Encoded {
    Float(Vec<f32>),
    /// Little-endian f32 bytes in base64, as OpenAI sends them (its Python client asks for
    /// this by default).
    Base64(String),
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EmbeddingUsage)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OllamaReply {
    model: String,
    embeddings: Vec<Vec<f32>>,
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LegacyReply {
    embedding: Vec<f32>,
}

/// Inputs one request may carry (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

/// OpenAI's `input`: a string, strings, or token ids (one list or several).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Input {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<TokenId>),
    TokenLists(Vec<Vec<TokenId>>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiRequest {
    model: String,
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)] // Accepted for compatibility; requests are logged by id, not user.
    user: Option<String>,
}

/// What a request's inputs become: the ids the encoder sees, and whether any was cut.
struct Tokenized {
    inputs: Vec<Vec<TokenId>>,
    truncated: bool,
}

fn tokenize_texts(loaded: &LoadedEmbedder, texts: &[String]) -> Tokenized {
    let embedder = &loaded.embedder;
    let mut truncated = false;
    let inputs = texts
        .iter()
        .map(|t| {
            // One more than fits tells a cut input from one that fits exactly; cutting that
            // back (keeping [SEP] last) gives what `Embedder::tokenize` would, in one pass.
            let limit = embedder.max_seq_length;
            let mut ids = embedder.tokenizer.encode(t, limit + 1);
            if ids.len() > limit {
                truncated = true;
                ids.truncate(limit - 1);
                ids.push(embedder.tokenizer.sep);
            }
            ids
        })
        .collect();
    Tokenized { inputs, truncated }
}

/// Token ids a client sent: the text's pieces, wrapped in `[CLS]` ... `[SEP]` and cut to fit.
fn wrap_tokens(loaded: &LoadedEmbedder, lists: Vec<Vec<TokenId>>) -> Result<Tokenized, ApiError> {
    let tokenizer = &loaded.embedder.tokenizer;
    let limit = loaded.embedder.max_seq_length;
    let n_vocab = tokenizer.n_vocab() as TokenId;
    let mut truncated = false;
    let mut inputs = Vec::with_capacity(lists.len());
    for list in lists {
        if let Some(bad) = list.iter().find(|&&id| id >= n_vocab) {
            return Err(ApiError::invalid_param(
                "input",
                format!("token id {bad} is outside the model's vocabulary of {n_vocab}"),
            ));
        }
        truncated |= list.len() + 2 > limit;
        let mut ids = Vec::with_capacity(list.len().min(limit) + 2);
        ids.push(tokenizer.cls);
        ids.extend(list.into_iter().take(limit - 2));
        ids.push(tokenizer.sep);
        inputs.push(ids);
    }
    Ok(Tokenized { inputs, truncated })
}

/// Runs the encoder off the async runtime and records the tokens against the caller.
async fn embed(
    state: &SharedState,
    principal: &Principal,
    loaded: Arc<LoadedEmbedder>,
    inputs: Vec<Vec<TokenId>>,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let tokens: usize = inputs.iter().map(Vec::len).sum();
    let vectors = tokio::task::spawn_blocking(move || loaded.embedder.embed_tokens(&inputs))
        .await
        .map_err(|e| ApiError::internal(format!("embedding stopped: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    state.metrics.count_prompt_tokens(tokens as u64);
    state.limiter.record_tokens(principal, tokens as u64).await;
    Ok((vectors, tokens))
}

fn check_count(n: usize) -> Result<(), ApiError> {
    match n {
        0 => Err(ApiError::invalid_param("input", "input is empty")),
        n if n > MAX_INPUTS => Err(ApiError::invalid_param(
            "input",
            format!("{n} inputs in one request; at most {MAX_INPUTS}"),
        )),
        _ => Ok(()),
    }
}

pub async fn openai(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<OpenAiReply>, ApiError> {
    let req: OpenAiRequest = crate::openai::from_value(&body)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("encoding_format must be float or base64, not '{other}'"),
            ))
        }
    };
    let loaded = state.registry.embedder(&req.model, None).await?;
    let dimension = loaded.embedder.dimension();
    if let Some(d) = req.dimensions.filter(|&d| d != dimension) {
        return Err(ApiError::invalid_param(
            "dimensions",
            format!(
                "'{}' gives {dimension}-dimensional vectors; it cannot give {d}",
                req.model
            ),
        ));
    }
    let tokenized = match req.input {
        Input::Text(t) => tokenize_texts(&loaded, &[t]),
        Input::Texts(ts) => {
            check_count(ts.len())?;
            tokenize_texts(&loaded, &ts)
        }
        Input::Tokens(ids) => wrap_tokens(&loaded, vec![ids])?,
        Input::TokenLists(lists) => {
            check_count(lists.len())?;
            wrap_tokens(&loaded, lists)?
        }
    };
    let model_name = loaded.name.clone();
    let (vectors, tokens) = embed(&state, &principal, loaded, tokenized.inputs).await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| OpenAiEmbedding {
            object: "embedding",
            index,
            embedding: match base64 {
                true => Encoded::Base64(
                    base64::engine::general_purpose::STANDARD
                        .encode(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()),
                ),
                false => Encoded::Float(v),
            },
        })
        .collect();
    Ok(Json(OpenAiReply {
        object: "list",
        data,
        model: model_name,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum OllamaInput {
    Text(String),
    Texts(Vec<String>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct EmbedRequest {
    model: String,
    input: OllamaInput,
    #[serde(default = "yes")]
    truncate: bool,
    keep_alive: Option<Value>,
    /// Model options: none of them changes an embedding.
    #[allow(dead_code)]
    options: Option<Value>,
}

fn yes() -> bool {
    true
}

pub async fn ollama_embed(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<OllamaReply>, OllamaError> {
    let started = Instant::now();
    let req: EmbedRequest = parse(&body)?;
    let keep = keep_alive(&req.keep_alive)?;
    let texts = match req.input {
        OllamaInput::Text(t) => vec![t],
        OllamaInput::Texts(ts) => ts,
    };
    check_count(texts.len())?;
    let loaded = state.registry.embedder(&req.model, keep).await?;
    let load_duration = started.elapsed();
    let tokenized = tokenize_texts(&loaded, &texts);
    if tokenized.truncated && !req.truncate {
        return Err(ApiError::bad_request(format!(
            "an input is longer than the model's context of {} tokens (truncate is false)",
            loaded.embedder.max_seq_length
        ))
        .ollama());
    }
    let model_name = loaded.name.clone();
    let (vectors, tokens) = embed(&state, &principal, loaded, tokenized.inputs).await?;
    Ok(Json(OllamaReply {
        model: model_name,
        embeddings: vectors,
        total_duration: started.elapsed().as_nanos() as u64,
        load_duration: load_duration.as_nanos() as u64,
        prompt_eval_count: tokens,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct LegacyRequest {
    model: String,
    prompt: String,
    keep_alive: Option<Value>,
    #[allow(dead_code)]
    options: Option<Value>,
}

/// The older single-text endpoint: `{"embedding": [...]}`.
pub async fn ollama_embeddings(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<LegacyReply>, OllamaError> {
    let req: LegacyRequest = parse(&body)?;
    let keep = keep_alive(&req.keep_alive)?;
    let loaded = state.registry.embedder(&req.model, keep).await?;
    let tokenized = tokenize_texts(&loaded, &[req.prompt]);
    let (mut vectors, _) = embed(&state, &principal, loaded, tokenized.inputs).await?;
    Ok(Json(LegacyReply {
        embedding: vectors.remove(0),
    }))
}

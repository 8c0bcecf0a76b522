//! `POST /api/generate`: a prompt (through the chat template unless `raw`), optionally
//! continuing an earlier exchange's `context`, completed as Ollama does.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use symphony_engine::raw_prompt;
use symphony_types::ChatMessage;

use super::request::{keep_alive, parse, Options};
use super::respond::{load_only, one_prompt, respond, Shape};
use crate::auth::Principal;
use crate::error::{ApiError, OllamaError};
use crate::generation;
use crate::structured::OutputRules;
use crate::SharedState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ollama::GenerateRequest)]
pub(crate) struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: String,
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    stream: Option<bool>,
    format: Option<Value>,
    #[serde(default)]
    options: Options,
    keep_alive: Option<Value>,
    /// Tokens of an earlier exchange (`context` from its reply) to continue from.
    context: Option<Vec<u32>>,
    #[serde(default)]
    images: Vec<Value>,
}

pub async fn generate(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, OllamaError> {
    let req: GenerateRequest = parse(&body)?;
    let rules = OutputRules::ollama(req.format.as_ref(), None)?;
    if !req.images.is_empty() {
        return Err(ApiError::bad_request("this model does not take images").ollama());
    }
    let keep = keep_alive(&req.keep_alive)?;
    let model = state.registry.get(&req.model, keep).await?;
    if req.prompt.is_empty() && req.system.is_none() {
        return Ok(load_only(&state, model, keep, Shape::Generate));
    }
    let mut prompt = req.context.clone().unwrap_or_default();
    let new = if req.raw || model.model().chat_template.is_none() {
        raw_prompt(model.model(), &req.prompt)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &req.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        messages.push(ChatMessage::user(req.prompt.clone()));
        generation::chat_prompt(&model, messages, Vec::new()).await?
    };
    // A continued exchange does not repeat the BOS token the tokenizer adds in front of
    // every prompt. Only that one: a model that adds none may have a BOS id that is a
    // template token (SmolLM2's is `<|im_start|>`), which the new turn needs.
    let tokenizer = &model.model().tokenizer;
    let skip = usize::from(
        !prompt.is_empty() && tokenizer.add_bos && new.first() == tokenizer.bos.as_ref(),
    );
    prompt.extend_from_slice(&new[skip..]);
    let mut params = req.options.params(&model, prompt.len())?;
    params.constraint = rules.constraint(&model).await?;
    let stream = req.stream.unwrap_or(true);
    let request = one_prompt(model, prompt, params, stream, false);
    let rx = generation::launch(&state, &principal, &request)?;
    respond(state, request, rx, Shape::Generate).await
}

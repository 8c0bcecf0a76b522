//! The tokenizer over HTTP, in vLLM's shapes, so that clients without a tokenizer of their
//! own (lm-evaluation-harness's `tokenizer_backend=remote`, which it picks by itself when
//! these answer) count and cut prompts with the model's own:
//!
//! - `POST /tokenize` `{"model"?, "prompt", "add_special_tokens"?}` →
//!   `{"count", "max_model_len", "tokens", "token_strs"?}`
//! - `POST /detokenize` `{"model"?, "tokens"}` → `{"prompt"}`
//! - `GET /tokenizer_info[?model=NAME]` → the special tokens and the context length
//!
//! vLLM serves one model, so its clients name none: without `model`, the one loaded model
//! is meant (an error names the choice when several are).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use symphony_models::tokenizer::{EncodeOptions, TokenId};

use crate::error::{ApiError, JsonBody};
use crate::generation::{token_text, Loaded};
use crate::openai::from_value;
use crate::SharedState;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TokenizeReply {
    count: usize,
    max_model_len: usize,
    tokens: Vec<TokenId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_strs: Option<Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DetokenizeReply {
    prompt: String,
}

/// The special tokens as Hugging Face's tokenizer config names them.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TokenizerInfo {
    model: String,
    tokenizer_class: &'static str,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    add_bos_token: bool,
    add_eos_token: bool,
    vocab_size: usize,
    model_max_length: usize,
}

/// Most tokens a `/detokenize` request may name.
const MAX_DETOKENIZE: usize = 1 << 20;

/// The model a request names, or the one loaded when it names none.
async fn model_for(state: &SharedState, name: Option<&str>) -> Result<Loaded, ApiError> {
    if let Some(name) = name {
        return state.registry.get(name, None).await;
    }
    let loaded = state.registry.loaded();
    match loaded.as_slice() {
        [one] => state.registry.get(&one.name, None).await,
        [] => Err(ApiError::invalid_param(
            "model",
            "no model is loaded: name one with `model`",
        )),
        several => Err(ApiError::invalid_param(
            "model",
            format!(
                "{} models are loaded ({}): name one with `model`",
                several.len(),
                several
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: String,
    /// BOS (and EOS) where the model's tokenizer adds them; vLLM's default is true.
    #[serde(default = "yes")]
    add_special_tokens: bool,
    #[serde(default)]
    return_token_strs: bool,
}

fn yes() -> bool {
    true
}

pub async fn tokenize(
    State(state): State<SharedState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: TokenizeRequest = from_value(&body)?;
    let model = model_for(&state, req.model.as_deref()).await?;
    let tokenizer = &model.model().tokenizer;
    // Special-token text is one token, as Hugging Face tokenizers read it: clients find the
    // EOS id by tokenizing `eos_token`.
    let tokens = tokenizer.encode(
        &req.prompt,
        EncodeOptions {
            add_special: req.add_special_tokens,
            parse_special: true,
        },
    );
    let token_strs = req
        .return_token_strs
        .then(|| tokens.iter().map(|&t| token_text(&model, t)).collect());
    Ok(Json(TokenizeReply {
        count: tokens.len(),
        max_model_len: model.model().context_length(),
        tokens,
        token_strs,
    })
    .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    tokens: Vec<i64>,
}

pub async fn detokenize(
    State(state): State<SharedState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: DetokenizeRequest = from_value(&body)?;
    if req.tokens.len() > MAX_DETOKENIZE {
        return Err(ApiError::invalid_param(
            "tokens",
            format!("more than {MAX_DETOKENIZE} tokens"),
        ));
    }
    let model = model_for(&state, req.model.as_deref()).await?;
    let n_vocab = model.model().tokenizer.n_vocab();
    let ids = req
        .tokens
        .iter()
        .map(|&t| match TokenId::try_from(t) {
            Ok(id) if (id as usize) < n_vocab => Ok(id),
            _ => Err(ApiError::invalid_param(
                "tokens",
                format!("token {t} is not in the vocabulary (0..{n_vocab})"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let prompt = model.model().tokenizer.decode(&ids, true);
    Ok(Json(DetokenizeReply { prompt }).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InfoQuery {
    model: Option<String>,
}

pub async fn tokenizer_info(
    State(state): State<SharedState>,
    Query(query): Query<InfoQuery>,
) -> Result<Response, ApiError> {
    let model = model_for(&state, query.model.as_deref()).await?;
    let tokenizer = &model.model().tokenizer;
    let text = |id: Option<TokenId>| id.map(|t| token_text(&model, t));
    Ok(Json(TokenizerInfo {
        model: model.name.clone(),
        tokenizer_class: "PreTrainedTokenizerFast",
        bos_token: text(tokenizer.bos),
        eos_token: text(tokenizer.eos),
        pad_token: text(tokenizer.eos),
        add_bos_token: tokenizer.add_bos,
        add_eos_token: tokenizer.add_eos,
        vocab_size: tokenizer.n_vocab(),
        model_max_length: model.model().context_length(),
    })
    .into_response())
}

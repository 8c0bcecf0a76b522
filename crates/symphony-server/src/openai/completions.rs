//! `POST /v1/completions`: legacy text completions of one or several prompts, answered whole
//! or streamed (see [`super::completion_stream`]), with the prompt echoed and its
//! log-probabilities when asked.

use axum::extract::{Extension, State};
use axum::response::Response;
use serde_json::Value;
use symphony_engine::TokenLogprob;

use super::completion_request::{CompletionRequest, ValidCompletion};
use super::completion_stream::completion_stream;
use super::logprobs::completion_logprobs;
use super::reply::{cached, fingerprint, finish_reason, reply, sse};
use super::request::from_value;
use super::types::{to_json, TextChoice, TextCompletion, Usage};
use crate::auth::Principal;
use crate::error::{ApiError, JsonBody};
use crate::generation::{self, Choice};
use crate::util::{random_seed, unix_now};
use crate::SharedState;

pub async fn completions(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = from_value(&body)?;
    let (hit, key) = cached(&state, "/v1/completions", &req.model, &body).await?;
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let valid = req.validate(&state).await?;
    let rx = generation::launch(&state, &principal, &valid.request)?;
    let id = format!("cmpl-{:016x}", random_seed());
    let created = unix_now();
    if valid.request.stream {
        return Ok(sse(completion_stream(valid, rx, id, created)));
    }
    let choices = generation::collect(&state, rx, valid.request.sequences()).await?;
    let prompt_tokens = valid.request.prompt_tokens();
    let completion_tokens: usize = choices
        .iter()
        .filter_map(|c| c.completion.as_ref())
        .map(|c| c.completion_tokens)
        .sum();
    let body = TextCompletion {
        id,
        object: "text_completion",
        created,
        model: valid.request.model.name.clone(),
        system_fingerprint: fingerprint(),
        choices: choices
            .iter()
            .enumerate()
            .map(|(i, c)| choice(&valid, i, c))
            .collect(),
        usage: Usage::plain(prompt_tokens, completion_tokens),
    };
    Ok(reply(&state, key, to_json(&body)).await)
}

/// One choice of `/v1/completions`, with the prompt in front when echoing.
fn choice(valid: &ValidCompletion, index: usize, c: &Choice) -> TextChoice {
    let request = &valid.request;
    let model = &request.model;
    let prompt = &request.prompts[index / request.n].tokens;
    let tokenizer = &model.model().tokenizer;
    let prompt_text = if valid.echo {
        tokenizer.decode(prompt, false)
    } else {
        String::new()
    };
    let logprobs = request.logprobs.map(|_| {
        let mut entries: Vec<(u32, Option<&TokenLogprob>)> = Vec::new();
        if valid.echo {
            entries.extend(
                prompt
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (t, c.prompt_logprobs.get(i).and_then(Option::as_ref))),
            );
        }
        entries.extend(c.logprobs.iter().map(|lp| (lp.token, Some(lp))));
        completion_logprobs(model, &entries, 0)
    });
    TextChoice {
        index,
        text: format!("{prompt_text}{}", c.text),
        logprobs,
        finish_reason: Some(finish_reason(c.completion.as_ref())),
    }
}

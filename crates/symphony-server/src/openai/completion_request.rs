//! `/v1/completions` requests: the body, its checks, and the [`ValidRequest`] it becomes.

use serde::Deserialize;
use serde_json::Value;
use symphony_engine::raw_prompt;

use super::request::{Sampling, StreamOptions, MAX_PROMPTS};
use crate::error::ApiError;
use crate::generation::{ValidPrompt, ValidRequest};
use crate::structured::{Guided, OutputRules};
use crate::SharedState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PromptSpec {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CompletionRequest {
    pub(super) model: String,
    prompt: PromptSpec,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<usize>,
    #[serde(default)]
    echo: bool,
    logprobs: Option<usize>,
    suffix: Option<String>,
    best_of: Option<usize>,
    response_format: Option<Value>,
    #[serde(flatten)]
    guided: Guided,
    #[serde(flatten)]
    sampling: Sampling,
}

/// A validated completion request and what only this API asks of the reply.
pub(super) struct ValidCompletion {
    pub request: ValidRequest,
    /// Each choice's text starts with its prompt.
    pub echo: bool,
}

impl CompletionRequest {
    /// Checks the request, loads its model, tokenizes its prompts and compiles its output
    /// constraint, in that order (a client sees the first fault).
    pub(super) async fn validate(self, state: &SharedState) -> Result<ValidCompletion, ApiError> {
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::invalid_param("suffix", "suffix is not supported"));
        }
        if self.best_of.is_some_and(|b| b > 1) {
            return Err(ApiError::invalid_param(
                "best_of",
                "best_of is not supported",
            ));
        }
        if self.logprobs.is_some_and(|n| n > 5) {
            return Err(ApiError::invalid_param(
                "logprobs",
                "logprobs must be at most 5",
            ));
        }
        let prompt_count = match &self.prompt {
            PromptSpec::Text(_) | PromptSpec::Tokens(_) => 1,
            PromptSpec::Texts(ts) => ts.len(),
            PromptSpec::TokenLists(ts) => ts.len(),
        };
        if prompt_count > MAX_PROMPTS {
            return Err(ApiError::invalid_param(
                "prompt",
                format!("at most {MAX_PROMPTS} prompts per request, got {prompt_count}"),
            ));
        }
        let model = state.registry.get(&self.model, None).await?;
        let prompts: Vec<Vec<u32>> = match self.prompt {
            PromptSpec::Text(t) => vec![raw_prompt(model.model(), &t)],
            PromptSpec::Texts(ts) => ts.iter().map(|t| raw_prompt(model.model(), t)).collect(),
            PromptSpec::Tokens(t) => vec![t],
            PromptSpec::TokenLists(ts) => ts,
        };
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
        }
        // OpenAI's default for this endpoint.
        let requested = self.max_tokens.unwrap_or(16);
        let (mut params, n) = self.sampling.params(requested)?;
        let rules = OutputRules::openai(
            self.response_format.as_ref(),
            &self.guided,
            None,
            None,
            None,
        )?;
        params.constraint = rules.constraint(&model).await?;
        let context = model.model().context_length();
        let prompts = prompts
            .into_iter()
            .map(|tokens| ValidPrompt {
                max_tokens: requested.min(context.saturating_sub(tokens.len())),
                tokens,
            })
            .collect();
        Ok(ValidCompletion {
            request: ValidRequest {
                model,
                prompts,
                params,
                n,
                logprobs: self.logprobs,
                prompt_logprobs: self.echo && self.logprobs.is_some(),
                stream: self.stream,
                include_usage: self.stream_options.is_some_and(|o| o.include_usage),
                parse_calls: false,
            },
            echo: self.echo,
        })
    }
}

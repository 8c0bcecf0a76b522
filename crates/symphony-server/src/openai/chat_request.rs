//! `/v1/chat/completions` requests: the body, its checks, and the [`ValidRequest`] it becomes
//! (shared with the WebSocket, whose messages are the same bodies).

use serde::Deserialize;
use serde_json::Value;
use symphony_engine::Event;

use super::request::{name_tool_turns, InMessage, Sampling, StreamOptions, MAX_TOP_LOGPROBS};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::generation::{self, Loaded, ValidPrompt, ValidRequest};
use crate::structured::{Guided, OutputRules};
use crate::util::{random_seed, unix_now};
use crate::SharedState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    pub(super) model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    pub(super) stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<usize>,
    response_format: Option<Value>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    guided: Guided,
    #[serde(flatten)]
    sampling: Sampling,
}

/// Generation limit: the request's, else what the context has room for.
fn max_tokens(requested: Option<usize>, model: &Loaded, prompt_len: usize) -> usize {
    requested.unwrap_or_else(|| model.model().context_length().saturating_sub(prompt_len))
}

/// A chat request under way: what it asked for, and its choices' events.
pub struct ChatStart {
    pub(super) request: ValidRequest,
    pub(super) rx: generation::UnboundedReceiver<(usize, Event)>,
    pub(super) id: String,
    pub(super) created: u64,
}

impl ChatRequest {
    /// Checks the request, loads its model, renders and tokenizes the conversation and
    /// compiles its output constraint, in that order (a client sees the first fault).
    pub(super) async fn validate(self, state: &SharedState) -> Result<ValidRequest, ApiError> {
        let rules = OutputRules::openai(
            self.response_format.as_ref(),
            &self.guided,
            self.tools.as_ref(),
            self.tool_choice.as_ref(),
            self.parallel_tool_calls,
        )?;
        if self.messages.is_empty() {
            return Err(ApiError::invalid_param(
                "messages",
                "messages must not be empty",
            ));
        }
        let top_logprobs = match (self.logprobs, self.top_logprobs) {
            (_, Some(n)) if n > MAX_TOP_LOGPROBS => {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    format!("top_logprobs must be at most {MAX_TOP_LOGPROBS}"),
                ))
            }
            (false, Some(_)) => {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    "top_logprobs requires logprobs: true",
                ))
            }
            (true, n) => Some(n.unwrap_or(0)),
            (false, None) => None,
        };
        let mut messages = self
            .messages
            .into_iter()
            .map(InMessage::into_chat)
            .collect::<Result<Vec<_>, _>>()?;
        name_tool_turns(&mut messages);
        let model = state.registry.get(&self.model, None).await?;
        let prompt = generation::chat_prompt(&model, messages, rules.tools.clone()).await?;
        let limit = max_tokens(
            self.max_completion_tokens.or(self.max_tokens),
            &model,
            prompt.len(),
        );
        let (mut params, n) = self.sampling.params(limit)?;
        params.constraint = rules.constraint(&model).await?;
        Ok(ValidRequest {
            model,
            prompts: vec![ValidPrompt {
                tokens: prompt,
                max_tokens: limit,
            }],
            params,
            n,
            logprobs: top_logprobs,
            prompt_logprobs: false,
            stream: self.stream,
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            parse_calls: rules.parse_calls(),
        })
    }
}

/// Validates a chat request, loads its model and submits it.
pub async fn start_chat(
    state: &SharedState,
    principal: &Principal,
    req: ChatRequest,
) -> Result<ChatStart, ApiError> {
    let request = req.validate(state).await?;
    let rx = generation::launch(state, principal, &request)?;
    Ok(ChatStart {
        request,
        rx,
        id: format!("chatcmpl-{:016x}", random_seed()),
        created: unix_now(),
    })
}

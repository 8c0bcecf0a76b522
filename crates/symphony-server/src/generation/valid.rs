//! The validated generation request every front end builds: the OpenAI and Ollama handlers
//! and the WebSocket each read their own body, check it once, and hand over a
//! [`ValidRequest`]; [`super::launch`] submits it and the handler shapes the events into its
//! API's replies. Nothing past this point re-reads a request body.

use symphony_engine::GenerationParams;
use symphony_models::TokenId;

use crate::registry::Loaded;

/// One prompt of a request, with the most tokens each of its sequences may generate (the
/// APIs differ on whether a requested limit is cut to the context's room, so each decides).
#[derive(Debug, Clone)]
pub struct ValidPrompt {
    pub tokens: Vec<TokenId>,
    pub max_tokens: usize,
}

/// A request checked against its API's rules and its model: prompts tokenized, sampling
/// settings, stop sequences and limits in range, the structured-output constraint compiled.
pub struct ValidRequest {
    pub model: Loaded,
    /// At least one, none empty.
    pub prompts: Vec<ValidPrompt>,
    /// What every sequence shares (sampling, stop, constraint); `max_tokens` is each
    /// prompt's own.
    pub params: GenerationParams,
    /// Sequences per prompt: choices `p * n .. (p + 1) * n` belong to prompt `p`.
    pub n: usize,
    /// Alternatives per generated token's log-probability, when asked for.
    pub logprobs: Option<usize>,
    /// Log-probabilities of the prompt's own tokens too.
    pub prompt_logprobs: bool,
    /// The reply streams (SSE, NDJSON or WebSocket messages) rather than comes whole.
    pub stream: bool,
    /// A stream closes with a usage chunk (OpenAI's `stream_options.include_usage`).
    pub include_usage: bool,
    /// Tool calls are read out of the replies.
    pub parse_calls: bool,
}

impl ValidRequest {
    /// Every sequence the request runs (prompts × n).
    pub fn sequences(&self) -> usize {
        self.prompts.len().saturating_mul(self.n)
    }

    /// Tokens in all the prompts.
    pub fn prompt_tokens(&self) -> usize {
        self.prompts.iter().map(|p| p.tokens.len()).sum()
    }
}

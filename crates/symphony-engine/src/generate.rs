//! Generation: a [`Session`] owns one sequence's KV cache and runs prompts through it,
//! streaming text as it is produced.
//!
//! A session keeps the tokens it has processed, so a follow-up prompt that extends them (the
//! next turn of a chat) only pays for its new tokens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use symphony_models::tokenizer::{EncodeOptions, Utf8Stream};
use symphony_models::{Cache, Logits, Model, TokenId};
use symphony_types::{ChatMessage, Role, ToolSpec};

use crate::constraint::Constraint;
use crate::sampling::{Sampler, SamplingParams};
use crate::{Error, Result};

/// Everything that shapes one generation.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Text that ends the reply; it is not part of the output.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens until `max_tokens` (benchmarks).
    pub ignore_eos: bool,
    /// Only tokens this grammar allows are sampled (structured output, tool calls).
    pub constraint: Option<Constraint>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            constraint: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// A stop sequence appeared.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The context window is full.
    ContextFull,
    /// The caller cancelled.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's `finish_reason` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::EndOfGeneration | FinishReason::Stop | FinishReason::Cancelled => "stop",
            FinishReason::Length | FinishReason::ContextFull => "length",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<TokenId>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens that had to be computed (the rest came from the session's cache).
    pub prompt_tokens_computed: usize,
    pub prompt_time: Duration,
    pub generation_time: Duration,
}

impl Generation {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        self.prompt_tokens_computed as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }

    pub fn tokens_per_second(&self) -> f64 {
        self.tokens.len() as f64 / self.generation_time.as_secs_f64().max(1e-9)
    }
}

/// Renders a conversation with the model's chat template and tokenizes it, ending where the
/// assistant's reply starts.
pub fn chat_prompt(model: &Model, messages: &[ChatMessage]) -> Result<Vec<TokenId>> {
    chat_prompt_with_tools(model, messages, &[])
}

/// [`chat_prompt`] for a conversation where the model may call `tools`. A template that
/// renders tools itself gets them as Hugging Face passes them; for one that does not, the
/// tools are described in the system message and calls and results are written as text in
/// the same `<tool_call>` format (see [`crate::tools`]).
pub fn chat_prompt_with_tools(
    model: &Model,
    messages: &[ChatMessage],
    tools: &[ToolSpec],
) -> Result<Vec<TokenId>> {
    let template = model
        .chat_template
        .as_ref()
        .ok_or(symphony_models::Error::NoChatTemplate)?;
    let has_tool_turns = messages
        .iter()
        .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty());
    let text = if template.supports_tools() || (tools.is_empty() && !has_tool_turns) {
        template.render_with_tools(messages, tools, true)?
    } else {
        template.render(&crate::tools::tools_as_text(messages, tools), true)?
    };
    let mut tokens = model.tokenizer.encode(&text, EncodeOptions::TEMPLATE);
    // A template that writes the BOS itself plus a tokenizer that adds one gives two: keep one.
    if let (Some(bos), [a, b, ..]) = (model.tokenizer.bos, tokens.as_slice()) {
        if *a == bos && *b == bos {
            tokens.remove(0);
        }
    }
    Ok(tokens)
}

/// Tokenizes text to be continued as is (raw mode).
pub fn raw_prompt(model: &Model, text: &str) -> Vec<TokenId> {
    model.tokenizer.encode(text, EncodeOptions::PLAIN)
}

pub struct Session<'m> {
    model: &'m Model,
    cache: Cache,
    /// Tokens whose keys and values are in `cache`.
    tokens: Vec<TokenId>,
}

impl<'m> Session<'m> {
    pub fn new(model: &'m Model) -> Self {
        Self {
            model,
            cache: model.new_cache(),
            tokens: Vec::new(),
        }
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Forgets everything (a new conversation).
    pub fn reset(&mut self) {
        self.cache.truncate(0);
        self.tokens.clear();
    }

    /// How many of `prompt`'s tokens are cached already; at least the last one is always
    /// recomputed, for its logits.
    fn reusable_prefix(&self, prompt: &[TokenId]) -> usize {
        self.tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len().saturating_sub(1))
    }

    /// Runs the part of `prompt` not cached yet and returns the logits after its last token.
    fn prefill(&mut self, prompt: &[TokenId]) -> Result<Vec<f32>> {
        let common = self.reusable_prefix(prompt);
        self.cache.truncate(common);
        self.tokens.truncate(common);
        let logits = self
            .model
            .forward(&prompt[common..], &mut self.cache, Logits::Last);
        let logits = match logits {
            Ok(l) => l,
            Err(e) => {
                // A failed forward leaves the cache in an unknown state: start clean next time.
                self.reset();
                return Err(e.into());
            }
        };
        self.tokens.extend_from_slice(&prompt[common..]);
        Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// The logits of the token that would follow `prompt`, without generating. Prompts that
    /// share a prefix with the previous one (the same instructions, another passage) reuse its
    /// cached keys and values.
    pub fn next_token_logits(&mut self, prompt: &[TokenId]) -> Result<Vec<f32>> {
        if prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        let limit = self.model.context_length();
        if prompt.len() > limit {
            return Err(symphony_models::Error::ContextLength {
                requested: prompt.len(),
                limit,
            }
            .into());
        }
        self.prefill(prompt)
    }

    /// Runs `prompt` and generates a reply, calling `on_text` with each new piece of text.
    /// `cancel`, when set, stops generation before the next token.
    pub fn generate(
        &mut self,
        prompt: &[TokenId],
        params: &GenerationParams,
        cancel: Option<&AtomicBool>,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        params.sampling.validate().map_err(Error::InvalidRequest)?;
        if prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        let limit = self.model.context_length();
        if prompt.len() >= limit {
            return Err(symphony_models::Error::ContextLength {
                requested: prompt.len() + 1,
                limit,
            }
            .into());
        }
        let tokenizer = &self.model.tokenizer;
        let common = self.reusable_prefix(prompt);
        let start = Instant::now();
        let mut logits = self.prefill(prompt)?;
        let prompt_time = start.elapsed();

        let start = Instant::now();
        let mut decoder = Decoder::new(params, None);
        let finish_reason = loop {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                on_text(&decoder.finish(FinishReason::Cancelled));
                break FinishReason::Cancelled;
            }
            let step = decoder.step(tokenizer, &mut logits, &self.tokens);
            on_text(&step.text);
            if let Some(reason) = step.finish {
                break reason;
            }
            if self.tokens.len() + 1 >= limit {
                on_text(&decoder.finish(FinishReason::ContextFull));
                break FinishReason::ContextFull;
            }
            let next = step.token.expect("an unfinished step has a token");
            let out = self.model.forward(&[next], &mut self.cache, Logits::Last);
            let out = match out {
                Ok(l) => l,
                Err(e) => {
                    self.reset();
                    return Err(e.into());
                }
            };
            self.tokens.push(next);
            logits = out.squeeze(0)?.to_vec1::<f32>()?;
        };
        Ok(Generation {
            text: decoder.text,
            tokens: decoder.generated,
            finish_reason,
            prompt_tokens: prompt.len(),
            prompt_tokens_computed: prompt.len() - common,
            prompt_time,
            generation_time: start.elapsed(),
        })
    }
}

/// A token's log-probability, with the most likely alternatives when they were asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: TokenId,
    pub logprob: f32,
    /// The `top_logprobs` most likely tokens at this position, most likely first.
    pub top: Vec<(TokenId, f32)>,
}

/// Log-softmax of `logits` at `token`, with the `top` most likely tokens.
pub fn token_logprob(logits: &[f32], token: TokenId, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_z = max as f64
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln();
    let lp = |l: f32| (l as f64 - log_z) as f32;
    let mut best: Vec<(TokenId, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top || l > best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, b)| b >= l);
                best.insert(at, (i as TokenId, l));
                best.truncate(top);
            }
        }
    }
    TokenLogprob {
        token,
        logprob: lp(logits[token as usize]),
        top: best.into_iter().map(|(id, l)| (id, lp(l))).collect(),
    }
}

/// What one decoding step produced.
#[derive(Debug, Clone)]
pub struct Step {
    /// The sampled token; `None` when the step ended the sequence without one (an
    /// end-of-generation token, or `max_tokens` already reached).
    pub token: Option<TokenId>,
    /// Text now safe to show (stop sequences are held back until they cannot match).
    pub text: String,
    pub logprob: Option<TokenLogprob>,
    pub finish: Option<FinishReason>,
}

/// One sequence's side of generation, independent of how its logits are computed: sampling,
/// end-of-generation and `max_tokens`, stop sequences and UTF-8 assembly. The single-sequence
/// [`Session`] and the batching scheduler both drive one.
#[derive(Debug)]
pub struct Decoder {
    sampler: Sampler,
    stops: StopMatcher,
    utf8: Utf8Stream,
    max_tokens: usize,
    ignore_eos: bool,
    constraint: Option<Constraint>,
    /// `Some(n)`: report each token's log-probability with the `n` most likely alternatives.
    logprobs: Option<usize>,
    pub text: String,
    pub generated: Vec<TokenId>,
    /// The end-of-generation token that ended the sequence, if one did.
    pub end_token: Option<TokenId>,
}

impl Decoder {
    pub fn new(params: &GenerationParams, logprobs: Option<usize>) -> Self {
        Self {
            sampler: Sampler::new(params.sampling.clone()),
            stops: StopMatcher::new(params.stop.clone()),
            utf8: Utf8Stream::default(),
            max_tokens: params.max_tokens,
            ignore_eos: params.ignore_eos,
            constraint: params.constraint.clone(),
            logprobs,
            text: String::new(),
            generated: Vec::new(),
            end_token: None,
        }
    }

    /// Tokens generated: the text's, and the end-of-generation token if one ended it.
    pub fn tokens_generated(&self) -> usize {
        self.generated.len() + usize::from(self.end_token.is_some())
    }

    /// Samples the next token from `logits` (which it may modify) given the sequence so far.
    pub fn step(
        &mut self,
        tokenizer: &symphony_models::Tokenizer,
        logits: &mut [f32],
        history: &[TokenId],
    ) -> Step {
        if self.generated.len() >= self.max_tokens {
            return self.end(FinishReason::Length);
        }
        let raw = self.logprobs.map(|_| logits.to_vec());
        if let Some(constraint) = &mut self.constraint {
            let left = self.max_tokens - self.generated.len();
            if constraint
                .mask(logits, left <= closing_reserve(self.max_tokens))
                .is_err()
            {
                // Cannot happen for a grammar that compiled; end rather than emit an
                // unconstrained token.
                return self.end(FinishReason::Stop);
            }
        }
        let next = self.sampler.sample(logits, history);
        let logprob = raw.map(|raw| token_logprob(&raw, next, self.logprobs.unwrap_or(0)));
        if !self.ignore_eos && tokenizer.is_end_of_generation(next) {
            // The end token is neither text nor history, but it was generated: it keeps its
            // log-probability and is counted, as OpenAI and vLLM report it (scorers such as
            // lm-evaluation-harness expect an entry for every generated token).
            self.end_token = Some(next);
            let mut step = self.end(FinishReason::EndOfGeneration);
            step.logprob = logprob;
            return step;
        }
        self.generated.push(next);
        let bytes = tokenizer.token_bytes(next, false);
        let complete = match &mut self.constraint {
            Some(c) => c.accept(next, &self.generated, &bytes).unwrap_or(true),
            None => false,
        };
        let piece = self.utf8.push(&bytes);
        let (mut text, stopped) = self.stops.push(&piece);
        self.text.push_str(&text);
        let finish = if stopped {
            Some(FinishReason::Stop)
        } else if complete {
            // The grammar allows nothing more: end here instead of spending a step on the
            // end-of-generation token it would force.
            text.push_str(&self.finish(FinishReason::EndOfGeneration));
            Some(FinishReason::EndOfGeneration)
        } else if self.generated.len() >= self.max_tokens {
            text.push_str(&self.finish(FinishReason::Length));
            Some(FinishReason::Length)
        } else {
            None
        };
        Step {
            token: Some(next),
            text,
            logprob,
            finish,
        }
    }

    /// A step that ends the sequence for `reason` without a token.
    fn end(&mut self, reason: FinishReason) -> Step {
        Step {
            token: None,
            text: self.finish(reason),
            logprob: None,
            finish: Some(reason),
        }
    }

    /// Ends the sequence for `reason`, returning the text still held back (nothing after a
    /// stop sequence, which ends the text where it starts).
    pub fn finish(&mut self, reason: FinishReason) -> String {
        if reason == FinishReason::Stop {
            return String::new();
        }
        let (emit, _) = self.stops.push(&self.utf8.finish());
        let rest = format!("{emit}{}", self.stops.flush());
        self.text.push_str(&rest);
        rest
    }
}

/// How many of its last tokens a constrained reply spends closing what it has open (see
/// [`Constraint::mask`]): a quarter of the budget, at least 8 and at most 64 tokens.
fn closing_reserve(max_tokens: usize) -> usize {
    (max_tokens / 4).clamp(8, 64)
}

/// Finds stop sequences in streamed text, holding back any tail that could be the start of
/// one so that no part of a stop sequence is ever emitted.
#[derive(Debug)]
struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
        }
    }

    /// Returns the text safe to emit and whether a stop sequence was found.
    fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        let first_stop = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(pos) = first_stop {
            let out = self.held[..pos].to_string();
            self.held.clear();
            return (out, true);
        }
        // Hold back the longest suffix that is a prefix of some stop sequence.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&n| s.is_char_boundary(n))
                    .map(move |n| &s[..n])
            })
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_split_across_pieces_are_caught_and_never_emitted() {
        let stops = vec!["\nUser:".to_string(), "END".to_string()];
        let mut m = StopMatcher::new(stops.clone());
        let mut out = String::new();
        for piece in ["Hello", " there\n", "Us", "er: more"] {
            let (emit, stopped) = m.push(piece);
            out.push_str(&emit);
            if stopped {
                break;
            }
        }
        assert_eq!(out, "Hello there");
    }

    #[test]
    fn held_text_is_released_when_it_cannot_be_a_stop() {
        let stops = vec!["END".to_string()];
        let mut m = StopMatcher::new(stops.clone());
        assert_eq!(m.push("THE E"), ("THE ".to_string(), false));
        assert_eq!(m.push("ND"), (String::new(), true));
        let mut m = StopMatcher::new(stops.clone());
        assert_eq!(m.push("E"), (String::new(), false));
        assert_eq!(m.push("X"), ("EX".to_string(), false));
        assert_eq!(m.push("EN"), (String::new(), false));
        assert_eq!(m.flush(), "EN");
    }
}

//! Generation: a [`Session`] owns one sequence's KV cache and runs prompts through it,
//! streaming text as it is produced.
//!
//! A session keeps the tokens it has processed, so a follow-up prompt that extends them (the
//! next turn of a chat) only pays for its new tokens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use symphony_models::tokenizer::{EncodeOptions, Utf8Stream};
use symphony_models::{Cache, Logits, Model, TokenId};
use symphony_types::ChatMessage;

use crate::sampling::{Sampler, SamplingParams};
use crate::{Error, Result};

/// Everything that shapes one generation.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Text that ends the reply; it is not part of the output.
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
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
    let template = model
        .chat_template
        .as_ref()
        .ok_or(symphony_models::Error::NoChatTemplate)?;
    let text = template.render(messages, true)?;
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

        // Reuse the cached prefix; always recompute at least the last prompt token for its logits.
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        self.cache.truncate(common);
        self.tokens.truncate(common);

        let start = Instant::now();
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
        let mut logits = logits.squeeze(0)?.to_vec1::<f32>()?;
        let prompt_time = start.elapsed();

        let start = Instant::now();
        let mut sampler = Sampler::new(params.sampling.clone());
        let mut stops = StopMatcher::new(&params.stop);
        let mut utf8 = Utf8Stream::default();
        let mut text = String::new();
        let mut generated = Vec::new();
        let finish_reason = loop {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                break FinishReason::Cancelled;
            }
            if generated.len() >= params.max_tokens {
                break FinishReason::Length;
            }
            let next = sampler.sample(&mut logits, &self.tokens);
            if tokenizer.is_end_of_generation(next) {
                break FinishReason::EndOfGeneration;
            }
            generated.push(next);
            let piece = utf8.push(&tokenizer.token_bytes(next, false));
            let (emit, stopped) = stops.push(&piece);
            text.push_str(&emit);
            on_text(&emit);
            if stopped {
                break FinishReason::Stop;
            }
            if self.tokens.len() + 1 >= limit {
                break FinishReason::ContextFull;
            }
            if generated.len() < params.max_tokens {
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
            }
        };
        if finish_reason != FinishReason::Stop {
            let (emit, _) = stops.push(&utf8.finish());
            let rest = format!("{emit}{}", stops.flush());
            text.push_str(&rest);
            on_text(&rest);
        }
        Ok(Generation {
            text,
            tokens: generated,
            finish_reason,
            prompt_tokens: prompt.len(),
            prompt_tokens_computed: prompt.len() - common,
            prompt_time,
            generation_time: start.elapsed(),
        })
    }
}

/// Finds stop sequences in streamed text, holding back any tail that could be the start of
/// one so that no part of a stop sequence is ever emitted.
#[derive(Debug)]
struct StopMatcher<'a> {
    stops: &'a [String],
    held: String,
}

impl<'a> StopMatcher<'a> {
    fn new(stops: &'a [String]) -> Self {
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
        let mut m = StopMatcher::new(&stops);
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
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("THE E"), ("THE ".to_string(), false));
        assert_eq!(m.push("ND"), (String::new(), true));
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("E"), (String::new(), false));
        assert_eq!(m.push("X"), ("EX".to_string(), false));
        assert_eq!(m.push("EN"), (String::new(), false));
        assert_eq!(m.flush(), "EN");
    }
}

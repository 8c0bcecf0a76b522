//! Log-probabilities in OpenAI's two shapes: the chat shape (one entry per token with its
//! bytes and alternatives) and the legacy completions shape (parallel lists).

use serde_json::{Map, Value};
use symphony_engine::TokenLogprob;
use symphony_models::TokenId;

use super::types::{LegacyLogprobs, LogprobEntry};
use crate::generation::{token_text, Loaded};

fn entry(model: &Loaded, id: TokenId, logprob: f32) -> LogprobEntry {
    let text = token_text(model, id);
    LogprobEntry {
        bytes: text.as_bytes().to_vec(),
        token: text,
        logprob: f64::from(logprob),
        top_logprobs: None,
    }
}

/// A chat token's entry, with its alternatives.
pub(super) fn chat_logprob_entry(model: &Loaded, lp: &TokenLogprob) -> LogprobEntry {
    LogprobEntry {
        top_logprobs: Some(lp.top.iter().map(|&(id, l)| entry(model, id, l)).collect()),
        ..entry(model, lp.token, lp.logprob)
    }
}

pub(super) fn chat_logprobs(model: &Loaded, lps: &[TokenLogprob]) -> Vec<LogprobEntry> {
    lps.iter()
        .filter(|lp| !ends_message(model, lp))
        .map(|lp| chat_logprob_entry(model, lp))
        .collect()
}

/// Whether `lp` is the end-of-generation token that ended a reply: a chat message's
/// log-probabilities cover its content only, as OpenAI's do (the legacy completions list
/// it, with its text).
pub(super) fn ends_message(model: &Loaded, lp: &TokenLogprob) -> bool {
    model.model().tokenizer.is_end_of_generation(lp.token)
}

/// The legacy logprobs object: parallel lists of tokens, their logprobs, the alternatives
/// and each token's character offset in the text.
pub(super) fn completion_logprobs(
    model: &Loaded,
    entries: &[(u32, Option<&TokenLogprob>)],
    offset: usize,
) -> LegacyLogprobs {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top = Vec::new();
    let mut offsets = Vec::new();
    let mut at = offset;
    for &(id, lp) in entries {
        let text = token_text(model, id);
        offsets.push(at);
        at += text.chars().count();
        tokens.push(text);
        token_logprobs.push(lp.map(|l| f64::from(l.logprob)));
        // The alternatives always include the token itself, as OpenAI's legacy completions,
        // vLLM and llama-cpp-python give them (lm-evaluation-harness reads a token as greedy
        // when it is the most likely entry here).
        top.push(lp.map(|l| {
            let mut m = Map::new();
            for &(t, v) in &l.top {
                m.insert(token_text(model, t), Value::from(f64::from(v)));
            }
            m.entry(token_text(model, id))
                .or_insert(Value::from(f64::from(l.logprob)));
            m
        }));
    }
    LegacyLogprobs {
        tokens,
        token_logprobs,
        top_logprobs: top,
        text_offset: offsets,
    }
}

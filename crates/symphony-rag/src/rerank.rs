//! Reranking with a local chat model: each candidate chunk is shown to the model with the
//! question, and the model's own probability of answering "Yes" to "does this passage answer
//! the question?" orders the candidates. One forward pass per candidate and no generation;
//! the instructions and the question form a prefix shared by every candidate, computed once.

use symphony_engine::{chat_prompt, Session};
use symphony_models::tokenizer::EncodeOptions;
use symphony_models::{Model, TokenId};
use symphony_types::ChatMessage;

use symphony_models::embedding::Embedder;

use crate::retrieve::{Hit, QueryOptions};
use crate::{Collection, Result};

/// Candidates beyond this many characters are cut: relevance shows early, and a long chunk
/// would cost a long prefill.
const MAX_PASSAGE_CHARS: usize = 2000;

pub struct LlmReranker<'m> {
    session: Session<'m>,
    yes: Vec<TokenId>,
    no: Vec<TokenId>,
}

impl<'m> LlmReranker<'m> {
    pub fn new(model: &'m Model) -> Self {
        let first_tokens = |words: &[&str]| {
            let mut ids: Vec<TokenId> = words
                .iter()
                .filter_map(|w| {
                    model
                        .tokenizer
                        .encode(w, EncodeOptions::PLAIN)
                        .first()
                        .copied()
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        Self {
            session: Session::new(model),
            yes: first_tokens(&["Yes", "yes", " Yes"]),
            no: first_tokens(&["No", "no", " No"]),
        }
    }

    /// How strongly the model judges that `passage` answers `question`: the log-odds of
    /// "yes" against "no" for its next token.
    pub fn score(&mut self, question: &str, passage: &str) -> Result<f32> {
        let passage: String = passage.trim().chars().take(MAX_PASSAGE_CHARS).collect();
        let messages = [
            ChatMessage::system(
                "You judge search results. Given a question and a passage, reply Yes if the \
                 passage contains the answer to the question, and No if it does not. Reply \
                 with one word.",
            ),
            ChatMessage::user(format!(
                "Question: {question}\n\nPassage: {passage}\n\nDoes the passage contain the \
                 answer to the question?"
            )),
        ];
        let prompt = chat_prompt(self.session.model(), &messages)?;
        let logits = self.session.next_token_logits(&prompt)?;
        Ok(log_sum_exp(&logits, &self.yes) - log_sum_exp(&logits, &self.no))
    }

    /// `hits` ordered by the model's judgement, best first; equal scores keep their
    /// retrieval order. Each hit's `rerank_score` is set.
    pub fn rerank(&mut self, question: &str, hits: Vec<Hit>) -> Result<Vec<Hit>> {
        let mut scored = Vec::with_capacity(hits.len());
        for (rank, mut hit) in hits.into_iter().enumerate() {
            let score = self.score(question, &hit.chunk.text)?;
            hit.rerank_score = Some(score);
            scored.push((score, rank, hit));
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored.into_iter().map(|(_, _, hit)| hit).collect())
    }
}

/// The top `options.top_k` hits of `question`, reranked from a pool of `depth` candidates
/// (at least `top_k`) when a reranker is given.
pub fn search(
    collection: &Collection,
    embedder: &Embedder,
    reranker: Option<&mut LlmReranker<'_>>,
    question: &str,
    options: &QueryOptions,
    depth: usize,
) -> Result<Vec<Hit>> {
    let Some(reranker) = reranker else {
        return collection.query(embedder, question, options);
    };
    let deeper = QueryOptions {
        top_k: options.top_k.max(depth),
        ..options.clone()
    };
    let candidates = collection.query(embedder, question, &deeper)?;
    let mut hits = reranker.rerank(question, candidates)?;
    hits.truncate(options.top_k);
    Ok(hits)
}

fn log_sum_exp(logits: &[f32], ids: &[TokenId]) -> f32 {
    let values: Vec<f32> = ids
        .iter()
        .filter_map(|&id| logits.get(id as usize).copied())
        .collect();
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_stable_and_ignores_unknown_ids() {
        let logits = [1000.0, 1000.0, -5.0];
        let v = log_sum_exp(&logits, &[0, 1, 99]);
        assert!((v - (1000.0 + 2f32.ln())).abs() < 1e-3, "{v}");
        assert_eq!(log_sum_exp(&logits, &[99]), f32::NEG_INFINITY);
    }
}

//! Answers from retrieved chunks: the prompt that numbers the sources, the citations read
//! back from the answer, and the relevance check that says "I don't know" instead of
//! asking a model to answer from unrelated text.

use serde::Serialize;
use symphony_models::embedding::Embedder;
use symphony_models::kernels::dot_f32;
use symphony_types::ChatMessage;

use crate::retrieve::Hit;
use crate::Result;

/// Below this cosine similarity between the question and the best chunk, the collection is
/// taken to hold nothing on the question. MiniLM puts unrelated English sentences around
/// 0.0–0.15 and paraphrases above 0.5.
pub const RELEVANCE_FLOOR: f32 = 0.25;

/// The answer given when no retrieved chunk is relevant.
pub const DONT_KNOW: &str = "I don't know.";

/// A source the answer cites: which document, which chunk, which characters of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    /// The number the answer cites it by, `[n]`.
    pub n: usize,
    pub path: String,
    pub chunk_id: u64,
    pub start_char: usize,
    pub end_char: usize,
}

/// The best cosine similarity between `question` and the hits. Vector search scored some
/// already; the ones only BM25 found are embedded here.
pub fn relevance(embedder: &Embedder, question: &str, hits: &[Hit]) -> Result<f32> {
    let best = hits
        .iter()
        .filter_map(|h| h.vector_score)
        .fold(f32::NEG_INFINITY, f32::max);
    let unscored: Vec<&str> = hits
        .iter()
        .filter(|h| h.vector_score.is_none())
        .map(|h| h.chunk.text.as_str())
        .collect();
    if unscored.is_empty() {
        return Ok(best);
    }
    let mut texts = vec![question];
    texts.extend(unscored);
    let vectors = embedder.embed(&texts)?;
    let q = &vectors[0];
    Ok(vectors[1..]
        .iter()
        .map(|v| dot_f32(v, q))
        .fold(best, f32::max))
}

/// Whether the hits are worth answering from (see [`RELEVANCE_FLOOR`]).
pub fn is_relevant(embedder: &Embedder, question: &str, hits: &[Hit]) -> Result<bool> {
    Ok(!hits.is_empty() && relevance(embedder, question, hits)? >= RELEVANCE_FLOOR)
}

/// The chat for an answer: the sources numbered, the rules, then the question.
pub fn answer_messages(question: &str, hits: &[Hit]) -> Vec<ChatMessage> {
    let mut sources = String::new();
    for (i, h) in hits.iter().enumerate() {
        let name = std::path::Path::new(&h.chunk.path)
            .file_name()
            .map_or(h.chunk.path.clone(), |n| n.to_string_lossy().into_owned());
        sources.push_str(&format!(
            "[{}] ({name})\n{}\n\n",
            i + 1,
            h.chunk.text.trim()
        ));
    }
    vec![
        ChatMessage::system(
            "You answer questions from the numbered sources the user gives, and from nothing \
             else. Write the answer in one to three full sentences and put the number of the \
             source each fact comes from in brackets after it, like this: Paris is the capital \
             of France [2]. If the sources do not answer the question, reply exactly: I don't \
             know.",
        ),
        ChatMessage::user(format!(
            "Sources:\n\n{sources}Question: {question}\nAnswer:"
        )),
    ]
}

/// The source numbers `[n]` the answer cites, in order of first citation, within range.
pub fn cited_sources(answer: &str, n_sources: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        for part in rest[..close].split(',') {
            if let Ok(n) = part.trim().parse::<usize>() {
                if (1..=n_sources).contains(&n) && !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        rest = &rest[close + 1..];
    }
    out
}

/// The citations of `answer` into the sources it was given.
pub fn citations(answer: &str, hits: &[Hit]) -> Vec<Citation> {
    cited_sources(answer, hits.len())
        .into_iter()
        .map(|n| {
            let c = &hits[n - 1].chunk;
            Citation {
                n,
                path: c.path.clone(),
                chunk_id: c.chunk_id,
                start_char: c.start_char,
                end_char: c.end_char,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_read_in_order_and_in_range() {
        assert_eq!(
            cited_sources("Paris [2]. It is big [1, 2] [9] [x]", 3),
            vec![2, 1]
        );
        assert_eq!(cited_sources("I don't know.", 3), Vec::<usize>::new());
    }
}

//! SentencePiece BPE (`tokenizer.ggml.model = llama`: Llama 2, Gemma, Mistral v0.1).
//!
//! Spaces become `▁` (U+2581), the text is split into characters, and adjacent pairs whose
//! concatenation is a vocabulary entry are merged highest score first (leftmost first on
//! ties) until no pair merges. Characters left that are not tokens are written as byte tokens
//! (`<0xE2>`). This is SentencePiece's BPE mode as llama.cpp implements it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::TokenId;

#[derive(Debug)]
pub struct Spm {
    scores: Vec<f32>,
    /// `<0xXX>` token of each byte, or the byte's own one-character token.
    byte_token: [Option<TokenId>; 256],
    unknown: Option<TokenId>,
}

/// A candidate merge of the symbols at `left` and `right`.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// The heap's top is the highest score, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

/// A run of text in the merge chain: `text[start..start + len]`, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// U+2581, SentencePiece's visible space.
pub const SPACE: char = '\u{2581}';

impl Spm {
    /// `scores[id]` is each token's merge priority (`tokenizer.ggml.scores`).
    pub fn new(
        scores: Vec<f32>,
        token_to_id: &HashMap<String, TokenId>,
        unknown: Option<TokenId>,
    ) -> Self {
        let byte_token = std::array::from_fn(|b| {
            token_to_id
                .get(&format!("<0x{b:02X}>"))
                .or_else(|| {
                    (b < 0x80)
                        .then(|| token_to_id.get(&(b as u8 as char).to_string()))
                        .flatten()
                })
                .copied()
        });
        Self {
            scores,
            byte_token,
            unknown,
        }
    }

    /// Encodes one fragment of text (no special tokens in it).
    pub fn encode_piece(
        &self,
        text: &str,
        token_to_id: &HashMap<String, TokenId>,
        out: &mut Vec<TokenId>,
    ) {
        let text = text.replace(' ', &SPACE.to_string());
        if text.is_empty() {
            return;
        }
        let mut symbols: Vec<Symbol> = Vec::new();
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                symbols[i - 1].next = Some(i);
            }
        }
        let mut queue = BinaryHeap::new();
        let try_add = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left, right| {
            let (Some(left), Some(right)) = (left, right) else {
                return;
            };
            let (l, r): (&Symbol, &Symbol) = (&symbols[left], &symbols[right]);
            let joined = &text[l.start..r.start + r.len];
            if let Some(&id) = token_to_id.get(joined) {
                queue.push(Bigram {
                    left,
                    right,
                    score: self.scores[id as usize],
                    len: joined.len(),
                });
            }
        };
        for i in 1..symbols.len() {
            try_add(&mut queue, &symbols, Some(i - 1), Some(i));
        }
        while let Some(bigram) = queue.pop() {
            let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
            // Stale: one side has merged since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.len {
                continue;
            }
            symbols[bigram.left].len += r.len;
            symbols[bigram.left].next = r.next;
            symbols[bigram.right].len = 0;
            if let Some(next) = r.next {
                symbols[next].prev = Some(bigram.left);
            }
            try_add(&mut queue, &symbols, l.prev, Some(bigram.left));
            try_add(&mut queue, &symbols, Some(bigram.left), r.next);
        }
        let mut i = Some(0);
        while let Some(index) = i {
            let s = symbols[index];
            let piece = &text[s.start..s.start + s.len];
            match token_to_id.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        out.extend(self.byte_token[b as usize].or(self.unknown));
                    }
                }
            }
            i = s.next;
        }
    }

    /// The text of a normal token: `▁` back to spaces.
    pub fn decode_token_text(&self, text: &str) -> Vec<u8> {
        text.replace(SPACE, " ").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(entries: &[(&str, f32)]) -> (Vec<f32>, HashMap<String, TokenId>) {
        let scores = entries.iter().map(|&(_, s)| s).collect();
        let map = entries
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (t.to_string(), i as TokenId))
            .collect();
        (scores, map)
    }

    #[test]
    fn merges_highest_score_first_and_falls_back_to_bytes() {
        let (scores, map) = vocab(&[
            ("<unk>", 0.0),
            ("<0x21>", 0.0),
            ("▁", -1.0),
            ("a", -1.0),
            ("b", -1.0),
            ("ab", -5.0),
            ("▁a", -2.0),
            ("▁ab", -3.0),
        ]);
        let spm = Spm::new(scores, &map, Some(0));
        let mut out = Vec::new();
        // "▁a" (score -2) merges before "ab" (-5); then "▁a"+"b" = "▁ab".
        spm.encode_piece(" ab!", &map, &mut out);
        assert_eq!(out, [7, 1]);
        out.clear();
        // A character with no token and no byte token becomes <unk> per byte.
        spm.encode_piece("é", &map, &mut out);
        assert_eq!(out, [0, 0]);
    }

    #[test]
    fn ties_merge_leftmost() {
        let (scores, map) = vocab(&[("a", 0.0), ("aa", -1.0)]);
        let spm = Spm::new(scores, &map, None);
        let mut out = Vec::new();
        spm.encode_piece("aaa", &map, &mut out);
        assert_eq!(out, [1, 0]);
    }
}

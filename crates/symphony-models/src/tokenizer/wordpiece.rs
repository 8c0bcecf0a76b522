//! BERT's WordPiece tokenizer, read from a Hugging Face `tokenizer.json`.
//!
//! The pipeline is the one Hugging Face `tokenizers` runs for BERT-family encoders, step for
//! step, so the ids match the reference exactly (tests/fixtures/golden/*/tokenizer.json):
//! 1. added tokens (`[CLS]`, `[SEP]`, ...) written in the text are split out first, as is;
//! 2. the rest is normalised: control characters dropped, whitespace made a space, spaces put
//!    around CJK ideographs, accents stripped (NFD, then no non-spacing marks), lowercased;
//! 3. it is cut at whitespace, and every punctuation character becomes a word of its own;
//! 4. each word is matched greedily, longest prefix first, against the vocabulary, its later
//!    pieces spelled with the `##` prefix; a word with no such spelling becomes `[UNK]`.
//!
//! The Unicode tables are the ones the reference uses (`unicode_categories`, and
//! `unicode-normalization-alignments` for NFD), so they agree on every character.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

use super::TokenId;
use crate::error::{Error, Result};

/// What the `BertNormalizer` of a `tokenizer.json` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BertNormalization {
    pub clean_text: bool,
    pub handle_chinese_chars: bool,
    pub strip_accents: bool,
    pub lowercase: bool,
}

#[derive(Debug)]
pub struct WordPiece {
    vocab: HashMap<String, TokenId>,
    tokens: Vec<String>,
    /// Added tokens matched in the raw text, longest first.
    added: Vec<(String, TokenId)>,
    normalization: BertNormalization,
    continuing_prefix: String,
    max_input_chars_per_word: usize,
    pub unk: TokenId,
    pub cls: TokenId,
    pub sep: TokenId,
    pub pad: TokenId,
}

impl WordPiece {
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidMetadata {
            path: path.to_path_buf(),
            message: format!("not valid JSON: {e}"),
        })?;
        Self::from_json(&json).map_err(|message| Error::InvalidMetadata {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Reads a `tokenizer.json` whose model is WordPiece.
    pub fn from_json(json: &Value) -> std::result::Result<Self, String> {
        let model = json.get("model").ok_or("no 'model'")?;
        if model.get("type").and_then(Value::as_str) != Some("WordPiece") {
            return Err(format!(
                "the tokenizer model is {}, not WordPiece",
                model.get("type").unwrap_or(&Value::Null)
            ));
        }
        let vocab_json = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or("WordPiece model without a 'vocab' object")?;
        let mut vocab = HashMap::with_capacity(vocab_json.len());
        let mut tokens = vec![String::new(); vocab_json.len()];
        for (text, id) in vocab_json {
            let id = id
                .as_u64()
                .filter(|&id| (id as usize) < tokens.len())
                .ok_or_else(|| format!("token '{text}' has id {id}, outside the vocabulary"))?;
            tokens[id as usize] = text.clone();
            vocab.insert(text.clone(), id as TokenId);
        }
        let lookup = |name: &str| {
            vocab
                .get(name)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {name} token"))
        };
        let unk_text = model
            .get("unk_token")
            .and_then(Value::as_str)
            .unwrap_or("[UNK]");
        let unk = lookup(unk_text)?;
        let (cls, sep, pad) = (lookup("[CLS]")?, lookup("[SEP]")?, lookup("[PAD]")?);

        let normalizer = json.get("normalizer").filter(|n| !n.is_null());
        let normalization = match normalizer {
            None => BertNormalization {
                clean_text: false,
                handle_chinese_chars: false,
                strip_accents: false,
                lowercase: false,
            },
            Some(n) if n.get("type").and_then(Value::as_str) == Some("BertNormalizer") => {
                let flag = |key: &str, default: bool| {
                    n.get(key).and_then(Value::as_bool).unwrap_or(default)
                };
                let lowercase = flag("lowercase", true);
                BertNormalization {
                    clean_text: flag("clean_text", true),
                    handle_chinese_chars: flag("handle_chinese_chars", true),
                    // Unset, accents go with lowercasing, as in the original BERT.
                    strip_accents: flag("strip_accents", lowercase),
                    lowercase,
                }
            }
            Some(n) => {
                return Err(format!(
                    "normalizer {} is not supported with WordPiece (expected BertNormalizer)",
                    n.get("type").unwrap_or(&Value::Null)
                ))
            }
        };
        let mut added: Vec<(String, TokenId)> = json
            .get("added_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let text = t.get("content")?.as_str()?.to_string();
                let id = t.get("id")?.as_u64()? as TokenId;
                Some((text, id))
            })
            .filter(|(text, _)| !text.is_empty())
            .collect();
        added.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
        Ok(Self {
            vocab,
            tokens,
            added,
            normalization,
            continuing_prefix: model
                .get("continuing_subword_prefix")
                .and_then(Value::as_str)
                .unwrap_or("##")
                .to_string(),
            max_input_chars_per_word: model
                .get("max_input_chars_per_word")
                .and_then(Value::as_u64)
                .unwrap_or(100) as usize,
            unk,
            cls,
            sep,
            pad,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_text(&self, id: TokenId) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// `[CLS] text [SEP]`, the text's pieces cut so that the whole fits in `max_len` ids.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<TokenId> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        ids.push(self.cls);
        self.encode_pieces(text, &mut ids);
        ids.truncate(max_len.max(2) - 1);
        ids.push(self.sep);
        ids
    }

    /// The text's ids without `[CLS]` and `[SEP]`, appended to `out`.
    pub fn encode_pieces(&self, text: &str, out: &mut Vec<TokenId>) {
        let mut rest = text;
        while !rest.is_empty() {
            match self.next_added(rest) {
                Some((start, len, id)) => {
                    self.encode_run(&rest[..start], out);
                    out.push(id);
                    rest = &rest[start + len..];
                }
                None => {
                    self.encode_run(rest, out);
                    break;
                }
            }
        }
    }

    /// The earliest added token in `text` (the longest one at that position).
    fn next_added(&self, text: &str) -> Option<(usize, usize, TokenId)> {
        let mut best: Option<(usize, usize, TokenId)> = None;
        for (token, id) in &self.added {
            if let Some(start) = text.find(token.as_str()) {
                // `added` is longest first, so a tie in position keeps the longer token.
                if best.is_none_or(|(s, _, _)| start < s) {
                    best = Some((start, token.len(), *id));
                }
            }
        }
        best
    }

    /// A run of ordinary text: normalise, split into words, WordPiece each word.
    fn encode_run(&self, text: &str, out: &mut Vec<TokenId>) {
        if text.is_empty() {
            return;
        }
        let normalized = self.normalize(text);
        let mut word = String::new();
        for c in normalized.chars() {
            if c.is_whitespace() {
                self.encode_word(&word, out);
                word.clear();
            } else if is_bert_punctuation(c) {
                self.encode_word(&word, out);
                word.clear();
                let mut buf = [0u8; 4];
                self.encode_word(c.encode_utf8(&mut buf), out);
            } else {
                word.push(c);
            }
        }
        self.encode_word(&word, out);
    }

    pub fn normalize(&self, text: &str) -> String {
        let n = self.normalization;
        let mut chars: Vec<char> = Vec::with_capacity(text.len());
        for c in text.chars() {
            if n.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    continue;
                }
                if is_whitespace(c) {
                    chars.push(' ');
                    continue;
                }
            }
            if n.handle_chinese_chars && is_chinese_char(c) {
                chars.extend([' ', c, ' ']);
            } else {
                chars.push(c);
            }
        }
        let mut out = String::with_capacity(chars.len());
        let mut push = |c: char| {
            if n.lowercase {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        };
        if n.strip_accents {
            let text: String = chars.into_iter().collect();
            for (c, _) in text.nfd() {
                if !c.is_mark_nonspacing() {
                    push(c);
                }
            }
        } else {
            chars.into_iter().for_each(push);
        }
        out
    }

    /// Greedy longest-match-first over the vocabulary; a word with no spelling is `[UNK]`.
    fn encode_word(&self, word: &str, out: &mut Vec<TokenId>) {
        if word.is_empty() {
            return;
        }
        if word.chars().count() > self.max_input_chars_per_word {
            out.push(self.unk);
            return;
        }
        let first = out.len();
        let mut piece = String::with_capacity(word.len() + self.continuing_prefix.len());
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let found = loop {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.continuing_prefix);
                }
                piece.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(piece.as_str()) {
                    break Some(id);
                }
                let last = word[start..end]
                    .chars()
                    .next_back()
                    .map_or(1, char::len_utf8);
                end -= last;
                if end <= start {
                    break None;
                }
            };
            match found {
                Some(id) => out.push(id),
                None => {
                    out.truncate(first);
                    out.push(self.unk);
                    return;
                }
            }
            start = end;
        }
    }
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Control, format, private-use, surrogate and unassigned characters (Unicode's `C*`),
/// except the three whitespace controls.
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// CJK Unified Ideographs and their extensions and compatibility blocks: BERT gives every
/// such character a word of its own. Hangul, kana and the like are not in these blocks.
fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        let json = serde_json::json!({
            "added_tokens": [{"id": 0, "content": "[PAD]"}, {"id": 2, "content": "[CLS]"},
                             {"id": 3, "content": "[SEP]"}],
            "normalizer": {"type": "BertNormalizer", "lowercase": true, "strip_accents": null},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {
                "[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "un": 4, "##aff": 5,
                "##able": 6, "cafe": 7, "!": 8, "中": 9
            }}
        });
        WordPiece::from_json(&json).unwrap()
    }

    #[test]
    fn greedy_longest_match_with_continuation_pieces() {
        let t = tiny();
        assert_eq!(t.encode("Unaffable!", 16), vec![2, 4, 5, 6, 8, 3]);
        // No spelling for the whole word: one [UNK], not a partial match.
        assert_eq!(t.encode("unaffx", 16), vec![2, 1, 3]);
        // Accents stripped, CJK isolated, added tokens kept as written.
        assert_eq!(t.encode("CAFÉ中[SEP]", 16), vec![2, 7, 9, 3, 3]);
        // Truncation keeps [SEP] last.
        assert_eq!(t.encode("un un un un", 4), vec![2, 4, 4, 3]);
    }

    #[test]
    fn a_non_wordpiece_tokenizer_is_refused() {
        let json = serde_json::json!({"model": {"type": "BPE", "vocab": {}}});
        let err = WordPiece::from_json(&json).unwrap_err();
        assert!(err.contains("BPE"), "{err}");
    }
}

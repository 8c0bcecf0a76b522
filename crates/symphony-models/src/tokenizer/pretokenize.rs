//! Pre-tokenizers: the regexes that cut text into pieces before BPE, chosen by the GGUF key
//! `tokenizer.ggml.pre` exactly as llama.cpp chooses them.
//!
//! Several regexes apply in turn, each to the pieces the previous one produced; both the
//! matches and the text between them become pieces (llama.cpp's `unicode_regex_split`).

use fancy_regex::Regex;

use crate::error::{Error, Result};

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DIGITS: &str = r"\p{N}";

#[derive(Debug)]
pub struct PreTokenizer {
    name: String,
    regexes: Vec<Regex>,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` value.
    pub fn from_name(name: &str) -> Result<Self> {
        let patterns: &[&str] = match name {
            "default" | "gpt-2" | "gpt2" | "mpt" | "olmo" | "jais" | "trillion" => &[GPT2],
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva" => &[DIGITS, GPT2],
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" | "smaug-bpe" => &[LLAMA3],
            "qwen2" | "deepseek-r1-qwen" | "megrez" => &[QWEN2],
            other => {
                return Err(Error::Tokenizer(format!(
                    "pre-tokenizer '{other}' (tokenizer.ggml.pre) is not supported yet"
                )))
            }
        };
        let regexes = patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            name: name.to_string(),
            regexes,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn split<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut pieces = vec![text];
        for regex in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                let mut last = 0;
                for m in regex.find_iter(piece) {
                    // fancy-regex only fails on backtrack limits, which these patterns cannot hit
                    // on bounded pieces; treat such a failure as "no further match".
                    let Ok(m) = m else { break };
                    if m.start() > last {
                        next.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < piece.len() {
                    next.push(&piece[last..]);
                }
            }
            pieces = next;
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm_splits_digits_then_words() {
        let p = PreTokenizer::from_name("smollm").unwrap();
        assert_eq!(p.split("abc 123"), vec!["abc", " ", "1", "2", "3"]);
        assert_eq!(
            p.split("Hello  world's"),
            vec!["Hello", " ", " world", "'s"]
        );
        assert_eq!(p.split("a\n\n b"), vec!["a", "\n\n", " b"]);
    }

    #[test]
    fn unknown_pre_tokenizer_is_an_error() {
        assert!(PreTokenizer::from_name("klingon")
            .unwrap_err()
            .to_string()
            .contains("klingon"));
    }
}

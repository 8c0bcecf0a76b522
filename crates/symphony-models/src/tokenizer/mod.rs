//! Tokenizers built from GGUF metadata.
//!
//! The pipeline follows llama.cpp's vocabulary code so that our ids match the reference byte
//! for byte: special tokens are split out first (longest first), the remaining text is cut by
//! the model's pre-tokenizer regexes, and each piece is encoded by the vocabulary's model
//! (byte-level BPE or SentencePiece, a [`TokenizerModel`]).

mod bpe;
mod pretokenize;
mod spm;
mod wordpiece;

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

pub use bpe::Bpe;
pub use pretokenize::PreTokenizer;
pub use spm::Spm;
pub use wordpiece::{BertNormalization, WordPiece};

pub type TokenId = u32;

/// What a vocabulary entry is, as `tokenizer.ggml.token_type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenKind {
    fn from_gguf(v: i64) -> Self {
        match v {
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Normal,
        }
    }
}

/// The algorithm that turns a pre-tokenized piece into ids. A closed set: one variant per
/// vocabulary family llama.cpp knows (`tokenizer.ggml.model`).
#[derive(Debug)]
pub enum TokenizerModel {
    /// Byte-level BPE (`gpt2`): GPT-2, SmolLM, Llama 3, Qwen2.
    Bpe(Bpe),
    /// SentencePiece BPE (`llama`): Llama 2, Gemma, Mistral v0.1.
    Spm(Spm),
}

/// Where a SentencePiece vocabulary puts a space (`▁`) before the text, so that the first
/// word is spelled like every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpacePrefix {
    Never,
    /// Before every run of text (the input's start, and after each special token), even one
    /// that starts with a space: SentencePiece's dummy prefix, as llama.cpp applies it.
    EveryRun,
    /// Only at the very start of the input, and not when it starts with a space: Hugging Face
    /// `tokenizers`' Metaspace pre-tokenizer with `prepend_scheme: "first"`.
    InputStart,
}

/// The metadata key that picks [`SpacePrefix::InputStart`]: Symphony sets it when it reads
/// a `tokenizer.json` (GGUF files have llama.cpp's `add_space_prefix` only).
pub const SPACE_PREFIX_KEY: &str = "symphony.tokenizer.space_prefix";

/// Options for [`Tokenizer::encode`].
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// Add BOS/EOS where the model's metadata asks for them.
    pub add_special: bool,
    /// Recognise special-token text such as `<|im_start|>` in the input as single tokens.
    pub parse_special: bool,
}

impl EncodeOptions {
    /// Text from a chat template: special markers are meant as tokens.
    pub const TEMPLATE: Self = Self {
        add_special: true,
        parse_special: true,
    };
    /// User text continued as is (raw mode): BOS if the model wants it, markers taken literally.
    pub const PLAIN: Self = Self {
        add_special: true,
        parse_special: false,
    };
}

#[derive(Debug)]
pub struct Tokenizer {
    tokens: Vec<String>,
    kinds: Vec<TokenKind>,
    token_to_id: HashMap<String, TokenId>,
    model: TokenizerModel,
    pre: PreTokenizer,
    /// Control and user-defined tokens, longest text first, for splitting them out of text.
    special_by_length: Vec<TokenId>,
    pub bos: Option<TokenId>,
    pub eos: Option<TokenId>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// SentencePiece: where a space goes before the text.
    space_prefix: SpacePrefix,
    /// Tokens that end a generation (EOS, end-of-turn markers).
    end_of_generation: Vec<TokenId>,
}

/// Control tokens that end a turn in common chat formats, as llama.cpp's vocab marks them.
const END_OF_TURN_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<|eom_id|>",
];

impl Tokenizer {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model_name = gguf.get_str("tokenizer.ggml.model")?;
        let tokens: Vec<String> = gguf
            .get_str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(String::from)
            .collect();
        let n_vocab = tokens.len();
        let kinds = match gguf.get("tokenizer.ggml.token_type") {
            Some(_) => {
                let arr = gguf.get_array("tokenizer.ggml.token_type")?;
                if arr.len() != n_vocab {
                    return Err(Error::Tokenizer(format!(
                        "token_type has {} entries for {n_vocab} tokens",
                        arr.len()
                    )));
                }
                arr.iter()
                    .map(|v| TokenKind::from_gguf(v.as_f64().unwrap_or(1.0) as i64))
                    .collect()
            }
            None => vec![TokenKind::Normal; n_vocab],
        };
        let id_key = |key: &str| -> Result<Option<TokenId>> {
            match gguf.get_u64_opt(key)? {
                Some(id) if (id as usize) < n_vocab => Ok(Some(id as TokenId)),
                Some(id) => Err(Error::Tokenizer(format!(
                    "{key} = {id} is outside the vocabulary of {n_vocab} tokens"
                ))),
                None => Ok(None),
            }
        };
        let bos = id_key("tokenizer.ggml.bos_token_id")?;
        let eos = id_key("tokenizer.ggml.eos_token_id")?;
        let eot = id_key("tokenizer.ggml.eot_token_id")?;

        let token_to_id: HashMap<String, TokenId> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as TokenId))
            .collect();
        let model = match model_name {
            "gpt2" => {
                let merges = gguf.get_str_array("tokenizer.ggml.merges")?;
                TokenizerModel::Bpe(Bpe::new(&tokens, &merges)?)
            }
            "llama" => {
                let scores: Vec<f32> = gguf
                    .get_array("tokenizer.ggml.scores")?
                    .iter()
                    .map(|v| v.as_f64().unwrap_or(0.0) as f32)
                    .collect();
                if scores.len() != n_vocab {
                    return Err(Error::Tokenizer(format!(
                        "scores has {} entries for {n_vocab} tokens",
                        scores.len()
                    )));
                }
                let unknown = id_key("tokenizer.ggml.unknown_token_id")?;
                TokenizerModel::Spm(Spm::new(scores, &token_to_id, unknown))
            }
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer model '{other}' is not supported yet \
                     (supported: gpt2 byte-level BPE, llama SentencePiece)"
                )))
            }
        };
        let is_spm = matches!(model, TokenizerModel::Spm(_));
        let pre_name = gguf
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let pre = PreTokenizer::from_name(pre_name)?;
        // llama.cpp's defaults: SentencePiece vocabularies add BOS and a space prefix unless
        // the file says otherwise; BPE vocabularies do neither.
        let add_bos = gguf.get_bool_or("tokenizer.ggml.add_bos_token", is_spm)?;
        let add_eos = gguf.get_bool_or("tokenizer.ggml.add_eos_token", false)?;
        let space_prefix = match gguf.get(SPACE_PREFIX_KEY).and_then(|v| v.as_str()) {
            Some("input_start") => SpacePrefix::InputStart,
            _ if gguf.get_bool_or("tokenizer.ggml.add_space_prefix", is_spm)? => {
                SpacePrefix::EveryRun
            }
            _ => SpacePrefix::Never,
        };
        let mut special_by_length: Vec<TokenId> = (0..n_vocab as TokenId)
            .filter(|&id| {
                matches!(
                    kinds[id as usize],
                    TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
                )
            })
            .filter(|&id| !tokens[id as usize].is_empty())
            .collect();
        special_by_length.sort_by(|&a, &b| {
            tokens[b as usize]
                .len()
                .cmp(&tokens[a as usize].len())
                .then(a.cmp(&b))
        });

        let mut end_of_generation: Vec<TokenId> = eos.into_iter().chain(eot).collect();
        for text in END_OF_TURN_TEXTS {
            if let Some(&id) = token_to_id.get(*text) {
                if kinds[id as usize] == TokenKind::Control && !end_of_generation.contains(&id) {
                    end_of_generation.push(id);
                }
            }
        }

        Ok(Self {
            tokens,
            kinds,
            token_to_id,
            model,
            pre,
            special_by_length,
            bos,
            eos,
            add_bos,
            add_eos,
            space_prefix,
            end_of_generation,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_text(&self, id: TokenId) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// What kind of vocabulary entry `id` is (`None` past the vocabulary).
    pub fn kind(&self, id: TokenId) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    pub fn token_id(&self, text: &str) -> Option<TokenId> {
        self.token_to_id.get(text).copied()
    }

    pub fn is_end_of_generation(&self, id: TokenId) -> bool {
        self.end_of_generation.contains(&id)
    }

    pub fn end_of_generation_tokens(&self) -> &[TokenId] {
        &self.end_of_generation
    }

    pub fn encode(&self, text: &str, options: EncodeOptions) -> Vec<TokenId> {
        let mut ids = Vec::new();
        if options.add_special && self.add_bos {
            ids.extend(self.bos);
        }
        let mut after_special = true;
        let mut at_input_start = true;
        for fragment in self.split_special(text, options.parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    ids.push(id);
                    after_special = true;
                    at_input_start = false;
                }
                Fragment::Text(text) => match &self.model {
                    TokenizerModel::Bpe(bpe) => {
                        for piece in self.pre.split(text) {
                            bpe.encode_piece(piece, &mut ids);
                        }
                    }
                    TokenizerModel::Spm(spm) => {
                        let prefixed;
                        let prefix = match self.space_prefix {
                            SpacePrefix::Never => false,
                            SpacePrefix::EveryRun => after_special,
                            SpacePrefix::InputStart => at_input_start && !text.starts_with(' '),
                        };
                        let text = if prefix {
                            prefixed = format!(" {text}");
                            &prefixed
                        } else {
                            text
                        };
                        spm.encode_piece(text, &self.token_to_id, &mut ids);
                        after_special = false;
                        at_input_start = false;
                    }
                },
            }
        }
        if options.add_special && self.add_eos {
            ids.extend(self.eos);
        }
        ids
    }

    /// The bytes a token stands for. Control tokens give their text only when
    /// `render_special` is set (a chat stream should not print `<|im_end|>`).
    pub fn token_bytes(&self, id: TokenId, render_special: bool) -> Vec<u8> {
        let Some(text) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        match self.kinds[id as usize] {
            TokenKind::Normal => match &self.model {
                TokenizerModel::Bpe(bpe) => bpe.decode_token_text(text),
                TokenizerModel::Spm(spm) => spm.decode_token_text(text),
            },
            TokenKind::UserDefined => text.as_bytes().to_vec(),
            TokenKind::Control | TokenKind::Unknown if render_special => text.as_bytes().to_vec(),
            TokenKind::Byte => parse_byte_token(text).map(|b| vec![b]).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Decodes ids to text; invalid UTF-8 (a cut multi-byte character) becomes U+FFFD.
    pub fn decode(&self, ids: &[TokenId], render_special: bool) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id, render_special))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn split_special<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut fragments = vec![Fragment::Text(text)];
        for &id in &self.special_by_length {
            let kind = self.kinds[id as usize];
            if !parse_special && matches!(kind, TokenKind::Control | TokenKind::Unknown) {
                continue;
            }
            let special = self.tokens[id as usize].as_str();
            let mut next = Vec::with_capacity(fragments.len());
            for fragment in fragments {
                match fragment {
                    Fragment::Text(mut rest) if rest.contains(special) => {
                        while let Some(pos) = rest.find(special) {
                            if pos > 0 {
                                next.push(Fragment::Text(&rest[..pos]));
                            }
                            next.push(Fragment::Token(id));
                            rest = &rest[pos + special.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Fragment::Text(rest));
                        }
                    }
                    other => next.push(other),
                }
            }
            fragments = next;
        }
        fragments
    }
}

enum Fragment<'a> {
    Text(&'a str),
    Token(TokenId),
}

/// `<0x0A>` → 0x0A, the byte tokens of SentencePiece vocabularies.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// Turns a stream of token bytes into text pieces that end on character boundaries, so a
/// multi-byte character split across tokens is printed once it is whole.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // A byte sequence that can never become valid: emit it lossily rather than stall.
            Err(_) => self.pending.len(),
        };
        let out = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        out
    }

    /// Whatever is left at the end of the stream.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_partial_characters() {
        let mut s = Utf8Stream::default();
        let euro = "€".as_bytes();
        assert_eq!(s.push(&euro[..1]), "");
        assert_eq!(s.push(&euro[1..2]), "");
        assert_eq!(s.push(&[euro[2], b'!']), "€!");
        assert_eq!(s.push(&[0xff]), "\u{fffd}");
        assert_eq!(s.push(&euro[..2]), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }

    #[test]
    fn byte_tokens() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xZZ>"), None);
        assert_eq!(parse_byte_token("hello"), None);
    }
}

//! Constrained decoding: at every step only tokens that keep the output inside a JSON Schema,
//! a regular expression or a Lark grammar may be sampled, so the output is valid by
//! construction.
//!
//! The matcher is llguidance's: it walks a token trie built from our own tokenizer's
//! vocabulary (the bytes each token stands for), so it sees exactly the tokens the model can
//! produce. A [`GrammarCompiler`] is built once per model (the trie costs a pass over the
//! vocabulary); each request compiles its grammar into a [`Constraint`] before it is queued,
//! so a bad schema is refused up front instead of failing mid-generation.

use std::fmt;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use symphony_models::tokenizer::{TokenKind, Tokenizer};
use symphony_models::TokenId;

use crate::{Error, Result};

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// A JSON Schema (draft 2020-12 keywords that llguidance implements; others are refused).
    JsonSchema(serde_json::Value),
    /// Any JSON object (`response_format: json_object`, Ollama's `format: "json"`).
    JsonObject,
    /// A regular expression the whole output must match (Rust `regex` syntax).
    Regex(String),
    /// A context-free grammar in llguidance's Lark dialect.
    Lark(String),
}

impl Grammar {
    fn to_llguidance(&self) -> TopLevelGrammar {
        match self {
            Grammar::JsonSchema(schema) => TopLevelGrammar::from_json_schema(compact(schema)),
            Grammar::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(&serde_json::json!({"type": "object"})))
            }
            Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Grammar::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
        }
    }
}

/// JSON without optional whitespace unless the schema asks otherwise (`x-guidance`): a
/// sampled model given free whitespace can indent forever instead of closing the object.
fn compact(schema: &serde_json::Value) -> serde_json::Value {
    let mut schema = schema.clone();
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance")
            .or_insert_with(|| serde_json::json!({"whitespace_flexible": false}));
    }
    schema
}

/// Compiles grammars against one model's vocabulary.
pub struct GrammarCompiler {
    factory: ParserFactory,
}

impl fmt::Debug for GrammarCompiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrammarCompiler").finish_non_exhaustive()
    }
}

impl GrammarCompiler {
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let env: TokEnv = Arc::new(VocabEnv::new(tokenizer)?);
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| Error::InvalidGrammar(format!("cannot index the vocabulary: {e}")))?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// Compiles `grammar`; errors (invalid or unsupported schema, bad regex, grammar syntax)
    /// are reported here.
    pub fn compile(&self, grammar: &Grammar) -> Result<Constraint> {
        let parser = self
            .factory
            .create_parser(grammar.to_llguidance())
            .map_err(|e| Error::InvalidGrammar(first_line(&e.to_string())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::InvalidGrammar(first_line(&e)));
        }
        Ok(Constraint {
            matcher,
            state: State::Active,
        })
    }
}

/// llguidance's messages can append the whole grammar; the first line says what is wrong.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// One sequence's constraint, advanced token by token by the [`crate::Decoder`].
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    state: State,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Every token is constrained.
    Active,
    /// Unconstrained until the output (after leading whitespace) starts with one of the
    /// triggers; then the tokens so far are fed to the matcher and it constrains the rest.
    /// Output that cannot become a trigger turns the constraint off.
    Waiting {
        triggers: Vec<String>,
        bytes: Vec<u8>,
    },
    /// The output went another way; nothing is constrained.
    Off,
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraint")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Leaves the output free unless it starts with one of `triggers` (after whitespace), as
    /// a tool call does: the model chooses between answering and calling, and a call, once
    /// begun, must match the grammar (which then has to accept the trigger itself).
    pub fn triggered_by<S: Into<String>>(mut self, triggers: impl IntoIterator<Item = S>) -> Self {
        self.state = State::Waiting {
            triggers: triggers.into_iter().map(Into::into).collect(),
            bytes: Vec::new(),
        };
        self
    }

    /// Whether the matcher constrains the next token.
    pub fn is_active(&self) -> bool {
        self.state == State::Active
    }

    /// Sets every token the grammar forbids to −∞. `end_of_generation` tokens stay allowed
    /// exactly when the output so far is complete.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        if self.state != State::Active {
            return Ok(());
        }
        let allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| Error::InvalidGrammar(first_line(&e.to_string())))?;
        let known = allowed.len();
        for (id, l) in logits.iter_mut().enumerate() {
            // Rows past the tokenizer's vocabulary (padding in the output matrix) never pass.
            if id >= known || !allowed.is_allowed(id as TokenId) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances past a sampled token. `generated` holds every generated token including this
    /// one; `bytes` is what this token stands for. Returns true when the grammar is complete
    /// and allows nothing more.
    pub fn accept(&mut self, token: TokenId, generated: &[TokenId], bytes: &[u8]) -> Result<bool> {
        let advance = |matcher: &mut Matcher, tokens: &[TokenId]| {
            matcher
                .consume_tokens(tokens)
                .map_err(|e| Error::InvalidGrammar(first_line(&e.to_string())))
        };
        match &mut self.state {
            State::Off => return Ok(false),
            State::Active => advance(&mut self.matcher, &[token])?,
            State::Waiting {
                triggers,
                bytes: seen,
            } => {
                seen.extend_from_slice(bytes);
                let start = seen
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(seen.len());
                let text = &seen[start..];
                if triggers.iter().any(|t| text.starts_with(t.as_bytes())) {
                    // The grammar must accept what was written freely; if it cannot, the
                    // output is left alone rather than forced into a broken state.
                    match advance(&mut self.matcher, generated) {
                        Ok(()) => self.state = State::Active,
                        Err(_) => self.state = State::Off,
                    }
                } else if !triggers.iter().any(|t| t.as_bytes().starts_with(text)) {
                    self.state = State::Off;
                }
                if self.state != State::Active {
                    return Ok(false);
                }
            }
        }
        Ok(self.matcher.is_stopped())
    }
}

/// The tokenizer as llguidance sees it: every token's bytes in a trie. Control tokens are
/// marked special (a grammar names them `<|im_end|>`), so plain text can never spell them.
struct VocabEnv {
    trie: TokTrie,
}

impl VocabEnv {
    fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let n_vocab = tokenizer.n_vocab();
        let words: Vec<Vec<u8>> = (0..n_vocab as TokenId)
            .map(|id| match tokenizer.kind(id) {
                Some(TokenKind::Normal | TokenKind::Byte | TokenKind::UserDefined) => {
                    tokenizer.token_bytes(id, false)
                }
                _ => {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tokenizer.token_text(id).unwrap_or("").as_bytes());
                    w
                }
            })
            .collect();
        let ends = tokenizer.end_of_generation_tokens();
        let eos = ends.first().copied().or(tokenizer.eos).ok_or_else(|| {
            Error::InvalidGrammar("the model has no end-of-generation token".into())
        })?;
        let mut info = TokRxInfo::new(n_vocab as u32, eos);
        info.tok_bos = tokenizer.bos;
        let trie = TokTrie::from(&info, &words);
        let trie = if ends.is_empty() {
            trie
        } else {
            trie.with_eos_tokens(ends)
        };
        Ok(Self { trie })
    }
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Greedy longest-match over the trie. Only grammar-forced text is tokenized this way,
    /// and [`Self::tokenize_is_canonical`] says so, so llguidance never forces tokens from it.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}

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

/// The largest grammar accepted: bytes of its source (a JSON Schema as compact JSON). Real
/// schemas, regexes and tool lists take kilobytes; compiling costs time that grows with the
/// size, so a grammar past this is refused before any work is done.
pub const MAX_GRAMMAR_BYTES: usize = 256 * 1024;

/// Stack for compiling one grammar. llguidance recurses along chains of rules (`a: "x" b`,
/// `b: "y" c`, ...): a 27 KB Lark grammar of 1000 such rules overflows a default 2 MiB
/// thread stack, which aborts the whole process. 32 MiB is what the longest chain within
/// [`MAX_GRAMMAR_BYTES`] needs; twice that for margin (only the pages used are committed).
const COMPILE_STACK_BYTES: usize = 64 << 20;

impl Grammar {
    /// The size [`MAX_GRAMMAR_BYTES`] bounds.
    fn source_bytes(&self) -> usize {
        match self {
            Grammar::JsonSchema(schema) => {
                serde_json::to_vec(schema).map_or(usize::MAX, |v| v.len())
            }
            Grammar::JsonObject => 0,
            Grammar::Regex(s) | Grammar::Lark(s) => s.len(),
        }
    }

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
pub(crate) fn compact(schema: &serde_json::Value) -> serde_json::Value {
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
    closers: Arc<Closers>,
}

/// The tokens that end things: end-of-generation; a quote, alone or followed by closing
/// brackets (ends a JSON string); closing brackets alone (end arrays and objects). Near the
/// end of its token budget a constrained reply is steered to these, so that `max_tokens`
/// closes the structure instead of cutting it.
#[derive(Debug)]
struct Closers {
    ends: Vec<TokenId>,
    quotes: Vec<TokenId>,
    brackets: Vec<TokenId>,
    /// The tokens that spell one printable ASCII character alone (but `"` and `\`): the
    /// alphabet of [`Constraint::shortest_string_end`].
    chars: Vec<TokenId>,
    /// The token that spells `"` alone.
    quote: Option<TokenId>,
}

impl fmt::Debug for GrammarCompiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrammarCompiler").finish_non_exhaustive()
    }
}

impl GrammarCompiler {
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let vocab = VocabEnv::new(tokenizer)?;
        let trie = &vocab.trie;
        let spelled = |ok: fn(&[u8]) -> bool| -> Vec<TokenId> {
            (0..trie.vocab_size() as TokenId)
                .filter(|&id| ok(trie.token(id)))
                .collect()
        };
        let brackets_only = |b: &[u8]| !b.is_empty() && b.iter().all(|c| b"}]".contains(c));
        let closers = Closers {
            ends: trie.eos_tokens().to_vec(),
            quotes: spelled(|b| {
                b.first() == Some(&b'"') && b[1..].iter().all(|c| b"}]".contains(c))
            }),
            brackets: spelled(brackets_only),
            chars: (b' '..=b'~')
                .filter(|c| !b"\"\\".contains(c))
                .filter_map(|c| trie.token_id(&[c]))
                .collect(),
            quote: trie.token_id(b"\""),
        };
        let env: TokEnv = Arc::new(vocab);
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| Error::InvalidGrammar(format!("cannot index the vocabulary: {e}")))?;
        factory.quiet();
        Ok(Self {
            factory,
            closers: Arc::new(closers),
        })
    }

    /// Compiles `grammar`; errors (invalid or unsupported schema, bad regex, grammar syntax,
    /// a grammar over [`MAX_GRAMMAR_BYTES`]) are reported here. Blocks for up to about a
    /// second on the largest grammars, on a thread of its own with a deep stack (see
    /// [`COMPILE_STACK_BYTES`]).
    pub fn compile(&self, grammar: &Grammar) -> Result<Constraint> {
        let bytes = grammar.source_bytes();
        let _span =
            tracing::info_span!("constraint_compile", grammar_bytes = bytes as i64).entered();
        if bytes > MAX_GRAMMAR_BYTES {
            return Err(Error::InvalidGrammar(format!(
                "the grammar is {bytes} bytes; at most {MAX_GRAMMAR_BYTES} are accepted"
            )));
        }
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("grammar".into())
                .stack_size(COMPILE_STACK_BYTES)
                .spawn_scoped(s, || self.compile_here(grammar))
                .map_err(|e| Error::InvalidGrammar(format!("cannot start compiling: {e}")))?
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::InvalidGrammar(
                        "the grammar compiler failed on this grammar".into(),
                    ))
                })
        })
    }

    fn compile_here(&self, grammar: &Grammar) -> Result<Constraint> {
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
            closers: self.closers.clone(),
            json: JsonScan::default(),
        })
    }
}

/// llguidance's messages can append the whole grammar; the first line says what is wrong.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// How far [`Constraint::shortest_string_end`] looks, in characters, and how many nodes it
/// may visit (each costs one matcher check per printable character).
const STRING_END_DEPTH: usize = 24;
const STRING_END_NODES: usize = 400;

/// One sequence's constraint, advanced token by token by the [`crate::Decoder`].
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    state: State,
    closers: Arc<Closers>,
    /// Where the output stands in JSON terms (inside a string or not), for closing.
    json: JsonScan,
}

/// Enough of a JSON scanner to know whether the text so far ends inside a string.
#[derive(Debug, Clone, Copy, Default)]
struct JsonScan {
    in_string: bool,
    escaped: bool,
}

impl JsonScan {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.escaped {
                self.escaped = false;
            } else if self.in_string && b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = !self.in_string;
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Every token is constrained.
    Active,
    /// Unconstrained until the output (whitespace aside) starts with one of the triggers;
    /// then the tokens so far are fed to the matcher and it constrains the rest. Output
    /// that cannot become a trigger turns the constraint off.
    Waiting {
        /// The triggers without their whitespace.
        triggers: Vec<Vec<u8>>,
        /// The output so far without its whitespace.
        seen: Vec<u8>,
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
    /// Leaves the output free unless it starts with one of `triggers` (whitespace aside), as
    /// a tool call does: the model chooses between answering and calling, and a call, once
    /// begun, must match the grammar (which then has to accept the trigger itself).
    pub fn triggered_by<S: Into<String>>(mut self, triggers: impl IntoIterator<Item = S>) -> Self {
        self.state = State::Waiting {
            triggers: triggers
                .into_iter()
                .map(|t| without_whitespace(t.into().as_bytes()))
                .collect(),
            seen: Vec::new(),
        };
        self
    }

    /// Whether the matcher constrains the next token.
    pub fn is_active(&self) -> bool {
        self.state == State::Active
    }

    /// Sets every token the grammar forbids to −∞. End-of-generation tokens stay allowed
    /// exactly when the output so far is complete. With `closing` (the reply is near its
    /// token budget) only the allowed tokens that finish things are kept, when there are
    /// any: end-of-generation first; else, inside a string, the quote that ends it; else
    /// closing brackets. Where none is allowed (a required key still to come, a pattern
    /// not yet satisfied) the most likely allowed token is taken.
    pub fn mask(&mut self, logits: &mut [f32], closing: bool) -> Result<()> {
        if self.state != State::Active {
            return Ok(());
        }
        // Debug level, as the decode steps it runs in: one per token.
        let _span = tracing::debug_span!("constraint_mask", closing).entered();
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
        if closing {
            let allowed = |ids: &[TokenId]| -> Vec<TokenId> {
                ids.iter()
                    .copied()
                    .filter(|&id| logits.get(id as usize).is_some_and(|l| l.is_finite()))
                    .collect()
            };
            let mut keep = allowed(&self.closers.ends);
            if keep.is_empty() {
                keep = if self.json.in_string {
                    allowed(&self.closers.quotes)
                } else {
                    allowed(&self.closers.brackets)
                };
            }
            if keep.is_empty() && self.json.in_string {
                // A string that cannot end yet (an e-mail before its `@`, a date half
                // written): take the first step of the shortest way to its end.
                keep.extend(self.shortest_string_end(logits)?);
            }
            if keep.is_empty() {
                // Nothing closes here yet: go on greedily, which finishes a pattern or a
                // required key far sooner than sampling from the tail.
                keep.extend(crate::sampling::argmax_finite(logits));
            }
            if !keep.is_empty() {
                let kept: Vec<f32> = keep.iter().map(|&id| logits[id as usize]).collect();
                logits.fill(f32::NEG_INFINITY);
                for (id, l) in keep.into_iter().zip(kept) {
                    logits[id as usize] = l;
                }
            }
        }
        Ok(())
    }

    /// The first token of the shortest run of printable characters after which the JSON
    /// string being written may end, or `None` when there is none within
    /// [`STRING_END_DEPTH`] characters. A breadth-first search over single-character tokens,
    /// each step checked by the matcher without advancing it; the first character is tried
    /// in the model's order of preference (`logits`), so among the shortest ways the likeliest
    /// is taken.
    ///
    /// To keep the search small, of the characters allowed after one node only those that
    /// allow a different set of next characters are followed: in an e-mail's local part `a`,
    /// `B` and `7` lead to the same place, `.` and `@` each somewhere else. Siblings that
    /// allow the same next characters are the same state for any pattern whose states differ
    /// in what they allow next; counting patterns (`[0-9]{3,4}`) stay exact because only
    /// siblings, which have counted the same, are merged.
    fn shortest_string_end(&mut self, logits: &[f32]) -> Result<Option<TokenId>> {
        let closers = Arc::clone(&self.closers);
        let (Some(quote), chars) = (closers.quote, &closers.chars) else {
            return Ok(None);
        };
        // What may follow `path`: a bit per entry of `chars`, and whether `"` may.
        let mut probe = Vec::with_capacity(STRING_END_DEPTH + 1);
        let mut next = |matcher: &mut Matcher, path: &[TokenId]| -> Result<(u128, bool)> {
            probe.clear();
            probe.extend_from_slice(path);
            probe.push(quote);
            let fits = |matcher: &mut Matcher, probe: &[TokenId]| -> Result<bool> {
                let n = matcher
                    .validate_tokens(probe)
                    .map_err(|e| Error::InvalidGrammar(first_line(&e.to_string())))?;
                Ok(n == probe.len())
            };
            let ends = fits(matcher, &probe)?;
            let mut allowed = 0u128;
            for (i, &token) in chars.iter().enumerate() {
                *probe.last_mut().unwrap() = token;
                if fits(matcher, &probe)? {
                    allowed |= 1 << i;
                }
            }
            Ok((allowed, ends))
        };
        let (root, _) = next(&mut self.matcher, &[])?;
        let mut first: Vec<usize> = (0..chars.len()).filter(|i| root >> i & 1 == 1).collect();
        let score = |i: usize| {
            logits
                .get(chars[i] as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY)
        };
        first.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
        let mut level: Vec<(Vec<TokenId>, u128)> = vec![(Vec::new(), root)];
        let mut order = Some(first);
        let mut expanded = 0;
        for _ in 0..STRING_END_DEPTH {
            let mut below = Vec::new();
            for (path, allowed) in &level {
                let candidates = order.take().unwrap_or_else(|| {
                    (0..chars.len()).filter(|i| allowed >> i & 1 == 1).collect()
                });
                let mut seen = Vec::new();
                for i in candidates {
                    let mut child = path.clone();
                    child.push(chars[i]);
                    let (child_allowed, ends) = next(&mut self.matcher, &child)?;
                    if ends {
                        return Ok(child.first().copied());
                    }
                    expanded += 1;
                    if child_allowed != 0 && !seen.contains(&child_allowed) {
                        seen.push(child_allowed);
                        below.push((child, child_allowed));
                    }
                    if expanded >= STRING_END_NODES {
                        return Ok(None);
                    }
                }
            }
            level = below;
        }
        Ok(None)
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
            State::Active => {
                advance(&mut self.matcher, &[token])?;
                self.json.push(bytes);
            }
            State::Waiting { triggers, seen } => {
                // Whitespace is not significant for matching triggers: `{\n  "name"`
                // starts a call as `{"name"` does.
                seen.extend(without_whitespace(bytes));
                if triggers.iter().any(|t| seen.starts_with(t)) {
                    // The grammar must accept what was written freely; if it cannot, the
                    // output is left alone rather than forced into a broken state.
                    match advance(&mut self.matcher, generated) {
                        Ok(()) => {
                            self.json.push(seen);
                            self.state = State::Active;
                        }
                        Err(_) => self.state = State::Off,
                    }
                } else if !triggers.iter().any(|t| t.starts_with(seen)) {
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

fn without_whitespace(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect()
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

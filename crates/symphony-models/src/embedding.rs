//! Sentence embeddings: an encoder, its tokenizer, and the pooling a sentence-transformers
//! model directory declares.
//!
//! ```no_run
//! use symphony_models::embedding::Embedder;
//! let embedder = Embedder::load("all-MiniLM-L6-v2/")?;
//! let vectors = embedder.embed(&["The cat sits outside.", "A man is playing guitar."])?;
//! assert_eq!(vectors[0].len(), embedder.dimension());
//! # Ok::<(), symphony_models::Error>(())
//! ```
//!
//! A sentence-transformers directory lists its modules in `modules.json`: the transformer,
//! a `Pooling` module (its `config.json` says mean, CLS or max pooling) and, for most
//! models, `Normalize`. Its `sentence_bert_config.json` gives `max_seq_length`, where longer
//! inputs are cut.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde_json::Value;

use crate::arch::bert::Bert;
use crate::error::{Error, Result};
use crate::safetensors::read_json;
use crate::tokenizer::{TokenId, WordPiece};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of all token states (`[CLS]` and `[SEP]` included, as sentence-transformers
    /// does).
    Mean,
    /// The state of the first token, `[CLS]`.
    Cls,
    /// The element-wise maximum over tokens.
    Max,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        }
    }
}

/// Tokens per forward pass when embedding many texts: large enough that the matrix products
/// run at full speed, small enough that activations stay a few tens of MB.
const TOKENS_PER_BATCH: usize = 4096;

#[derive(Debug)]
pub struct Embedder {
    pub encoder: Bert,
    pub tokenizer: WordPiece,
    pub pooling: Pooling,
    /// Whether vectors are scaled to unit length (the `Normalize` module).
    pub normalize: bool,
    /// Inputs are cut to this many tokens, `[CLS]` and `[SEP]` included.
    pub max_seq_length: usize,
}

/// Whether `dir` holds an encoder Symphony embeds with (a BERT checkpoint).
pub fn is_embedding_checkpoint(dir: &Path) -> bool {
    read_json(&dir.join("config.json"))
        .ok()
        .and_then(|c| {
            c.get("model_type")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .is_some_and(|t| t == "bert")
}

impl Embedder {
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let encoder = Bert::load(dir)?;
        let tokenizer = WordPiece::from_file(&dir.join("tokenizer.json"))?;
        if tokenizer.n_vocab() != encoder.config.vocab_size {
            return Err(Error::InvalidMetadata {
                path: dir.join("tokenizer.json"),
                message: format!(
                    "the tokenizer has {} tokens but the model's vocab_size is {}",
                    tokenizer.n_vocab(),
                    encoder.config.vocab_size
                ),
            });
        }
        let (pooling, normalize) = read_modules(dir)?;
        let limit = encoder.config.max_position_embeddings;
        let max_seq_length = match read_optional_json(&dir.join("sentence_bert_config.json"))? {
            Some(c) => c
                .get("max_seq_length")
                .and_then(Value::as_u64)
                .map_or(limit, |n| (n as usize).clamp(2, limit)),
            None => limit,
        };
        Ok(Self {
            encoder,
            tokenizer,
            pooling,
            normalize,
            max_seq_length,
        })
    }

    pub fn dimension(&self) -> usize {
        self.encoder.config.hidden_size
    }

    /// The ids the encoder sees for `text`: `[CLS] ... [SEP]`, cut to `max_seq_length`.
    pub fn tokenize(&self, text: &str) -> Vec<TokenId> {
        self.tokenizer.encode(text, self.max_seq_length)
    }

    /// One vector per text, in order. Texts are batched by length; a text's vector does not
    /// depend on the others.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        let inputs: Vec<Vec<TokenId>> = texts.iter().map(|t| self.tokenize(t.as_ref())).collect();
        self.embed_tokens(&inputs)
    }

    /// One vector per tokenized input (each `[CLS] ... [SEP]`, at most `max_seq_length`).
    pub fn embed_tokens(&self, inputs: &[Vec<TokenId>]) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs[i].len());
        let mut out = vec![Vec::new(); inputs.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < order.len()
                && (end == start || tokens + inputs[order[end]].len() <= TOKENS_PER_BATCH)
            {
                tokens += inputs[order[end]].len();
                end += 1;
            }
            let batch: Vec<&[TokenId]> = order[start..end]
                .iter()
                .map(|&i| inputs[i].as_slice())
                .collect();
            let states = self.encoder.forward(&batch)?;
            let mut row = 0;
            for (&i, input) in order[start..end].iter().zip(&batch) {
                let len = input.len();
                out[i] = self.pool(&states.narrow(0, row, len)?)?;
                row += len;
            }
            start = end;
        }
        Ok(out)
    }

    fn pool(&self, states: &Tensor) -> Result<Vec<f32>> {
        let pooled = match self.pooling {
            Pooling::Mean => states.mean(0)?,
            Pooling::Cls => states.get(0)?,
            Pooling::Max => states.max(0)?,
        };
        let mut v = pooled.to_vec1::<f32>()?;
        if self.normalize {
            // sentence-transformers divides by max(‖v‖, 1e-12).
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        Ok(v)
    }
}

/// The pooling and normalisation that `modules.json` declares. Without one, the pipeline
/// sentence-transformers builds for a bare checkpoint: mean pooling, no normalisation.
fn read_modules(dir: &Path) -> Result<(Pooling, bool)> {
    let modules_path = dir.join("modules.json");
    let Some(modules) = read_optional_json(&modules_path)? else {
        return Ok((Pooling::Mean, false));
    };
    let modules = modules.as_array().cloned().unwrap_or_default();
    let of_type = |suffix: &str| {
        modules.iter().find(|m| {
            m.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(suffix))
        })
    };
    let normalize = of_type(".Normalize").is_some();
    let pooling = match of_type(".Pooling") {
        None => Pooling::Mean,
        Some(module) => {
            let path: PathBuf = dir
                .join(
                    module
                        .get("path")
                        .and_then(Value::as_str)
                        .unwrap_or("1_Pooling"),
                )
                .join("config.json");
            let config = read_json(&path)?;
            let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
            match (
                flag("pooling_mode_mean_tokens"),
                flag("pooling_mode_cls_token"),
                flag("pooling_mode_max_tokens"),
            ) {
                (true, false, false) => Pooling::Mean,
                (false, true, false) => Pooling::Cls,
                (false, false, true) => Pooling::Max,
                _ => {
                    return Err(Error::InvalidMetadata {
                        path,
                        message: "exactly one of mean, CLS or max pooling must be set \
                                  (other pooling modes are not supported)"
                            .into(),
                    })
                }
            }
        }
    };
    Ok((pooling, normalize))
}

fn read_optional_json(path: &Path) -> Result<Option<Value>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

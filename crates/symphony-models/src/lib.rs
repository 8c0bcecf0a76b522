//! Symphony's model layer: model files, tokenizers, chat templates and forward passes.
//!
//! Architecture invariant: this crate does no network IO and knows nothing of sampling,
//! scheduling or serving. It turns a file into a [`Model`] that maps tokens to logits, with
//! the per-sequence state (the KV [`Cache`]) kept apart from the immutable weights.
//!
//! ```no_run
//! use symphony_models::{Model, Logits, tokenizer::EncodeOptions};
//! let model = Model::load("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tokens = model.tokenizer.encode("The capital of France is", EncodeOptions::PLAIN);
//! let mut cache = model.new_cache();
//! let logits = model.forward(&tokens, &mut cache, Logits::Last)?; // (1, n_vocab)
//! # Ok::<(), symphony_models::Error>(())
//! ```

pub mod arch;
pub mod chat_template;
pub mod embedding;
mod error;
mod ggml_type;
pub mod gguf;
pub mod kernels;
pub mod layers;
pub mod quant;
pub mod safetensors;
pub mod tokenizer;

use std::path::Path;

use candle_core::Tensor;

pub use arch::Decoder;
pub use chat_template::ChatTemplate;
pub use error::{Error, Result};
pub use gguf::GgufFile;
pub use layers::attention::KV_BLOCK_SIZE;
use layers::attention::{KvBlocks, Segment};
pub use safetensors::{LoadOptions, QuantizeTo};
pub use tokenizer::{TokenId, Tokenizer};

/// Which positions [`Model::forward`] returns logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position: generation.
    Last,
    /// Every position: scoring (perplexity, prompt logprobs).
    All,
}

/// Keys and values of every layer in [`KV_BLOCK_SIZE`]-position blocks. Block `b` means the
/// same slot in every layer, so a sequence's block table serves the whole model. A store is
/// shared by any number of sequences (the engine's scheduler owns one per model); a [`Cache`]
/// wraps a private one for a single sequence.
#[derive(Debug, Clone)]
pub struct KvStore {
    layers: Vec<KvBlocks>,
}

impl KvStore {
    pub fn n_blocks(&self) -> usize {
        self.layers.first().map_or(0, KvBlocks::n_blocks)
    }

    /// Bytes of keys and values one block holds across all layers.
    pub fn block_bytes(&self) -> usize {
        self.layers.iter().map(KvBlocks::block_bytes).sum()
    }

    /// Grows the store to `n_blocks`; existing blocks keep their contents.
    pub fn grow(&mut self, n_blocks: usize) {
        self.layers.iter_mut().for_each(|l| l.grow(n_blocks));
    }

    /// Copies block `from` into block `to` in every layer (copy-on-write of a shared block).
    pub fn copy_block(&mut self, from: u32, to: u32) {
        self.layers.iter_mut().for_each(|l| l.copy_block(from, to));
    }
}

/// One sequence's part of a batched forward pass ([`Model::forward_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    /// The tokens to run, at positions `first_pos..first_pos + tokens.len()`.
    pub tokens: &'a [TokenId],
    /// Positions `0..first_pos` are already in the store, in `blocks`.
    pub first_pos: usize,
    /// The sequence's block table: it must cover `first_pos + tokens.len()` positions.
    pub blocks: &'a [u32],
    pub logits: Logits,
}

/// Per-sequence state for running one sequence at a time: a private [`KvStore`] that grows
/// as the sequence does.
#[derive(Debug, Clone)]
pub struct Cache {
    store: KvStore,
    blocks: Vec<u32>,
    len: usize,
}

impl Cache {
    fn new(store: KvStore) -> Self {
        Self {
            store,
            blocks: Vec::new(),
            len: 0,
        }
    }

    /// Positions processed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the first `len` positions, dropping the rest (reuse of a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Makes room for `len` positions.
    fn reserve(&mut self, len: usize) {
        let needed = len.div_ceil(KV_BLOCK_SIZE);
        if needed > self.store.n_blocks() {
            self.store
                .grow(needed.max(2 * self.store.n_blocks()).max(4));
        }
        while self.blocks.len() < needed {
            self.blocks.push(self.blocks.len() as u32);
        }
    }
}

/// What `symphony models show` prints about a model file.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub architecture: String,
    pub name: Option<String>,
    pub n_parameters: u64,
    pub weights_bytes: u64,
    pub context_length: usize,
    pub n_layers: usize,
    pub embedding_length: usize,
    pub n_vocab: usize,
    /// The most common weight type among the matrices, e.g. `Q4_1`.
    pub quantization: String,
}

/// A loaded model: weights, tokenizer and chat template.
#[derive(Debug)]
pub struct Model {
    pub info: ModelInfo,
    pub tokenizer: Tokenizer,
    /// `None` when the file carries no `tokenizer.chat_template`.
    pub chat_template: Option<ChatTemplate>,
    /// The architecture's decoder, built by its row of [`arch::ARCHITECTURES`].
    pub decoder: Box<dyn Decoder>,
}

impl Model {
    /// Loads a GGUF file, or a Hugging Face checkpoint directory (safetensors).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, LoadOptions::default())
    }

    pub fn load_with(path: impl AsRef<Path>, options: LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let gguf = if safetensors::is_checkpoint(path) {
            safetensors::open(path, options)?
        } else {
            GgufFile::open(path)?
        };
        Self::from_gguf(&gguf)
    }

    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let arch_name = gguf.architecture()?.to_string();
        let tokenizer = Tokenizer::from_gguf(gguf)?;
        let token_text = |id: Option<TokenId>| {
            id.and_then(|id| tokenizer.token_text(id))
                .unwrap_or("")
                .to_string()
        };
        let chat_template = match gguf.get("tokenizer.chat_template") {
            Some(_) => {
                let source = gguf.get_str("tokenizer.chat_template")?;
                Some(ChatTemplate::new(
                    source,
                    &token_text(tokenizer.bos),
                    &token_text(tokenizer.eos),
                )?)
            }
            None => None,
        };
        let spec =
            arch::by_gguf_name(&arch_name).ok_or_else(|| Error::UnsupportedArchitecture {
                path: gguf.path().to_path_buf(),
                arch: arch_name.clone(),
                supported: arch::gguf_names(),
            })?;
        let decoder = (spec.load)(gguf, spec, tokenizer.n_vocab())?;
        let info = model_info(gguf, decoder.config(), &tokenizer);
        Ok(Self {
            info,
            tokenizer,
            chat_template,
            decoder,
        })
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> Cache {
        Cache::new(self.new_kv_store(0))
    }

    /// A store of `n_blocks` KV blocks for batched forward passes.
    pub fn new_kv_store(&self, n_blocks: usize) -> KvStore {
        let config = self.decoder.config();
        KvStore {
            layers: (0..config.n_layers)
                .map(|_| KvBlocks::new(config.n_kv_heads, config.head_dim, n_blocks))
                .collect(),
        }
    }

    pub fn context_length(&self) -> usize {
        self.info.context_length
    }

    /// Runs `tokens` after what `cache` holds. Errors (never panics) on an empty input, an
    /// unknown token id, or a sequence longer than the context.
    pub fn forward(&self, tokens: &[TokenId], cache: &mut Cache, logits: Logits) -> Result<Tensor> {
        let first_pos = cache.len();
        self.check_tokens(tokens, first_pos)?;
        cache.reserve(first_pos + tokens.len());
        let item = BatchItem {
            tokens,
            first_pos,
            blocks: &cache.blocks,
            logits,
        };
        let out = self.forward_unchecked(&[item], &mut cache.store)?;
        cache.len = first_pos + tokens.len();
        Ok(out)
    }

    /// Runs several sequences in one pass over the weights: their rows go through every
    /// matrix together, and each attends only to its own blocks of `store`. Returns the logits
    /// rows of the items in order: one row for [`Logits::Last`], one per token for
    /// [`Logits::All`]. A sequence's logits are the same bits whatever it is batched with.
    ///
    /// Items must not write to the same blocks (a block shared by several sequences holds
    /// positions all of them have already computed).
    pub fn forward_batch(&self, items: &[BatchItem<'_>], store: &mut KvStore) -> Result<Tensor> {
        if items.is_empty() {
            return Err(Error::EmptyInput);
        }
        for item in items {
            self.check_tokens(item.tokens, item.first_pos)?;
            let end = item.first_pos + item.tokens.len();
            let covered = item.blocks.len() * KV_BLOCK_SIZE;
            let n_blocks = store.n_blocks();
            if covered < end || item.blocks.iter().any(|&b| b as usize >= n_blocks) {
                return Err(Error::BlockTable {
                    positions: end,
                    blocks: item.blocks.len(),
                    store_blocks: n_blocks,
                });
            }
        }
        self.forward_unchecked(items, store)
    }

    fn check_tokens(&self, tokens: &[TokenId], first_pos: usize) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::EmptyInput);
        }
        let n_vocab = self.tokenizer.n_vocab();
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(Error::TokenOutOfRange { id, n_vocab });
        }
        let requested = first_pos + tokens.len();
        if requested > self.context_length() {
            return Err(Error::ContextLength {
                requested,
                limit: self.context_length(),
            });
        }
        Ok(())
    }

    fn forward_unchecked(&self, items: &[BatchItem<'_>], store: &mut KvStore) -> Result<Tensor> {
        let mut tokens = Vec::with_capacity(items.iter().map(|i| i.tokens.len()).sum());
        let mut segments = Vec::with_capacity(items.len());
        let mut logit_rows = Vec::new();
        for item in items {
            let start = tokens.len();
            tokens.extend_from_slice(item.tokens);
            segments.push(Segment {
                rows: start..tokens.len(),
                first_pos: item.first_pos,
                blocks: item.blocks,
            });
            match item.logits {
                Logits::Last => logit_rows.push(tokens.len() as u32 - 1),
                Logits::All => logit_rows.extend(start as u32..tokens.len() as u32),
            }
        }
        let batch = layers::Batch {
            tokens: &tokens,
            segments: &segments,
            logit_rows: &logit_rows,
        };
        // The whole pass runs on a worker of the thread pool, so the many parallel operations
        // inside it split work with the other workers directly, instead of each one handing
        // its work over from this thread and sleeping until it is done.
        let (out, ()) = rayon::join(|| self.decoder.forward(&batch, &mut store.layers), || ());
        out
    }
}

fn model_info(gguf: &GgufFile, config: &arch::config::Config, tokenizer: &Tokenizer) -> ModelInfo {
    // The file's own label when it has one (a Q4_K_M file mixes Q4_K, Q6_K, Q5_0 and Q8_0
    // matrices), else the most common matrix type.
    let quantization = gguf
        .get("general.file_type")
        .and_then(|v| v.as_f64())
        .and_then(|t| file_type_name(t as u32))
        .map(String::from)
        .unwrap_or_else(|| most_common_matrix_type(gguf));
    let (context_length, n_layers, embedding_length) =
        (config.context_length, config.n_layers, config.dim);
    ModelInfo {
        architecture: gguf.architecture().unwrap_or_default().to_string(),
        name: gguf
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(String::from),
        n_parameters: gguf.tensors.iter().map(|t| t.n_elements()).sum(),
        weights_bytes: gguf.weights_size(),
        context_length,
        n_layers,
        embedding_length,
        n_vocab: tokenizer.n_vocab(),
        quantization,
    }
}

fn most_common_matrix_type(gguf: &GgufFile) -> String {
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    for t in gguf.tensors.iter().filter(|t| t.dims.len() == 2) {
        *counts.entry(t.ggml_type.name()).or_default() += t.n_elements();
    }
    counts
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map(|(name, _)| name.to_string())
        .unwrap_or_default()
}

/// llama.cpp's names for `general.file_type` (its `llama_ftype`).
fn file_type_name(file_type: u32) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

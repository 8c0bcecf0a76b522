//! What one row of the architecture table (`ARCHITECTURES` in `arch/mod.rs`) says: how a
//! checkpoint or a GGUF file names the architecture, what its `config.json` adds to the
//! shared keys, how its Hugging Face tensors differ, and how its decoder is built.

use candle_core::Tensor;

use super::config::{Config, GgufDefaults};
use super::hf_config::HfConfig;
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::layers::{Batch, KvBlocks};

/// A loaded decoder: every architecture file builds one.
pub trait Decoder: std::fmt::Debug + Send + Sync {
    /// The shared hyperparameters, read by the KV store and by `ModelInfo`.
    fn config(&self) -> &Config;

    /// Runs a batch and returns the logits of its `logit_rows`, `(rows, n_vocab)`.
    fn forward(&self, batch: &Batch<'_>, kv: &mut [KvBlocks]) -> Result<Tensor>;
}

/// One architecture Symphony runs.
#[derive(Debug)]
pub struct ArchSpec {
    /// `general.architecture` in GGUF files (and in checkpoints, once read as GGUF).
    pub gguf_name: &'static str,
    /// `model_type` in a Hugging Face `config.json`.
    pub hf_model_type: &'static str,
    /// What llama.cpp assumes for this architecture where a GGUF file leaves a key out.
    pub gguf_defaults: GgufDefaults,
    /// RMSNorm after the attention and the MLP as well as before (Gemma): the checkpoint's
    /// `post_attention_layernorm` then follows the attention instead of preceding the MLP.
    pub hf_sandwich_norms: bool,
    /// The checkpoint stores norm weights as `w` and applies `1 + w` (Gemma); GGUF files
    /// store `1 + w`, so they are converted at load.
    pub hf_norms_plus_one: bool,
    /// Writes the `{arch}.*` keys this architecture adds to the shared ones, or says why the
    /// `config.json` cannot run.
    pub hf_config: fn(&mut HfConfig<'_>) -> std::result::Result<(), String>,
    /// Reads the hyperparameters and weights of a GGUF file (or a checkpoint read as one).
    pub load: fn(&GgufFile, &'static ArchSpec, usize) -> Result<Box<dyn Decoder>>,
}

/// The `hf_config` of an architecture whose `config.json` holds only the shared keys.
pub fn no_extra_keys(_: &mut HfConfig<'_>) -> std::result::Result<(), String> {
    Ok(())
}

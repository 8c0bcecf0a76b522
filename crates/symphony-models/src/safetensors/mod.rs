//! Hugging Face checkpoints: a directory with `config.json`, `tokenizer.json` (and usually
//! `tokenizer_config.json`) and one or more `.safetensors` files (sharded ones listed in
//! `model.safetensors.index.json`).
//!
//! A checkpoint is presented as a [`GgufFile`], the form every architecture loads from:
//! - the hyperparameters of `config.json` become the `{arch}.*` keys llama.cpp's converter
//!   writes, and `tokenizer.json` becomes the `tokenizer.ggml.*` keys;
//! - tensors are renamed to their GGUF names and read in place from each shard's memory map
//!   (F32, F16 and BF16 are ggml types too), so nothing is copied;
//! - only what must change is made anew, in one owned buffer: Gemma's norm weights (stored as
//!   `w`, used as `1 + w`), and every matrix when quantization at load is asked for.
//!
//! Unlike llama.cpp's converter, Q and K rows keep Hugging Face's layout, so these models rotate
//! in the "neox" style (see [`HF_ROPE_LAYOUT_KEY`]).

mod config;
mod json;
mod quantize;
mod shards;
mod tensor_names;
mod tokenizer;

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::arch::{self, config::HF_ROPE_LAYOUT_KEY};
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, MetadataValue, TensorInfo, WeightBuffer};
use config::hyperparameters;
use quantize::{convert, OwnedTensors};
use shards::{open_shard, shard_files};
use tensor_names::gguf_name;
use tokenizer::tokenizer_metadata;

pub(crate) use json::read_json;
pub use quantize::{LoadOptions, QuantizeTo};
pub(crate) use shards::read_f32_tensors;

/// Whether `path` is a Hugging Face checkpoint directory.
pub fn is_checkpoint(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

/// Reads the checkpoint in `dir` as a [`GgufFile`].
pub fn open(dir: &Path, options: LoadOptions) -> Result<GgufFile> {
    let config: Value = read_json(&dir.join("config.json"))?;
    let invalid = |message: String| Error::InvalidMetadata {
        path: dir.join("config.json"),
        message,
    };
    if config.get("text_config").is_some() {
        return Err(invalid(
            "multimodal checkpoints (with a text_config) are not supported yet".into(),
        ));
    }
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("'model_type' is missing".into()))?;
    let spec =
        arch::by_hf_model_type(model_type).ok_or_else(|| Error::UnsupportedArchitecture {
            path: dir.join("config.json"),
            arch: model_type.to_string(),
            supported: arch::hf_model_types(),
        })?;
    let arch = spec.gguf_name;
    let mut metadata = hyperparameters(&config, spec).map_err(invalid)?;
    metadata.insert(HF_ROPE_LAYOUT_KEY.into(), MetadataValue::Bool(true));
    metadata.insert(
        "general.name".into(),
        MetadataValue::String(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    );
    let n_vocab = config
        .get("vocab_size")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("'vocab_size' is missing".into()))? as usize;
    // The tokenizer's tables are sized by it before any tensor is seen: a crafted value
    // must not decide how much memory is asked for. Real vocabularies stay far below.
    const MAX_VOCAB: usize = 1 << 24;
    if n_vocab == 0 || n_vocab > MAX_VOCAB {
        return Err(invalid(format!(
            "vocab_size {n_vocab} is out of range (1 to {MAX_VOCAB})"
        )));
    }
    tokenizer_metadata(dir, &config, n_vocab, &mut metadata)?;

    let shards = shard_files(dir)?;
    let mut buffers = Vec::new();
    let mut tensors = Vec::new();
    let mut made = OwnedTensors::default();
    for shard in &shards {
        let buffer = buffers.len();
        let (map, entries) = open_shard(shard)?;
        for entry in entries {
            let Some(name) = gguf_name(&entry.name, arch) else {
                continue; // Tensors no architecture reads (rotary caches, vision towers).
            };
            let info = TensorInfo {
                name,
                dims: entry.shape.iter().rev().map(|&d| d as u64).collect(),
                ggml_type: entry.ggml_type,
                buffer,
                offset: entry.offset as u64,
                n_bytes: entry.n_bytes as u64,
            };
            let bytes = &map[entry.offset..entry.offset + entry.n_bytes];
            tensors.push(convert(
                info,
                bytes,
                spec.hf_norms_plus_one,
                options,
                &mut made,
            ));
        }
        buffers.push(Arc::new(WeightBuffer::Mapped(map)));
    }
    if !made.bytes.is_empty() {
        let owned = buffers.len();
        for t in tensors.iter_mut().filter(|t| t.buffer == usize::MAX) {
            t.buffer = owned;
        }
        buffers.push(Arc::new(WeightBuffer::owned(&made.bytes)));
    }
    if let Some(t) = tensors.iter().find(|t| t.name == "token_embd.weight") {
        if t.dims.get(1) != Some(&(n_vocab as u64)) {
            return Err(invalid(format!(
                "vocab_size {n_vocab} does not match the embedding table {:?}",
                t.dims
            )));
        }
    }
    GgufFile::from_parts(dir.to_path_buf(), metadata, tensors, buffers)
}

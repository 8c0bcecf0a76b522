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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ8_0, GgmlType as Block};
use half::{bf16, f16};
use memmap2::Mmap;
use serde_json::Value;

use crate::arch::config::HF_ROPE_LAYOUT_KEY;
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, MetadataValue, TensorInfo, WeightBuffer};
use crate::quant::GgmlType;
use crate::tokenizer::{SpacePrefix, SPACE_PREFIX_KEY};

/// Quantization applied to a checkpoint's matrices as it loads (`--quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizeTo {
    Q8_0,
    /// Q4_K where a row is whole 256-element super-blocks, Q8_0 otherwise (as llama.cpp
    /// falls back for tensors whose rows do not fit the type).
    Q4K,
}

impl std::str::FromStr for QuantizeTo {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Self::Q8_0),
            "q4_k" | "q4_k_m" => Ok(Self::Q4K),
            _ => Err(format!(
                "unknown quantization '{s}' (expected q8_0 or q4_k)"
            )),
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Quantize a safetensors checkpoint's matrices at load. GGUF files keep their types.
    pub quantize: Option<QuantizeTo>,
}

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
    let arch = match model_type {
        "llama" => "llama",
        "mistral" => "mistral",
        "qwen2" => "qwen2",
        "phi3" => "phi3",
        "mixtral" => "mixtral",
        "qwen2_moe" => "qwen2moe",
        "gemma3_text" => "gemma3",
        other => {
            return Err(Error::UnsupportedArchitecture {
                path: dir.join("config.json"),
                arch: other.to_string(),
                supported: "llama, mistral, qwen2, phi3, mixtral, qwen2_moe, gemma3_text",
            })
        }
    };
    let mut metadata = hyperparameters(&config, arch).map_err(invalid)?;
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
            tensors.push(convert(info, bytes, arch, options, &mut made));
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

/// Tensors made at load, laid end to end (32-byte aligned) in one buffer.
#[derive(Default)]
struct OwnedTensors {
    bytes: Vec<u8>,
}

impl OwnedTensors {
    /// Appends `data` and returns its offset.
    fn push(&mut self, data: &[u8]) -> u64 {
        self.bytes.resize(self.bytes.len().next_multiple_of(32), 0);
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(data);
        offset
    }
}

/// Applies the load-time changes to one tensor: Gemma's `1 + w` norms, and quantization of
/// matrices when asked. A changed tensor is moved into `made` (its buffer set to `usize::MAX`
/// until the owned buffer gets its index).
fn convert(
    info: TensorInfo,
    bytes: &[u8],
    arch: &str,
    options: LoadOptions,
    made: &mut OwnedTensors,
) -> TensorInfo {
    let is_norm = info.name.contains("norm");
    let to_owned = |made: &mut OwnedTensors, ggml_type: GgmlType, data: Vec<u8>| TensorInfo {
        ggml_type,
        buffer: usize::MAX,
        offset: made.push(&data),
        n_bytes: data.len() as u64,
        ..info.clone()
    };
    if arch == "gemma3" && is_norm {
        let values: Vec<f32> = to_f32(info.ggml_type, bytes)
            .iter()
            .map(|w| w + 1.0)
            .collect();
        return to_owned(made, GgmlType::F32, f32_bytes(&values));
    }
    // Routers stay in full precision, as llama.cpp keeps them: a small error there changes
    // which experts run.
    let is_matrix = info.dims.len() == 2 && !is_norm && !info.name.contains("ffn_gate_inp");
    let target = match options.quantize {
        Some(q) if is_matrix => q,
        _ => return info,
    };
    let cols = info.dims[0] as usize;
    let values = to_f32(info.ggml_type, bytes);
    match target {
        QuantizeTo::Q4K if cols.is_multiple_of(BlockQ4K::BLCK_SIZE) => {
            to_owned(made, GgmlType::Q4_K, quantize::<BlockQ4K>(&values))
        }
        _ if cols.is_multiple_of(BlockQ8_0::BLCK_SIZE) => {
            to_owned(made, GgmlType::Q8_0, quantize::<BlockQ8_0>(&values))
        }
        _ => info, // Rows too short for any block type: kept as stored.
    }
}

fn quantize<T: Block>(values: &[f32]) -> Vec<u8> {
    let mut blocks = vec![T::zeros(); values.len() / T::BLCK_SIZE];
    T::from_float(values, &mut blocks);
    let size = std::mem::size_of_val(blocks.as_slice());
    // SAFETY: candle's block types are `repr(C)` plain data; we read their bytes as stored.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), size) }.to_vec()
}

fn to_f32(ggml_type: GgmlType, bytes: &[u8]) -> Vec<f32> {
    match ggml_type {
        GgmlType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        GgmlType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A tensor's entry in a safetensors header, checked against the file.
struct ShardEntry {
    name: String,
    shape: Vec<usize>,
    ggml_type: GgmlType,
    /// Absolute offset in the file.
    offset: usize,
    n_bytes: usize,
}

/// Maps a `.safetensors` file and reads its header: an 8-byte little-endian length, then a
/// JSON object of `name: {dtype, shape, data_offsets}` relative to the end of the header.
fn open_shard(path: &Path) -> Result<(Mmap, Vec<ShardEntry>)> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: read-only map of a checkpoint file, as for GGUF files (see `GgufFile::open`).
    let map = unsafe { Mmap::map(&file) }.map_err(io)?;
    let bad = |offset: u64, message: String| Error::Gguf {
        path: path.to_path_buf(),
        offset,
        message,
    };
    let header_len = map
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| {
            bad(
                0,
                "expected an 8-byte header length: not a safetensors file".into(),
            )
        })?;
    let data_start = 8u64
        .checked_add(header_len)
        .filter(|&end| end <= map.len() as u64)
        .ok_or_else(|| {
            bad(
                0,
                format!(
                    "header of {header_len} bytes does not fit in the {} bytes of the file",
                    map.len()
                ),
            )
        })? as usize;
    let header: BTreeMap<String, Value> = serde_json::from_slice(&map[8..data_start])
        .map_err(|e| bad(8, format!("header is not a JSON object: {e}")))?;
    let mut entries = Vec::new();
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = entry.get("dtype").and_then(Value::as_str).unwrap_or("?");
        let ggml_type = match dtype {
            "F32" => GgmlType::F32,
            "F16" => GgmlType::F16,
            "BF16" => GgmlType::BF16,
            // Integer buffers such as BERT's `position_ids` are not weights.
            "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL" => continue,
            other => {
                return Err(bad(
                    8,
                    format!("tensor '{name}' has dtype {other} (supported: F32, F16, BF16)"),
                ))
            }
        };
        let shape: Option<Vec<usize>> =
            entry.get("shape").and_then(Value::as_array).and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<_>>()
            });
        let offsets: Option<Vec<usize>> = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        let (Some(shape), Some([begin, end])) = (shape, offsets.as_deref()) else {
            return Err(bad(
                8,
                format!("tensor '{name}' lacks a shape or data_offsets"),
            ));
        };
        let n_elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let expected = n_elements.and_then(|n| n.checked_mul(ggml_type.type_size()));
        let (begin, end) = (*begin, *end);
        if expected != end.checked_sub(begin) {
            return Err(bad(
                8,
                format!(
                    "tensor '{name}': bytes {begin}..{end} do not hold {shape:?} {dtype} values"
                ),
            ));
        }
        // Offsets come from the file: near usize::MAX the sum would wrap past the check.
        let file_end = data_start.checked_add(end).filter(|&e| e <= map.len());
        if file_end.is_none() {
            return Err(bad(
                8,
                format!(
                    "tensor '{name}' needs bytes {begin}..{end} after the {data_start}-byte \
                     header but the file has {}: the file is truncated or corrupt",
                    map.len()
                ),
            ));
        }
        entries.push(ShardEntry {
            name,
            shape,
            ggml_type,
            offset: data_start + begin,
            n_bytes: end - begin,
        });
    }
    Ok((map, entries))
}

/// Every tensor of the checkpoint in `dir`, as F32 values with its shape, by name: for the
/// small encoders that compute in F32 and need no GGUF view.
pub(crate) fn read_f32_tensors(dir: &Path) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>> {
    let mut tensors = BTreeMap::new();
    for shard in shard_files(dir)? {
        let (map, entries) = open_shard(&shard)?;
        for entry in entries {
            let bytes = &map[entry.offset..entry.offset + entry.n_bytes];
            tensors.insert(entry.name, (entry.shape, to_f32(entry.ggml_type, bytes)));
        }
    }
    Ok(tensors)
}

/// The shards: those the index names, or every `.safetensors` file of the directory.
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let json = read_json(&index)?;
        let files: BTreeSet<&str> = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::InvalidMetadata {
                path: index.clone(),
                message: "'weight_map' is missing".into(),
            })?
            .values()
            .filter_map(Value::as_str)
            .collect();
        // The index is data from the checkpoint's author: a shard is a file of this
        // directory, never a path that climbs out of it or starts at the root.
        for file in &files {
            let mut parts = Path::new(file).components();
            let plain = matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            ) && !file.contains(['/', '\\']);
            if !plain {
                return Err(Error::InvalidMetadata {
                    path: index.clone(),
                    message: format!(
                        "weight_map names the shard {file:?}: a shard must be a plain file \
                         name inside the checkpoint directory"
                    ),
                });
            }
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::InvalidMetadata {
            path: dir.to_path_buf(),
            message: "no .safetensors files in the checkpoint".into(),
        });
    }
    Ok(files)
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::InvalidMetadata {
        path: path.to_path_buf(),
        message: format!("not valid JSON: {e}"),
    })
}

/// The GGUF name of a Hugging Face tensor, as llama.cpp's converter maps it; `None` for
/// tensors no architecture here reads.
fn gguf_name(hf: &str, arch: &str) -> Option<String> {
    let (stem, suffix) = hf.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    let global = match stem {
        "model.embed_tokens" => Some("token_embd"),
        "model.norm" => Some("output_norm"),
        "lm_head" => Some("output"),
        _ => None,
    };
    if let Some(name) = global {
        return Some(format!("{name}.{suffix}"));
    }
    let rest = stem.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let gemma = arch == "gemma3";
    let name = match part {
        "input_layernorm" => "attn_norm".to_string(),
        "post_attention_layernorm" if gemma => "post_attention_norm".into(),
        "post_attention_layernorm" => "ffn_norm".into(),
        "pre_feedforward_layernorm" => "ffn_norm".into(),
        "post_feedforward_layernorm" => "post_ffw_norm".into(),
        "self_attn.q_proj" => "attn_q".into(),
        "self_attn.k_proj" => "attn_k".into(),
        "self_attn.v_proj" => "attn_v".into(),
        "self_attn.o_proj" => "attn_output".into(),
        "self_attn.qkv_proj" => "attn_qkv".into(),
        "self_attn.q_norm" => "attn_q_norm".into(),
        "self_attn.k_norm" => "attn_k_norm".into(),
        "mlp.gate_proj" => "ffn_gate".into(),
        "mlp.up_proj" => "ffn_up".into(),
        "mlp.down_proj" => "ffn_down".into(),
        "mlp.gate_up_proj" => "ffn_up".into(), // Phi-3: gate rows, then up rows.
        "block_sparse_moe.gate" | "mlp.gate" => "ffn_gate_inp".into(),
        "mlp.shared_expert.gate_proj" => "ffn_gate_shexp".into(),
        "mlp.shared_expert.up_proj" => "ffn_up_shexp".into(),
        "mlp.shared_expert.down_proj" => "ffn_down_shexp".into(),
        "mlp.shared_expert_gate" => "ffn_gate_inp_shexp".into(),
        _ => {
            // Experts, stored one by one: `blk.N.ffn_{gate,up,down}_exps.E`.
            let experts = part
                .strip_prefix("block_sparse_moe.experts.")
                .or_else(|| part.strip_prefix("mlp.experts."))?;
            let (expert, proj) = experts.split_once('.')?;
            let expert: usize = expert.parse().ok()?;
            let ffn = match proj {
                "w1" | "gate_proj" => "ffn_gate",
                "w2" | "down_proj" => "ffn_down",
                "w3" | "up_proj" => "ffn_up",
                _ => return None,
            };
            format!("{ffn}_exps.{expert}")
        }
    };
    Some(format!("blk.{layer}.{name}.{suffix}"))
}

/// `{arch}.*` keys from `config.json`, with the defaults of the `transformers` config
/// classes where a key may be absent.
fn hyperparameters(
    config: &Value,
    arch: &str,
) -> std::result::Result<BTreeMap<String, MetadataValue>, String> {
    let uint = |key: &str| config.get(key).and_then(Value::as_u64);
    let float = |key: &str| config.get(key).and_then(Value::as_f64);
    let need = |key: &str| {
        uint(key).ok_or_else(|| format!("'{key}' is missing or not a non-negative integer"))
    };
    let mut m = BTreeMap::new();
    let mut put_u = |k: &str, v: u64| {
        m.insert(format!("{arch}.{k}"), MetadataValue::U64(v));
    };
    let dim = need("hidden_size")?;
    let n_heads = need("num_attention_heads")?;
    let head_dim = uint("head_dim").unwrap_or(dim / n_heads.max(1));
    put_u("block_count", need("num_hidden_layers")?);
    put_u("embedding_length", dim);
    put_u("feed_forward_length", need("intermediate_size")?);
    put_u("attention.head_count", n_heads);
    put_u(
        "attention.head_count_kv",
        uint("num_key_value_heads").unwrap_or(n_heads),
    );
    put_u("attention.key_length", head_dim);
    put_u(
        "context_length",
        uint("max_position_embeddings").unwrap_or(2048),
    );

    // Rotary settings: `rope_parameters` (transformers 5, per layer type for Gemma 3) or the
    // older top-level `rope_theta` / `rope_scaling` / `partial_rotary_factor`.
    let params = config.get("rope_parameters");
    let rope_of = |layer_type: Option<&str>| -> Option<&Value> {
        let p = params?;
        match layer_type {
            Some(t) if p.get(t).is_some() => p.get(t),
            _ => Some(p),
        }
    };
    let global = rope_of(Some("full_attention"));
    let theta = global
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64)
        .or_else(|| float("rope_theta"))
        .unwrap_or(10_000.0);
    let rope_type = global
        .and_then(|p| p.get("rope_type"))
        .and_then(Value::as_str)
        .or_else(|| {
            config
                .get("rope_scaling")
                .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
                .and_then(Value::as_str)
        })
        .unwrap_or("default");
    if rope_type != "default" {
        return Err(format!(
            "rope scaling '{rope_type}' is not supported yet (only unscaled rotary embeddings)"
        ));
    }
    let partial = global
        .and_then(|p| p.get("partial_rotary_factor"))
        .and_then(Value::as_f64)
        .or_else(|| float("partial_rotary_factor"))
        .unwrap_or(1.0);
    put_u("rope.dimension_count", (head_dim as f64 * partial) as u64);
    let mut put_f = |k: &str, v: f64| {
        m.insert(format!("{arch}.{k}"), MetadataValue::F64(v));
    };
    put_f("rope.freq_base", theta);
    put_f(
        "attention.layer_norm_rms_epsilon",
        float("rms_norm_eps").unwrap_or(1e-6),
    );

    let window = uint("sliding_window").filter(|&w| w > 0);
    match arch {
        "mistral" | "mixtral" => {
            if let Some(w) = window {
                m.insert(
                    format!("{arch}.attention.sliding_window"),
                    MetadataValue::U64(w),
                );
            }
        }
        "gemma3" => {
            let w = window.ok_or("'sliding_window' is missing")?;
            m.insert(
                format!("{arch}.attention.sliding_window"),
                MetadataValue::U64(w),
            );
            let n_layers = need("num_hidden_layers")? as usize;
            let pattern = gemma_pattern(config, n_layers)?;
            m.insert(
                format!("{arch}.attention.sliding_window_pattern"),
                MetadataValue::U64(pattern as u64),
            );
            let local_theta = rope_of(Some("sliding_attention"))
                .filter(|_| params.is_some_and(|p| p.get("sliding_attention").is_some()))
                .and_then(|p| p.get("rope_theta"))
                .and_then(Value::as_f64)
                .or_else(|| float("rope_local_base_freq"))
                .unwrap_or(10_000.0);
            m.insert(
                format!("{arch}.rope.freq_base_swa"),
                MetadataValue::F64(local_theta),
            );
            if let Some(cap) = float("final_logit_softcapping") {
                m.insert(
                    format!("{arch}.final_logit_softcapping"),
                    MetadataValue::F64(cap),
                );
            }
            let scalar = float("query_pre_attn_scalar").unwrap_or(head_dim as f64);
            m.insert(
                format!("{arch}.attention.scale"),
                MetadataValue::F64(1.0 / scalar.sqrt()),
            );
            if config
                .get("attn_logit_softcapping")
                .is_some_and(|v| !v.is_null())
            {
                return Err("attention logit soft-capping is not supported yet".into());
            }
        }
        _ => {}
    }
    match arch {
        "mixtral" => {
            m.insert(
                format!("{arch}.expert_count"),
                MetadataValue::U64(need("num_local_experts")?),
            );
            m.insert(
                format!("{arch}.expert_used_count"),
                MetadataValue::U64(need("num_experts_per_tok")?),
            );
            m.insert(
                format!("{arch}.expert_weights_norm"),
                MetadataValue::Bool(true),
            );
        }
        "qwen2moe" => {
            let sparse_step = uint("decoder_sparse_step").unwrap_or(1);
            let dense_layers = config
                .get("mlp_only_layers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if sparse_step != 1 || dense_layers {
                return Err(
                    "Qwen2-MoE with dense layers between the sparse ones is not supported yet"
                        .into(),
                );
            }
            m.insert(
                format!("{arch}.expert_count"),
                MetadataValue::U64(need("num_experts")?),
            );
            m.insert(
                format!("{arch}.expert_used_count"),
                MetadataValue::U64(need("num_experts_per_tok")?),
            );
            m.insert(
                format!("{arch}.expert_feed_forward_length"),
                MetadataValue::U64(need("moe_intermediate_size")?),
            );
            if let Some(shared) = uint("shared_expert_intermediate_size") {
                m.insert(
                    format!("{arch}.expert_shared_feed_forward_length"),
                    MetadataValue::U64(shared),
                );
            }
            m.insert(
                format!("{arch}.expert_weights_norm"),
                MetadataValue::Bool(
                    config
                        .get("norm_topk_prob")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                ),
            );
        }
        _ => {}
    }
    m.insert(
        "general.architecture".into(),
        MetadataValue::String(arch.into()),
    );
    Ok(m)
}

/// Gemma 3's local/global layout as the period `p` of "p − 1 local layers, then one global"
/// (what `attention.sliding_window_pattern` says), from `layer_types` when present.
fn gemma_pattern(config: &Value, n_layers: usize) -> std::result::Result<usize, String> {
    let Some(types) = config.get("layer_types").and_then(Value::as_array) else {
        let p = config
            .get("sliding_window_pattern")
            .and_then(Value::as_u64)
            .unwrap_or(6);
        return Ok(p as usize);
    };
    let global: Vec<bool> = types
        .iter()
        .map(|t| t.as_str() == Some("full_attention"))
        .collect();
    let pattern = global
        .iter()
        .position(|&g| g)
        .map_or(n_layers + 1, |i| i + 1);
    let fits = global.len() == n_layers
        && global
            .iter()
            .enumerate()
            .all(|(i, &g)| g == (i % pattern == pattern - 1));
    if !fits {
        return Err(format!(
            "layer_types {types:?} is not a repeating pattern of local layers then one global"
        ));
    }
    Ok(pattern)
}

/// How a `tokenizer.json` BPE vocabulary spells text, and so which of our tokenizer models
/// reproduces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VocabStyle {
    /// Bytes mapped to printable characters, regex pre-tokenizer (GPT-2, Llama 3, Qwen2).
    ByteLevel,
    /// SentencePiece converted to BPE: spaces as `▁`, unknown characters as `<0xNN>` byte
    /// tokens (Llama 2, Mistral, Phi-3, Gemma).
    SentencePiece(SpacePrefix),
}

fn vocab_style(json: &Value) -> std::result::Result<VocabStyle, String> {
    let model = &json["model"];
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).map(String::from);
    if kind(model).as_deref() != Some("BPE") {
        return Err(format!(
            "only BPE tokenizers are supported yet (this one is {})",
            kind(model).unwrap_or_else(|| "untyped".into())
        ));
    }
    let decoder = &json["decoder"];
    let steps = |v: &Value, list: &str| -> Vec<Value> {
        match v.get(list).and_then(Value::as_array) {
            Some(items) => items.clone(),
            None if v.is_null() => Vec::new(),
            None => vec![v.clone()],
        }
    };
    if kind(decoder).as_deref() == Some("ByteLevel") {
        return Ok(VocabStyle::ByteLevel);
    }
    let byte_fallback = model.get("byte_fallback").and_then(Value::as_bool) == Some(true);
    let pre = steps(&json["pre_tokenizer"], "pretokenizers");
    let normalizers = steps(&json["normalizer"], "normalizers");
    let metaspace = pre.iter().find(|p| kind(p).as_deref() == Some("Metaspace"));
    let replaces_spaces = normalizers.iter().any(|n| {
        kind(n).as_deref() == Some("Replace")
            && n["pattern"]["String"].as_str() == Some(" ")
            && n["content"].as_str() == Some(SPM_SPACE)
    });
    let prepends = normalizers
        .iter()
        .any(|n| kind(n).as_deref() == Some("Prepend") && n["prepend"].as_str() == Some(SPM_SPACE));
    if !(byte_fallback || metaspace.is_some() || replaces_spaces) {
        return Err("this BPE tokenizer is neither byte-level nor SentencePiece-style".into());
    }
    let prefix = match metaspace {
        Some(m) => match m.get("prepend_scheme").and_then(Value::as_str) {
            Some("first") => SpacePrefix::InputStart,
            Some("never") => SpacePrefix::Never,
            Some(_) => SpacePrefix::EveryRun,
            None if m.get("add_prefix_space").and_then(Value::as_bool) == Some(false) => {
                SpacePrefix::Never
            }
            None => SpacePrefix::EveryRun,
        },
        // The older form: `Prepend("▁")` and `Replace(" ", "▁")` normalizers, applied to every
        // run of text between added tokens.
        None if prepends => SpacePrefix::EveryRun,
        None => SpacePrefix::Never,
    };
    Ok(VocabStyle::SentencePiece(prefix))
}

const SPM_SPACE: &str = "\u{2581}";

/// The `tokenizer.*` keys from `tokenizer.json`, `tokenizer_config.json` and `config.json`.
/// Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM) and SentencePiece-style BPE (Llama 2,
/// Mistral, Phi-3, Gemma) vocabularies are supported.
fn tokenizer_metadata(
    dir: &Path,
    config: &Value,
    n_vocab: usize,
    m: &mut BTreeMap<String, MetadataValue>,
) -> Result<()> {
    let path = dir.join("tokenizer.json");
    let json = read_json(&path)?;
    let invalid = |message: String| Error::InvalidMetadata {
        path: path.clone(),
        message,
    };
    let style = vocab_style(&json).map_err(invalid)?;
    let model = &json["model"];
    let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
    let mut kinds = vec![1i32; n_vocab]; // normal
    let mut place = |text: &str, id: u64, kind: i32| -> Result<()> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            invalid(format!(
                "token '{text}' has id {id}, past vocab_size {n_vocab}"
            ))
        })?;
        *slot = Some(text.to_string());
        kinds[id as usize] = kind;
        Ok(())
    };
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("'model.vocab' is missing".into()))?;
    let unk = model.get("unk_token").and_then(Value::as_str);
    for (text, id) in vocab {
        let kind = match style {
            _ if Some(text.as_str()) == unk => 2,
            VocabStyle::SentencePiece(_) if is_byte_token(text) => 6,
            _ => 1,
        };
        place(text, id.as_u64().unwrap_or(u64::MAX), kind)?;
    }
    let mut special_text = BTreeMap::new();
    for added in json
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(text), Some(id)) = (
            added.get("content").and_then(Value::as_str),
            added.get("id").and_then(Value::as_u64),
        ) else {
            continue;
        };
        let special = added
            .get("special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kind = match () {
            _ if Some(text) == unk => 2,
            _ if special => 3,
            _ => 4,
        };
        place(text, id, kind)?;
        special_text.insert(text.to_string(), id);
    }
    // Ids the tokenizer leaves unused up to the embedding size become padding, as in
    // llama.cpp's converter.
    let token_texts: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                kinds[i] = 5;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges: Vec<(String, String)> = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("'model.merges' is missing".into()))?
        .iter()
        .map(|merge| match merge {
            Value::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string())),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| invalid("a merge is neither \"a b\" nor [\"a\", \"b\"]".into()))?;

    let str_value = |s: &str| MetadataValue::String(s.to_string());
    match style {
        VocabStyle::ByteLevel => {
            let pre = pre_tokenizer_name(json.get("pre_tokenizer")).map_err(invalid)?;
            m.insert("tokenizer.ggml.model".into(), str_value("gpt2"));
            m.insert("tokenizer.ggml.pre".into(), str_value(pre));
            m.insert(
                "tokenizer.ggml.merges".into(),
                MetadataValue::Array(
                    merges
                        .iter()
                        .map(|(a, b)| MetadataValue::String(format!("{a} {b}")))
                        .collect(),
                ),
            );
        }
        VocabStyle::SentencePiece(prefix) => {
            // SentencePiece merges the pair whose result scores highest; BPE applies the
            // lowest-ranked merge first. A token scores minus the rank of the first merge
            // that makes it (converted vocabularies list every split of a piece together,
            // in the piece's order), so both pick the same pair.
            let mut scores = vec![-1e9f32; token_texts.len()];
            let ids: std::collections::HashMap<&str, usize> = token_texts
                .iter()
                .enumerate()
                .map(|(i, t)| (t.as_str(), i))
                .collect();
            for (rank, (a, b)) in merges.iter().enumerate().rev() {
                if let Some(&id) = ids.get(format!("{a}{b}").as_str()) {
                    scores[id] = -(rank as f32);
                }
            }
            m.insert("tokenizer.ggml.model".into(), str_value("llama"));
            m.insert(
                "tokenizer.ggml.scores".into(),
                MetadataValue::Array(scores.into_iter().map(MetadataValue::F32).collect()),
            );
            if let Some(id) = unk.and_then(|u| ids.get(u)) {
                m.insert(
                    "tokenizer.ggml.unknown_token_id".into(),
                    MetadataValue::U32(*id as u32),
                );
            }
            m.insert(
                "tokenizer.ggml.add_space_prefix".into(),
                MetadataValue::Bool(prefix != SpacePrefix::Never),
            );
            if prefix == SpacePrefix::InputStart {
                m.insert(SPACE_PREFIX_KEY.into(), str_value("input_start"));
            }
        }
    }
    m.insert(
        "tokenizer.ggml.tokens".into(),
        MetadataValue::Array(token_texts.into_iter().map(MetadataValue::String).collect()),
    );
    m.insert(
        "tokenizer.ggml.token_type".into(),
        MetadataValue::Array(kinds.into_iter().map(MetadataValue::I32).collect()),
    );

    let tokenizer_config = dir.join("tokenizer_config.json");
    let tc = if tokenizer_config.is_file() {
        read_json(&tokenizer_config)?
    } else {
        Value::Null
    };
    // A special token named by text in tokenizer_config.json, else by id in config.json.
    let token_id = |key: &str| -> Option<u64> {
        let text = match tc.get(key) {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(v) => v.get("content").and_then(Value::as_str),
            None => None,
        };
        match text {
            Some(t) => special_text
                .get(t)
                .copied()
                .or_else(|| vocab.get(t)?.as_u64()),
            None if tc.get(key).is_some_and(Value::is_null) => None,
            None => config.get(format!("{key}_id")).and_then(|v| match v {
                Value::Array(a) => a.first()?.as_u64(),
                v => v.as_u64(),
            }),
        }
    };
    let bos = token_id("bos_token");
    if let Some(id) = bos {
        m.insert(
            "tokenizer.ggml.bos_token_id".into(),
            MetadataValue::U32(id as u32),
        );
    }
    if let Some(id) = token_id("eos_token") {
        m.insert(
            "tokenizer.ggml.eos_token_id".into(),
            MetadataValue::U32(id as u32),
        );
    }
    // BOS as tokenizer_config.json says, else as the post-processor's template adds it.
    let template_adds_bos = json["post_processor"]["single"]
        .as_array()
        .and_then(|steps| steps.first())
        .and_then(|first| first["SpecialToken"]["id"].as_str())
        .is_some_and(|text| bos.is_some() && special_text.get(text).copied() == bos);
    m.insert(
        "tokenizer.ggml.add_bos_token".into(),
        MetadataValue::Bool(
            tc.get("add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(template_adds_bos),
        ),
    );
    let template = match tc.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(String::from)),
        _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
    };
    if let Some(template) = template {
        m.insert(
            "tokenizer.chat_template".into(),
            MetadataValue::String(template),
        );
    }
    Ok(())
}

/// `<0x0A>`: SentencePiece's byte-fallback tokens.
fn is_byte_token(text: &str) -> bool {
    text.len() == 6
        && text.starts_with("<0x")
        && text.ends_with('>')
        && u8::from_str_radix(&text[3..5], 16).is_ok()
}

/// llama.cpp's pre-tokenizer name for a `tokenizer.json` pre-tokenizer, recognised by its
/// structure (llama.cpp recognises a vocabulary by hashing its output instead).
fn pre_tokenizer_name(pre: Option<&Value>) -> std::result::Result<&'static str, String> {
    let Some(pre) = pre else {
        return Err("the tokenizer has no pre-tokenizer".into());
    };
    let steps: Vec<&Value> = match pre.get("type").and_then(Value::as_str) {
        Some("Sequence") => pre
            .get("pretokenizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => vec![pre],
    };
    fn kind(v: &Value) -> &str {
        v.get("type").and_then(Value::as_str).unwrap_or("?")
    }
    fn split_regex(v: &Value) -> Option<&str> {
        (kind(v) == "Split")
            .then(|| v.get("pattern")?.get("Regex")?.as_str())
            .flatten()
    }
    let byte_level_regex = |v: &Value| {
        kind(v) == "ByteLevel" && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true)
    };
    match steps.as_slice() {
        [b] if byte_level_regex(b) => Ok("gpt2"),
        [d, b] if kind(d) == "Digits" && byte_level_regex(b) => Ok("smollm"),
        [s, b] if kind(b) == "ByteLevel" => match split_regex(s) {
            Some(r) if r.contains(r"\p{N}{1,3}") => Ok("llama3"),
            Some(r) if r.contains(r"\p{N}|") && r.contains(r"[^\r\n\p{L}\p{N}]?\p{L}+") => {
                Ok("qwen2")
            }
            _ => Err(format!(
                "pre-tokenizer regex {:?} is not one Symphony knows",
                split_regex(s)
            )),
        },
        _ => Err(format!(
            "pre-tokenizer {} is not one Symphony knows",
            steps
                .iter()
                .map(|s| kind(s))
                .collect::<Vec<_>>()
                .join(" + ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantized at load, a matrix multiplies like the float one within the type's error:
    /// relative RMS error of `x · Wᵀ` over random data, Q8_0 and Q4_K (256-wide rows).
    #[test]
    fn quantized_matrices_stay_close_to_float() {
        let (rows, cols, m) = (16, 512, 3);
        let mut s = 12345u64;
        let mut rand = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let w: Vec<f32> = (0..rows * cols).map(|_| rand()).collect();
        let x: Vec<f32> = (0..m * cols).map(|_| rand()).collect();
        let exact: Vec<f32> = (0..m * rows)
            .map(|i| {
                let (r, c) = (i / rows, i % rows);
                (0..cols).map(|k| x[r * cols + k] * w[c * cols + k]).sum()
            })
            .collect();
        let rel_rms = |got: &[f32]| {
            let num: f32 = got.iter().zip(&exact).map(|(a, b)| (a - b).powi(2)).sum();
            let den: f32 = exact.iter().map(|b| b * b).sum();
            (num / den).sqrt()
        };
        let mut out = vec![0f32; m * rows];
        crate::kernels::matmul_q8_0(&quantize::<BlockQ8_0>(&w), (m, cols, rows), &x, &mut out);
        let q8 = rel_rms(&out);
        crate::kernels::matmul_q4_k(&quantize::<BlockQ4K>(&w), (m, cols, rows), &x, &mut out);
        let q4 = rel_rms(&out);
        assert!(q8 < 0.01, "Q8_0 relative RMS error {q8}");
        assert!(
            q4 < 0.08 && q4 > q8,
            "Q4_K relative RMS error {q4} (Q8_0 {q8})"
        );
    }

    #[test]
    fn names_map_like_llama_cpp() {
        let cases = [
            (
                "model.embed_tokens.weight",
                "llama",
                Some("token_embd.weight"),
            ),
            ("lm_head.weight", "llama", Some("output.weight")),
            (
                "model.layers.3.self_attn.q_proj.bias",
                "qwen2",
                Some("blk.3.attn_q.bias"),
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                "llama",
                Some("blk.0.ffn_norm.weight"),
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                "gemma3",
                Some("blk.0.post_attention_norm.weight"),
            ),
            (
                "model.layers.1.mlp.gate_up_proj.weight",
                "phi3",
                Some("blk.1.ffn_up.weight"),
            ),
            (
                "model.layers.1.block_sparse_moe.experts.2.w3.weight",
                "mixtral",
                Some("blk.1.ffn_up_exps.2.weight"),
            ),
            (
                "model.layers.1.mlp.experts.0.down_proj.weight",
                "qwen2moe",
                Some("blk.1.ffn_down_exps.0.weight"),
            ),
            (
                "model.layers.1.mlp.shared_expert_gate.weight",
                "qwen2moe",
                Some("blk.1.ffn_gate_inp_shexp.weight"),
            ),
            (
                "model.layers.0.self_attn.rotary_emb.inv_freq",
                "llama",
                None,
            ),
            ("vision_tower.blocks.0.weight", "llama", None),
        ];
        for (hf, arch, gguf) in cases {
            assert_eq!(gguf_name(hf, arch).as_deref(), gguf, "{hf}");
        }
    }
}

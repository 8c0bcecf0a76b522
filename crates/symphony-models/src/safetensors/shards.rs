//! Reading a checkpoint's weights: which `.safetensors` shards it has (from the index or the
//! directory) and each shard's header, checked against the file before any tensor is read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use serde_json::Value;

use super::json::read_json;
use crate::error::{Error, Result};
use crate::ggml_type::GgmlType;

/// A tensor's entry in a safetensors header, checked against the file.
pub(super) struct ShardEntry {
    pub(super) name: String,
    pub(super) shape: Vec<usize>,
    pub(super) ggml_type: GgmlType,
    /// Absolute offset in the file.
    pub(super) offset: usize,
    pub(super) n_bytes: usize,
}

/// Maps a `.safetensors` file and reads its header: an 8-byte little-endian length, then a
/// JSON object of `name: {dtype, shape, data_offsets}` relative to the end of the header.
pub(super) fn open_shard(path: &Path) -> Result<(Mmap, Vec<ShardEntry>)> {
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

/// Tensors by name, each as its shape and its values widened to F32.
pub(crate) type F32Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of the checkpoint in `dir`, as F32 values with its shape, by name: for the
/// small encoders that compute in F32 and need no GGUF view.
pub(crate) fn read_f32_tensors(dir: &Path) -> Result<F32Tensors> {
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
pub(super) fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
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

/// A shard's stored F32, F16 or BF16 values as F32.
pub(super) fn to_f32(ggml_type: GgmlType, bytes: &[u8]) -> Vec<f32> {
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

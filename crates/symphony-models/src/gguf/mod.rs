//! GGUF reader: metadata and tensor index parsed from a memory map.
//!
//! The file is mapped once; tensor data is never copied here: [`GgufFile::tensor_data`] hands
//! out slices of the map, and the quantized layers read their weights straight from it.
//! Every read is bounds-checked, so a truncated or corrupt file gives an error naming the file,
//! the byte offset and what was expected there, never a panic or an out-of-bounds read.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md> (versions 2 and 3).
//! [`MetadataValue`] is in `metadata.rs`; [`writer`] serializes small files for tests and tools.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::ggml_type::GgmlType;

mod metadata;
pub mod writer;

pub use metadata::MetadataValue;

const GGUF_MAGIC: [u8; 4] = *b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Tensors in the models we run have at most 4 dimensions (ggml's GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;

/// Where a tensor lives in the file and how it is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (contiguous) one.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Which of the file's buffers holds the data (0 for a GGUF file: its one map).
    pub buffer: usize,
    /// Absolute byte offset of the data in its buffer.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Dimensions in row-major order (outermost first), as candle and PyTorch write shapes.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// Bytes that tensors are read from: a file's memory map, or weights made at load time
/// (converted or quantized from a safetensors checkpoint) that have no file of their own.
pub enum WeightBuffer {
    Mapped(Mmap),
    /// Held as `u64`s so that every block type can be read in place (8-byte alignment).
    Owned {
        words: Vec<u64>,
        len: usize,
    },
}

impl WeightBuffer {
    pub fn owned(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_ne_bytes(b);
        }
        Self::Owned {
            words,
            len: bytes.len(),
        }
    }
}

impl std::ops::Deref for WeightBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            WeightBuffer::Mapped(m) => m,
            WeightBuffer::Owned { words, len } => {
                // SAFETY: `words` holds at least `len` initialised bytes; u8 has no alignment.
                unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), *len) }
            }
        }
    }
}

impl fmt::Debug for WeightBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightBuffer::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
            WeightBuffer::Owned { len, .. } => write!(f, "Owned({len} bytes)"),
        }
    }
}

/// A model in GGUF terms: metadata, tensor index and the buffers holding the weights.
///
/// A GGUF file has one buffer, its memory map. A safetensors checkpoint is presented in the
/// same form (see `safetensors.rs`): one map per shard, plus owned buffers for the tensors
/// converted at load, so that every architecture loads from one interface.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    buffers: Vec<Arc<WeightBuffer>>,
    pub version: u32,
    pub metadata: BTreeMap<String, MetadataValue>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: BTreeMap<String, usize>,
}

impl GgufFile {
    /// Maps `path` and parses its header. Nothing of the tensor data is read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        // Mapping a directory fails with ENODEV ("No such device"), which says nothing useful.
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::InvalidMetadata {
                path,
                message: "is a directory but not a model checkpoint: expected a GGUF file, \
                          or a Hugging Face checkpoint directory with a config.json"
                    .into(),
            });
        }
        // SAFETY: the map is read-only. Symphony's store never rewrites a model file in place
        // (imports go to a new file that is renamed into place), so the bytes do not change
        // under us; a user who truncates a mapped file themselves gets SIGBUS, as with llama.cpp.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Self::parse(path, WeightBuffer::Mapped(mmap))
    }

    fn parse(path: PathBuf, mmap: WeightBuffer) -> Result<Self> {
        let mut r = Reader {
            data: &mmap[..],
            pos: 0,
            path: &path,
        };
        let magic = r.bytes(4, "the magic bytes \"GGUF\"")?;
        if magic != GGUF_MAGIC {
            return Err(r.error_at(
                0,
                format!("expected the magic bytes \"GGUF\", found {magic:02x?}: not a GGUF file"),
            ));
        }
        let version = r.u32("the format version")?;
        if !(2..=3).contains(&version) {
            return Err(r.error_at(
                4,
                format!("unsupported GGUF version {version} (expected 2 or 3)"),
            ));
        }
        let n_tensors = r.u64("the tensor count")?;
        let n_kv = r.u64("the metadata key/value count")?;
        // Every entry needs at least a few bytes; a count larger than the file is corrupt.
        let remaining = (r.data.len() - r.pos) as u64;
        if n_kv > remaining / 12 || n_tensors > remaining / 24 {
            return Err(r.error_at(
                16,
                format!("tensor count {n_tensors} / metadata count {n_kv} cannot fit in the {} bytes of the file", r.data.len()),
            ));
        }

        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key_offset = r.pos;
            let key = r.string("a metadata key")?;
            let value_type = r.u32(&format!("the value type of metadata key '{key}'"))?;
            let value = r.value(value_type, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(r.error_at(key_offset, format!("duplicate metadata key '{key}'")));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(Error::Gguf {
                        path: path.clone(),
                        offset: 0,
                        message: format!(
                            "metadata key 'general.alignment' must be a power of two, found {v:?}"
                        ),
                    })
                }
            },
        };

        let mut raw_tensors = Vec::with_capacity(n_tensors as usize);
        for idx in 0..n_tensors {
            let info_offset = r.pos;
            let name = r.string(&format!("the name of tensor #{idx}"))?;
            let n_dims = r.u32(&format!("the dimension count of tensor '{name}'"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(r.error_at(
                    info_offset,
                    format!("tensor '{name}' has {n_dims} dimensions (expected 1 to {MAX_DIMS})"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&format!("dimension {d} of tensor '{name}'"))?);
            }
            let type_offset = r.pos;
            let type_id = r.u32(&format!("the type of tensor '{name}'"))?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
                r.error_at(
                    type_offset,
                    format!("tensor '{name}' has unknown ggml type id {type_id}"),
                )
            })?;
            let relative = r.u64(&format!("the data offset of tensor '{name}'"))?;
            raw_tensors.push((info_offset, name, dims, ggml_type, relative));
        }

        let data_start = r.pos as u64;
        let data_start = data_start.div_ceil(alignment) * alignment;
        let file_len = mmap.len() as u64;
        let mut tensors = Vec::with_capacity(raw_tensors.len());
        let mut tensor_index = BTreeMap::new();
        for (info_offset, name, dims, ggml_type, relative) in raw_tensors {
            let bad = |message: String| Error::Gguf {
                path: path.clone(),
                offset: info_offset as u64,
                message,
            };
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad(format!("tensor '{name}' dimensions {dims:?} overflow")))?;
            if dims[0] % ggml_type.block_size() as u64 != 0 {
                return Err(bad(format!(
                    "tensor '{name}' of type {ggml_type} has a row of {} elements, not a multiple of its block size {}",
                    dims[0],
                    ggml_type.block_size()
                )));
            }
            // Dimensions come from the file: a product past u64 would wrap to a small size
            // that passes the bounds check below, and the loader would then allocate for
            // the real element count.
            let n_bytes = (n_elements / ggml_type.block_size() as u64)
                .checked_mul(ggml_type.type_size() as u64)
                .ok_or_else(|| {
                    bad(format!(
                        "tensor '{name}' dimensions {dims:?} of {ggml_type} overflow a byte count"
                    ))
                })?;
            if relative % alignment != 0 {
                return Err(bad(format!(
                    "tensor '{name}' data offset {relative} is not aligned to {alignment} bytes"
                )));
            }
            let offset = data_start
                .checked_add(relative)
                .ok_or_else(|| bad(format!("tensor '{name}' data offset {relative} overflows")))?;
            let end = offset.saturating_add(n_bytes);
            if end > file_len {
                return Err(bad(format!(
                    "tensor '{name}' needs bytes {offset}..{end} but the file has {file_len} bytes: the file is truncated"
                )));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(bad(format!("duplicate tensor name '{name}'")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                buffer: 0,
                offset,
                n_bytes,
            });
        }

        Ok(Self {
            path,
            buffers: vec![Arc::new(mmap)],
            version,
            metadata,
            tensors,
            tensor_index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Assembles a model from parts made elsewhere (a converted safetensors checkpoint).
    /// Every tensor must lie inside its buffer and be whole blocks of its type.
    pub fn from_parts(
        path: PathBuf,
        metadata: BTreeMap<String, MetadataValue>,
        tensors: Vec<TensorInfo>,
        buffers: Vec<Arc<WeightBuffer>>,
    ) -> Result<Self> {
        let mut tensor_index = BTreeMap::new();
        for (i, t) in tensors.iter().enumerate() {
            let bad = |message: String| Error::InvalidMetadata {
                path: path.clone(),
                message: format!("tensor '{}': {message}", t.name),
            };
            let block = t.ggml_type.block_size() as u64;
            let expected = t
                .dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .and_then(|n| (n / block).checked_mul(t.ggml_type.type_size() as u64));
            if t.dims.is_empty() || t.dims[0] % block != 0 || expected != Some(t.n_bytes) {
                return Err(bad(format!(
                    "{} bytes do not hold {:?} elements of {}",
                    t.n_bytes, t.dims, t.ggml_type
                )));
            }
            let len = buffers.get(t.buffer).map_or(0, |b| b.len() as u64);
            if t.offset.saturating_add(t.n_bytes) > len {
                return Err(bad(format!(
                    "needs {} bytes from offset {} of a buffer of {len}",
                    t.n_bytes, t.offset
                )));
            }
            if tensor_index.insert(t.name.clone(), i).is_some() {
                return Err(bad("appears twice".into()));
            }
        }
        Ok(Self {
            path,
            buffers,
            version: 3,
            metadata,
            tensors,
            tensor_index,
        })
    }

    /// The buffer holding `info`'s data; quantized weights keep it alive.
    pub fn buffer(&self, info: &TensorInfo) -> &Arc<WeightBuffer> {
        &self.buffers[info.buffer]
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor, borrowed from the map.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        &self.buffers[info.buffer][info.offset as usize..(info.offset + info.n_bytes) as usize]
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &MetadataValue) -> Error {
        Error::MetadataType {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
            found: found.type_name(),
        }
    }

    fn missing(&self, key: &str) -> Error {
        Error::MissingMetadata {
            path: self.path.clone(),
            key: key.to_string(),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        v.as_str().ok_or_else(|| self.wrong_type(key, "string", v))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        v.as_u64()
            .ok_or_else(|| self.wrong_type(key, "unsigned integer", v))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        v.as_f64().ok_or_else(|| self.wrong_type(key, "number", v))
    }

    pub fn get_bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.wrong_type(key, "bool", v)),
        }
    }

    pub fn get_u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "unsigned integer", v)),
        }
    }

    pub fn get_f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "number", v)),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<&[MetadataValue]> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        v.as_array().ok_or_else(|| self.wrong_type(key, "array", v))
    }

    /// A string array (the vocabulary, merges).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_array(key)?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong_type(key, "array of strings", v))
            })
            .collect()
    }

    /// The architecture name (`general.architecture`), the prefix of its hyperparameter keys.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// Size of all tensor data in bytes.
    pub fn weights_size(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_bytes).sum()
    }
}

/// A bounds-checked little-endian cursor over the mapped bytes.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
}

/// Arrays nested deeper than this are refused (GGUF writers emit one level).
const MAX_ARRAY_NESTING: usize = 4;

impl<'a> Reader<'a> {
    fn error_at(&self, offset: usize, message: String) -> Error {
        Error::Gguf {
            path: self.path.to_path_buf(),
            offset: offset as u64,
            message,
        }
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        match end {
            Some(end) => {
                let out = &self.data[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(self.error_at(
                self.pos,
                format!(
                    "file truncated: expected {n} bytes for {what}, but only {} remain",
                    self.data.len().saturating_sub(self.pos)
                ),
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.bytes(N, what)?;
        Ok(b.try_into().expect("slice has length N"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let start = self.pos;
        let len = self.u64(&format!("the length of {what}"))?;
        let len = usize::try_from(len)
            .map_err(|_| self.error_at(start, format!("length {len} of {what} is too large")))?;
        let bytes = self.bytes(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.error_at(start, format!("{what} is not valid UTF-8: {e}")))
    }

    fn value(&mut self, value_type: u32, key: &str, depth: usize) -> Result<MetadataValue> {
        let what = format!("the value of metadata key '{key}'");
        Ok(match value_type {
            0 => MetadataValue::U8(self.array::<1>(&what)?[0]),
            1 => MetadataValue::I8(self.array::<1>(&what)?[0] as i8),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => MetadataValue::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => {
                let offset = self.pos;
                match self.array::<1>(&what)?[0] {
                    0 => MetadataValue::Bool(false),
                    1 => MetadataValue::Bool(true),
                    b => {
                        return Err(self
                            .error_at(offset, format!("{what} is a bool with invalid byte {b}")))
                    }
                }
            }
            8 => MetadataValue::String(self.string(&what)?),
            9 => {
                let offset = self.pos;
                if depth >= MAX_ARRAY_NESTING {
                    return Err(self.error_at(
                        offset,
                        format!("{what} nests arrays deeper than {MAX_ARRAY_NESTING}"),
                    ));
                }
                let elem_type = self.u32(&format!("the element type of {what}"))?;
                let len = self.u64(&format!("the length of {what}"))?;
                // Each element takes at least one byte: a longer array cannot be in the file.
                if len > (self.data.len() - self.pos) as u64 {
                    return Err(self.error_at(
                        offset,
                        format!(
                            "file truncated: {what} claims {len} elements but only {} bytes remain",
                            self.data.len() - self.pos
                        ),
                    ));
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(elem_type, key, depth + 1)?);
                }
                MetadataValue::Array(items)
            }
            10 => MetadataValue::U64(u64::from_le_bytes(self.array(&what)?)),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(&what)?)),
            other => {
                return Err(self.error_at(
                    self.pos - 4,
                    format!("metadata key '{key}' has unknown value type {other}"),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::writer::{to_bytes, TensorToWrite};
    use super::*;

    fn sample() -> Vec<u8> {
        to_bytes(
            &[
                (
                    "general.architecture",
                    MetadataValue::String("llama".into()),
                ),
                ("llama.block_count", MetadataValue::U32(2)),
                (
                    "tokenizer.ggml.tokens",
                    MetadataValue::Array(vec![
                        MetadataValue::String("a".into()),
                        MetadataValue::String("b".into()),
                    ]),
                ),
            ],
            &[TensorToWrite {
                name: "w".into(),
                dims: vec![4, 2],
                ggml_type: GgmlType::F32,
                data: vec![0u8; 32],
            }],
        )
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        f
    }

    #[test]
    fn reads_metadata_and_tensor_index() {
        let f = write(&sample());
        let g = GgufFile::open(f.path()).unwrap();
        assert_eq!(g.architecture().unwrap(), "llama");
        assert_eq!(g.get_u64("llama.block_count").unwrap(), 2);
        assert_eq!(
            g.get_str_array("tokenizer.ggml.tokens").unwrap(),
            vec!["a", "b"]
        );
        let t = g.tensor_info("w").unwrap();
        assert_eq!(t.shape(), vec![2, 4]);
        assert_eq!(g.tensor_data(t).len(), 32);
    }

    #[test]
    fn every_truncation_is_an_error_naming_file_and_offset() {
        let bytes = sample();
        // Cut the file at every length short of complete: each must fail cleanly.
        for len in 0..bytes.len() - 1 {
            let f = write(&bytes[..len]);
            let err = GgufFile::open(f.path())
                .expect_err(&format!("a file cut at {len} bytes must be refused"));
            let msg = err.to_string();
            assert!(
                msg.contains(&f.path().display().to_string()),
                "error must name the file: {msg}"
            );
            assert!(
                msg.contains("offset") || msg.contains("truncated"),
                "error must say where: {msg}"
            );
        }
    }

    #[test]
    fn corrupt_headers_are_refused() {
        let mut bad_magic = sample();
        bad_magic[0] = b'X';
        let err = GgufFile::open(write(&bad_magic).path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a GGUF file"), "{err}");

        let mut bad_version = sample();
        bad_version[4] = 9;
        let err = GgufFile::open(write(&bad_version).path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported GGUF version 9"), "{err}");

        // A metadata count far larger than the file.
        let mut huge_count = sample();
        huge_count[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = GgufFile::open(write(&huge_count).path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot fit"), "{err}");
    }

    #[test]
    fn unknown_tensor_type_is_named() {
        let bytes = to_bytes(
            &[],
            &[TensorToWrite {
                name: "w".into(),
                dims: vec![32],
                ggml_type: GgmlType::F32,
                data: vec![0u8; 128],
            }],
        );
        // The type id is 12 bytes before the end of the tensor info (type u32 + offset u64).
        let header_end = 24 + 8 + 1 + 4 + 8 + 4 + 8;
        let mut bad = bytes.clone();
        bad[header_end - 12..header_end - 8].copy_from_slice(&77u32.to_le_bytes());
        let err = GgufFile::open(write(&bad).path()).unwrap_err().to_string();
        assert!(err.contains("unknown ggml type id 77"), "{err}");
    }

    #[test]
    fn missing_and_mistyped_keys() {
        let f = write(&sample());
        let g = GgufFile::open(f.path()).unwrap();
        let err = g.get_u64("llama.nope").unwrap_err().to_string();
        assert!(err.contains("llama.nope"), "{err}");
        let err = g.get_u64("general.architecture").unwrap_err().to_string();
        assert!(
            err.contains("expected unsigned integer") && err.contains("string"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = GgufFile::open("/nonexistent/model.gguf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/model.gguf"), "{err}");
    }
}

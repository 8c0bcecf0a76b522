//! Quantized weight types and zero-copy quantized tensors over the GGUF memory map.
//!
//! Weights stay in the file's pages: [`MappedBlocks`] implements candle's `QuantizedType` on a
//! slice of the map, so candle's quantized matmul kernels read the blocks in place and a model
//! is never held twice in memory.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use candle_core::quantized::k_quants::{self, GgmlType as Block};
use candle_core::quantized::{GgmlDType, QStorage, QTensor, QuantizedType};
use candle_core::{CpuStorage, Device, Tensor};
use half::{bf16, f16};

pub use crate::ggml_type::GgmlType;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo, WeightBuffer};
use crate::kernels::{kernel_for, MatmulKernel};

/// Quantized blocks living in a memory-mapped file (or an owned buffer). Holding the
/// `Arc<WeightBuffer>` keeps the pages mapped for as long as any layer uses them.
struct MappedBlocks<T> {
    /// The file's type, `T`'s counterpart (picks our kernel, if any).
    ggml_type: GgmlType,
    mmap: Arc<WeightBuffer>,
    offset: usize,
    n_blocks: usize,
    _block: PhantomData<T>,
}

impl<T: Block> MappedBlocks<T> {
    /// `None` when the data is not aligned for `T` (then the caller copies it).
    fn new(
        ggml_type: GgmlType,
        mmap: Arc<WeightBuffer>,
        offset: usize,
        n_bytes: usize,
    ) -> Option<Self> {
        let size = std::mem::size_of::<T>();
        let aligned = (mmap.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<T>());
        let in_bounds = offset
            .checked_add(n_bytes)
            .is_some_and(|end| end <= mmap.len());
        (aligned && in_bounds && n_bytes.is_multiple_of(size)).then(|| Self {
            ggml_type,
            mmap,
            offset,
            n_blocks: n_bytes / size,
            _block: PhantomData,
        })
    }

    fn blocks(&self) -> &[T] {
        // SAFETY: `new` checked bounds, alignment and that the length is whole blocks; candle's
        // block types are `repr(C)` plain data for which every bit pattern is valid, and the map
        // is read-only and outlives `self` through the `Arc`.
        unsafe {
            std::slice::from_raw_parts(
                self.mmap.as_ptr().add(self.offset).cast::<T>(),
                self.n_blocks,
            )
        }
    }
}

impl<T: Block + Send + Sync> QuantizedType for MappedBlocks<T> {
    fn dtype(&self) -> GgmlDType {
        T::DTYPE
    }

    fn matmul_t(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f32],
        dst: &mut [f32],
    ) -> candle_core::Result<()> {
        // Our kernels where candle's activation quantization differs from ggml's (kernels.rs).
        let bytes = &self.mmap[self.offset..self.offset + self.storage_size_in_bytes()];
        match kernel_for(self.ggml_type) {
            Some(kernel) => kernel(bytes, mkn, lhs, dst),
            None => return k_quants::matmul(mkn, lhs, self.blocks(), dst),
        }
        Ok(())
    }

    fn matmul_t_f16(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f16],
        dst: &mut [f16],
    ) -> candle_core::Result<()> {
        k_quants::matmul_f16(mkn, lhs, self.blocks(), dst)
    }

    fn embedding(
        &self,
        ids: &[u32],
        rows: usize,
        hidden: usize,
    ) -> candle_core::Result<CpuStorage> {
        let row_blocks = hidden / T::BLCK_SIZE;
        if !hidden.is_multiple_of(T::BLCK_SIZE) || self.n_blocks != rows * row_blocks {
            candle_core::bail!(
                "embedding table of {} blocks does not hold {rows} rows of {hidden}",
                self.n_blocks
            )
        }
        let blocks = self.blocks();
        let mut out = vec![0f32; ids.len() * hidden];
        for (dst, &id) in out.chunks_exact_mut(hidden).zip(ids) {
            let row = id as usize;
            if row >= rows {
                candle_core::bail!(
                    "token id {row} is out of range for an embedding table of {rows} rows"
                )
            }
            T::to_float(&blocks[row * row_blocks..(row + 1) * row_blocks], dst);
        }
        Ok(CpuStorage::F32(out))
    }

    fn dequantize(&self, elem_count: usize) -> candle_core::Result<CpuStorage> {
        let mut out = vec![0f32; elem_count];
        T::to_float(self.blocks(), &mut out);
        Ok(CpuStorage::F32(out))
    }

    fn storage_size_in_bytes(&self) -> usize {
        self.n_blocks * std::mem::size_of::<T>()
    }

    fn as_ptr(&self) -> *const u8 {
        self.blocks().as_ptr().cast()
    }

    fn block_size(&self) -> usize {
        T::BLCK_SIZE
    }

    fn from_float(&mut self, _xs: &[f32]) {
        // Only `QTensor::quantize` writes into storage, and Symphony never quantizes into a
        // mapped tensor: that would write through a read-only file map.
        panic!("memory-mapped weights are read-only")
    }

    fn from_float_imatrix(&mut self, _xs: &[f32], _imatrix_weights: &[f32], _n_per_row: usize) {
        panic!("memory-mapped weights are read-only")
    }

    fn size(&self) -> usize {
        self.storage_size_in_bytes()
    }
}

fn mapped_storage<T: Block + Send + Sync + 'static>(
    mmap: &Arc<WeightBuffer>,
    info: &TensorInfo,
    dtype: GgmlDType,
) -> Box<dyn QuantizedType> {
    match MappedBlocks::<T>::new(
        info.ggml_type,
        mmap.clone(),
        info.offset as usize,
        info.n_bytes as usize,
    ) {
        Some(blocks) => Box::new(blocks),
        // Misaligned data (a writer that ignored general.alignment): copy once instead of failing.
        None => dtype.from_data(std::borrow::Cow::Borrowed(
            &mmap[info.offset as usize..(info.offset + info.n_bytes) as usize],
        )),
    }
}

/// A quantized tensor whose blocks are read in place from the GGUF map.
pub fn load_qtensor(gguf: &GgufFile, name: &str) -> Result<QTensor> {
    let info = gguf.tensor_info(name).ok_or_else(|| Error::MissingTensor {
        path: gguf.path().to_path_buf(),
        name: name.into(),
    })?;
    qtensor_of(gguf, info)
}

/// [`load_qtensor`] for a tensor described by `info`, which may be a slice of a stored one.
pub fn qtensor_of(gguf: &GgufFile, info: &TensorInfo) -> Result<QTensor> {
    let name = info.name.as_str();
    let dtype = info
        .ggml_type
        .to_candle()
        .ok_or_else(|| Error::UnsupportedTensorType {
            path: gguf.path().to_path_buf(),
            tensor: name.into(),
            ggml_type: info.ggml_type.name(),
        })?;
    let mmap = gguf.buffer(info);
    use k_quants::*;
    let storage = match dtype {
        GgmlDType::F32 => mapped_storage::<f32>(mmap, info, dtype),
        GgmlDType::F16 => mapped_storage::<f16>(mmap, info, dtype),
        GgmlDType::BF16 => mapped_storage::<bf16>(mmap, info, dtype),
        GgmlDType::Q4_0 => mapped_storage::<BlockQ4_0>(mmap, info, dtype),
        GgmlDType::Q4_1 => mapped_storage::<BlockQ4_1>(mmap, info, dtype),
        GgmlDType::Q5_0 => mapped_storage::<BlockQ5_0>(mmap, info, dtype),
        GgmlDType::Q5_1 => mapped_storage::<BlockQ5_1>(mmap, info, dtype),
        GgmlDType::Q8_0 => mapped_storage::<BlockQ8_0>(mmap, info, dtype),
        GgmlDType::Q8_1 => mapped_storage::<BlockQ8_1>(mmap, info, dtype),
        GgmlDType::Q2K => mapped_storage::<BlockQ2K>(mmap, info, dtype),
        GgmlDType::Q3K => mapped_storage::<BlockQ3K>(mmap, info, dtype),
        GgmlDType::Q4K => mapped_storage::<BlockQ4K>(mmap, info, dtype),
        GgmlDType::Q5K => mapped_storage::<BlockQ5K>(mmap, info, dtype),
        GgmlDType::Q6K => mapped_storage::<BlockQ6K>(mmap, info, dtype),
        GgmlDType::Q8K => mapped_storage::<BlockQ8K>(mmap, info, dtype),
    };
    Ok(QTensor::new(QStorage::Cpu(storage), info.shape())?)
}

/// A 2-D weight matrix `(rows, cols)` read in place from the map, for our own kernels.
///
/// Matmuls go through [`MappedMatrix::matmul`] rather than candle's `QMatMul`: candle 0.11
/// repacks some types (Q4_K, Q6_K, Q8_0) into a private copy on first use, which would both
/// hold the weights twice and bypass the ggml-exact kernels.
#[derive(Clone)]
pub struct MappedMatrix {
    mmap: Arc<WeightBuffer>,
    offset: usize,
    len: usize,
    kernel: MatmulKernel,
    pub ggml_type: GgmlType,
    pub rows: usize,
    pub cols: usize,
}

impl fmt::Debug for MappedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MappedMatrix({} {}x{})",
            self.ggml_type, self.rows, self.cols
        )
    }
}

impl MappedMatrix {
    /// The matrix `name` if our kernels compute its type, `None` otherwise. (The GGUF reader
    /// has already checked that its rows are whole blocks inside the file.)
    pub fn load(gguf: &GgufFile, name: &str) -> Option<Self> {
        let info = gguf.tensor_info(name)?;
        let [_, rows] = info.dims[..] else {
            return None;
        };
        Self::rows_of(gguf, info, 0, rows as usize)
    }

    /// Rows `first..first + rows` of a matrix, or of a stack of matrices seen as one tall
    /// matrix (fused QKV projections, stacked experts). `None` when our kernels do not
    /// compute the type or the rows are out of range.
    pub fn rows_of(gguf: &GgufFile, info: &TensorInfo, first: usize, rows: usize) -> Option<Self> {
        let cols = *info.dims.first()? as usize;
        let total_rows = (info.n_elements() as usize).checked_div(cols)?;
        if first + rows > total_rows {
            return None;
        }
        let row_bytes = info.n_bytes as usize / total_rows;
        Some(Self {
            kernel: kernel_for(info.ggml_type)?,
            mmap: gguf.buffer(info).clone(),
            offset: info.offset as usize + first * row_bytes,
            len: rows * row_bytes,
            ggml_type: info.ggml_type,
            rows,
            cols,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.mmap[self.offset..self.offset + self.len]
    }

    /// `dst (m, rows) = lhs (m, cols) · selfᵀ`.
    pub fn matmul(&self, lhs: &[f32], dst: &mut [f32]) {
        let m = lhs.len() / self.cols;
        (self.kernel)(self.bytes(), (m, self.cols, self.rows), lhs, dst);
    }
}

/// A tensor dequantized to f32 (small tensors: norms, biases).
pub fn load_f32(gguf: &GgufFile, name: &str) -> Result<Tensor> {
    Ok(load_qtensor(gguf, name)?.dequantize(&Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::writer::{to_bytes, TensorToWrite};
    use candle_core::Module;

    /// A reference Q8_0 encoder written from the format's definition (scale = max|x|/127,
    /// round to nearest), independent of candle's quantizer.
    fn q8_0_bytes(values: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for block in values.chunks(32) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
            for v in block {
                let q = if d == 0.0 { 0 } else { (v / d).round() as i8 };
                out.push(q as u8);
            }
        }
        out
    }

    #[test]
    fn mapped_q8_0_and_f32_tensors_compute_in_place() {
        let (rows, cols) = (4usize, 64usize);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 8.0)
            .collect();
        let f32_bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = to_bytes(
            &[],
            &[
                TensorToWrite {
                    name: "q".into(),
                    dims: vec![cols as u64, rows as u64],
                    ggml_type: GgmlType::Q8_0,
                    data: q8_0_bytes(&w),
                },
                TensorToWrite {
                    name: "f".into(),
                    dims: vec![cols as u64, rows as u64],
                    ggml_type: GgmlType::F32,
                    data: f32_bytes,
                },
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        std::fs::write(&path, bytes).unwrap();
        let g = GgufFile::open(&path).unwrap();

        let f = load_f32(&g, "f").unwrap();
        assert_eq!(f.dims(), &[rows, cols]);
        assert_eq!(f.flatten_all().unwrap().to_vec1::<f32>().unwrap(), w);

        let q = load_qtensor(&g, "q").unwrap();
        let deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let max_err = deq
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_err < 0.02, "Q8_0 dequantization error {max_err}");

        // x @ W^T through the mapped storage equals the f32 product within Q8 rounding.
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.1).sin()).collect();
        let xt = Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap();
        let mm = candle_core::quantized::QMatMul::from_qtensor(q).unwrap();
        let y = mm
            .forward(&xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for r in 0..rows {
            let expect: f32 = (0..cols).map(|c| w[r * cols + c] * x[c]).sum();
            assert!((y[r] - expect).abs() < 0.1, "row {r}: {} vs {expect}", y[r]);
        }
    }

    #[test]
    fn unsupported_types_are_named() {
        let bytes = to_bytes(
            &[],
            &[TensorToWrite {
                name: "iq".into(),
                dims: vec![256],
                ggml_type: GgmlType::IQ2_XXS,
                data: vec![0; 66],
            }],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        std::fs::write(&path, bytes).unwrap();
        let g = GgufFile::open(&path).unwrap();
        let err = load_qtensor(&g, "iq").unwrap_err().to_string();
        assert!(err.contains("IQ2_XXS") && err.contains("iq"), "{err}");
    }
}

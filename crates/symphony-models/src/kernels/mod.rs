//! Symphony's own kernels, where candle's numerics or speed fall short: quantized matmuls that
//! round exactly as llama.cpp's x86 kernels do, float matmuls for Hugging Face checkpoints,
//! and the encoders' float kernels. Laid out as candle lays out its quantized kernels: one
//! file per weight format, one per instruction set.
//!
//! - `layout`: block sizes, activation blocks and tile shapes, shared by everything below;
//! - `q8`: activation quantization (Q8_0, Q8_1, Q8_K) and [`RowPlace`];
//! - `q4_1`, `q5_0`, `q8_0`, `q4_k`, `q6_k`: one weight format each, its dot products, its
//!   tile packing and its `matmul_*`; `float`: F32, F16, BF16 and [`dot_f32`];
//! - `matmul`: the driver (activation quantization, parallel column tasks, tiles, groups of
//!   rows); `tile`, `rows`, `lanes`: the pieces the formats share;
//! - `encoder`, `attention`: exp, erf, GELU, layer norm and packed attention for the encoders;
//! - `simd`: every `unsafe` intrinsic, in `simd/avx2.rs` and `simd/avx512.rs`, chosen at
//!   compile time by `cfg(simd_avx2)` / `cfg(simd_avx512)` (see build.rs). The portable
//!   paths are kept beside them as their references.
//!
//! Every grouped, tiled or SIMD path gives each output the one-row portable kernel's value bit
//! for bit; only the batch shape decides a rounding, where ggml's own kernel choice does.

mod attention;
mod encoder;
mod float;
mod lanes;
mod layout;
mod matmul;
mod q4_1;
mod q4_k;
mod q5_0;
mod q6_k;
mod q8;
mod q8_0;
mod rows;
#[cfg(simd_avx2)]
mod simd;
#[cfg(test)]
mod tests;
mod tile;

pub use attention::packed_attention;
pub use encoder::{add_bias_rows, bias_gelu_in_place, bias_residual_layer_norm, erf_f32, exp_f32};
pub use float::{dot_f32, matmul_bf16, matmul_f16, matmul_f32};
pub use layout::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK, QK_K};
pub use matmul::MatmulKernel;
pub use q4_1::{dot_q4_1_q8_1, matmul_q4_1};
pub use q4_k::{dot_q4_k_q8_k, matmul_q4_k};
pub use q5_0::{dot_q5_0_q8_0, matmul_q5_0};
pub use q6_k::{dot_q6_k_q8_k, matmul_q6_k};
pub use q8::{quantize_q8_0, quantize_q8_1, quantize_q8_k, quantize_q8_k_rows, RowPlace};
pub use q8_0::{dot_q8_0_q8_0, matmul_q8_0};

/// Our kernel for `ggml_type`; `None` for the types we leave to candle.
pub fn kernel_for(ggml_type: crate::ggml_type::GgmlType) -> Option<MatmulKernel> {
    use crate::ggml_type::GgmlType as T;
    Some(match ggml_type {
        T::Q4_1 => matmul_q4_1,
        T::Q5_0 => matmul_q5_0,
        T::Q8_0 => matmul_q8_0,
        T::Q4_K => matmul_q4_k,
        T::Q6_K => matmul_q6_k,
        T::F32 => matmul_f32,
        T::F16 => matmul_f16,
        T::BF16 => matmul_bf16,
        _ => return None,
    })
}

//! The kernels' SIMD halves, by instruction set: `avx2` (256-bit, with FMA) and `avx512`
//! (512-bit, with VNNI), on `registers`' shared steps. Every `unsafe` intrinsic of the
//! kernels is in these files; the portable kernels call them where `cfg(simd_avx2)` /
//! `cfg(simd_avx512)` (set by build.rs from the target features) say the machine has them,
//! and are the references they are tested against.

mod avx2;
#[cfg(simd_avx512)]
mod avx512;
mod registers;

pub(super) use avx2::*;
#[cfg(simd_avx512)]
pub(super) use avx512::*;

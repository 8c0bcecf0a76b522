//! What both instruction sets' kernels build on: eight-lane registers stored to arrays, and
//! `dpbusd`, the exact four-byte dot product step (one VNNI instruction where the machine
//! has AVX512-VNNI, `vpmaddubsw` then `vpmaddwd` on plain AVX2).

use std::arch::x86_64::*;

/// `acc + Σ u·s` over each group of four bytes: eight exact lane sums of 32 unsigned by
/// 32 signed bytes. AVX512-VNNI does it in one instruction (`vpdpbusd`); plain AVX2 forms
/// pair sums with `vpmaddubsw`, which saturates at ±32767, then widens them with
/// `vpmaddwd`. Every caller keeps a pair below that bound (4- to 6-bit weights, or signed
/// bytes within ±127 as Q8_0 quantization writes them), so both paths give the same
/// integers, as ggml's AVX2 and VNNI kernels do.
#[inline(always)]
pub(super) unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
    // SAFETY: the target features are enabled at compile time.
    unsafe {
        _mm256_dpbusd_epi32(acc, u, s)
    }
    #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
    // SAFETY: AVX2 is enabled at compile time (the module's condition).
    unsafe {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

/// A register's eight f32 lanes, in memory order.
#[inline(always)]
pub(super) fn f32_lanes(v: __m256) -> [f32; 8] {
    let mut out = [0f32; 8];
    // SAFETY: AVX is enabled at compile time (the module's condition); the store is
    // unaligned and fills `out` exactly.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// A register's eight i32 lanes, in memory order.
#[inline(always)]
pub(super) fn i32_lanes(v: __m256i) -> [i32; 8] {
    let mut out = [0i32; 8];
    // SAFETY: as in `f32_lanes`.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
    out
}

//! Names the kernels' SIMD condition once: `cfg(simd_avx2)` when the crate is compiled for
//! x86-64 with AVX2 and FMA (`.cargo/config.toml` builds for the host CPU), so kernels.rs
//! does not repeat the feature list at every SIMD/scalar fork.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(simd_avx2)");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let enabled = |feature: &str| features.split(',').any(|f| f == feature);
    if arch == "x86_64" && enabled("avx2") && enabled("fma") {
        println!("cargo::rustc-cfg=simd_avx2");
    }
}

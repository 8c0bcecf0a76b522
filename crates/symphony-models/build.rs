//! Names the kernels' SIMD conditions once: `cfg(simd_avx2)` when the crate is compiled for
//! x86-64 with AVX2 and FMA (`.cargo/config.toml` builds for the host CPU), and
//! `cfg(simd_avx512)` when AVX-512 (F, BW, DQ, VL) and its VNNI are there too, so kernels/
//! does not repeat the feature lists at every fork.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(simd_avx2)");
    println!("cargo::rustc-check-cfg=cfg(simd_avx512)");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let enabled = |feature: &str| features.split(',').any(|f| f == feature);
    if arch == "x86_64" && enabled("avx2") && enabled("fma") {
        println!("cargo::rustc-cfg=simd_avx2");
        let avx512 = ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512vnni"];
        if avx512.iter().all(|f| enabled(f)) {
            println!("cargo::rustc-cfg=simd_avx512");
        }
    }
}

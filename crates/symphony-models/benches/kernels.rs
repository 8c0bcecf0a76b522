//! Kernel micro-benchmarks: `cargo bench -p symphony-models --bench kernels`.
//!
//! Each matmul runs at a decode shape (one activation row) and a prefill shape (64 rows) on a
//! SmolLM2-sized matrix (576 × 1536), and reports useful GFLOP/s (2·m·n·k per call) and the
//! weight bytes streamed per second. Beside them, the machine's peak as measured here: a loop
//! of independent AVX-512-VNNI `vpdpbusd` (int8 multiply-adds, the instruction the quantized
//! kernels are built on) and of f32 FMAs, on registers only, per thread. The peak of the
//! machine is that rate times the threads; a kernel's share of it says how much compute it
//! leaves unused.
//!
//! Threads come from `RAYON_NUM_THREADS` (default: all cores), as in `symphony bench`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use symphony_models::kernels::{
    matmul_bf16, matmul_f32, matmul_q4_1, matmul_q4_k, matmul_q5_0, matmul_q6_k, matmul_q8_0,
    MatmulKernel,
};

/// Calls `f` until `budget` has passed (after a warm-up) and returns seconds per call.
fn time_per_call(budget: Duration, f: impl FnMut()) -> f64 {
    times_per_call(budget, f).0
}

/// Wall-clock and CPU seconds per call (CPU: all the process's threads, from
/// `/proc/self/stat`; NaN where there is none). On a machine busy with other work the CPU
/// time still compares two kernels, where the wall clock does not.
fn times_per_call(budget: Duration, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..3 {
        f();
    }
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    let mut calls = 0u64;
    while start.elapsed() < budget {
        f();
        calls += 1;
    }
    let cpu = cpu_seconds()
        .zip(cpu_start)
        .map_or(f64::NAN, |(b, a)| b - a);
    (
        start.elapsed().as_secs_f64() / calls as f64,
        cpu / calls as f64,
    )
}

/// User and system time of this process so far, in seconds (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields 14 and 15, counted after the parenthesised command name.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let ticks: f64 = fields.next()?.parse::<f64>().ok()? + fields.next()?.parse::<f64>().ok()?;
    // In USER_HZ, which Linux fixes at 100 for what it shows user space.
    Some(ticks / 100.0)
}

/// Deterministic noise bytes: valid for every block type (f16 scales may be anything finite
/// we make them below).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        })
        .collect()
}

/// A weight matrix of `n` rows of `k` in a block format: noise with every block's f16
/// scale fields set to small finite values.
fn weights(
    n: usize,
    k: usize,
    block_elems: usize,
    block_bytes: usize,
    scales: &[usize],
) -> Vec<u8> {
    let mut w = noise(n * k / block_elems * block_bytes, 7);
    for block in w.chunks_exact_mut(block_bytes) {
        for &at in scales {
            block[at..at + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    w
}

fn float_weights(n: usize, k: usize, bf16: bool) -> Vec<u8> {
    (0..n * k)
        .flat_map(|i| {
            let v = ((i * 7919) % 1000) as f32 / 1000.0 - 0.5;
            if bf16 {
                half::bf16::from_f32(v).to_le_bytes().to_vec()
            } else {
                v.to_le_bytes().to_vec()
            }
        })
        .collect()
}

fn main() {
    let threads = rayon::current_num_threads();
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(700),
    );
    println!("threads: {threads}");
    let vnni = peak_int8_gops(budget);
    let fma = peak_f32_gflops(budget);
    println!(
        "peak per thread (measured): int8 vpdpbusd {vnni:.0} GOP/s, f32 FMA {fma:.0} GFLOP/s; \
         machine ({threads} threads): {:.0} / {:.0}",
        vnni * threads as f64,
        fma * threads as f64
    );
    println!();
    println!(
        "{:<8} {:>5} {:>6} {:>6} {:>10} {:>9} {:>10} {:>12}",
        "kernel", "m", "n", "k", "µs/call", "GFLOP/s", "weight GB/s", "cpu µs/call"
    );
    // `BENCH_N=49152` (say) for an LM head's shape: a matrix larger than the caches.
    let env = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (n, k) = (env("BENCH_N", 1536), env("BENCH_K", 576));
    let kernels: Vec<(&str, MatmulKernel, Vec<u8>)> = vec![
        ("q4_1", matmul_q4_1, weights(n, k, 32, 20, &[0, 2])),
        ("q8_0", matmul_q8_0, weights(n, k, 32, 34, &[0])),
        ("q5_0", matmul_q5_0, weights(n, k, 32, 22, &[0])),
        ("q4_k", matmul_q4_k, weights(n, 768, 256, 144, &[0, 2])),
        ("q6_k", matmul_q6_k, weights(n, 768, 256, 210, &[208])),
        ("f32", matmul_f32, float_weights(n, k, false)),
        ("bf16", matmul_bf16, float_weights(n, k, true)),
    ];
    // `BENCH_ONLY=q4_k,q6_k` and `BENCH_ROWS=1,4,16,64` narrow or widen the table.
    let list = |var: &str| -> Option<Vec<String>> {
        let v = std::env::var(var).ok()?;
        Some(v.split(',').map(|s| s.trim().to_string()).collect())
    };
    let only = list("BENCH_ONLY");
    let rows: Vec<usize> = list("BENCH_ROWS")
        .map(|r| r.iter().filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 64]);
    for (name, kernel, w) in &kernels {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        // K-quants need whole 256-element super-blocks: 768 columns.
        let k = if name.ends_with("_k") { 768 } else { k };
        for &m in &rows {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                .collect();
            let mut out = vec![0f32; m * n];
            let (secs, cpu) = times_per_call(budget, || {
                kernel(black_box(w), (m, k, n), black_box(&x), &mut out);
                black_box(&out);
            });
            let gflops = 2.0 * (m * n * k) as f64 / secs / 1e9;
            let gbs = w.len() as f64 / secs / 1e9;
            println!(
                "{name:<8} {m:>5} {n:>6} {k:>6} {:>10.1} {gflops:>9.1} {gbs:>10.1} {:>12.1}",
                secs * 1e6,
                cpu * 1e6
            );
        }
    }
}

/// Int8 multiply-adds per second of one thread: 8 independent chains of 256-bit `vpdpbusd`
/// (32 multiply-adds = 64 operations each), so latency does not limit throughput.
fn peak_int8_gops(budget: Duration) -> f64 {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512vl"
    ))]
    {
        use std::arch::x86_64::*;
        const STEPS: usize = 1 << 16;
        let secs = time_per_call(budget, || {
            // SAFETY: the features are enabled at compile time; registers only.
            unsafe {
                let a = _mm256_set1_epi8(1);
                let b = _mm256_set1_epi8(black_box(1));
                let mut acc = [_mm256_setzero_si256(); 8];
                for _ in 0..STEPS {
                    for r in acc.iter_mut() {
                        *r = _mm256_dpbusd_epi32(*r, a, b);
                    }
                }
                black_box(acc);
            }
        });
        (STEPS * 8 * 64) as f64 / secs / 1e9
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512vl"
    )))]
    {
        let _ = budget;
        f64::NAN
    }
}

/// f32 FLOP/s of one thread: 8 independent chains of 8-lane FMAs (16 FLOP each).
fn peak_f32_gflops(budget: Duration) -> f64 {
    const STEPS: usize = 1 << 16;
    let secs = time_per_call(budget, || {
        let mut acc = [[0f32; 8]; 8];
        let m = black_box(1.0000001f32);
        for _ in 0..STEPS {
            for lanes in acc.iter_mut() {
                for v in lanes.iter_mut() {
                    *v = v.mul_add(m, 1e-7);
                }
            }
        }
        black_box(acc);
    });
    (STEPS * 8 * 16) as f64 / secs / 1e9
}

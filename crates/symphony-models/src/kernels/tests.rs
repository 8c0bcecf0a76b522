//! The kernels' tests: each kernel against a textbook or candle reference within its
//! quantization error, and every SIMD, grouped and tiled path against the portable one, bit
//! for bit.

use half::f16;

use super::attention::packed_attention;
use super::encoder::{bias_gelu_in_place, bias_residual_layer_norm, erf_f32, exp_f32};
use super::lanes::Lanes;
use super::layout::{BlockQ8K, BlockQ8_0, QK, QK_K};
use super::layout::{Q4_1_BLOCK_BYTES, Q5_0_BLOCK_BYTES, Q6_K_BLOCK_BYTES};
use super::matmul::MatmulKernel;
use super::q4_1::{dot_q4_1_q8_1, dot_q4_1_rows, dot_q4_1_rows_lanes, matmul_q4_1};
use super::q4_1::{unpack_nibbles, unpack_nibbles_scalar};
use super::q4_k::{dot_q4_k_q8_k, matmul_q4_k, scaled_nibble_dots, scaled_nibble_dots_scalar};
use super::q5_0::{dot_q5_0_q8_0, dot_q5_0_rows, dot_q5_0_rows_lanes, matmul_q5_0};
use super::q6_k::{dot_q6_k_q8_k, matmul_q6_k, q6_k_unpack_scalar, Q6KBlock};
use super::q8::{quantize_block, quantize_block_scalar, quantize_q8_0, quantize_q8_1};
use super::q8::{quantize_q8_k, quantize_q8_k_rows, RowPlace};
use super::q8_0::{dot_q8_0_q8_0, dot_q8_0_rows, dot_q8_0_rows_lanes, matmul_q8_0};

/// Dequantize a Q4_1 row the textbook way: x = d * q + m.
fn dequant_q4_1(row: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    for block in row.chunks_exact(Q4_1_BLOCK_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
        let mut vals = [0f32; QK];
        for j in 0..QK / 2 {
            vals[j] = d * (block[4 + j] & 0x0F) as f32 + m;
            vals[j + QK / 2] = d * (block[4 + j] >> 4) as f32 + m;
        }
        out.extend_from_slice(&vals);
    }
    out
}

fn q4_1_row(k: usize, seed: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut s = seed;
    for b in 0..k / QK {
        bytes.extend_from_slice(&f16::from_f32(0.01 + b as f32 * 0.003).to_le_bytes());
        bytes.extend_from_slice(&f16::from_f32(-0.08 + b as f32 * 0.001).to_le_bytes());
        for _ in 0..16 {
            s = s.wrapping_mul(1103515245).wrapping_add(12345);
            bytes.push((s >> 16) as u8);
        }
    }
    bytes
}

/// Dequantize a Q5_0 row from the format's definition: x = d * ((nibble | hbit << 4) - 16).
fn dequant_q5_0(row: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    for block in row.chunks_exact(Q5_0_BLOCK_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let mut vals = [0f32; QK];
        for j in 0..QK / 2 {
            let lo = (block[6 + j] & 0x0F) as i32 | (((qh >> j) & 1) as i32) << 4;
            let hi = (block[6 + j] >> 4) as i32 | (((qh >> (j + 16)) & 1) as i32) << 4;
            vals[j] = d * (lo - 16) as f32;
            vals[j + QK / 2] = d * (hi - 16) as f32;
        }
        out.extend_from_slice(&vals);
    }
    out
}

/// Random K-quant rows with small, sane super-block scales (f16 `d`, and `dmin` for
/// Q4_K), dequantized by candle's implementation of the format as the reference.
fn k_quant_case(
    dtype: candle_core::quantized::GgmlDType,
    n: usize,
    k: usize,
) -> (Vec<u8>, Vec<f32>) {
    let d_offsets: &[usize] = match dtype {
        candle_core::quantized::GgmlDType::Q4K => &[0, 2],
        _ => &[208],
    };
    block_case(dtype, n, k, d_offsets)
}

/// Random blocks of `dtype` with small f16 scales at `d_offsets`, and their dequantized
/// values (by candle).
fn block_case(
    dtype: candle_core::quantized::GgmlDType,
    n: usize,
    k: usize,
    d_offsets: &[usize],
) -> (Vec<u8>, Vec<f32>) {
    let block_bytes = dtype.type_size();
    let mut s = 99u32;
    let mut bytes = Vec::new();
    for _ in 0..n * k / dtype.block_size() {
        let mut block: Vec<u8> = (0..block_bytes)
            .map(|_| {
                s = s.wrapping_mul(1103515245).wrapping_add(12345);
                (s >> 16) as u8
            })
            .collect();
        // Scales that vary from block to block (random bytes could be infinite), so
        // products of scales round differently wherever a kernel's order differs.
        let scale = 0.003 * (1.0 + (s >> 20 & 7) as f32 / 7.0);
        for &o in d_offsets {
            block[o..o + 2].copy_from_slice(&f16::from_f32(scale).to_le_bytes());
        }
        bytes.extend_from_slice(&block);
    }
    let storage = dtype.from_data(std::borrow::Cow::Borrowed(&bytes));
    let w = candle_core::quantized::QTensor::new(
        candle_core::quantized::QStorage::Cpu(storage),
        (n, k),
    )
    .unwrap()
    .dequantize(&candle_core::Device::Cpu)
    .unwrap()
    .flatten_all()
    .unwrap()
    .to_vec1::<f32>()
    .unwrap();
    (bytes, w)
}

#[test]
fn k_quant_matmuls_match_dequantized_products_within_q8_error() {
    use candle_core::quantized::GgmlDType;
    // 3 rows: ggml's one-row kernels; 9 rows: its four-row (Q4_K) and tiled (Q6_K) ones
    // for the first rows, and the one-row Q4_K kernel for the last.
    for m in [3, 9] {
        let k = 512;
        let n = 8;
        let lhs: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        for (dtype, kernel) in [
            (GgmlDType::Q4K, matmul_q4_k as MatmulKernel),
            (GgmlDType::Q6K, matmul_q6_k),
        ] {
            let (bytes, w) = k_quant_case(dtype, n, k);
            let mut dst = vec![0f32; m * n];
            kernel(&bytes, (m, k, n), &lhs, &mut dst);
            for row in 0..m {
                for col in 0..n {
                    let x = &lhs[row * k..(row + 1) * k];
                    let wr = &w[col * k..(col + 1) * k];
                    let exact: f32 = wr.iter().zip(x).map(|(a, b)| a * b).sum();
                    let scale: f32 = wr.iter().zip(x).map(|(a, b)| (a * b).abs()).sum();
                    let got = dst[row * n + col];
                    assert!(
                        (got - exact).abs() <= 0.01 * scale + 1e-3,
                        "{dtype:?} ({row},{col}): {got} vs {exact}"
                    );
                }
            }
        }
    }
}

#[test]
fn row_places_follow_ggml_batch_rules() {
    let place = |row, rows| RowPlace { row, rows };
    assert!(place(7, 10).in_group_of_four() && !place(8, 10).in_group_of_four());
    assert!(!place(0, 3).in_group_of_four() && !RowPlace::SINGLE.tiled());
    assert!(place(0, 8).tiled() && !place(6, 7).tiled());
}

#[test]
fn grouped_q8_k_rows_take_the_positive_sign_on_a_magnitude_tie() {
    let mut x = vec![0.5f32; QK_K];
    x[3] = -2.0;
    x[9] = 2.0;
    let (mut single, mut grouped) = (Vec::new(), Vec::new());
    quantize_q8_k_rows(&x, RowPlace::SINGLE, &mut single);
    quantize_q8_k_rows(&x, RowPlace { row: 0, rows: 4 }, &mut grouped);
    // One row: the first extreme (-2) sets the sign; four rows: the positive one does.
    assert!(single[0].d > 0.0 && grouped[0].d < 0.0);
    assert_eq!((single[0].qs[3], grouped[0].qs[9]), (-127, -127));
}

#[test]
fn q8_k_quantization_keeps_the_signed_maximum_exact() {
    let mut x: Vec<f32> = (0..QK_K).map(|i| (i as f32 * 0.37).sin()).collect();
    x[77] = -3.0;
    let mut q = Vec::new();
    quantize_q8_k(&x, &mut q);
    // ggml scales by -127 / max with max's sign: the extreme maps to -127 whatever its
    // sign, and d carries the sign back.
    assert_eq!(q[0].qs[77], -127);
    assert!((q[0].d * -127.0 + 3.0).abs() < 1e-6, "d = {}", q[0].d);
    x[77] = 3.0;
    let mut p = Vec::new();
    quantize_q8_k(&x, &mut p);
    assert_eq!(p[0].qs[77], -127);
    assert!(p[0].d < 0.0);
    let sums: i16 = q[0].qs[64..80].iter().map(|&v| v as i16).sum();
    assert_eq!(q[0].bsums[4], sums);
}

#[test]
fn q5_0_matmul_matches_dequantized_product_within_q8_error() {
    let (m, k, n) = (2, 128, 19);
    let mut s = 7u32;
    let mut weights = Vec::new();
    for _ in 0..n * k / QK {
        weights.extend_from_slice(&f16::from_f32(0.02).to_le_bytes());
        for _ in 0..20 {
            s = s.wrapping_mul(1103515245).wrapping_add(12345);
            weights.push((s >> 16) as u8);
        }
    }
    let lhs: Vec<f32> = (0..m * k)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
        .collect();
    let mut dst = vec![0f32; m * n];
    matmul_q5_0(&weights, (m, k, n), &lhs, &mut dst);
    let row_bytes = k / QK * Q5_0_BLOCK_BYTES;
    for col in 0..n {
        let w = dequant_q5_0(&weights[col * row_bytes..(col + 1) * row_bytes]);
        for row in 0..m {
            let x = &lhs[row * k..(row + 1) * k];
            let exact: f32 = w.iter().zip(x).map(|(a, b)| a * b).sum();
            let got = dst[row * n + col];
            assert!(
                (got - exact).abs() < 0.05,
                "({row},{col}): {got} vs {exact}"
            );
        }
    }
}

#[test]
fn matmul_matches_dequantized_product_within_q8_error() {
    let (m, k, n) = (3, 128, 37);
    let weights: Vec<u8> = (0..n).flat_map(|r| q4_1_row(k, r as u32 + 1)).collect();
    let lhs: Vec<f32> = (0..m * k)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let mut dst = vec![0f32; m * n];
    matmul_q4_1(&weights, (m, k, n), &lhs, &mut dst);
    let row_bytes = k / QK * Q4_1_BLOCK_BYTES;
    for col in 0..n {
        let w = dequant_q4_1(&weights[col * row_bytes..(col + 1) * row_bytes]);
        for row in 0..m {
            let exact: f32 = w
                .iter()
                .zip(&lhs[row * k..(row + 1) * k])
                .map(|(a, b)| a * b)
                .sum();
            let got = dst[row * n + col];
            // 8-bit activations: error well under 1% of the magnitude of the terms.
            let scale: f32 = w
                .iter()
                .zip(&lhs[row * k..(row + 1) * k])
                .map(|(a, b)| (a * b).abs())
                .sum();
            assert!(
                (got - exact).abs() <= 0.01 * scale + 1e-4,
                "({row},{col}): {got} vs {exact}"
            );
        }
    }
}

#[test]
fn q8_0_matmul_matches_f32_product() {
    let (m, k, n) = (2, 64, 5);
    let mut weights = Vec::new();
    let mut exact_w = Vec::new();
    for r in 0..n {
        for b in 0..k / QK {
            let d = 0.02 * (r + b + 1) as f32;
            let d16 = f16::from_f32(d);
            weights.extend_from_slice(&d16.to_le_bytes());
            for j in 0..QK {
                let q = ((r * 31 + b * 7 + j * 13) % 255) as i32 - 127;
                weights.push(q as i8 as u8);
                exact_w.push(d16.to_f32() * q as f32);
            }
        }
    }
    let lhs: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.7).sin()).collect();
    let mut dst = vec![0f32; m * n];
    matmul_q8_0(&weights, (m, k, n), &lhs, &mut dst);
    for row in 0..m {
        for col in 0..n {
            let exact: f32 = (0..k)
                .map(|i| exact_w[col * k + i] * lhs[row * k + i])
                .sum();
            let scale: f32 = (0..k)
                .map(|i| (exact_w[col * k + i] * lhs[row * k + i]).abs())
                .sum();
            let got = dst[row * n + col];
            assert!(
                (got - exact).abs() <= 0.01 * scale,
                "({row},{col}): {got} vs {exact}"
            );
        }
    }
}

/// Pseudo-random bytes (a linear congruential generator) for the SIMD-vs-scalar tests.
fn byte_stream(mut seed: u32) -> impl FnMut() -> u8 {
    move || {
        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        (seed >> 8) as u8
    }
}

#[test]
fn simd_and_scalar_lanes_agree_bit_for_bit() {
    let mut next = byte_stream(7);
    for _ in 0..200 {
        let packed: [u8; 16] = std::array::from_fn(|_| next());
        let w8: [u8; 32] = std::array::from_fn(|_| next());
        let x: [i8; 32] = std::array::from_fn(|_| (next() as i8).max(-127));
        let scale = next() as f32 / 97.0;
        let (mut a, mut b) = (Lanes([0.5; 8]), Lanes([0.5; 8]));
        a.fma_i8_i8(scale, &w8, &x);
        b.fma_i8_i8_scalar(scale, &w8, &x);
        assert_eq!(a.0, b.0);
        // Q4_1's unsigned weights are nibbles.
        let w4 = w8.map(|w| w & 15);

        let q5_0: [u8; 22] = std::array::from_fn(|_| next());
        a.fma_q5_0(scale, &q5_0, &x);
        b.fma_q5_0_scalar(scale, &q5_0, &x);
        assert_eq!(a.0, b.0);
        a.fma_u8_i8(scale, &w4, &x);
        b.fma_u8_i8_scalar(scale, &w4, &x);
        assert_eq!(a.0, b.0);
        assert_eq!(unpack_nibbles(&packed), unpack_nibbles_scalar(&packed));
        let packed32: [u8; 32] = std::array::from_fn(|_| next());
        let x2: [i8; 32] = std::array::from_fn(|_| (next() as i8).max(-127));
        let (sc_lo, sc_hi) = ((next() & 63) as i32, (next() & 63) as i32);
        assert_eq!(
            scaled_nibble_dots(&packed32, (&x, sc_lo), (&x2, sc_hi)),
            scaled_nibble_dots_scalar(&packed32, (&x, sc_lo), (&x2, sc_hi))
        );
    }
}

/// The register-resident row kernels give what the `Lanes` path gives, bit for bit,
/// for one row and for a group.
#[test]
fn row_kernels_equal_the_lanes_path_bit_for_bit() {
    use candle_core::quantized::GgmlDType;
    let k = 256;
    let rows: Vec<Vec<f32>> = (0..4)
        .map(|r| {
            (0..k)
                .map(|i| (((i * 31 + r * 7) % 89) as f32 - 44.0) / 13.0)
                .collect()
        })
        .collect();
    let q8_0: Vec<Vec<BlockQ8_0>> = rows
        .iter()
        .map(|x| {
            let mut q = Vec::new();
            quantize_q8_0(x, &mut q);
            q
        })
        .collect();
    let four: [&[BlockQ8_0]; 4] = std::array::from_fn(|r| q8_0[r].as_slice());
    let (q8w, _) = block_case(GgmlDType::Q8_0, 1, k, &[0]);
    let (q5w, _) = block_case(GgmlDType::Q5_0, 1, k, &[0]);
    let bits = |v: [f32; 4]| v.map(f32::to_bits);
    assert_eq!(
        bits(dot_q8_0_rows(&q8w, four)),
        bits(dot_q8_0_rows_lanes(&q8w, four))
    );
    assert_eq!(
        bits(dot_q5_0_rows(&q5w, four)),
        bits(dot_q5_0_rows_lanes(&q5w, four))
    );
    assert_eq!(
        dot_q8_0_rows(&q8w, [&q8_0[1]])[0].to_bits(),
        dot_q8_0_rows_lanes(&q8w, [&q8_0[1]])[0].to_bits()
    );
    assert_eq!(
        dot_q5_0_rows(&q5w, [&q8_0[1]])[0].to_bits(),
        dot_q5_0_rows_lanes(&q5w, [&q8_0[1]])[0].to_bits()
    );
    // Q4_1's one-row kernel (decode), its `m·s` sum included.
    let (q4w, _) = block_case(GgmlDType::Q4_1, 1, k, &[0, 2]);
    for x in &rows {
        let mut q = Vec::new();
        quantize_q8_1(x, &mut q);
        assert_eq!(
            dot_q4_1_rows(&q4w, [&q])[0].to_bits(),
            dot_q4_1_rows_lanes(&q4w, [&q])[0].to_bits()
        );
    }
}

#[test]
fn q6_k_simd_and_scalar_lanes_agree() {
    let mut next = byte_stream(11);
    for _ in 0..100 {
        let block: [u8; Q6_K_BLOCK_BYTES] = std::array::from_fn(|_| next());
        let unpacked = Q6KBlock::unpack(&block);
        assert_eq!(unpacked.quants, q6_k_unpack_scalar(&block));
        let mut xb = BlockQ8K {
            d: 1.0,
            qs: std::array::from_fn(|_| (next() as i8).max(-127)),
            bsums: [0; 16],
        };
        for (sum, group) in xb.bsums.iter_mut().zip(xb.qs.chunks_exact(16)) {
            *sum = group.iter().map(|&v| v as i16).sum();
        }
        assert_eq!(unpacked.lane_sums(&xb), unpacked.lane_sums_scalar(&xb));
    }
}

/// The grouped kernels (four activation rows per weight row) give each row exactly what
/// the one-row dot product gives it: same integers, same FMA order, same places.
#[test]
fn grouped_rows_equal_single_rows_bit_for_bit() {
    use candle_core::quantized::GgmlDType;
    // 21 weight rows: a task of 16 (two tiles of eight) and one of 5 (no whole tile).
    let (m, k, n) = (11, 512, 21);
    // Each block of 32 its own range, so the activations' scales vary too.
    let lhs: Vec<f32> = (0..m * k)
        .map(|i| ((i * 53 % 113) as f32 - 56.0) / 17.0 * (1.0 + (i / 32 % 5) as f32 * 0.13))
        .collect();
    let place = |r| RowPlace { row: r, rows: m };
    for (dtype, kernel) in [
        (GgmlDType::Q4_1, matmul_q4_1 as MatmulKernel),
        (GgmlDType::Q8_0, matmul_q8_0),
        (GgmlDType::Q5_0, matmul_q5_0),
        (GgmlDType::Q4K, matmul_q4_k),
        (GgmlDType::Q6K, matmul_q6_k),
    ] {
        let (bytes, _) = match dtype {
            GgmlDType::Q4_1 => block_case(dtype, n, k, &[0, 2]),
            GgmlDType::Q8_0 | GgmlDType::Q5_0 => block_case(dtype, n, k, &[0]),
            _ => k_quant_case(dtype, n, k),
        };
        let mut dst = vec![0f32; m * n];
        kernel(&bytes, (m, k, n), &lhs, &mut dst);
        let row_bytes = bytes.len() / n;
        for r in 0..m {
            let x = &lhs[r * k..(r + 1) * k];
            for c in 0..n {
                let w = &bytes[c * row_bytes..(c + 1) * row_bytes];
                let single = match dtype {
                    GgmlDType::Q4_1 => {
                        let mut q = Vec::new();
                        quantize_q8_1(x, &mut q);
                        dot_q4_1_q8_1(w, &q)
                    }
                    GgmlDType::Q8_0 | GgmlDType::Q5_0 => {
                        let mut q = Vec::new();
                        quantize_q8_0(x, &mut q);
                        if dtype == GgmlDType::Q8_0 {
                            dot_q8_0_q8_0(w, &q)
                        } else {
                            dot_q5_0_q8_0(w, &q)
                        }
                    }
                    GgmlDType::Q4K => {
                        let mut q = Vec::new();
                        quantize_q8_k_rows(x, place(r), &mut q);
                        dot_q4_k_q8_k(w, &q, place(r))
                    }
                    _ => {
                        let mut q = Vec::new();
                        quantize_q8_k(x, &mut q);
                        dot_q6_k_q8_k(w, &q, place(r))
                    }
                };
                assert_eq!(
                    dst[r * n + c].to_bits(),
                    single.to_bits(),
                    "{dtype:?} row {r} col {c}"
                );
            }
        }
    }
}

#[test]
fn block_quantization_equals_the_scalar_reference() {
    let mut s = 5u32;
    let mut next = || {
        s = s.wrapping_mul(1103515245).wrapping_add(12345);
        (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let mut cases: Vec<[f32; QK]> = (0..2000)
        .map(|i| std::array::from_fn(|_| next() * (1 << (i % 12)) as f32))
        .collect();
    // Exact halves after scaling (amax 127: scale 1), an all-zero block, and a block
    // whose largest magnitude is negative.
    cases.push(std::array::from_fn(|e| {
        if e == 0 {
            127.0
        } else {
            e as f32 - 15.5
        }
    }));
    cases.push([0.0; QK]);
    cases.push(std::array::from_fn(|e| {
        if e == 7 {
            -3.0
        } else {
            e as f32 / 40.0
        }
    }));
    for block in &cases {
        let (mut a, mut b) = ([0i8; QK], [0i8; QK]);
        let simd = quantize_block(block, &mut a);
        let scalar = quantize_block_scalar(block, &mut b);
        assert_eq!(
            (simd.0.to_bits(), simd.1, a),
            (scalar.0.to_bits(), scalar.1, b)
        );
    }
}

#[test]
fn q8_1_sum_is_rounded_once() {
    let x: Vec<f32> = (0..32).map(|i| 1.0 + i as f32 * 0.37).collect();
    let mut q = Vec::new();
    quantize_q8_1(&x, &mut q);
    let sum: i32 = q[0].qs.iter().map(|&v| v as i32).sum();
    let d = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
    assert_eq!(q[0].s, f16::from_f32(d * sum as f32).to_f32());
    assert_eq!(q[0].qs[31], 127);
    // Halves round to even, as _mm256_round_ps does: 2.5 → 2, 3.5 → 4 (scale 127 / 127 = 1).
    let mut x = vec![0f32; 32];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = 3.5;
    x[3] = -2.5;
    quantize_q8_1(&x, &mut q);
    assert_eq!(&q[0].qs[..4], &[127, 2, 4, -2]);
}

#[test]
fn exp_and_erf_match_the_reference() {
    let mut worst_exp = 0f64;
    for i in -20000..=20000 {
        let x = i as f32 * 0.0043; // -86 ..= 86
        let want = (x as f64).exp();
        worst_exp = worst_exp.max(((exp_f32(x) as f64 - want) / want).abs());
    }
    // erf against candle's (libm's).
    let z: Vec<f32> = (-20000..=20000).map(|i| i as f32 * 0.0004).collect(); // -8 ..= 8
    let want = candle_core::Tensor::new(z.as_slice(), &candle_core::Device::Cpu)
        .unwrap()
        .erf()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let worst_erf = z
        .iter()
        .zip(&want)
        .map(|(&z, &w)| (erf_f32(z) as f64 - w as f64).abs())
        .fold(0f64, f64::max);
    assert!(worst_exp < 4e-7, "exp: relative error {worst_exp}");
    assert!(worst_erf < 1e-6, "erf: absolute error {worst_erf}");
    assert!(erf_f32(0.0).abs() < 1e-7 && erf_f32(-9.0) == -1.0 && erf_f32(9.0) == 1.0);
    // Clamped: finite and positive far out, never inf or NaN.
    assert!(exp_f32(-1000.0) > 0.0 && exp_f32(1000.0).is_finite());
}

#[test]
fn bias_gelu_matches_candle() {
    use candle_core::{Device, Tensor};
    let n = 7;
    let x: Vec<f32> = (0..5 * n).map(|i| (i as f32 - 17.0) * 0.37).collect();
    let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 0.3).collect();
    let want = Tensor::from_vec(x.clone(), (5, n), &Device::Cpu)
        .unwrap()
        .broadcast_add(&Tensor::new(bias.as_slice(), &Device::Cpu).unwrap())
        .unwrap()
        .gelu_erf()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut got = x;
    bias_gelu_in_place(&mut got, &bias);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
    }
}

#[test]
fn packed_attention_matches_a_plain_softmax() {
    // Whole register blocks and partial ones: heads narrower and wider than a block's
    // lanes, sequences shorter and longer than a block of queries or keys.
    attention_matches_a_plain_softmax(8, 4, &[0..3, 3..4, 4..9]);
    attention_matches_a_plain_softmax(96, 24, &[0..37, 37..38, 38..108]);
}

fn attention_matches_a_plain_softmax(
    hidden: usize,
    head_dim: usize,
    rows: &[std::ops::Range<usize>],
) {
    let n = rows.last().unwrap().end;
    let qkv: Vec<f32> = (0..n * 3 * hidden)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.05)
        .collect();
    let got = packed_attention(&qkv, hidden, head_dim, rows);
    let at = |r: usize, c: usize| qkv[r * 3 * hidden + c] as f64;
    for range in rows {
        for head in 0..hidden / head_dim {
            for i in range.clone() {
                let scores: Vec<f64> = range
                    .clone()
                    .map(|j| {
                        (0..head_dim)
                            .map(|d| {
                                at(i, head * head_dim + d) * at(j, hidden + head * head_dim + d)
                            })
                            .sum::<f64>()
                            / (head_dim as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for d in 0..head_dim {
                    let want: f64 = range
                        .clone()
                        .zip(&exps)
                        .map(|(j, e)| e / total * at(j, 2 * hidden + head * head_dim + d))
                        .sum();
                    let g = got[i * hidden + head * head_dim + d] as f64;
                    assert!(
                        (g - want).abs() < 1e-5,
                        "row {i} head {head} dim {d}: {g} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn layer_norm_with_bias_and_residual() {
    let n = 5;
    let x: Vec<f32> = (0..3 * n).map(|i| (i as f32 * 1.7).sin() * 3.0).collect();
    let residual: Vec<f32> = (0..3 * n).map(|i| i as f32 * 0.1).collect();
    let bias = [0.5, -0.5, 0.25, 0.0, 1.0];
    let (gamma, beta) = ([1.0, 2.0, 0.5, 1.5, -1.0], [0.0, 0.1, -0.2, 0.3, 0.0]);
    let mut got = x.clone();
    bias_residual_layer_norm(&mut got, Some(&bias), Some(&residual), &gamma, &beta, 1e-12);
    for r in 0..3 {
        let v: Vec<f64> = (0..n)
            .map(|c| (x[r * n + c] + bias[c] + residual[r * n + c]) as f64)
            .collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n as f64;
        for c in 0..n {
            let want = (v[c] - mean) / (var + 1e-12).sqrt() * gamma[c] as f64 + beta[c] as f64;
            assert!((got[r * n + c] as f64 - want).abs() < 1e-5, "{r},{c}");
        }
    }
}

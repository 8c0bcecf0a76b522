//! Hugging Face checkpoints read from safetensors, against `transformers`.
//!
//! `scripts/reference/make_tiny_checkpoints.py` made each checkpoint in
//! `tests/fixtures/tiny/` (random weights, a few hundred thousand parameters) and stored the
//! token ids of the `tokenizers` library and the float32 logits of `transformers` beside it.
//! Every architecture without packaged weights is checked here: Llama (BF16, two shards),
//! Mistral (sliding window 4), Qwen2 (F16, Q/K/V biases, tied embeddings), Phi-3 (fused
//! projections), Gemma 3 (local/global layers, `1 + w` norms, soft-capping), Mixtral and
//! Qwen2-MoE (top-2 of 4 experts; a gated shared expert in Qwen2-MoE), Qwen3 (BF16, per-head
//! Q/K norms, a head size apart from `hidden_size / heads`, tied embeddings).
//!
//! The tokenizers are the two kinds `tokenizer.json` files come in: byte-level BPE (Llama,
//! Qwen2, the mixtures) and SentencePiece converted by transformers, with the dummy prefix
//! as for Llama 2 (Mistral, Phi-3) and without it as for Gemma (Gemma 3).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use symphony_models::tokenizer::EncodeOptions;
use symphony_models::{LoadOptions, Logits, Model, QuantizeTo};

#[derive(Deserialize)]
struct Reference {
    tokenizer: Vec<Encoding>,
    prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
struct Encoding {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Prompt {
    ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn checkpoint(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tiny")
        .join(name)
}

fn reference(dir: &Path) -> Reference {
    serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap()
}

/// Our logits for every position of a reference prompt.
fn our_logits(model: &Model, prompt: &Prompt) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache();
    let logits = model.forward(&prompt.ids, &mut cache, Logits::All).unwrap();
    logits.to_vec2::<f32>().unwrap()
}

/// How far our logits are from the reference's.
struct Distance {
    /// Largest |ours − reference| over all positions.
    max_diff: f32,
    /// RMS of the differences over RMS of the reference logits.
    relative_rms: f32,
    /// Share of positions whose argmax agrees.
    argmax_agreement: f32,
}

fn compare(model: &Model, reference: &Reference) -> Distance {
    let (mut max_diff, mut agree, mut total) = (0f32, 0usize, 0usize);
    let (mut diff_sq, mut ref_sq) = (0f64, 0f64);
    for prompt in &reference.prompts {
        let ours = our_logits(model, prompt);
        assert_eq!(ours.len(), prompt.logits.len());
        for (a, b) in ours.iter().zip(&prompt.logits) {
            assert_eq!(a.len(), b.len(), "vocabulary size");
            for (x, y) in a.iter().zip(b) {
                max_diff = max_diff.max((x - y).abs());
                diff_sq += f64::from(x - y).powi(2);
                ref_sq += f64::from(*y).powi(2);
            }
            agree += usize::from(argmax(a) == argmax(b));
            total += 1;
        }
    }
    Distance {
        max_diff,
        relative_rms: (diff_sq / ref_sq).sqrt() as f32,
        argmax_agreement: agree as f32 / total as f32,
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

/// The logits spread over about ±10. f32 sums taken in another order than PyTorch's, and the
/// reference's 5 printed decimals, come to about 2e-5; Gemma's tanh-GELU reads ggml's f16
/// table (for bit-exactness with llama.cpp), which comes to about 2e-3.
const F32_TOLERANCE: f32 = 5e-3;

fn check(name: &str) {
    let dir = checkpoint(name);
    let model = Model::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let reference = reference(&dir);
    for enc in &reference.tokenizer {
        let ids = model.tokenizer.encode(&enc.text, EncodeOptions::TEMPLATE);
        assert_eq!(ids, enc.ids, "{name}: tokenizer on {:?}", enc.text);
        // Decoding gives the text back, less the BOS the tokenizer added and with the space
        // a SentencePiece vocabulary may put in front.
        let body = if model.tokenizer.add_bos {
            &ids[1..]
        } else {
            &ids[..]
        };
        let text = model.tokenizer.decode(body, true);
        assert!(
            text == enc.text || text == format!(" {}", enc.text),
            "{name}: decode {text:?} vs {:?}",
            enc.text
        );
    }
    let d = compare(&model, &reference);
    let summary = format!(
        "{name}: max |logit diff| {}, argmax agreement {}",
        d.max_diff, d.argmax_agreement
    );
    eprintln!("{summary}");
    assert!(
        d.max_diff < F32_TOLERANCE && d.argmax_agreement == 1.0,
        "{summary}"
    );
    assert!(model.chat_template.is_some(), "{name}: chat template");
}

#[test]
fn llama_bf16_sharded() {
    check("llama");
}

#[test]
fn mistral_sliding_window() {
    check("mistral");
}

#[test]
fn qwen2_f16_with_biases() {
    check("qwen2");
}

#[test]
fn phi3_fused_projections() {
    check("phi3");
}

#[test]
fn gemma3_local_global() {
    check("gemma3");
}

#[test]
fn mixtral_experts() {
    check("mixtral");
}

#[test]
fn qwen2_moe_shared_expert() {
    check("qwen2_moe");
}

#[test]
fn qwen3_qk_norms_and_wide_heads() {
    check("qwen3");
}

/// Quantized at load, a model stays close to the float reference. With 64-wide rows, Q8_0
/// weights and Q8_0 activations (ggml's scheme) put the logits about 2 % (RMS) away, and a
/// few near-ties change their argmax.
#[test]
fn quantize_at_load() {
    let dir = checkpoint("mistral");
    let reference = reference(&dir);
    let model = Model::load_with(
        &dir,
        LoadOptions {
            quantize: Some(QuantizeTo::Q8_0),
        },
    )
    .unwrap();
    assert_eq!(model.info.quantization, "Q8_0");
    let d = compare(&model, &reference);
    let summary = format!(
        "Q8_0: max |logit diff| {}, relative RMS {}, argmax agreement {}",
        d.max_diff, d.relative_rms, d.argmax_agreement
    );
    eprintln!("{summary}");
    assert!(
        d.relative_rms < 0.05 && d.argmax_agreement >= 0.9,
        "{summary}"
    );
}

/// Q4_K needs rows of whole 256-element super-blocks; these 64-wide matrices fall back to
/// Q8_0, as llama.cpp does.
#[test]
fn q4_k_falls_back_on_short_rows() {
    let model = Model::load_with(
        checkpoint("qwen2"),
        LoadOptions {
            quantize: Some(QuantizeTo::Q4K),
        },
    )
    .unwrap();
    assert_eq!(model.info.quantization, "Q8_0");
}

/// Broken checkpoints give errors that name the file and the problem, never a panic.
#[test]
fn broken_checkpoints_are_refused_clearly() {
    let src = checkpoint("mistral");
    let copy = |dir: &Path| {
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    };
    type Damage = fn(&Path);
    let cases: [(&str, Damage, &str); 5] = [
        (
            "truncated shard",
            |d| {
                let f = d.join("model.safetensors");
                let len = std::fs::metadata(&f).unwrap().len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .unwrap()
                    .set_len(len - 100)
                    .unwrap();
            },
            "truncated",
        ),
        (
            "header length past the end",
            |d| std::fs::write(d.join("model.safetensors"), (1u64 << 40).to_le_bytes()).unwrap(),
            "does not fit",
        ),
        (
            "config.json not JSON",
            |d| std::fs::write(d.join("config.json"), "{oops").unwrap(),
            "config.json: not valid JSON",
        ),
        (
            "unknown architecture",
            |d| {
                let f = d.join("config.json");
                let s = std::fs::read_to_string(&f).unwrap();
                std::fs::write(&f, s.replace("\"mistral\"", "\"bloom\"")).unwrap();
            },
            "architecture 'bloom' is not supported",
        ),
        (
            "missing tensor",
            |d| {
                // A shard that holds only the embeddings.
                let header = br#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[642,64],"data_offsets":[0,164352]}}"#;
                let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
                bytes.extend_from_slice(header);
                bytes.resize(bytes.len() + 164352, 0);
                std::fs::write(d.join("model.safetensors"), bytes).unwrap();
            },
            "tensor 'blk.0.attn_norm.weight' is missing",
        ),
    ];
    for (what, damage, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        damage(dir.path());
        let err = Model::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(expected), "{what}: {err}");
    }
}

/// GGUF files stack a layer's experts into one 3-D tensor per projection
/// (`blk.N.ffn_gate_exps.weight`, `[dim, ffn, n_experts]`) and name Mixtral's architecture
/// `llama`. The Mixtral checkpoint rewritten that way gives the same logits.
#[test]
fn mixtral_as_gguf_with_stacked_experts() {
    use std::collections::BTreeMap;
    use symphony_models::gguf::writer::{to_bytes, TensorToWrite};
    use symphony_models::gguf::MetadataValue;

    let dir = checkpoint("mixtral");
    let source = symphony_models::safetensors::open(&dir, LoadOptions::default()).unwrap();
    let metadata: Vec<(String, MetadataValue)> = source
        .metadata
        .iter()
        .map(|(k, v)| match (k.strip_prefix("mixtral."), k.as_str()) {
            (Some(rest), _) => (format!("llama.{rest}"), v.clone()),
            (None, "general.architecture") => (k.clone(), MetadataValue::String("llama".into())),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    /// Expert index, dims and bytes of each expert of a stack.
    type Experts = Vec<(usize, Vec<u64>, Vec<u8>)>;
    let mut stacks: BTreeMap<String, Experts> = BTreeMap::new();
    let mut tensors = Vec::new();
    for t in &source.tensors {
        let data = source.tensor_data(t).to_vec();
        // `blk.N.ffn_gate_exps.E.weight` → stack `blk.N.ffn_gate_exps.weight`, expert E.
        let parts: Vec<&str> = t.name.split('.').collect();
        match parts.as_slice() {
            [blk, n, proj, e, "weight"] if proj.ends_with("_exps") => {
                stacks
                    .entry(format!("{blk}.{n}.{proj}.weight"))
                    .or_default()
                    .push((e.parse().unwrap(), t.dims.clone(), data));
            }
            _ => tensors.push(TensorToWrite {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ggml_type: t.ggml_type,
                data,
            }),
        }
    }
    assert_eq!(stacks.len(), 2 * 3, "three stacked projections per layer");
    for (name, mut experts) in stacks {
        experts.sort_by_key(|(e, _, _)| *e);
        let mut dims = experts[0].1.clone();
        dims.push(experts.len() as u64);
        tensors.push(TensorToWrite {
            name,
            dims,
            ggml_type: source.tensors[0].ggml_type,
            data: experts.into_iter().flat_map(|(_, _, d)| d).collect(),
        });
    }
    let refs: Vec<(&str, MetadataValue)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("mixtral.gguf");
    std::fs::write(&path, to_bytes(&refs, &tensors)).unwrap();
    let model = Model::load(&path).unwrap();
    assert_eq!(model.info.architecture, "llama");
    let d = compare(&model, &reference(&dir));
    assert!(
        d.max_diff < F32_TOLERANCE && d.argmax_agreement == 1.0,
        "max |logit diff| {}",
        d.max_diff
    );
}

/// A Qwen3 GGUF file as llama.cpp's converter writes it: architecture `qwen3`, Q and K rows
/// left in Hugging Face's order (its rope type for `qwen3` is "neox"), so without the key that
/// marks checkpoints read from safetensors. The architecture's own default layout must then
/// give the same logits as the checkpoint.
#[test]
fn qwen3_as_gguf_uses_its_default_rope_layout() {
    use symphony_models::arch::config::HF_ROPE_LAYOUT_KEY;
    use symphony_models::gguf::writer::{to_bytes, TensorToWrite};

    let dir = checkpoint("qwen3");
    let source = symphony_models::safetensors::open(&dir, LoadOptions::default()).unwrap();
    let metadata: Vec<(&str, _)> = source
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != HF_ROPE_LAYOUT_KEY)
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let tensors: Vec<TensorToWrite> = source
        .tensors
        .iter()
        .map(|t| TensorToWrite {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
            data: source.tensor_data(t).to_vec(),
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("qwen3.gguf");
    std::fs::write(&path, to_bytes(&metadata, &tensors)).unwrap();
    let model = Model::load(&path).unwrap();
    assert_eq!(model.info.architecture, "qwen3");
    let d = compare(&model, &reference(&dir));
    assert!(
        d.max_diff < F32_TOLERANCE && d.argmax_agreement == 1.0,
        "max |logit diff| {}",
        d.max_diff
    );
}

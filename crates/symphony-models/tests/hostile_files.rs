//! Crafted model files: sizes and offsets that overflow, shard paths that leave the
//! checkpoint, hyperparameters no model can run with. Each is refused with an error naming
//! the problem, never a panic or a read outside the checkpoint.

use std::path::{Path, PathBuf};

use serde_json::Value;
use symphony_models::gguf::writer::{to_bytes, TensorToWrite};
use symphony_models::gguf::MetadataValue;
use symphony_models::quant::GgmlType;
use symphony_models::{GgufFile, LoadOptions, Model};

fn checkpoint(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tiny")
        .join(name)
}

/// A copy of the tiny checkpoint `name` in `dir`, to damage.
fn copy_checkpoint(name: &str, dir: &Path) {
    for entry in std::fs::read_dir(checkpoint(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut json: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

/// The tiny Qwen2 checkpoint written as a GGUF file, metadata and tensors changed by `edit`.
fn qwen2_gguf(
    path: &Path,
    edit: impl FnOnce(&mut Vec<(String, MetadataValue)>, &mut Vec<TensorToWrite>),
) {
    let source =
        symphony_models::safetensors::open(&checkpoint("qwen2"), LoadOptions::default()).unwrap();
    let mut metadata: Vec<(String, MetadataValue)> = source
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut tensors: Vec<TensorToWrite> = source
        .tensors
        .iter()
        .map(|t| TensorToWrite {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
            data: source.tensor_data(t).to_vec(),
        })
        .collect();
    edit(&mut metadata, &mut tensors);
    let refs: Vec<(&str, MetadataValue)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    std::fs::write(path, to_bytes(&refs, &tensors)).unwrap();
}

/// D9: an F32 tensor of 2^62 + 576 elements needs 2^64 + 2304 bytes, which wrapped to 2304:
/// the bounds check passed and loading panicked with "capacity overflow".
#[test]
fn gguf_tensor_dimensions_overflowing_the_byte_count_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let huge = (1u64 << 62) + 576;

    // Alone in a file, the tensor index is refused as it is read.
    let bare = dir.path().join("bare.gguf");
    std::fs::write(
        &bare,
        to_bytes(
            &[],
            &[TensorToWrite {
                name: "w".into(),
                dims: vec![huge],
                ggml_type: GgmlType::F32,
                data: vec![0u8; 2304],
            }],
        ),
    )
    .unwrap();
    let err = GgufFile::open(&bare).unwrap_err().to_string();
    assert!(
        err.contains("tensor 'w'") && err.contains("overflow"),
        "{err}"
    );

    // In a model that loads otherwise, as the final norm.
    let model = dir.path().join("model.gguf");
    qwen2_gguf(&model, |_, tensors| {
        let norm = tensors
            .iter_mut()
            .find(|t| t.name == "output_norm.weight")
            .unwrap();
        norm.dims = vec![huge];
        norm.ggml_type = GgmlType::F32;
        norm.data = vec![0u8; 2304];
    });
    let err = Model::load(&model).unwrap_err().to_string();
    assert!(
        err.contains("output_norm.weight") && err.contains("overflow"),
        "{err}"
    );
}

/// D9: `data_offsets` near 2^64 passed the bounds check by overflow.
#[test]
fn safetensors_offsets_near_the_top_of_u64_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_checkpoint("qwen2", dir.path());
    let begin = u64::MAX - 7;
    let header = format!(
        r#"{{"model.embed_tokens.weight":{{"dtype":"F32","shape":[1],"data_offsets":[{begin},{}]}}}}"#,
        begin + 4
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + 64, 0);
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
    let err = Model::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("model.embed_tokens.weight") && err.contains("truncated or corrupt"),
        "{err}"
    );
}

/// D10: the shard index names files by path; one outside the checkpoint was opened, and the
/// error showed its size and first bytes.
#[test]
fn shard_paths_outside_the_checkpoint_are_refused() {
    for shard in [
        "../../../../etc/passwd",
        "/etc/passwd",
        "sub/../../model-00001-of-00002.safetensors",
        "..",
    ] {
        let dir = tempfile::tempdir().unwrap();
        copy_checkpoint("llama", dir.path());
        edit_json(&dir.path().join("model.safetensors.index.json"), |index| {
            index["weight_map"]["lm_head.weight"] = shard.into();
        });
        let err = Model::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors.index.json")
                && err.contains("plain file name")
                && err.contains(&format!("{shard:?}")),
            "{shard}: {err}"
        );
        assert!(
            !err.contains("header of"),
            "{shard}: the file was read: {err}"
        );
    }
}

/// Hyperparameters a file can carry but no model can run with are refused at load (and so
/// at import, which loads), naming the key.
#[test]
fn nonsensical_hyperparameters_are_refused() {
    type Edit = fn(&mut Value);
    let configs: [(&str, Edit, &str); 7] = [
        (
            "vocabulary 0",
            |c| c["vocab_size"] = 0.into(),
            "vocab_size 0 is out of range",
        ),
        (
            // The tokenizer's tables were allocated for this many tokens.
            "vocabulary of 2^60",
            |c| c["vocab_size"] = (1u64 << 60).into(),
            "vocab_size 1152921504606846976 is out of range",
        ),
        (
            "context length 0",
            |c| c["max_position_embeddings"] = 0.into(),
            "context_length is 0",
        ),
        (
            "negative epsilon",
            |c| c["rms_norm_eps"] = (-1e-5).into(),
            "layer_norm_rms_epsilon is -0.00001",
        ),
        (
            "no heads",
            |c| c["num_attention_heads"] = 0.into(),
            "not divisible by 0 heads",
        ),
        (
            "negative heads",
            |c| c["num_attention_heads"] = (-4).into(),
            "'num_attention_heads' is missing or not a non-negative integer",
        ),
        (
            "no layers",
            |c| c["num_hidden_layers"] = 0.into(),
            "block_count is 0",
        ),
    ];
    for (what, edit, expected) in configs {
        let dir = tempfile::tempdir().unwrap();
        copy_checkpoint("qwen2", dir.path());
        edit_json(&dir.path().join("config.json"), edit);
        let err = Model::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(expected), "{what}: {err}");
    }

    // GGUF floats can be NaN or infinite, which JSON cannot say.
    type GgufEdit = fn(&mut Vec<(String, MetadataValue)>);
    let gguf_cases: [(&str, GgufEdit, &str); 4] = [
        (
            "NaN epsilon",
            |m| {
                m.iter_mut()
                    .find(|(k, _)| k == "qwen2.attention.layer_norm_rms_epsilon")
                    .unwrap()
                    .1 = MetadataValue::F32(f32::NAN)
            },
            "qwen2.attention.layer_norm_rms_epsilon is NaN",
        ),
        (
            "infinite rope base",
            |m| {
                m.iter_mut()
                    .find(|(k, _)| k == "qwen2.rope.freq_base")
                    .unwrap()
                    .1 = MetadataValue::F64(f64::INFINITY)
            },
            "qwen2.rope.freq_base is inf",
        ),
        (
            "context length 0",
            |m| {
                m.iter_mut()
                    .find(|(k, _)| k == "qwen2.context_length")
                    .unwrap()
                    .1 = MetadataValue::U32(0)
            },
            "context_length is 0",
        ),
        (
            "negative head count",
            |m| {
                m.iter_mut()
                    .find(|(k, _)| k == "qwen2.attention.head_count")
                    .unwrap()
                    .1 = MetadataValue::I32(-4)
            },
            "qwen2.attention.head_count': expected unsigned integer, found i32",
        ),
    ];
    for (what, edit, expected) in gguf_cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        qwen2_gguf(&path, |m, _| edit(m));
        let err = Model::load(&path).unwrap_err().to_string();
        assert!(err.contains(expected), "{what}: {err}");
    }
}

/// A directory without a config.json is not a model; mapping it failed with "No such device".
#[test]
fn a_directory_that_is_no_checkpoint_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let err = Model::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("is a directory but not a model checkpoint") && err.contains("config.json"),
        "{err}"
    );
    assert!(!err.contains("No such device"), "{err}");
}

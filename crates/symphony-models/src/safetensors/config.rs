//! `config.json` to the `{arch}.*` GGUF keys llama.cpp's converter writes: the shape and
//! rotary settings every decoder shares, read here with the `transformers` defaults; what an
//! architecture adds (windows, experts, Gemma's layer pattern) its own file in `arch/` writes.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::arch::hf_config::HfConfig;
use crate::arch::ArchSpec;
use crate::gguf::MetadataValue;

type Keys = BTreeMap<String, MetadataValue>;
type Outcome<T> = std::result::Result<T, String>;

/// `{arch}.*` keys from `config.json`, with the defaults of the `transformers` config
/// classes where a key may be absent. The pieces run in a fixed order, so the first
/// problem found is the one reported.
pub(super) fn hyperparameters(config: &Value, spec: &ArchSpec) -> Outcome<Keys> {
    let mut hf = HfConfig::new(config, spec.gguf_name);
    let head_dim = shape_keys(&mut hf)?;
    rope_keys(&mut hf, head_dim)?;
    (spec.hf_config)(&mut hf)?;
    let mut m = hf.into_metadata();
    m.insert(
        "general.architecture".into(),
        MetadataValue::String(spec.gguf_name.into()),
    );
    Ok(m)
}

/// Layers, widths, heads and context; returns the head dimension.
fn shape_keys(config: &mut HfConfig<'_>) -> Outcome<u64> {
    let dim = config.need("hidden_size")?;
    let n_heads = config.need("num_attention_heads")?;
    let head_dim = config.uint("head_dim").unwrap_or(dim / n_heads.max(1));
    let n_layers = config.need("num_hidden_layers")?;
    let ffn_dim = config.need("intermediate_size")?;
    let keys = [
        ("block_count", n_layers),
        ("embedding_length", dim),
        ("feed_forward_length", ffn_dim),
        ("attention.head_count", n_heads),
        (
            "attention.head_count_kv",
            config.uint("num_key_value_heads").unwrap_or(n_heads),
        ),
        ("attention.key_length", head_dim),
        (
            "context_length",
            config.uint("max_position_embeddings").unwrap_or(2048),
        ),
    ];
    for (key, value) in keys {
        config.put(key, MetadataValue::U64(value));
    }
    Ok(head_dim)
}

/// Rotary settings (`rope_parameters`, or the older top-level `rope_theta` / `rope_scaling`
/// / `partial_rotary_factor`) and the norm epsilon.
fn rope_keys(config: &mut HfConfig<'_>, head_dim: u64) -> Outcome<()> {
    let global = config.rope_params("full_attention");
    let theta = global
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64)
        .or_else(|| config.float("rope_theta"))
        .unwrap_or(10_000.0);
    let rope_type = global
        .and_then(|p| p.get("rope_type"))
        .and_then(Value::as_str)
        .or_else(|| {
            config
                .json()
                .get("rope_scaling")
                .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
                .and_then(Value::as_str)
        })
        .unwrap_or("default");
    if rope_type != "default" {
        return Err(format!(
            "rope scaling '{rope_type}' is not supported yet (only unscaled rotary embeddings)"
        ));
    }
    let partial = global
        .and_then(|p| p.get("partial_rotary_factor"))
        .and_then(Value::as_f64)
        .or_else(|| config.float("partial_rotary_factor"))
        .unwrap_or(1.0);
    config.put(
        "rope.dimension_count",
        MetadataValue::U64((head_dim as f64 * partial) as u64),
    );
    config.put("rope.freq_base", MetadataValue::F64(theta));
    let eps = config.float("rms_norm_eps").unwrap_or(1e-6);
    config.put("attention.layer_norm_rms_epsilon", MetadataValue::F64(eps));
    Ok(())
}

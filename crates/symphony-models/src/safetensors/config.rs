//! `config.json` to the `{arch}.*` GGUF keys llama.cpp's converter writes: which
//! architecture a `model_type` names, the shared shape, rotary settings, sliding windows and
//! experts, each read by its own function with the `transformers` defaults.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::gguf::MetadataValue;

/// The `model_type`s a checkpoint may have, as the error for any other lists them.
pub(super) const SUPPORTED_MODEL_TYPES: &str =
    "llama, mistral, qwen2, phi3, mixtral, qwen2_moe, gemma3_text";

/// The GGUF architecture name of a `config.json` `model_type`, `None` if unsupported.
pub(super) fn gguf_arch(model_type: &str) -> Option<&'static str> {
    Some(match model_type {
        "llama" => "llama",
        "mistral" => "mistral",
        "qwen2" => "qwen2",
        "phi3" => "phi3",
        "mixtral" => "mixtral",
        "qwen2_moe" => "qwen2moe",
        "gemma3_text" => "gemma3",
        _ => return None,
    })
}

type Keys = BTreeMap<String, MetadataValue>;
type Outcome<T> = std::result::Result<T, String>;

/// `config.json`'s values, read with the messages a missing key gets.
#[derive(Clone, Copy)]
struct Config<'a>(&'a Value);

impl<'a> Config<'a> {
    fn get(self, key: &str) -> Option<&'a Value> {
        self.0.get(key)
    }

    fn uint(self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    fn float(self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    fn need(self, key: &str) -> Outcome<u64> {
        self.uint(key)
            .ok_or_else(|| format!("'{key}' is missing or not a non-negative integer"))
    }

    /// The rotary parameters for one layer type: `rope_parameters` (transformers 5) holds
    /// them per layer type for Gemma 3, or once for every layer.
    fn rope_params(self, layer_type: &str) -> Option<&'a Value> {
        let p = self.get("rope_parameters")?;
        match p.get(layer_type) {
            Some(for_type) => Some(for_type),
            None => Some(p),
        }
    }
}

/// `{arch}.*` keys from `config.json`, with the defaults of the `transformers` config
/// classes where a key may be absent. The pieces run in a fixed order, so the first
/// problem found is the one reported.
pub(super) fn hyperparameters(config: &Value, arch: &str) -> Outcome<Keys> {
    let config = Config(config);
    let mut m = BTreeMap::new();
    let head_dim = shape_keys(config, arch, &mut m)?;
    rope_keys(config, arch, head_dim, &mut m)?;
    window_keys(config, arch, head_dim, &mut m)?;
    expert_keys(config, arch, &mut m)?;
    m.insert(
        "general.architecture".into(),
        MetadataValue::String(arch.into()),
    );
    Ok(m)
}

/// Layers, widths, heads and context; returns the head dimension.
fn shape_keys(config: Config, arch: &str, m: &mut Keys) -> Outcome<u64> {
    let mut put_u = |k: &str, v: u64| {
        m.insert(format!("{arch}.{k}"), MetadataValue::U64(v));
    };
    let dim = config.need("hidden_size")?;
    let n_heads = config.need("num_attention_heads")?;
    let head_dim = config.uint("head_dim").unwrap_or(dim / n_heads.max(1));
    put_u("block_count", config.need("num_hidden_layers")?);
    put_u("embedding_length", dim);
    put_u("feed_forward_length", config.need("intermediate_size")?);
    put_u("attention.head_count", n_heads);
    put_u(
        "attention.head_count_kv",
        config.uint("num_key_value_heads").unwrap_or(n_heads),
    );
    put_u("attention.key_length", head_dim);
    put_u(
        "context_length",
        config.uint("max_position_embeddings").unwrap_or(2048),
    );
    Ok(head_dim)
}

/// Rotary settings (`rope_parameters`, or the older top-level `rope_theta` / `rope_scaling`
/// / `partial_rotary_factor`) and the norm epsilon.
fn rope_keys(config: Config, arch: &str, head_dim: u64, m: &mut Keys) -> Outcome<()> {
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
    m.insert(
        format!("{arch}.rope.dimension_count"),
        MetadataValue::U64((head_dim as f64 * partial) as u64),
    );
    let mut put_f = |k: &str, v: f64| {
        m.insert(format!("{arch}.{k}"), MetadataValue::F64(v));
    };
    put_f("rope.freq_base", theta);
    put_f(
        "attention.layer_norm_rms_epsilon",
        config.float("rms_norm_eps").unwrap_or(1e-6),
    );
    Ok(())
}

/// Sliding-window attention: Mistral's optional window, Gemma 3's local/global layers.
fn window_keys(config: Config, arch: &str, head_dim: u64, m: &mut Keys) -> Outcome<()> {
    let window = config.uint("sliding_window").filter(|&w| w > 0);
    match arch {
        "mistral" | "mixtral" => {
            if let Some(w) = window {
                m.insert(
                    format!("{arch}.attention.sliding_window"),
                    MetadataValue::U64(w),
                );
            }
            Ok(())
        }
        "gemma3" => {
            let w = window.ok_or("'sliding_window' is missing")?;
            m.insert(
                format!("{arch}.attention.sliding_window"),
                MetadataValue::U64(w),
            );
            gemma3_keys(config, arch, head_dim, m)
        }
        _ => Ok(()),
    }
}

/// Gemma 3's layer pattern, local rotary base, soft-capping and attention scale.
fn gemma3_keys(config: Config, arch: &str, head_dim: u64, m: &mut Keys) -> Outcome<()> {
    let n_layers = config.need("num_hidden_layers")? as usize;
    let pattern = gemma_pattern(config.0, n_layers)?;
    m.insert(
        format!("{arch}.attention.sliding_window_pattern"),
        MetadataValue::U64(pattern as u64),
    );
    let has_local_params = config
        .get("rope_parameters")
        .is_some_and(|p| p.get("sliding_attention").is_some());
    let local_theta = config
        .rope_params("sliding_attention")
        .filter(|_| has_local_params)
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64)
        .or_else(|| config.float("rope_local_base_freq"))
        .unwrap_or(10_000.0);
    m.insert(
        format!("{arch}.rope.freq_base_swa"),
        MetadataValue::F64(local_theta),
    );
    if let Some(cap) = config.float("final_logit_softcapping") {
        m.insert(
            format!("{arch}.final_logit_softcapping"),
            MetadataValue::F64(cap),
        );
    }
    let scalar = config
        .float("query_pre_attn_scalar")
        .unwrap_or(head_dim as f64);
    m.insert(
        format!("{arch}.attention.scale"),
        MetadataValue::F64(1.0 / scalar.sqrt()),
    );
    if config
        .get("attn_logit_softcapping")
        .is_some_and(|v| !v.is_null())
    {
        return Err("attention logit soft-capping is not supported yet".into());
    }
    Ok(())
}

/// Mixture-of-experts counts and sizes (Mixtral, Qwen2-MoE).
fn expert_keys(config: Config, arch: &str, m: &mut Keys) -> Outcome<()> {
    let mut put = |k: &str, v: MetadataValue| {
        m.insert(format!("{arch}.{k}"), v);
    };
    match arch {
        "mixtral" => {
            put(
                "expert_count",
                MetadataValue::U64(config.need("num_local_experts")?),
            );
            put(
                "expert_used_count",
                MetadataValue::U64(config.need("num_experts_per_tok")?),
            );
            put("expert_weights_norm", MetadataValue::Bool(true));
        }
        "qwen2moe" => {
            let sparse_step = config.uint("decoder_sparse_step").unwrap_or(1);
            let dense_layers = config
                .get("mlp_only_layers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if sparse_step != 1 || dense_layers {
                return Err(
                    "Qwen2-MoE with dense layers between the sparse ones is not supported yet"
                        .into(),
                );
            }
            put(
                "expert_count",
                MetadataValue::U64(config.need("num_experts")?),
            );
            put(
                "expert_used_count",
                MetadataValue::U64(config.need("num_experts_per_tok")?),
            );
            put(
                "expert_feed_forward_length",
                MetadataValue::U64(config.need("moe_intermediate_size")?),
            );
            if let Some(shared) = config.uint("shared_expert_intermediate_size") {
                put(
                    "expert_shared_feed_forward_length",
                    MetadataValue::U64(shared),
                );
            }
            put(
                "expert_weights_norm",
                MetadataValue::Bool(
                    config
                        .get("norm_topk_prob")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                ),
            );
        }
        _ => {}
    }
    Ok(())
}

/// Gemma 3's local/global layout as the period `p` of "p − 1 local layers, then one global"
/// (what `attention.sliding_window_pattern` says), from `layer_types` when present.
fn gemma_pattern(config: &Value, n_layers: usize) -> std::result::Result<usize, String> {
    let Some(types) = config.get("layer_types").and_then(Value::as_array) else {
        let p = config
            .get("sliding_window_pattern")
            .and_then(Value::as_u64)
            .unwrap_or(6);
        return Ok(p as usize);
    };
    let global: Vec<bool> = types
        .iter()
        .map(|t| t.as_str() == Some("full_attention"))
        .collect();
    let pattern = global
        .iter()
        .position(|&g| g)
        .map_or(n_layers + 1, |i| i + 1);
    let fits = global.len() == n_layers
        && global
            .iter()
            .enumerate()
            .all(|(i, &g)| g == (i % pattern == pattern - 1));
    if !fits {
        return Err(format!(
            "layer_types {types:?} is not a repeating pattern of local layers then one global"
        ));
    }
    Ok(pattern)
}

//! Qwen3 (Qwen Team 2025, "Qwen3 Technical Report"; Hugging Face `modeling_qwen3.py`): the
//! Llama decoder with per-head RMSNorm of queries and keys before rotation (`attn_q_norm`,
//! `attn_k_norm`), no Q/K/V biases, a head size of its own (`head_dim`, not
//! `hidden_size / num_attention_heads`) and the "neox" rotary layout. The blocks already load
//! all of these where the file has them, so Qwen3 needs no decoder of its own.

use super::config::GgufDefaults;
use super::hf_config::HfConfig;
use super::llama;
use super::spec::ArchSpec;
use crate::layers::RopeStyle;

pub static QWEN3: ArchSpec = ArchSpec {
    gguf_name: "qwen3",
    hf_model_type: "qwen3",
    gguf_defaults: GgufDefaults {
        rope_style: RopeStyle::Neox,
        expert_weights_norm: true,
    },
    hf_sandwich_norms: false,
    hf_norms_plus_one: false,
    hf_config,
    load: llama::load,
};

/// The released Qwen3 models attend over the whole context in every layer; a checkpoint that
/// turns on sliding-window layers (`use_sliding_window`) is refused rather than run wrong.
fn hf_config(hf: &mut HfConfig<'_>) -> Result<(), String> {
    let sliding = match hf.json().get("layer_types").and_then(|t| t.as_array()) {
        Some(types) => types
            .iter()
            .any(|t| t.as_str() == Some("sliding_attention")),
        None => hf.bool("use_sliding_window").unwrap_or(false),
    };
    if sliding {
        return Err("Qwen3 with sliding-window layers is not supported yet".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_layers_are_refused() {
        let refused = [
            serde_json::json!({"use_sliding_window": true}),
            serde_json::json!({"layer_types": ["full_attention", "sliding_attention"]}),
        ];
        for json in &refused {
            let err = hf_config(&mut HfConfig::new(json, "qwen3")).unwrap_err();
            assert!(err.contains("sliding-window"), "{json}: {err}");
        }
        let full = serde_json::json!({"use_sliding_window": false, "sliding_window": null});
        assert!(hf_config(&mut HfConfig::new(&full, "qwen3")).is_ok());
    }
}

//! Qwen2-MoE (Qwen Team 2024; Hugging Face `modeling_qwen2_moe.py`): Qwen2 with a
//! mixture-of-experts feed-forward beside a gated shared expert; the chosen experts' weights
//! are renormalised only when `norm_topk_prob` says so.

use super::config::GgufDefaults;
use super::hf_config::HfConfig;
use super::llama;
use super::spec::ArchSpec;
use crate::gguf::MetadataValue;
use crate::layers::RopeStyle;

pub static QWEN2_MOE: ArchSpec = ArchSpec {
    gguf_name: "qwen2moe",
    hf_model_type: "qwen2_moe",
    gguf_defaults: GgufDefaults {
        rope_style: RopeStyle::Neox,
        // llama.cpp's default for Qwen2-MoE files, unlike the Mixtral-style ones.
        expert_weights_norm: false,
    },
    hf_sandwich_norms: false,
    hf_norms_plus_one: false,
    hf_config,
    load: llama::load,
};

fn hf_config(hf: &mut HfConfig<'_>) -> Result<(), String> {
    let sparse_step = hf.uint("decoder_sparse_step").unwrap_or(1);
    let dense_layers = hf
        .json()
        .get("mlp_only_layers")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if sparse_step != 1 || dense_layers {
        return Err(
            "Qwen2-MoE with dense layers between the sparse ones is not supported yet".into(),
        );
    }
    let n_experts = hf.need("num_experts")?;
    hf.put("expert_count", MetadataValue::U64(n_experts));
    let n_used = hf.need("num_experts_per_tok")?;
    hf.put("expert_used_count", MetadataValue::U64(n_used));
    let expert_ffn = hf.need("moe_intermediate_size")?;
    hf.put("expert_feed_forward_length", MetadataValue::U64(expert_ffn));
    if let Some(shared) = hf.uint("shared_expert_intermediate_size") {
        hf.put(
            "expert_shared_feed_forward_length",
            MetadataValue::U64(shared),
        );
    }
    let normalize = hf.bool("norm_topk_prob").unwrap_or(false);
    hf.put("expert_weights_norm", MetadataValue::Bool(normalize));
    Ok(())
}

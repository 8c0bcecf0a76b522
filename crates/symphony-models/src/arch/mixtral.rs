//! Mixtral (Jiang et al. 2024, "Mixtral of Experts"; Hugging Face `modeling_mixtral.py`):
//! Mistral with a mixture-of-experts feed-forward, the chosen experts' weights renormalised.

use super::config::GgufDefaults;
use super::hf_config::HfConfig;
use super::spec::ArchSpec;
use super::{llama, mistral};
use crate::gguf::MetadataValue;
use crate::layers::RopeStyle;

pub static MIXTRAL: ArchSpec = ArchSpec {
    gguf_name: "mixtral",
    hf_model_type: "mixtral",
    gguf_defaults: GgufDefaults {
        rope_style: RopeStyle::Interleaved,
        expert_weights_norm: true,
    },
    hf_sandwich_norms: false,
    hf_norms_plus_one: false,
    hf_config,
    load: llama::load,
};

fn hf_config(hf: &mut HfConfig<'_>) -> Result<(), String> {
    mistral::sliding_window(hf)?;
    let (n_experts, n_used) = (
        hf.need("num_local_experts")?,
        hf.need("num_experts_per_tok")?,
    );
    hf.put("expert_count", MetadataValue::U64(n_experts));
    hf.put("expert_used_count", MetadataValue::U64(n_used));
    hf.put("expert_weights_norm", MetadataValue::Bool(true));
    Ok(())
}

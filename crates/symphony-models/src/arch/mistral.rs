//! Mistral (Jiang et al. 2023, "Mistral 7B"; Hugging Face `modeling_mistral.py`): the Llama
//! decoder with a sliding attention window (`{arch}.attention.sliding_window`).

use super::config::GgufDefaults;
use super::hf_config::HfConfig;
use super::llama;
use super::spec::ArchSpec;
use crate::gguf::MetadataValue;
use crate::layers::RopeStyle;

pub static MISTRAL: ArchSpec = ArchSpec {
    gguf_name: "mistral",
    hf_model_type: "mistral",
    gguf_defaults: GgufDefaults {
        rope_style: RopeStyle::Interleaved,
        expert_weights_norm: true,
    },
    hf_sandwich_norms: false,
    hf_norms_plus_one: false,
    hf_config: sliding_window,
    load: llama::load,
};

/// `sliding_window` when set: attention sees only that many most recent positions.
pub(super) fn sliding_window(hf: &mut HfConfig<'_>) -> Result<(), String> {
    if let Some(window) = hf.uint("sliding_window").filter(|&w| w > 0) {
        hf.put("attention.sliding_window", MetadataValue::U64(window));
    }
    Ok(())
}

//! Phi-3 (Abdin et al. 2024; Hugging Face `modeling_phi3.py`): the Llama decoder with fused
//! `attn_qkv` and gate-up `ffn_up` matrices (read as row ranges, see `layers/blocks.rs`) and
//! the "neox" rotary layout.

use super::config::GgufDefaults;
use super::llama;
use super::spec::{no_extra_keys, ArchSpec};
use crate::layers::RopeStyle;

pub static PHI3: ArchSpec = ArchSpec {
    gguf_name: "phi3",
    hf_model_type: "phi3",
    gguf_defaults: GgufDefaults {
        rope_style: RopeStyle::Neox,
        expert_weights_norm: true,
    },
    hf_sandwich_norms: false,
    hf_norms_plus_one: false,
    hf_config: no_extra_keys,
    load: llama::load,
};

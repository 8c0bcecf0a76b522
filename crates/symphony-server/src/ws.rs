//! `GET /v1/chat/ws`: chat completions over a WebSocket. Each text message the client sends
//! is a chat completion request (the `/v1/chat/completions` body); the server answers with
//! the same chunks the SSE stream carries, one per message, then `[DONE]`. Requests on one
//! socket run one after another; closing the socket cancels the one under way.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::openai::{chat_stream, from_value, start_chat, ChatRequest};
use crate::SharedState;

pub async fn chat(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| serve_socket(state, principal, socket))
}

fn error_message(e: &ApiError) -> Message {
    Message::Text(
        json!({"error": {"message": e.message, "status": e.status.as_u16()}})
            .to_string()
            .into(),
    )
}

async fn serve_socket(state: SharedState, principal: Principal, mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let text = match message {
            Message::Text(t) => t,
            Message::Close(_) => return,
            _ => continue,
        };
        let request = serde_json::from_str::<Value>(text.as_str())
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
            .and_then(|v| from_value::<ChatRequest>(&v));
        let start = match request {
            Ok(req) => start_chat(&state, &principal, req).await,
            Err(e) => Err(e),
        };
        let start = match start {
            Ok(s) => s,
            Err(e) => {
                if socket.send(error_message(&e)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let mut chunks = std::pin::pin!(chat_stream(start));
        loop {
            tokio::select! {
                chunk = chunks.next() => {
                    let Some(chunk) = chunk else { break };
                    if socket.send(Message::Text(chunk.into())).await.is_err() {
                        return; // dropping the stream cancels the generation
                    }
                }
                incoming = socket.recv() => {
                    // Only a close (or a broken socket) matters mid-stream.
                    if matches!(incoming, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                        return;
                    }
                }
            }
        }
    }
}

//! `GET /v1/chat/ws`: chat completions over a WebSocket. Each text message the client sends
//! is a chat completion request (the `/v1/chat/completions` body); the server answers with
//! the same chunks the SSE stream carries, one per message, then `[DONE]`. Requests on one
//! socket run one after another; closing the socket cancels the one under way. Each
//! message is authenticated and rate-limited as a request of its own, and is held to
//! `--max-body-bytes`.

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::openai::{chat_stream, from_value, start_chat, ChatRequest};
use crate::{Credential, SharedState};

pub async fn chat(
    State(state): State<SharedState>,
    Extension(credential): Extension<Credential>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A message is a request body: the same limit applies, before it is buffered whole.
    let max = state.config.max_body_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve_socket(state, credential, socket))
}

/// An error as a message: the socket has no status line, so the status goes in the body.
#[derive(Serialize)]
struct ErrorMessage<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    status: u16,
}

fn error_message(e: &ApiError) -> Message {
    let body = ErrorMessage {
        error: ErrorBody {
            message: &e.message,
            status: e.status.as_u16(),
        },
    };
    Message::Text(
        serde_json::to_string(&body)
            .expect("an error message serialises")
            .into(),
    )
}

/// Each message is a request of its own: the caller is authenticated again (a key revoked
/// since the socket opened stops here) and counted against its limits.
async fn admit(state: &SharedState, credential: &Credential) -> Result<Principal, ApiError> {
    crate::admit(
        state,
        credential.0.as_deref(),
        Role::User,
        "a chat message",
        true,
    )
    .await
}

async fn serve_socket(state: SharedState, credential: Credential, mut socket: WebSocket) {
    loop {
        let text = match socket.recv().await {
            None | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                // Over the size limit (or broken): say why if the socket still takes it.
                let e = ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the message could not be read ({e}); messages are limited to \
                         --max-body-bytes ({} bytes)",
                        state.config.max_body_bytes
                    ),
                );
                let _ = socket.send(error_message(&e)).await;
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: close_code::SIZE,
                        reason: "message too large".into(),
                    })))
                    .await;
                return;
            }
        };
        let principal = match admit(&state, &credential).await {
            Ok(p) => p,
            Err(e) => {
                let revoked = matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
                if socket.send(error_message(&e)).await.is_err() || revoked {
                    // Credentials no longer good: the socket ends with them.
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::POLICY,
                            reason: "credentials no longer valid".into(),
                        })))
                        .await;
                    return;
                }
                continue;
            }
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

//! The replies of `/api/generate` and `/api/chat`: an NDJSON stream (Ollama's default) or
//! one object, each line a piece of the reply and the last with Ollama's counters; and the
//! answer to a request with nothing to generate (load or unload the model).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use symphony_engine::tools::{parse_tool_calls, ReplyPiece, ToolCallSplitter};
use symphony_engine::{Completion, Event, GenerationParams};
use symphony_models::TokenId;

use super::time::now;
use super::types::{ErrorLine, FunctionCallOut, Message, ReplyLine, Stats, ToolCallOut};
use crate::error::OllamaError;
use crate::generation::{self, Loaded, ValidPrompt, ValidRequest};
use crate::SharedState;

/// Which endpoint's lines a reply is made of.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    Generate,
    Chat,
}

impl Shape {
    fn piece(self, model: &str, text: &str) -> ReplyLine {
        let (response, message) = match self {
            Shape::Generate => (Some(text.to_string()), None),
            Shape::Chat => (
                None,
                Some(Message {
                    role: "assistant",
                    content: text.to_string(),
                    tool_calls: None,
                }),
            ),
        };
        ReplyLine {
            model: model.to_string(),
            created_at: now(),
            response,
            message,
            done: false,
            done_reason: None,
            stats: None,
            context: None,
        }
    }

    /// A chat line carrying `calls`.
    fn calls(self, model: &str, text: &str, calls: &[(String, Value)]) -> ReplyLine {
        let mut line = self.piece(model, text);
        if let Some(message) = &mut line.message {
            message.tool_calls = Some(ollama_calls(calls));
        }
        line
    }

    /// The closing line with Ollama's counters (durations in nanoseconds); a generation's
    /// carries the exchange's tokens (`prompt` then `tokens`) as `context`.
    fn last(
        self,
        model: &str,
        text: &str,
        prompt: &[u32],
        tokens: &[u32],
        c: &Completion,
    ) -> ReplyLine {
        let ns = |d: Duration| d.as_nanos() as u64;
        let context = match self {
            Shape::Generate => Some(prompt.iter().chain(tokens).copied().collect()),
            Shape::Chat => None,
        };
        ReplyLine {
            done: true,
            done_reason: Some(c.finish_reason.as_str()),
            stats: Some(Stats {
                total_duration: ns(c.total_time),
                load_duration: 0,
                // The prompt's whole length, cached part included: Ollama's clients budget
                // the context with it.
                prompt_eval_count: c.prompt_tokens,
                prompt_eval_duration: ns(c.time_to_first_token),
                eval_count: c.completion_tokens,
                eval_duration: ns(c.total_time.saturating_sub(c.time_to_first_token)),
            }),
            context,
            ..self.piece(model, text)
        }
    }
}

/// Ollama's `tool_calls`: arguments as an object, no ids.
fn ollama_calls(calls: &[(String, Value)]) -> Vec<ToolCallOut> {
    calls
        .iter()
        .map(|(name, arguments)| ToolCallOut {
            function: FunctionCallOut {
                name: name.clone(),
                arguments: arguments.clone(),
            },
        })
        .collect()
}

/// Ollama's answer to a request with nothing to generate: the model is loaded (it just was),
/// or with `keep_alive: 0` unloaded.
pub(super) fn load_only(
    state: &SharedState,
    model: Loaded,
    keep: Option<Duration>,
    shape: Shape,
) -> Response {
    let mut line = shape.piece(&model.name, "");
    line.done = true;
    line.done_reason = Some(if keep == Some(Duration::ZERO) {
        let name = model.name.clone();
        drop(model); // our own reference would keep it busy
        state.registry.unload(&name);
        "unload"
    } else {
        "load"
    });
    Json(line).into_response()
}

/// One NDJSON line.
fn ndjson<T: serde::Serialize>(line: &T) -> Bytes {
    let mut bytes = serde_json::to_vec(line).expect("response types serialise");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The request `/api/generate` and `/api/chat` both make of their one prompt.
pub(super) fn one_prompt(
    model: Loaded,
    tokens: Vec<TokenId>,
    params: GenerationParams,
    stream: bool,
    parse_calls: bool,
) -> ValidRequest {
    ValidRequest {
        prompts: vec![ValidPrompt {
            tokens,
            max_tokens: params.max_tokens,
        }],
        model,
        params,
        n: 1,
        logprobs: None,
        prompt_logprobs: false,
        stream,
        include_usage: false,
        parse_calls,
    }
}

/// Streams NDJSON (Ollama's default) or answers with one object. (`keep_alive: 0` set the
/// model's keep-alive to zero when it was fetched: the registry's sweep unloads it within a
/// second of the reply, once nothing holds it.)
pub(super) async fn respond(
    state: SharedState,
    request: ValidRequest,
    rx: generation::UnboundedReceiver<(usize, Event)>,
    shape: Shape,
) -> Result<Response, OllamaError> {
    let ValidRequest {
        model,
        mut prompts,
        stream,
        parse_calls,
        ..
    } = request;
    let prompt = prompts.swap_remove(0).tokens;
    if !stream {
        let choices = generation::collect(&state, rx, 1).await?;
        let c = &choices[0];
        let completion = c
            .completion
            .as_ref()
            .expect("collected choices are complete");
        if parse_calls {
            let parsed = parse_tool_calls(&c.text);
            if !parsed.calls.is_empty() {
                let mut line =
                    shape.last(&model.name, &parsed.content, &prompt, &c.tokens, completion);
                if let Some(message) = &mut line.message {
                    message.tool_calls = Some(ollama_calls(&parsed.calls));
                }
                return Ok(Json(line).into_response());
            }
        }
        let line = shape.last(&model.name, &c.text, &prompt, &c.tokens, completion);
        return Ok(Json(line).into_response());
    }
    struct Progress {
        rx: generation::UnboundedReceiver<(usize, Event)>,
        tokens: Vec<u32>,
        finished: bool,
        splitter: Option<ToolCallSplitter>,
        /// Lines ready to send before the next event is read.
        queued: VecDeque<Bytes>,
    }
    let prompt = Arc::new(prompt);
    let progress = Progress {
        rx,
        tokens: Vec::new(),
        finished: false,
        splitter: parse_calls.then(ToolCallSplitter::default),
        queued: Default::default(),
    };
    // A chat line for each piece: text as content, each call as Ollama's `tool_calls`.
    let piece_lines = move |model: &str, pieces: Vec<ReplyPiece>| -> Vec<Bytes> {
        pieces
            .into_iter()
            .map(|piece| match piece {
                ReplyPiece::Text(text) => ndjson(&shape.piece(model, &text)),
                ReplyPiece::Call { name, arguments } => {
                    ndjson(&shape.calls(model, "", &[(name, arguments)]))
                }
            })
            .collect()
    };
    let lines = stream::unfold(progress, move |mut p| {
        let (model, prompt) = (model.clone(), prompt.clone());
        async move {
            if let Some(line) = p.queued.pop_front() {
                return Some((Some(line), p));
            }
            if p.finished {
                return None;
            }
            let line = match p.rx.recv().await {
                None => {
                    p.finished = true;
                    ndjson(&ErrorLine {
                        error: "the model's scheduler stopped".into(),
                    })
                }
                Some((_, Event::Delta { token, text, .. })) => {
                    p.tokens.extend(token);
                    if let Some(splitter) = &mut p.splitter {
                        let pieces = splitter.push(&text);
                        p.queued.extend(piece_lines(&model.name, pieces));
                        return Some((None, p));
                    }
                    if text.is_empty() {
                        return Some((None, p));
                    }
                    ndjson(&shape.piece(&model.name, &text))
                }
                Some((_, Event::Done(c))) => {
                    p.finished = true;
                    if let Some(splitter) = &mut p.splitter {
                        let pieces = splitter.finish();
                        p.queued.extend(piece_lines(&model.name, pieces));
                    }
                    let last = shape.last(&model.name, "", &prompt, &p.tokens, &c);
                    p.queued.push_back(ndjson(&last));
                    return Some((None, p));
                }
                Some((_, Event::Error(e))) => {
                    p.finished = true;
                    ndjson(&ErrorLine { error: e })
                }
                Some((_, Event::PromptLogprobs(_))) => return Some((None, p)),
            };
            Some((Some(line), p))
        }
    })
    .filter_map(|line| async move { line.map(Ok::<_, std::convert::Infallible>) });
    Ok((
        [("content-type", "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

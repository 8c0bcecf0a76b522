//! The SSE stream of a chat completion (also the WebSocket's messages): a role chunk per
//! choice, content chunks (tool calls as OpenAI streams them), a final chunk with the finish
//! reason per choice, the usage chunk if asked for, then `[DONE]`.

use futures_util::stream::{self, Stream, StreamExt};
use symphony_engine::tools::{ReplyPiece, ToolCallSplitter};
use symphony_engine::Event;

use super::chat_request::ChatStart;
use super::logprobs::{chat_logprob_entry, ends_message};
use super::reply::{fingerprint, scheduler_stopped, stream_error};
use super::types::{
    to_json, ChatChunkChoice, ChatLogprobs, Chunk, Delta, FunctionDelta, ToolCallDelta, Usage,
};
use crate::generation::{self, Choice};
use crate::structured::call_id;

/// One choice's chunk body: its delta, log-probabilities and finish reason.
fn choice(
    index: usize,
    delta: Delta,
    logprobs: Option<ChatLogprobs>,
    finish_reason: Option<&'static str>,
) -> ChatChunkChoice {
    ChatChunkChoice {
        index,
        delta,
        logprobs,
        finish_reason,
    }
}

fn content(text: String) -> Delta {
    Delta {
        content: Some(text),
        ..Delta::default()
    }
}

fn call_delta(call: ToolCallDelta) -> Delta {
    Delta {
        tool_calls: Some(vec![call]),
        ..Delta::default()
    }
}

/// The SSE stream of a chat completion: a role chunk per choice, content chunks, a final
/// chunk with the finish reason per choice, the usage chunk if asked for, then `[DONE]`.
pub fn chat_stream(start: ChatStart) -> impl Stream<Item = String> {
    let ChatStart {
        request,
        rx,
        id,
        created,
    } = start;
    let (model, n, include_usage, parse_calls) = (
        request.model,
        request.n,
        request.include_usage,
        request.parse_calls,
    );
    let envelope = {
        let (id, model_name) = (id.clone(), model.name.clone());
        move |choices: Vec<ChatChunkChoice>, usage: Option<Usage>| Chunk {
            id: id.clone(),
            object: "chat.completion.chunk",
            created,
            model: model_name.clone(),
            system_fingerprint: fingerprint(),
            choices,
            usage: include_usage.then_some(usage),
        }
    };
    let chunk = {
        let envelope = envelope.clone();
        move |c: ChatChunkChoice| to_json(&envelope(vec![c], None))
    };
    let opening: Vec<String> = (0..n)
        .map(|i| {
            let delta = Delta {
                role: Some("assistant"),
                content: Some(String::new()),
                tool_calls: None,
            };
            chunk(choice(i, delta, None, None))
        })
        .collect();
    struct Progress {
        rx: generation::UnboundedReceiver<(usize, Event)>,
        done: usize,
        choices: Vec<Choice>,
        finished: bool,
        /// With tools: each choice's text split into content and calls, and its call count.
        splitters: Option<Vec<(ToolCallSplitter, usize)>>,
    }
    let progress = Progress {
        rx,
        done: 0,
        choices: vec![Choice::default(); n],
        finished: false,
        splitters: parse_calls.then(|| (0..n).map(|_| Default::default()).collect()),
    };
    // Content and tool-call chunks for one choice's pieces, in OpenAI's streaming shape:
    // a call opens with its id, type and name, then carries its arguments.
    let piece_chunks = {
        let chunk = chunk.clone();
        move |i: usize, pieces: Vec<ReplyPiece>, calls: &mut usize, out: &mut Vec<String>| {
            for piece in pieces {
                match piece {
                    ReplyPiece::Text(text) => out.push(chunk(choice(i, content(text), None, None))),
                    ReplyPiece::Call { name, arguments } => {
                        let k = *calls;
                        *calls += 1;
                        let open = ToolCallDelta {
                            index: k,
                            id: Some(call_id()),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(name),
                                arguments: String::new(),
                            },
                        };
                        out.push(chunk(choice(i, call_delta(open), None, None)));
                        let args = ToolCallDelta {
                            index: k,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: arguments.to_string(),
                            },
                        };
                        out.push(chunk(choice(i, call_delta(args), None, None)));
                    }
                }
            }
        }
    };
    let body = stream::unfold(progress, move |mut p| {
        let (model, chunk, envelope) = (model.clone(), chunk.clone(), envelope.clone());
        let piece_chunks = piece_chunks.clone();
        async move {
            if p.finished {
                return None;
            }
            let mut out = Vec::new();
            match p.rx.recv().await.unwrap_or_else(scheduler_stopped) {
                (i, Event::Delta { text, logprob, .. }) => {
                    let logprob = logprob.filter(|lp| !ends_message(&model, lp));
                    if let Some(lp) = &logprob {
                        p.choices[i].logprobs.push(lp.clone());
                    }
                    let logprobs = logprob.map(|lp| ChatLogprobs {
                        content: vec![chat_logprob_entry(&model, &lp)],
                    });
                    if let Some(splitters) = &mut p.splitters {
                        let (splitter, calls) = &mut splitters[i];
                        let pieces = splitter.push(&text);
                        piece_chunks(i, pieces, calls, &mut out);
                        if logprobs.is_some() {
                            out.push(chunk(choice(i, content(String::new()), logprobs, None)));
                        }
                    } else if !text.is_empty() || logprobs.is_some() {
                        out.push(chunk(choice(i, content(text), logprobs, None)));
                    }
                }
                (i, Event::Done(c)) => {
                    let mut reason = c.finish_reason.as_str();
                    if let Some(splitters) = &mut p.splitters {
                        let (splitter, calls) = &mut splitters[i];
                        let pieces = splitter.finish();
                        piece_chunks(i, pieces, calls, &mut out);
                        if *calls > 0 {
                            reason = "tool_calls";
                        }
                    }
                    out.push(chunk(choice(i, Delta::default(), None, Some(reason))));
                    p.choices[i].completion = Some(c);
                    p.done += 1;
                    if p.done == p.choices.len() {
                        p.finished = true;
                        if include_usage {
                            let usage = Usage::chat(&p.choices);
                            out.push(to_json(&envelope(Vec::new(), Some(usage))));
                        }
                        out.push("[DONE]".to_string());
                    }
                }
                (_, Event::Error(e)) => {
                    p.finished = true;
                    out.push(stream_error(&e));
                }
                (_, Event::PromptLogprobs(_)) => {}
            }
            Some((stream::iter(out), p))
        }
    })
    .flatten();
    stream::iter(opening).chain(body)
}

//! The SSE stream of a legacy completion: each choice's echoed prompt (when asked), its text
//! pieces with their log-probabilities, a closing chunk with its finish reason, the usage
//! chunk if asked for, then `[DONE]`.

use std::sync::Arc;

use futures_util::stream::{self, Stream, StreamExt};
use symphony_engine::{Event, TokenLogprob};

use super::completion_request::ValidCompletion;
use super::logprobs::completion_logprobs;
use super::reply::{fingerprint, scheduler_stopped, stream_error};
use super::types::{to_json, Chunk, LegacyLogprobs, TextChoice, Usage};
use crate::generation;

fn piece(
    index: usize,
    text: String,
    logprobs: Option<LegacyLogprobs>,
    finish_reason: Option<&'static str>,
) -> TextChoice {
    TextChoice {
        index,
        text,
        logprobs,
        finish_reason,
    }
}

pub(super) fn completion_stream(
    valid: ValidCompletion,
    rx: generation::UnboundedReceiver<(usize, Event)>,
    id: String,
    created: u64,
) -> impl Stream<Item = String> {
    let ValidCompletion { request, echo } = valid;
    let total = request.sequences();
    let include_usage = request.include_usage;
    let model = request.model.clone();
    let chunk = {
        let (id, name) = (id.clone(), model.name.clone());
        move |choices: Vec<TextChoice>, usage: Option<Usage>| {
            to_json(&Chunk {
                id: id.clone(),
                object: "text_completion",
                created,
                model: name.clone(),
                system_fingerprint: fingerprint(),
                choices,
                usage: include_usage.then_some(usage),
            })
        }
    };
    struct Progress {
        rx: generation::UnboundedReceiver<(usize, Event)>,
        done: usize,
        echoed: Vec<bool>,
        completion_tokens: usize,
        finished: bool,
    }
    let progress = Progress {
        rx,
        done: 0,
        echoed: vec![false; total],
        completion_tokens: 0,
        finished: false,
    };
    // Computed once, not per event.
    let prompt_tokens = request.prompt_tokens();
    let echo_text: Option<Arc<Vec<String>>> = echo.then(|| {
        Arc::new(
            request
                .prompts
                .iter()
                .map(|p| model.model().tokenizer.decode(&p.tokens, false))
                .collect(),
        )
    });
    let (n, logprobs) = (request.n, request.logprobs);
    stream::unfold(progress, move |mut p| {
        let (model, chunk, echo_text) = (model.clone(), chunk.clone(), echo_text.clone());
        async move {
            if p.finished {
                return None;
            }
            let mut out = Vec::new();
            let next = p.rx.recv().await.unwrap_or_else(scheduler_stopped);
            {
                let i = next.0;
                if let (Some(texts), false) = (&echo_text, p.echoed[i]) {
                    p.echoed[i] = true;
                    out.push(chunk(
                        vec![piece(i, texts[i / n].clone(), None, None)],
                        None,
                    ));
                }
            }
            match next {
                (
                    i,
                    Event::Delta {
                        token,
                        text,
                        logprob,
                    },
                ) => {
                    let lp = logprobs.map(|_| {
                        // An end-of-generation token comes as a log-probability alone.
                        let entries: Vec<(u32, Option<&TokenLogprob>)> = match &logprob {
                            Some(lp) => vec![(lp.token, Some(lp))],
                            None => token.map(|t| (t, None)).into_iter().collect(),
                        };
                        completion_logprobs(&model, &entries, 0)
                    });
                    out.push(chunk(vec![piece(i, text, lp, None)], None));
                }
                (i, Event::Done(c)) => {
                    p.completion_tokens += c.completion_tokens;
                    let reason = Some(c.finish_reason.as_str());
                    out.push(chunk(vec![piece(i, String::new(), None, reason)], None));
                    p.done += 1;
                    if p.done == total {
                        p.finished = true;
                        if include_usage {
                            let usage = Usage::plain(prompt_tokens, p.completion_tokens);
                            out.push(chunk(Vec::new(), Some(usage)));
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
    .flatten()
}

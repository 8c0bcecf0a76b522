//! OpenAI's API: `/v1/chat/completions`, `/v1/completions`, `/v1/models`, in the shapes the
//! official clients parse, streamed as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Extension, Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use symphony_engine::sampling::SamplingParams;
use symphony_engine::tools::{parse_tool_calls, ReplyPiece, ToolCallSplitter};
use symphony_engine::{raw_prompt, Completion, Event, GenerationParams, TokenLogprob};
use symphony_types::{ChatMessage, Role, ToolCall};

use crate::auth::Principal;
use crate::error::{ApiError, JsonBody};
use crate::generation::{self, token_text, Choice, Job, Loaded};
use crate::structured::{call_arguments, call_id, Guided, OutputRules};
use crate::util::{random_seed, unix_now};
use crate::SharedState;

/// Most choices one request may ask for.
const MAX_N: usize = 16;
/// Prompts one `/v1/completions` request may carry: each becomes n sequences, and a client
/// batching more should send several requests.
const MAX_PROMPTS: usize = 64;
/// Most alternatives per token in `top_logprobs` (OpenAI's limit).
const MAX_TOP_LOGPROBS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    One(String),
    Many(Vec<String>),
}

impl StopSpec {
    fn into_vec(self) -> Vec<String> {
        match self {
            StopSpec::One(s) => vec![s],
            StopSpec::Many(v) => v,
        }
    }
}

/// The sampling fields both endpoints share.
#[derive(Debug, Deserialize)]
pub struct Sampling {
    temperature: Option<f32>,
    top_p: Option<f32>,
    /// Not in OpenAI's API; vLLM and llama-server accept it.
    top_k: Option<usize>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    seed: Option<i64>,
    #[serde(default)]
    n: Option<usize>,
    stop: Option<StopSpec>,
    // Accepted for compatibility; Symphony's sampler has no presence/frequency penalties,
    // so a non-zero value is refused rather than silently ignored.
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    /// Not in OpenAI's API; vLLM and llama-server accept it (benchmarks use it).
    #[serde(default)]
    ignore_eos: bool,
}

impl Sampling {
    fn params(self, max_tokens: usize) -> Result<(GenerationParams, usize), ApiError> {
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if v.is_some_and(|v| v != 0.0) {
                return Err(ApiError::invalid_param(
                    if name == "presence_penalty" {
                        "presence_penalty"
                    } else {
                        "frequency_penalty"
                    },
                    format!("{name} is not supported; use repetition_penalty"),
                ));
            }
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid_param(
                "temperature",
                format!("temperature must be between 0 and 2, got {temperature}"),
            ));
        }
        let n = self.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(ApiError::invalid_param(
                "n",
                format!("n must be between 1 and {MAX_N}, got {n}"),
            ));
        }
        let stop = self.stop.map(StopSpec::into_vec).unwrap_or_default();
        if stop.len() > 4 {
            return Err(ApiError::invalid_param("stop", "at most 4 stop sequences"));
        }
        let sampling = SamplingParams {
            temperature,
            top_k: self.top_k.unwrap_or(0),
            top_p: self.top_p.unwrap_or(1.0),
            min_p: self.min_p.unwrap_or(0.0),
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
            repeat_last_n: 64,
            seed: self.seed.map_or_else(random_seed, |s| s as u64),
        };
        sampling.validate().map_err(ApiError::bad_request)?;
        Ok((
            GenerationParams {
                max_tokens,
                sampling,
                stop,
                ignore_eos: self.ignore_eos,
                constraint: None,
            },
            n,
        ))
    }
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Vec<InToolCall>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InToolCall {
    #[serde(default)]
    id: Option<String>,
    function: InFunctionCall,
}

#[derive(Debug, Deserialize)]
pub struct InFunctionCall {
    name: String,
    /// A JSON string in OpenAI's API; an object is accepted too.
    #[serde(default)]
    arguments: Value,
}

impl InMessage {
    fn into_chat(self) -> Result<ChatMessage, ApiError> {
        let role = match self.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                return Err(ApiError::invalid_param(
                    "messages",
                    format!("unknown role '{other}'"),
                ))
            }
        };
        let content = match self.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(ApiError::invalid_param(
                            "messages",
                            format!("content parts of type '{}' are not supported", p.kind),
                        ));
                    }
                    text.push_str(p.text.as_deref().unwrap_or(""));
                }
                text
            }
        };
        let mut message = ChatMessage::new(role, content);
        message.tool_calls = self
            .tool_calls
            .into_iter()
            .map(|c| ToolCall {
                id: c.id.unwrap_or_else(call_id),
                name: c.function.name,
                arguments: call_arguments(c.function.arguments),
            })
            .collect();
        message.tool_call_id = self.tool_call_id;
        message.name = self.name;
        Ok(message)
    }
}

/// Gives each tool turn the name of the function whose call it answers, when the client
/// did not say (templates that render tool turns may use it).
fn name_tool_turns(messages: &mut [ChatMessage]) {
    let mut names = std::collections::HashMap::new();
    for m in messages.iter_mut() {
        for c in &m.tool_calls {
            names.insert(c.id.clone(), c.name.clone());
        }
        if m.role == Role::Tool && m.name.is_none() {
            m.name = m
                .tool_call_id
                .as_ref()
                .and_then(|id| names.get(id).cloned());
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<usize>,
    response_format: Option<Value>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    guided: Guided,
    #[serde(flatten)]
    sampling: Sampling,
}

/// Generation limit: the request's, else what the context has room for.
fn max_tokens(requested: Option<usize>, model: &Loaded, prompt_len: usize) -> usize {
    requested.unwrap_or_else(|| model.model().context_length().saturating_sub(prompt_len))
}

/// A chat request under way.
pub struct ChatStart {
    model: Loaded,
    rx: generation::UnboundedReceiver<(usize, Event)>,
    n: usize,
    top_logprobs: Option<usize>,
    id: String,
    created: u64,
    include_usage: bool,
    /// Tool calls are read out of the replies.
    parse_calls: bool,
}

/// Validates a chat request, loads its model and submits it.
pub async fn start_chat(
    state: &SharedState,
    principal: &Principal,
    req: ChatRequest,
) -> Result<ChatStart, ApiError> {
    let rules = OutputRules::openai(
        req.response_format.as_ref(),
        &req.guided,
        req.tools.as_ref(),
        req.tool_choice.as_ref(),
        req.parallel_tool_calls,
    )?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages must not be empty",
        ));
    }
    let top_logprobs = match (req.logprobs, req.top_logprobs) {
        (_, Some(n)) if n > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                format!("top_logprobs must be at most {MAX_TOP_LOGPROBS}"),
            ))
        }
        (false, Some(_)) => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "top_logprobs requires logprobs: true",
            ))
        }
        (true, n) => Some(n.unwrap_or(0)),
        (false, None) => None,
    };
    let mut messages = req
        .messages
        .into_iter()
        .map(InMessage::into_chat)
        .collect::<Result<Vec<_>, _>>()?;
    name_tool_turns(&mut messages);
    let model = state.registry.get(&req.model, None).await?;
    let prompt = generation::chat_prompt(&model, messages, rules.tools.clone()).await?;
    let limit = max_tokens(
        req.max_completion_tokens.or(req.max_tokens),
        &model,
        prompt.len(),
    );
    let (mut params, n) = req.sampling.params(limit)?;
    params.constraint = rules.constraint(&model).await?;
    let job = Job {
        prompt,
        params,
        logprobs: top_logprobs,
        prompt_logprobs: false,
        n,
    };
    let rx = generation::start(state, principal, &model, job)?;
    Ok(ChatStart {
        model,
        rx,
        n,
        top_logprobs,
        id: format!("chatcmpl-{:016x}", random_seed()),
        created: unix_now(),
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
        parse_calls: rules.parse_calls(),
    })
}

/// Deserialises a request body kept as JSON (for the cache key), with a 400 on mismatch.
pub fn from_value<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    T::deserialize(body).map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// A cached reply for `route`, if the request is cacheable and was answered before. Returns
/// the cache key to store the reply under on a miss.
async fn cached(
    state: &SharedState,
    route: &str,
    model: &str,
    body: &Value,
) -> Result<(Option<Response>, Option<String>), ApiError> {
    let manifest = state.registry.resolve(model).await?;
    let Some(key) = state.cache.key(route, &manifest.blob, body) else {
        return Ok((None, None));
    };
    if let Some(hit) = state.cache.get(&key).await {
        state.metrics.response_cache_hits.fetch_add(1, Relaxed);
        let response = (
            [
                ("content-type", "application/json"),
                ("x-symphony-cache", "hit"),
            ],
            hit,
        )
            .into_response();
        return Ok((Some(response), None));
    }
    state.metrics.response_cache_misses.fetch_add(1, Relaxed);
    Ok((None, Some(key)))
}

/// Answers with `body`, storing it in the response cache under `key`.
async fn reply(state: &SharedState, key: Option<String>, body: Value) -> Response {
    let bytes = axum::body::Bytes::from(body.to_string());
    if let Some(key) = key {
        state.cache.put(&key, bytes.clone()).await;
    }
    ([("content-type", "application/json")], bytes).into_response()
}

pub async fn chat_completions(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = from_value(&body)?;
    let stream = req.stream;
    let (hit, key) = cached(&state, "/v1/chat/completions", &req.model, &body).await?;
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let start = start_chat(&state, &principal, req).await?;
    if stream {
        let events =
            chat_stream(start).map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)));
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let ChatStart {
        model,
        rx,
        n,
        top_logprobs,
        id,
        created,
        parse_calls,
        ..
    } = start;
    let choices = generation::collect(&state, rx, n).await?;
    let body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model.name,
        "system_fingerprint": fingerprint(),
        "choices": choices.iter().enumerate().map(|(i, c)| {
            let (message, called) = reply_message(&c.text, parse_calls);
            json!({
                "index": i,
                "message": message,
                "logprobs": top_logprobs.map(|_| json!({"content": chat_logprobs(&model, &c.logprobs)})),
                "finish_reason": if called { "tool_calls" } else { finish_reason(c.completion.as_ref()) },
            })
        }).collect::<Vec<_>>(),
        "usage": usage(&choices),
    });
    Ok(reply(&state, key, body).await)
}

/// The assistant message for a reply, with its tool calls read out when tools were offered;
/// true if it called any.
fn reply_message(text: &str, parse_calls: bool) -> (Value, bool) {
    if !parse_calls {
        return (json!({"role": "assistant", "content": text}), false);
    }
    let parsed = parse_tool_calls(text);
    if parsed.calls.is_empty() {
        return (json!({"role": "assistant", "content": text}), false);
    }
    let calls: Vec<Value> = parsed
        .calls
        .iter()
        .map(|(name, args)| {
            json!({
                "id": call_id(),
                "type": "function",
                "function": {"name": name, "arguments": args.to_string()},
            })
        })
        .collect();
    let content = (!parsed.content.is_empty()).then_some(parsed.content);
    (
        json!({"role": "assistant", "content": content, "tool_calls": calls}),
        true,
    )
}

fn fingerprint() -> String {
    format!("symphony-{}", env!("CARGO_PKG_VERSION"))
}

fn finish_reason(c: Option<&Completion>) -> &'static str {
    c.map_or("stop", |c| c.finish_reason.as_str())
}

fn usage(choices: &[Choice]) -> Value {
    let first = choices.first().and_then(|c| c.completion.as_ref());
    let prompt = first.map_or(0, |c| c.prompt_tokens);
    let cached = first.map_or(0, |c| c.cached_tokens);
    let completion: usize = choices
        .iter()
        .filter_map(|c| c.completion.as_ref())
        .map(|c| c.completion_tokens)
        .sum();
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

fn chat_logprob_entry(model: &Loaded, lp: &TokenLogprob) -> Value {
    let entry = |id, logprob: f32| {
        let text = token_text(model, id);
        json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()})
    };
    let mut v = entry(lp.token, lp.logprob);
    v["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
    v
}

fn chat_logprobs(model: &Loaded, lps: &[TokenLogprob]) -> Vec<Value> {
    lps.iter()
        .filter(|lp| !ends_message(model, lp))
        .map(|lp| chat_logprob_entry(model, lp))
        .collect()
}

/// Whether `lp` is the end-of-generation token that ended a reply: a chat message's
/// log-probabilities cover its content only, as OpenAI's do (the legacy completions list
/// it, with its text).
fn ends_message(model: &Loaded, lp: &TokenLogprob) -> bool {
    model.model().tokenizer.is_end_of_generation(lp.token)
}

/// The SSE stream of a chat completion: a role chunk per choice, content chunks, a final
/// chunk with the finish reason per choice, the usage chunk if asked for, then `[DONE]`.
pub fn chat_stream(start: ChatStart) -> impl Stream<Item = String> {
    let ChatStart {
        model,
        rx,
        n,
        id,
        created,
        include_usage,
        parse_calls,
        ..
    } = start;
    let chunk = {
        let (id, model_name) = (id.clone(), model.name.clone());
        move |choices: Value| {
            let mut v = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_name,
                "system_fingerprint": fingerprint(),
                "choices": choices,
            });
            if include_usage {
                v["usage"] = Value::Null;
            }
            v.to_string()
        }
    };
    let opening: Vec<String> = (0..n)
        .map(|i| {
            chunk(json!([{
                "index": i,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": null,
                "finish_reason": null,
            }]))
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
                    ReplyPiece::Text(text) => out.push(chunk(json!([{
                        "index": i, "delta": {"content": text}, "logprobs": null, "finish_reason": null,
                    }]))),
                    ReplyPiece::Call { name, arguments } => {
                        let k = *calls;
                        *calls += 1;
                        out.push(chunk(json!([{
                            "index": i,
                            "delta": {"tool_calls": [{
                                "index": k, "id": call_id(), "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }]},
                            "logprobs": null, "finish_reason": null,
                        }])));
                        out.push(chunk(json!([{
                            "index": i,
                            "delta": {"tool_calls": [{"index": k, "function": {"arguments": arguments.to_string()}}]},
                            "logprobs": null, "finish_reason": null,
                        }])));
                    }
                }
            }
        }
    };
    let body = stream::unfold(progress, move |mut p| {
        let (model, chunk, id) = (model.clone(), chunk.clone(), id.clone());
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
                    let logprobs = logprob
                        .map(|lp| json!({"content": [chat_logprob_entry(&model, &lp)]}))
                        .unwrap_or(Value::Null);
                    if let Some(splitters) = &mut p.splitters {
                        let (splitter, calls) = &mut splitters[i];
                        let pieces = splitter.push(&text);
                        piece_chunks(i, pieces, calls, &mut out);
                        if !logprobs.is_null() {
                            out.push(chunk(json!([{
                                "index": i, "delta": {"content": ""}, "logprobs": logprobs, "finish_reason": null,
                            }])));
                        }
                    } else if !text.is_empty() || !logprobs.is_null() {
                        out.push(chunk(json!([{
                            "index": i,
                            "delta": {"content": text},
                            "logprobs": logprobs,
                            "finish_reason": null,
                        }])));
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
                    out.push(chunk(json!([{
                        "index": i,
                        "delta": {},
                        "logprobs": null,
                        "finish_reason": reason,
                    }])));
                    p.choices[i].completion = Some(c);
                    p.done += 1;
                    if p.done == p.choices.len() {
                        p.finished = true;
                        if include_usage {
                            let v = json!({
                                "id": id,
                                "object": "chat.completion.chunk",
                                "created": created,
                                "model": model.name,
                                "system_fingerprint": fingerprint(),
                                "choices": [],
                                "usage": usage(&p.choices),
                            });
                            out.push(v.to_string());
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

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptSpec {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    model: String,
    prompt: PromptSpec,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<usize>,
    #[serde(default)]
    echo: bool,
    logprobs: Option<usize>,
    suffix: Option<String>,
    best_of: Option<usize>,
    response_format: Option<Value>,
    #[serde(flatten)]
    guided: Guided,
    #[serde(flatten)]
    sampling: Sampling,
}

pub async fn completions(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = from_value(&body)?;
    let (hit, key) = cached(&state, "/v1/completions", &req.model, &body).await?;
    if let Some(hit) = hit {
        return Ok(hit);
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param("suffix", "suffix is not supported"));
    }
    if req.best_of.is_some_and(|b| b > 1) {
        return Err(ApiError::invalid_param(
            "best_of",
            "best_of is not supported",
        ));
    }
    if req.logprobs.is_some_and(|n| n > 5) {
        return Err(ApiError::invalid_param(
            "logprobs",
            "logprobs must be at most 5",
        ));
    }
    let prompt_count = match &req.prompt {
        PromptSpec::Text(_) | PromptSpec::Tokens(_) => 1,
        PromptSpec::Texts(ts) => ts.len(),
        PromptSpec::TokenLists(ts) => ts.len(),
    };
    if prompt_count > MAX_PROMPTS {
        return Err(ApiError::invalid_param(
            "prompt",
            format!("at most {MAX_PROMPTS} prompts per request, got {prompt_count}"),
        ));
    }
    let model = state.registry.get(&req.model, None).await?;
    let prompts: Vec<Vec<u32>> = match req.prompt {
        PromptSpec::Text(t) => vec![raw_prompt(model.model(), &t)],
        PromptSpec::Texts(ts) => ts.iter().map(|t| raw_prompt(model.model(), t)).collect(),
        PromptSpec::Tokens(t) => vec![t],
        PromptSpec::TokenLists(ts) => ts,
    };
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
    }
    // OpenAI's default for this endpoint.
    let requested = req.max_tokens.unwrap_or(16);
    let (mut params, n) = req.sampling.params(requested)?;
    let rules = OutputRules::openai(req.response_format.as_ref(), &req.guided, None, None, None)?;
    params.constraint = rules.constraint(&model).await?;
    // The whole request is counted against the queue before any of it is submitted.
    generation::check_room(&state, &model, prompts.len().saturating_mul(n))?;
    let (tx, rx) = generation::channel(&state, &principal);
    for (p, prompt) in prompts.iter().enumerate() {
        let room = model.model().context_length().saturating_sub(prompt.len());
        let job = Job {
            prompt: prompt.clone(),
            params: GenerationParams {
                max_tokens: requested.min(room),
                ..params.clone()
            },
            logprobs: req.logprobs,
            prompt_logprobs: req.echo && req.logprobs.is_some(),
            n,
        };
        generation::submit(&state, &model, job, &tx, p * n)?;
    }
    drop(tx);
    let total = prompts.len() * n;
    let id = format!("cmpl-{:016x}", random_seed());
    let created = unix_now();
    if req.stream {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        let stream = completion_stream(
            model,
            rx,
            CompletionShape {
                prompts,
                n,
                echo: req.echo,
                logprobs: req.logprobs,
            },
            id,
            created,
            include_usage,
        );
        let events = stream.map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)));
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let choices = generation::collect(&state, rx, total).await?;
    let shape = CompletionShape {
        prompts,
        n,
        echo: req.echo,
        logprobs: req.logprobs,
    };
    let prompt_tokens: usize = shape.prompts.iter().map(Vec::len).sum();
    let completion_tokens: usize = choices
        .iter()
        .filter_map(|c| c.completion.as_ref())
        .map(|c| c.completion_tokens)
        .sum();
    let body = json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model.name,
        "system_fingerprint": fingerprint(),
        "choices": choices.iter().enumerate().map(|(i, c)| shape.choice(&model, i, c)).collect::<Vec<_>>(),
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    });
    Ok(reply(&state, key, body).await)
}

struct CompletionShape {
    prompts: Vec<Vec<u32>>,
    n: usize,
    echo: bool,
    logprobs: Option<usize>,
}

impl CompletionShape {
    /// One choice of `/v1/completions`, with the prompt in front when echoing.
    fn choice(&self, model: &Loaded, index: usize, c: &Choice) -> Value {
        let prompt = &self.prompts[index / self.n];
        let tokenizer = &model.model().tokenizer;
        let prompt_text = if self.echo {
            tokenizer.decode(prompt, false)
        } else {
            String::new()
        };
        let logprobs = self.logprobs.map(|_| {
            let mut entries: Vec<(u32, Option<&TokenLogprob>)> = Vec::new();
            if self.echo {
                entries.extend(
                    prompt
                        .iter()
                        .enumerate()
                        .map(|(i, &t)| (t, c.prompt_logprobs.get(i).and_then(Option::as_ref))),
                );
            }
            entries.extend(c.logprobs.iter().map(|lp| (lp.token, Some(lp))));
            completion_logprobs(model, &entries, 0)
        });
        json!({
            "index": index,
            "text": format!("{prompt_text}{}", c.text),
            "logprobs": logprobs,
            "finish_reason": finish_reason(c.completion.as_ref()),
        })
    }
}

/// The legacy logprobs object: parallel lists of tokens, their logprobs, the alternatives
/// and each token's character offset in the text.
fn completion_logprobs(
    model: &Loaded,
    entries: &[(u32, Option<&TokenLogprob>)],
    offset: usize,
) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top = Vec::new();
    let mut offsets = Vec::new();
    let mut at = offset;
    for &(id, lp) in entries {
        let text = token_text(model, id);
        offsets.push(at);
        at += text.chars().count();
        tokens.push(text);
        token_logprobs.push(lp.map(|l| l.logprob));
        // The alternatives always include the token itself, as OpenAI's legacy completions,
        // vLLM and llama-cpp-python give them (lm-evaluation-harness reads a token as greedy
        // when it is the most likely entry here).
        top.push(lp.map(|l| {
            let mut m = serde_json::Map::new();
            for &(t, v) in &l.top {
                m.insert(token_text(model, t), json!(v));
            }
            m.entry(token_text(model, id)).or_insert(json!(l.logprob));
            Value::Object(m)
        }));
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

fn completion_stream(
    model: Loaded,
    rx: generation::UnboundedReceiver<(usize, Event)>,
    shape: CompletionShape,
    id: String,
    created: u64,
    include_usage: bool,
) -> impl Stream<Item = String> {
    let total = shape.prompts.len() * shape.n;
    let chunk = {
        let (id, name) = (id.clone(), model.name.clone());
        move |choices: Value, usage: Option<Value>| {
            let mut v = json!({
                "id": id,
                "object": "text_completion",
                "created": created,
                "model": name,
                "system_fingerprint": fingerprint(),
                "choices": choices,
            });
            if include_usage {
                v["usage"] = usage.unwrap_or(Value::Null);
            }
            v.to_string()
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
    let prompt_tokens: usize = shape.prompts.iter().map(Vec::len).sum();
    let echo_text: Option<Arc<Vec<String>>> = shape.echo.then(|| {
        Arc::new(
            shape
                .prompts
                .iter()
                .map(|t| model.model().tokenizer.decode(t, false))
                .collect(),
        )
    });
    let (n, logprobs) = (shape.n, shape.logprobs);
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
                        json!([{"index": i, "text": texts[i / n], "logprobs": null, "finish_reason": null}]),
                        None,
                    ));
                }
            }
            match next {
                (i, Event::Delta { token, text, logprob }) => {
                    let lp = logprobs.map(|_| {
                        // An end-of-generation token comes as a log-probability alone.
                        let entries: Vec<(u32, Option<&TokenLogprob>)> = match &logprob {
                            Some(lp) => vec![(lp.token, Some(lp))],
                            None => token.map(|t| (t, None)).into_iter().collect(),
                        };
                        completion_logprobs(&model, &entries, 0)
                    });
                    out.push(chunk(
                        json!([{"index": i, "text": text, "logprobs": lp, "finish_reason": null}]),
                        None,
                    ));
                }
                (i, Event::Done(c)) => {
                    p.completion_tokens += c.completion_tokens;
                    out.push(chunk(
                        json!([{"index": i, "text": "", "logprobs": null, "finish_reason": c.finish_reason.as_str()}]),
                        None,
                    ));
                    p.done += 1;
                    if p.done == total {
                        p.finished = true;
                        if include_usage {
                            out.push(chunk(
                                json!([]),
                                Some(json!({
                                    "prompt_tokens": prompt_tokens,
                                    "completion_tokens": p.completion_tokens,
                                    "total_tokens": prompt_tokens + p.completion_tokens,
                                })),
                            ));
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

/// The event a stream ends with when its channel closes before the request finished.
fn scheduler_stopped() -> (usize, Event) {
    (0, Event::Error("the model's scheduler stopped".into()))
}

/// An error inside an SSE stream (the status line has gone out already).
fn stream_error(message: &str) -> String {
    json!({"error": {"message": message, "type": "server_error"}}).to_string()
}

fn model_object(name: &str, created: u64) -> Value {
    json!({"id": name, "object": "model", "created": created, "owned_by": "symphony"})
}

pub async fn list_models(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let models = state
        .registry
        .store()
        .list()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({
        "object": "list",
        "data": models.iter().map(|m| model_object(&m.name, m.imported_at)).collect::<Vec<_>>(),
    })))
}

pub async fn get_model(
    State(state): State<SharedState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = state.registry.manifest(&model)?;
    Ok(Json(model_object(&m.name, m.imported_at)))
}

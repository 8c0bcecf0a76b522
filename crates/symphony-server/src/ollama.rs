//! Ollama's API: `/api/generate`, `/api/chat` (NDJSON streams), `/api/tags`, `/api/show`,
//! `/api/ps`, `/api/version`, with Ollama's defaults, option names and keep-alive rules.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use symphony_engine::sampling::SamplingParams;
use symphony_engine::tools::{parse_tool_calls, ReplyPiece, ToolCallSplitter};
use symphony_engine::{raw_prompt, Completion, Event, GenerationParams};
use symphony_store::Manifest;
use symphony_types::{ChatMessage, Role, ToolCall};

use crate::auth::Principal;
use crate::error::{ApiError, OllamaError};
use crate::generation::{self, Job, Loaded};
use crate::structured::{call_arguments, call_id, OutputRules};
use crate::util::{parse_duration, random_seed, seconds, MAX_DURATION};
use crate::SharedState;

/// Ollama clients (and `curl -d`) often send JSON without a JSON content type: parse the
/// body as JSON whatever its type, as Ollama does.
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, OllamaError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")).ollama())
}

/// Ollama's `options`.
#[derive(Debug, Default, Deserialize)]
pub struct Options {
    temperature: Option<f32>,
    top_k: Option<i64>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    num_predict: Option<i64>,
    stop: Option<Vec<String>>,
    seed: Option<i64>,
    repeat_penalty: Option<f32>,
    repeat_last_n: Option<i64>,
}

impl Options {
    /// Generation settings with Ollama's defaults for what is not given.
    fn params(self, model: &Loaded, prompt_len: usize) -> Result<GenerationParams, ApiError> {
        let room = model.model().context_length().saturating_sub(prompt_len);
        let max_tokens = match self.num_predict {
            Some(n) if n >= 0 => (n as usize).min(room),
            // -1: until the model stops; -2: fill the context. Both end at the context.
            _ => room,
        };
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(0.8),
            top_k: self.top_k.map_or(40, |k| k.max(0) as usize),
            top_p: self.top_p.unwrap_or(0.9),
            min_p: self.min_p.unwrap_or(0.0),
            repetition_penalty: self.repeat_penalty.unwrap_or(1.1),
            repeat_last_n: self.repeat_last_n.map_or(64, |n| match n {
                -1 => model.model().context_length(),
                n => n.max(0) as usize,
            }),
            seed: self
                .seed
                .filter(|&s| s >= 0)
                .map_or_else(random_seed, |s| s as u64),
        };
        sampling.validate().map_err(ApiError::bad_request)?;
        Ok(GenerationParams {
            max_tokens,
            sampling,
            stop: self.stop.unwrap_or_default(),
            ignore_eos: false,
            constraint: None,
        })
    }
}

/// Ollama's `keep_alive`: seconds as a number, or a duration string ("5m", "1h30m", "-1").
/// A negative value means "forever", mapped to the longest duration Symphony keeps; a
/// positive one beyond that, infinity or NaN is the client's error (400), never a clock
/// overflow later.
pub(crate) fn keep_alive(v: &Option<Value>) -> Result<Option<Duration>, ApiError> {
    let bad =
        |why: String| ApiError::invalid_param("keep_alive", format!("invalid keep_alive: {why}"));
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let secs = n.as_f64().ok_or_else(|| bad(n.to_string()))?;
            if secs < 0.0 {
                return Ok(Some(MAX_DURATION));
            }
            seconds(secs)
                .map(Some)
                .map_err(|_| bad(format!("{n} seconds; at most 100 years")))
        }
        Some(Value::String(s)) if s.trim().starts_with('-') => Ok(Some(MAX_DURATION)),
        Some(Value::String(s)) => parse_duration(s).map(Some).map_err(|e| bad(e.to_string())),
        Some(other) => Err(bad(other.to_string())),
    }
}

/// A manifest's import time as Ollama's `modified_at` (checked: a damaged manifest's
/// timestamp must not overflow the clock).
fn imported(unix_secs: u64) -> String {
    rfc3339(
        std::time::UNIX_EPOCH
            .checked_add(Duration::from_secs(unix_secs))
            .unwrap_or(std::time::UNIX_EPOCH),
    )
}

/// RFC 3339 UTC time, as Ollama writes `created_at`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

fn now() -> String {
    rfc3339(std::time::SystemTime::now())
}

#[derive(Debug, Deserialize)]
struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: String,
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    stream: Option<bool>,
    format: Option<Value>,
    #[serde(default)]
    options: Options,
    keep_alive: Option<Value>,
    /// Tokens of an earlier exchange (`context` from its reply) to continue from.
    context: Option<Vec<u32>>,
    #[serde(default)]
    images: Vec<Value>,
}

pub async fn generate(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, OllamaError> {
    let req: GenerateRequest = parse(&body)?;
    let rules = OutputRules::ollama(req.format.as_ref(), None)?;
    if !req.images.is_empty() {
        return Err(ApiError::bad_request("this model does not take images").ollama());
    }
    let keep = keep_alive(&req.keep_alive)?;
    let model = state.registry.get(&req.model, keep).await?;
    if req.prompt.is_empty() && req.system.is_none() {
        let shape = Shape::Generate { prompt: Vec::new() };
        return Ok(load_only(&state, model, keep, &shape));
    }
    let mut prompt = req.context.clone().unwrap_or_default();
    let new = if req.raw || model.model().chat_template.is_none() {
        raw_prompt(model.model(), &req.prompt)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &req.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        messages.push(ChatMessage::user(req.prompt.clone()));
        generation::chat_prompt(&model, messages, Vec::new()).await?
    };
    // A continued exchange does not repeat the BOS token the tokenizer adds in front of
    // every prompt. Only that one: a model that adds none may have a BOS id that is a
    // template token (SmolLM2's is `<|im_start|>`), which the new turn needs.
    let tokenizer = &model.model().tokenizer;
    let skip = usize::from(
        !prompt.is_empty() && tokenizer.add_bos && new.first() == tokenizer.bos.as_ref(),
    );
    prompt.extend_from_slice(&new[skip..]);
    let mut params = req.options.params(&model, prompt.len())?;
    params.constraint = rules.constraint(&model).await?;
    let rx = generation::start(
        &state,
        &principal,
        &model,
        Job {
            prompt: prompt.clone(),
            params,
            logprobs: None,
            prompt_logprobs: false,
            n: 1,
        },
    )?;
    respond(
        state,
        model,
        rx,
        req.stream.unwrap_or(true),
        Shape::Generate { prompt },
        false,
    )
    .await
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
struct InToolCall {
    function: InFunctionCall,
}

#[derive(Debug, Deserialize)]
struct InFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
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
        return Ok(load_only(&state, model, keep, &Shape::Chat));
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
    let rx = generation::start(
        &state,
        &principal,
        &model,
        Job {
            prompt,
            params,
            logprobs: None,
            prompt_logprobs: false,
            n: 1,
        },
    )?;
    respond(
        state,
        model,
        rx,
        req.stream.unwrap_or(true),
        Shape::Chat,
        rules.parse_calls(),
    )
    .await
}

/// Ollama's `tool_calls`: arguments as an object, no ids.
fn ollama_calls(calls: &[(String, Value)]) -> Value {
    calls
        .iter()
        .map(|(name, arguments)| json!({"function": {"name": name, "arguments": arguments}}))
        .collect()
}

/// Ollama's answer to a request with nothing to generate: the model is loaded (it just was),
/// or with `keep_alive: 0` unloaded.
fn load_only(
    state: &SharedState,
    model: Loaded,
    keep: Option<Duration>,
    shape: &Shape,
) -> Response {
    let mut v = shape.piece(&model.name, "");
    v["done"] = json!(true);
    v["done_reason"] = if keep == Some(Duration::ZERO) {
        let name = model.name.clone();
        drop(model); // our own reference would keep it busy
        state.registry.unload(&name);
        json!("unload")
    } else {
        json!("load")
    };
    Json(v).into_response()
}

enum Shape {
    Generate { prompt: Vec<u32> },
    Chat,
}

impl Shape {
    fn piece(&self, model: &str, text: &str) -> Value {
        match self {
            Shape::Generate { .. } => {
                json!({"model": model, "created_at": now(), "response": text, "done": false})
            }
            Shape::Chat => json!({
                "model": model, "created_at": now(),
                "message": {"role": "assistant", "content": text}, "done": false,
            }),
        }
    }

    /// The closing object with Ollama's counters (durations in nanoseconds).
    fn last(&self, model: &str, text: &str, tokens: &[u32], c: &Completion) -> Value {
        let ns = |d: Duration| d.as_nanos() as u64;
        let mut v = self.piece(model, text);
        v["done"] = json!(true);
        v["done_reason"] = json!(c.finish_reason.as_str());
        v["total_duration"] = json!(ns(c.total_time));
        v["load_duration"] = json!(0);
        // The prompt's whole length, cached part included: Ollama's clients budget the
        // context with it.
        v["prompt_eval_count"] = json!(c.prompt_tokens);
        v["prompt_eval_duration"] = json!(ns(c.time_to_first_token));
        v["eval_count"] = json!(c.completion_tokens);
        v["eval_duration"] = json!(ns(c.total_time.saturating_sub(c.time_to_first_token)));
        if let Shape::Generate { prompt } = self {
            let context: Vec<u32> = prompt.iter().chain(tokens).copied().collect();
            v["context"] = json!(context);
        }
        v
    }
}

/// Streams NDJSON (Ollama's default) or answers with one object. (`keep_alive: 0` set the
/// model's keep-alive to zero when it was fetched: the registry's sweep unloads it within a
/// second of the reply, once nothing holds it.)
async fn respond(
    state: SharedState,
    model: Loaded,
    rx: generation::UnboundedReceiver<(usize, Event)>,
    stream: bool,
    shape: Shape,
    parse_calls: bool,
) -> Result<Response, OllamaError> {
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
                let mut v = shape.last(&model.name, &parsed.content, &c.tokens, completion);
                v["message"]["tool_calls"] = ollama_calls(&parsed.calls);
                return Ok(Json(v).into_response());
            }
        }
        return Ok(Json(shape.last(&model.name, &c.text, &c.tokens, completion)).into_response());
    }
    struct Progress {
        rx: generation::UnboundedReceiver<(usize, Event)>,
        tokens: Vec<u32>,
        finished: bool,
        splitter: Option<ToolCallSplitter>,
        /// Lines ready to send before the next event is read.
        queued: std::collections::VecDeque<Value>,
    }
    let shape = std::sync::Arc::new(shape);
    let progress = Progress {
        rx,
        tokens: Vec::new(),
        finished: false,
        splitter: parse_calls.then(ToolCallSplitter::default),
        queued: Default::default(),
    };
    // A chat line for each piece: text as content, each call as Ollama's `tool_calls`.
    let piece_lines = |model: &str, shape: &Shape, pieces: Vec<ReplyPiece>| -> Vec<Value> {
        pieces
            .into_iter()
            .map(|piece| match piece {
                ReplyPiece::Text(text) => shape.piece(model, &text),
                ReplyPiece::Call { name, arguments } => {
                    let mut v = shape.piece(model, "");
                    v["message"]["tool_calls"] = ollama_calls(&[(name, arguments)]);
                    v
                }
            })
            .collect()
    };
    let lines = stream::unfold(progress, move |mut p| {
        let (model, shape) = (model.clone(), shape.clone());
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
                    json!({"error": "the model's scheduler stopped"})
                }
                Some((_, Event::Delta { token, text, .. })) => {
                    p.tokens.extend(token);
                    if let Some(splitter) = &mut p.splitter {
                        let pieces = splitter.push(&text);
                        p.queued.extend(piece_lines(&model.name, &shape, pieces));
                        return Some((None, p));
                    }
                    if text.is_empty() {
                        return Some((None, p));
                    }
                    shape.piece(&model.name, &text)
                }
                Some((_, Event::Done(c))) => {
                    p.finished = true;
                    if let Some(splitter) = &mut p.splitter {
                        let pieces = splitter.finish();
                        p.queued.extend(piece_lines(&model.name, &shape, pieces));
                    }
                    p.queued
                        .push_back(shape.last(&model.name, "", &p.tokens, &c));
                    return Some((None, p));
                }
                Some((_, Event::Error(e))) => {
                    p.finished = true;
                    json!({"error": e})
                }
                Some((_, Event::PromptLogprobs(_))) => return Some((None, p)),
            };
            Some((Some(line), p))
        }
    })
    .filter_map(|line| async move {
        line.map(|v| Ok::<_, std::convert::Infallible>(Bytes::from(format!("{v}\n"))))
    });
    Ok((
        [("content-type", "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

fn details(m: &Manifest) -> Value {
    json!({
        "parent_model": "",
        "format": m.meta.format,
        "family": m.meta.architecture,
        "families": [m.meta.architecture],
        "parameter_size": parameter_size(m.meta.parameters),
        "quantization_level": m.meta.quantization,
    })
}

/// Ollama's "135.0M" / "1.5B" style.
fn parameter_size(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => format!("{n}"),
    }
}

fn digest(m: &Manifest) -> String {
    let hash = m.blob.trim_start_matches("sha256-");
    hash.split('.').next().unwrap_or(hash).to_string()
}

pub async fn tags(State(state): State<SharedState>) -> Result<Json<Value>, OllamaError> {
    let models = state
        .registry
        .store()
        .list()
        .map_err(|e| ApiError::internal(e.to_string()).ollama())?;
    Ok(Json(json!({
        "models": models.iter().map(|m| json!({
            "name": m.name,
            "model": m.name,
            "modified_at": imported(m.imported_at),
            "size": m.size_bytes,
            "digest": digest(m),
            "details": details(m),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
struct ShowRequest {
    model: Option<String>,
    name: Option<String>,
}

pub async fn show(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Json<Value>, OllamaError> {
    let req: ShowRequest = parse(&body)?;
    let name = req
        .model
        .or(req.name)
        .ok_or_else(|| ApiError::bad_request("model is required").ollama())?;
    let m = state.registry.manifest(&name)?;
    let mut capabilities = vec!["completion"];
    if m.meta.has_chat_template {
        capabilities.push("chat");
    }
    Ok(Json(json!({
        "modelfile": format!("# Modelfile generated by Symphony\nFROM {}\n", m.name),
        "parameters": "",
        "template": "",
        "details": details(&m),
        "model_info": {
            "general.architecture": m.meta.architecture,
            "general.parameter_count": m.meta.parameters,
            format!("{}.context_length", m.meta.architecture): m.meta.context_length,
        },
        "capabilities": capabilities,
        "modified_at": imported(m.imported_at),
    })))
}

pub async fn ps(State(state): State<SharedState>) -> Json<Value> {
    Json(json!({
        "models": state.registry.loaded().iter().map(|m| json!({
            "name": m.name,
            "model": m.name,
            "size": m.size_bytes,
            "digest": digest(&m.manifest),
            "details": details(&m.manifest),
            "expires_at": rfc3339(m.expires_at()),
            "size_vram": 0,
        })).collect::<Vec<_>>(),
    }))
}

#[derive(Debug, Deserialize)]
struct DeleteRequest {
    model: Option<String>,
    name: Option<String>,
}

/// Removes a model from the store (admin), unloading it first.
pub async fn delete(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Response, OllamaError> {
    let req: DeleteRequest = parse(&body)?;
    let name = req
        .model
        .or(req.name)
        .ok_or_else(|| ApiError::bad_request("model is required").ollama())?;
    let manifest = state.registry.manifest(&name)?;
    // Loaded weights are shared by every name of the file: they go only with its last name.
    let store = state.registry.store();
    let shared = store
        .list()
        .map_err(|e| ApiError::internal(e.to_string()).ollama())?
        .iter()
        .any(|m| m.blob == manifest.blob && m.name != manifest.name);
    if !shared {
        state.registry.unload(&manifest.name);
    }
    if !shared
        && state
            .registry
            .loaded()
            .iter()
            .any(|m| m.manifest.blob == manifest.blob)
    {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!(
                "'{}' is serving requests; retry when they finish",
                manifest.name
            ),
        )
        .ollama());
    }
    state
        .registry
        .store()
        .remove(&manifest.name)
        .map_err(|e| ApiError::internal(e.to_string()).ollama())?;
    Ok(Json(json!({})).into_response())
}

pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_accepts_ollama_spellings() {
        let k = |v: Value| keep_alive(&Some(v)).unwrap();
        assert_eq!(k(json!("5m")), Some(Duration::from_secs(300)));
        assert_eq!(k(json!("1h30m")), Some(Duration::from_secs(5400)));
        assert_eq!(k(json!("250ms")), Some(Duration::from_millis(250)));
        assert_eq!(k(json!(0)), Some(Duration::ZERO));
        assert_eq!(k(json!("10")), Some(Duration::from_secs(10)));
        assert!(k(json!(-1)).unwrap() > Duration::from_secs(1 << 30));
        assert!(keep_alive(&Some(json!("5 parsecs"))).is_err());
        for hostile in [
            json!(1.8e19),
            json!(1e300),
            json!("1e300"),
            json!("inf"),
            json!("NaN"),
        ] {
            let e = keep_alive(&Some(hostile.clone())).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{hostile}");
            assert!(e.message.contains("keep_alive"), "{}", e.message);
        }
    }

    #[test]
    fn rfc3339_of_known_instants() {
        let t = |s| rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(t(951_782_400), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(t(1_795_305_600), "2026-11-22T00:00:00.000000000Z");
    }
}

//! What the OpenAI endpoints share on the way in: the sampling fields and their checks,
//! stop sequences, stream options, and the chat messages clients send, read into Symphony's
//! own [`ChatMessage`]s.

use serde::Deserialize;
use serde_json::Value;
use symphony_engine::sampling::SamplingParams;
use symphony_engine::GenerationParams;
use symphony_types::{ChatMessage, Role, ToolCall};

use crate::error::ApiError;
use crate::structured::{call_arguments, call_id};
use crate::util::random_seed;

/// Deserialises a request body kept as JSON (for the cache key), with a 400 on mismatch.
pub fn from_value<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    T::deserialize(body).map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// Most choices one request may ask for.
const MAX_N: usize = 16;
/// Prompts one `/v1/completions` request may carry: each becomes n sequences, and a client
/// batching more should send several requests.
pub(super) const MAX_PROMPTS: usize = 64;
/// Most alternatives per token in `top_logprobs` (OpenAI's limit).
pub(super) const MAX_TOP_LOGPROBS: usize = 20;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
    pub(super) fn params(self, max_tokens: usize) -> Result<(GenerationParams, usize), ApiError> {
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub(super) include_usage: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Vec<InToolCall>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InToolCall {
    #[serde(default)]
    id: Option<String>,
    function: InFunctionCall,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InFunctionCall {
    name: String,
    /// A JSON string in OpenAI's API; an object is accepted too.
    #[serde(default)]
    arguments: Value,
}

impl InMessage {
    pub(super) fn into_chat(self) -> Result<ChatMessage, ApiError> {
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
pub(super) fn name_tool_turns(messages: &mut [ChatMessage]) {
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

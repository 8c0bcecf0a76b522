//! OpenAI's response shapes as serde structs: chat completions and their stream chunks,
//! legacy completions and theirs, usage, log-probabilities, tool calls, models and the error
//! a stream ends with. Field order is the order clients see; a field that some replies leave
//! out is `skip_serializing_if`, one that they send as `null` is a plain `Option`.
//!
//! Log-probabilities are `f64` widened from the engine's `f32`: the replies have always
//! carried the widened value, and clients comparing replies byte for byte expect it.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::{RefOr, Schema};

/// `chat.completion`: a whole reply.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'static str,
}

/// The reply's message: its text, or, when it called tools, the calls and any text beside
/// them (`null` when there is none).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolCallOut {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCallOut,
}

/// A call's function; `arguments` is a JSON string, as OpenAI sends it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FunctionCallOut {
    pub name: String,
    pub arguments: String,
}

/// A chat message's log-probabilities.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatLogprobs {
    pub content: Vec<LogprobEntry>,
}

/// One token's log-probability, its bytes and, at the top level, its alternatives.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogprobEntry {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub top_logprobs: Option<Vec<LogprobEntry>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    /// Chat replies only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

impl Usage {
    /// Usage without the chat-only details.
    pub fn plain(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: None,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

/// `chat.completion.chunk` and `text_completion` stream chunks: the envelope around the
/// choices. `usage` is absent unless the client asked for it (`stream_options`); then it is
/// `null` on every chunk but the last.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Chunk<C> {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<C>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// A line of a streamed chat completion.
pub type ChatChunk = Chunk<ChatChunkChoice>;
/// A line of a streamed text completion.
pub type TextChunk = Chunk<TextChoice>;

/// The schemas of the two chunk types, each under its own name (with its choice's, which
/// the generic envelope does not add).
pub fn chat_chunk_schema(schemas: &mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema> {
    crate::openapi::schema_of::<ChatChunkChoice>(schemas);
    crate::openapi::schema_named::<ChatChunk>("ChatCompletionChunk", schemas)
}

pub fn text_chunk_schema(schemas: &mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema> {
    crate::openapi::schema_of::<TextChoice>(schemas);
    crate::openapi::schema_named::<TextChunk>("TextCompletionChunk", schemas)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// What a chunk adds to a choice's message.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A streamed tool call: the first delta names it, the next carries its arguments.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolCallDelta {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FunctionDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub arguments: String,
}

/// `text_completion`: a whole legacy completion.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TextCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<TextChoice>,
    pub usage: Usage,
}

/// A legacy completion's choice, whole or as a stream chunk (`finish_reason` is `null`
/// until the last).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TextChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<LegacyLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// The legacy logprobs object: parallel lists of tokens, their logprobs, the alternatives
/// (token text to logprob) and each token's character offset in the text.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LegacyLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f64>>,
    pub top_logprobs: Vec<Option<Map<String, Value>>>,
    pub text_offset: Vec<usize>,
}

/// The event a stream ends with on a failure (the status line has gone out already).
#[derive(Debug, Serialize)]
pub struct StreamError<'a> {
    pub error: StreamErrorBody<'a>,
}

#[derive(Debug, Serialize)]
pub struct StreamErrorBody<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

impl ModelObject {
    pub fn new(name: &str, created: u64) -> Self {
        Self {
            id: name.to_string(),
            object: "model",
            created,
            owned_by: "symphony",
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

/// A reply as the JSON text that goes out (serialising these types cannot fail: every map
/// key is a string).
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("response types serialise")
}

impl Usage {
    /// A chat reply's usage: the prompt once (its choices share it), every choice's tokens.
    pub fn chat(choices: &[crate::generation::Choice]) -> Self {
        let first = choices.first().and_then(|c| c.completion.as_ref());
        let prompt = first.map_or(0, |c| c.prompt_tokens);
        let cached = first.map_or(0, |c| c.cached_tokens);
        let completion: usize = choices
            .iter()
            .filter_map(|c| c.completion.as_ref())
            .map(|c| c.completion_tokens)
            .sum();
        Self {
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: cached,
            }),
            ..Self::plain(prompt, completion)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The replies were `json!` literals; these pin the typed shapes to the same bytes,
    // widened log-probabilities and `null`-versus-absent fields included.
    #[test]
    fn typed_shapes_serialise_as_the_literals_did() {
        let lp = -0.1f32;
        let entry = LogprobEntry {
            token: "hi".into(),
            logprob: f64::from(lp),
            bytes: b"hi".to_vec(),
            top_logprobs: Some(vec![LogprobEntry {
                token: "ho".into(),
                logprob: f64::from(f32::NEG_INFINITY),
                bytes: b"ho".to_vec(),
                top_logprobs: None,
            }]),
        };
        let chunk = Chunk {
            id: "c".into(),
            object: "chat.completion.chunk",
            created: 1,
            model: "m".into(),
            system_fingerprint: "f".into(),
            choices: vec![ChatChunkChoice {
                index: 0,
                delta: Delta {
                    content: Some(String::new()),
                    ..Delta::default()
                },
                logprobs: Some(ChatLogprobs {
                    content: vec![entry],
                }),
                finish_reason: None,
            }],
            usage: Some(None),
        };
        let literal = json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "system_fingerprint": "f",
            "choices": [{
                "index": 0,
                "delta": {"content": ""},
                "logprobs": {"content": [{
                    "token": "hi", "logprob": lp, "bytes": "hi".as_bytes(),
                    "top_logprobs": [{"token": "ho", "logprob": f32::NEG_INFINITY, "bytes": "ho".as_bytes()}],
                }]},
                "finish_reason": null,
            }],
            "usage": null,
        });
        assert_eq!(to_json(&chunk), literal.to_string());

        let message = AssistantMessage {
            role: "assistant",
            content: None,
            tool_calls: Some(vec![ToolCallOut {
                id: "call_1".into(),
                kind: "function",
                function: FunctionCallOut {
                    name: "f".into(),
                    arguments: "{}".into(),
                },
            }]),
        };
        let literal = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        ]});
        assert_eq!(to_json(&message), literal.to_string());
        assert_eq!(
            to_json(&Usage::plain(2, 3)),
            json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}).to_string()
        );
    }
}

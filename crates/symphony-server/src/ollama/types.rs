//! Ollama's response shapes as serde structs: the lines of `/api/generate` and `/api/chat`
//! (streamed or whole), `/api/tags`, `/api/show`, `/api/ps`, `/api/version`. Field order is
//! the order Ollama writes; fields that only some lines carry are `skip_serializing_if`.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// A line of `/api/generate` (with `response`) or `/api/chat` (with `message`): a piece of
/// the reply, or the closing line with `done: true`, its reason and Ollama's counters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ollama::ReplyLine)]
pub struct ReplyLine {
    pub model: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'static str>,
    #[serde(flatten)]
    pub stats: Option<Stats>,
    /// `/api/generate` only: the exchange's tokens, to continue it from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<u32>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ollama::Message)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut>>,
}

/// Ollama's tool call: arguments as an object, no id.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ollama::ToolCallOut)]
pub struct ToolCallOut {
    pub function: FunctionCallOut,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ollama::FunctionCallOut)]
pub struct FunctionCallOut {
    pub name: String,
    pub arguments: Value,
}

/// The closing line's counters (durations in nanoseconds). Flattened into a reply line that
/// may or may not close the reply, so in the schema each is optional.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ollama::Stats)]
pub struct Stats {
    #[schema(required = false)]
    pub total_duration: u64,
    #[schema(required = false)]
    pub load_duration: u64,
    #[schema(required = false)]
    pub prompt_eval_count: usize,
    #[schema(required = false)]
    pub prompt_eval_duration: u64,
    #[schema(required = false)]
    pub eval_count: usize,
    #[schema(required = false)]
    pub eval_duration: u64,
}

/// A stream's failure, as its last line.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorLine {
    pub error: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ollama::Details)]
pub struct Details {
    pub parent_model: &'static str,
    pub format: String,
    pub family: String,
    pub families: Vec<String>,
    pub parameter_size: String,
    pub quantization_level: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Tags {
    pub models: Vec<TagsModel>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TagsModel {
    pub name: String,
    pub model: String,
    pub modified_at: String,
    pub size: u64,
    pub digest: String,
    pub details: Details,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Show {
    pub modelfile: String,
    pub parameters: &'static str,
    pub template: &'static str,
    pub details: Details,
    /// `general.architecture`, `general.parameter_count` and `<architecture>.context_length`.
    #[schema(value_type = HashMap<String, serde_json::Value>)]
    pub model_info: ModelInfo,
    pub capabilities: Vec<&'static str>,
    pub modified_at: String,
}

/// `model_info`, whose context-length key is named after the architecture.
#[derive(Debug)]
pub struct ModelInfo {
    pub architecture: String,
    pub parameter_count: u64,
    pub context_length: usize,
}

impl Serialize for ModelInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("general.architecture", &self.architecture)?;
        map.serialize_entry("general.parameter_count", &self.parameter_count)?;
        map.serialize_entry(
            &format!("{}.context_length", self.architecture),
            &self.context_length,
        )?;
        map.end()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ps {
    pub models: Vec<PsModel>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PsModel {
    pub name: String,
    pub model: String,
    pub size: u64,
    pub digest: String,
    pub details: Details,
    pub expires_at: String,
    pub size_vram: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Version {
    pub version: &'static str,
}

/// `{}`: what `/api/delete` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The lines were built as `json!` values with fields set after; the typed line keeps
    // their order (counters after `done_reason`, `context` last).
    #[test]
    fn a_closing_line_keeps_ollamas_field_order() {
        let line = ReplyLine {
            model: "m".into(),
            created_at: "t".into(),
            response: Some("x".into()),
            message: None,
            done: true,
            done_reason: Some("stop"),
            stats: Some(Stats {
                total_duration: 1,
                load_duration: 0,
                prompt_eval_count: 2,
                prompt_eval_duration: 3,
                eval_count: 4,
                eval_duration: 5,
            }),
            context: Some(vec![7]),
        };
        let literal = json!({
            "model": "m", "created_at": "t", "response": "x", "done": true,
            "done_reason": "stop", "total_duration": 1, "load_duration": 0,
            "prompt_eval_count": 2, "prompt_eval_duration": 3, "eval_count": 4,
            "eval_duration": 5, "context": [7],
        });
        assert_eq!(serde_json::to_string(&line).unwrap(), literal.to_string());
        let info = ModelInfo {
            architecture: "llama".into(),
            parameter_count: 9,
            context_length: 8,
        };
        let literal = json!({"general.architecture": "llama", "general.parameter_count": 9,
            "llama.context_length": 8});
        assert_eq!(serde_json::to_string(&info).unwrap(), literal.to_string());
    }
}

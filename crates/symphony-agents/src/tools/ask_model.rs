//! A local model as a tool (`ask_model`) and as the sampler an MCP server may ask: the same
//! greedy chat turn either way, without tools.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use symphony_models::Model;
use symphony_types::ChatMessage;

use crate::mcp::Sampler;
use crate::model::{CallMode, ChatModel, EngineChat};
use crate::tool::{ToolError, TypedTool};

/// The most tokens one answer may have, whatever the caller asks.
pub const MAX_ANSWER_TOKENS: usize = 4096;

/// A model run in-process, shared by every call (each call has a session of its own).
#[derive(Clone)]
pub struct LocalModel {
    model: Arc<Model>,
    name: String,
}

impl LocalModel {
    pub fn new(model: Arc<Model>, name: impl Into<String>) -> Self {
        Self {
            model,
            name: name.into(),
        }
    }

    /// One assistant turn after `messages`, of at most `max_tokens` tokens.
    pub fn answer(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<String, String> {
        let max_tokens = max_tokens.clamp(1, MAX_ANSWER_TOKENS);
        let mut chat = EngineChat::new(&self.model)
            .map_err(|e| e.to_string())?
            .with_max_tokens(max_tokens);
        let turn = chat
            .turn(messages, &[], CallMode::Answer)
            .map_err(|e| e.to_string())?;
        Ok(turn.content)
    }
}

impl Sampler for LocalModel {
    fn sample(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<String, String> {
        self.answer(messages, max_tokens)
    }

    fn model_name(&self) -> String {
        self.name.clone()
    }
}

/// `ask_model`: a question to the local model.
pub struct AskModel(pub LocalModel);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AskModelArgs {
    /// The question or instruction for the model.
    pub prompt: String,
    /// Instructions that frame the answer (a system prompt).
    #[serde(default)]
    pub system: Option<String>,
    /// The most tokens the answer may have (default 512).
    #[serde(default)]
    pub max_tokens: Option<usize>,
}

impl TypedTool for AskModel {
    type Args = AskModelArgs;

    fn name(&self) -> String {
        "ask_model".into()
    }

    fn description(&self) -> String {
        format!(
            "Asks the local language model {} and gives its answer. It runs on this \
             machine: nothing leaves it.",
            self.0.name
        )
    }

    fn run(&self, args: AskModelArgs) -> Result<String, ToolError> {
        let mut messages = Vec::new();
        if let Some(system) = args.system {
            messages.push(ChatMessage::system(system));
        }
        messages.push(ChatMessage::user(args.prompt));
        self.0
            .answer(&messages, args.max_tokens.unwrap_or(512))
            .map_err(ToolError::Failed)
    }
}

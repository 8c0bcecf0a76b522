//! The model side of an agent: one assistant turn at a time.

use serde_json::Value;
use symphony_engine::tools::{
    parse_tool_calls, tool_call_grammar_auto, NO_TOOL_CALL, TOOL_CALL_TRIGGERS,
};
use symphony_engine::{
    chat_prompt_with_tools, GenerationParams, Grammar, GrammarCompiler, SamplingParams, Session,
};
use symphony_models::Model;
use symphony_types::{ChatMessage, ToolSpec};

/// Whether a turn may call tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// The model chooses: call tools or answer.
    Auto,
    /// The model must answer in words (the last step, or after a loop was caught). The tools
    /// stay in the prompt so the conversation reads the same.
    Answer,
}

/// One assistant turn: its text outside the calls, and the calls it made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelTurn {
    pub content: String,
    pub calls: Vec<(String, Value)>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// A chat model as an agent uses it. The engine's is [`EngineChat`]; tests of loop logic
/// use scripted ones.
pub trait ChatModel {
    fn turn(
        &mut self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        mode: CallMode,
    ) -> Result<ModelTurn, crate::Error>;

    /// One turn held to a JSON Schema (a plan, a critique), without tools: its content is
    /// JSON that fits `schema`.
    fn structured(
        &mut self,
        messages: &[ChatMessage],
        schema: &Value,
    ) -> Result<ModelTurn, crate::Error>;
}

/// A model run in-process by the engine, with calls in the model's own format held to the
/// tools' schemas by constrained decoding. One [`Session`] serves the whole run, so each
/// turn's prompt reuses the cache of the turns before it.
pub struct EngineChat<'m> {
    session: Session<'m>,
    compiler: GrammarCompiler,
    params: GenerationParams,
}

impl<'m> EngineChat<'m> {
    /// Greedy decoding by default: an agent's calls should not depend on the dice.
    pub fn new(model: &'m Model) -> Result<Self, crate::Error> {
        let compiler = GrammarCompiler::new(&model.tokenizer)?;
        Ok(Self {
            session: Session::new(model),
            compiler,
            params: GenerationParams {
                max_tokens: 512,
                sampling: SamplingParams::greedy(),
                ..GenerationParams::default()
            },
        })
    }

    pub fn with_sampling(mut self, sampling: SamplingParams) -> Self {
        self.params.sampling = sampling;
        self
    }

    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.params.max_tokens = max_tokens;
        self
    }
}

impl ChatModel for EngineChat<'_> {
    fn turn(
        &mut self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        mode: CallMode,
    ) -> Result<ModelTurn, crate::Error> {
        let model = self.session.model();
        let prompt = chat_prompt_with_tools(model, messages, tools)?;
        let constraint = match (mode, tools.is_empty()) {
            (_, true) => None,
            (CallMode::Auto, false) => Some(
                self.compiler
                    .compile(&tool_call_grammar_auto(tools, true))?
                    .triggered_by(TOOL_CALL_TRIGGERS),
            ),
            (CallMode::Answer, false) => Some(
                self.compiler
                    .compile(&Grammar::Regex(NO_TOOL_CALL.into()))?,
            ),
        };
        let params = GenerationParams {
            constraint,
            ..self.params.clone()
        };
        let g = self.session.generate(&prompt, &params, None, |_| {})?;
        let (content, calls) = if mode == CallMode::Auto && !tools.is_empty() {
            let parsed = parse_tool_calls(&g.text);
            (parsed.content, parsed.calls)
        } else {
            (g.text.trim().to_string(), Vec::new())
        };
        Ok(ModelTurn {
            content,
            calls,
            prompt_tokens: g.prompt_tokens,
            completion_tokens: g.tokens.len(),
        })
    }

    fn structured(
        &mut self,
        messages: &[ChatMessage],
        schema: &Value,
    ) -> Result<ModelTurn, crate::Error> {
        let model = self.session.model();
        let prompt = chat_prompt_with_tools(model, messages, &[])?;
        let params = GenerationParams {
            constraint: Some(
                self.compiler
                    .compile(&Grammar::JsonSchema(schema.clone()))?,
            ),
            ..self.params.clone()
        };
        let g = self.session.generate(&prompt, &params, None, |_| {})?;
        Ok(ModelTurn {
            content: g.text.trim().to_string(),
            calls: Vec::new(),
            prompt_tokens: g.prompt_tokens,
            completion_tokens: g.tokens.len(),
        })
    }
}

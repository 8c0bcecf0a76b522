//! The model side of an agent: one assistant turn at a time.

use std::sync::Arc;

use serde_json::Value;
use symphony_engine::tools::parse_tool_calls;
use symphony_engine::{
    chat_prompt_with_tools, tool_grammar, Constraint, GenerationParams, Grammar, GrammarCompiler,
    Request, SamplingParams, Scheduler, Session, ToolChoice,
};
use symphony_models::{Model, TokenId};
use symphony_types::{ChatMessage, ToolSpec};

/// Whether a turn may call tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// The model chooses: call tools or answer.
    Auto,
    /// The model must call at least one tool (`tool_choice: required`).
    Required,
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

    /// The exact length in tokens of the prompt `messages` with `tools` make; `None` where
    /// it cannot be known (then no budget is kept).
    fn count_tokens(
        &self,
        _messages: &[ChatMessage],
        _tools: &[ToolSpec],
    ) -> Result<Option<usize>, crate::Error> {
        Ok(None)
    }

    /// The model's context length in tokens, where known.
    fn context_length(&self) -> Option<usize> {
        None
    }

    /// The sampling the next turns use, where it can be changed from here (`None`: the
    /// decoding is decided elsewhere, as for a remote agent). A retry of failed work raises
    /// the temperature so that it is not given the same greedy answer again.
    fn sampling_mut(&mut self) -> Option<&mut SamplingParams> {
        None
    }

    /// Makes the next turns draw with `seed`, so that repeated samples of one question
    /// differ (self-consistency); a model that decodes greedily has nothing to change.
    fn reseed(&mut self, seed: u64) {
        if let Some(sampling) = self.sampling_mut() {
            sampling.seed = seed;
        }
    }
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
            params: turn_params(),
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

/// A completion of a prompt: its text and token counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completed {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// An engine that completes a prompt under a constraint: all a [`ChatModel`] needs of one.
/// Every `Completer` is a `ChatModel` whose turns are built and read the same way (the
/// chat template with the tools, the tool-call grammar, the calls parsed back), whether it
/// generates in-process ([`EngineChat`]) or elsewhere (the server's scheduler).
pub trait Completer {
    fn model(&self) -> &Model;

    /// The model's grammar compiler.
    fn grammars(&self) -> &GrammarCompiler;

    fn complete(
        &mut self,
        prompt: Vec<TokenId>,
        constraint: Option<Constraint>,
    ) -> Result<Completed, crate::Error>;

    /// See [`ChatModel::sampling_mut`].
    fn sampling_mut(&mut self) -> Option<&mut SamplingParams> {
        None
    }
}

impl Completer for EngineChat<'_> {
    fn model(&self) -> &Model {
        self.session.model()
    }

    fn grammars(&self) -> &GrammarCompiler {
        &self.compiler
    }

    fn complete(
        &mut self,
        prompt: Vec<TokenId>,
        constraint: Option<Constraint>,
    ) -> Result<Completed, crate::Error> {
        let params = GenerationParams {
            constraint,
            ..self.params.clone()
        };
        let g = self.session.generate(&prompt, &params, None, |_| {})?;
        Ok(Completed {
            text: g.text,
            prompt_tokens: g.prompt_tokens,
            completion_tokens: g.tokens.len(),
        })
    }

    fn sampling_mut(&mut self) -> Option<&mut SamplingParams> {
        Some(&mut self.params.sampling)
    }
}

/// A chat whose turns queue on a model's [`Scheduler`] with every other request for it, so
/// that many chats on one model (a team's members, problems solved side by side) decode in
/// shared batched steps, and prompts they share come from the scheduler's prefix cache.
/// Clones queue on the same scheduler.
#[derive(Clone)]
pub struct ScheduledChat {
    scheduler: Scheduler,
    compiler: Arc<GrammarCompiler>,
    params: GenerationParams,
}

impl ScheduledChat {
    /// Greedy by default, like [`EngineChat`]. `compiler` is the model's, built once and
    /// shared: compiling its vocabulary is the slow part.
    pub fn new(scheduler: Scheduler, compiler: Arc<GrammarCompiler>) -> Self {
        Self {
            scheduler,
            compiler,
            params: turn_params(),
        }
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

impl Completer for ScheduledChat {
    fn model(&self) -> &Model {
        self.scheduler.model()
    }

    fn grammars(&self) -> &GrammarCompiler {
        &self.compiler
    }

    fn complete(
        &mut self,
        prompt: Vec<TokenId>,
        constraint: Option<Constraint>,
    ) -> Result<Completed, crate::Error> {
        let params = GenerationParams {
            constraint,
            ..self.params.clone()
        };
        let prompt_len = prompt.len();
        let out = self.scheduler.generate(Request::new(prompt, params))?;
        let (prompt_tokens, completion_tokens) = out
            .completion
            .as_ref()
            .map_or((prompt_len, out.tokens.len()), |c| {
                (c.prompt_tokens, c.completion_tokens)
            });
        Ok(Completed {
            text: out.text,
            prompt_tokens,
            completion_tokens,
        })
    }

    fn sampling_mut(&mut self) -> Option<&mut SamplingParams> {
        Some(&mut self.params.sampling)
    }
}

impl<C: Completer> ChatModel for C {
    fn turn(
        &mut self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        mode: CallMode,
    ) -> Result<ModelTurn, crate::Error> {
        let (prompt, constraint) =
            turn_request(self.model(), self.grammars(), messages, tools, mode)?;
        let c = self.complete(prompt, constraint)?;
        Ok(read_turn(
            &c.text,
            tools,
            mode,
            c.prompt_tokens,
            c.completion_tokens,
        ))
    }

    fn structured(
        &mut self,
        messages: &[ChatMessage],
        schema: &Value,
    ) -> Result<ModelTurn, crate::Error> {
        let (prompt, constraint) =
            structured_request(self.model(), self.grammars(), messages, schema)?;
        let c = self.complete(prompt, Some(constraint))?;
        Ok(read_turn(
            &c.text,
            &[],
            CallMode::Answer,
            c.prompt_tokens,
            c.completion_tokens,
        ))
    }

    fn count_tokens(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<Option<usize>, crate::Error> {
        Ok(Some(
            chat_prompt_with_tools(self.model(), messages, tools)?.len(),
        ))
    }

    fn context_length(&self) -> Option<usize> {
        Some(self.model().context_length())
    }

    fn sampling_mut(&mut self) -> Option<&mut SamplingParams> {
        Completer::sampling_mut(self)
    }
}

/// How agent turns are generated unless said otherwise: greedily, up to 512 tokens.
pub fn turn_params() -> GenerationParams {
    GenerationParams {
        max_tokens: 512,
        sampling: SamplingParams::greedy(),
        ..GenerationParams::default()
    }
}

/// The prompt of one turn and what holds its output: with tools, calls in the model's
/// format that fit their schemas (or, when the turn must answer, no call at all).
/// Other engines (the server's scheduler) generate from it, then [`read_turn`].
pub fn turn_request(
    model: &Model,
    compiler: &GrammarCompiler,
    messages: &[ChatMessage],
    tools: &[ToolSpec],
    mode: CallMode,
) -> Result<(Vec<TokenId>, Option<Constraint>), crate::Error> {
    let prompt = chat_prompt_with_tools(model, messages, tools)?;
    if tools.is_empty() {
        return Ok((prompt, None));
    }
    // The same policy as the server's `tool_choice`: the last step answers with the tools
    // still in the prompt, and several calls may come in one turn.
    let choice = match mode {
        CallMode::Auto => ToolChoice::Auto,
        CallMode::Required => ToolChoice::Required,
        CallMode::Answer => ToolChoice::None,
    };
    let policy = tool_grammar(tools, &choice, None, true)
        .map_err(|e| symphony_engine::Error::InvalidRequest(e.to_string()))?;
    let constraint = match &policy.grammar {
        Some(grammar) => Some(policy.arm(compiler.compile(grammar)?)),
        None => None,
    };
    Ok((prompt, constraint))
}

/// The prompt of a turn held to a JSON Schema, and its constraint.
pub fn structured_request(
    model: &Model,
    compiler: &GrammarCompiler,
    messages: &[ChatMessage],
    schema: &Value,
) -> Result<(Vec<TokenId>, Constraint), crate::Error> {
    let prompt = chat_prompt_with_tools(model, messages, &[])?;
    let constraint = compiler.compile(&Grammar::JsonSchema(schema.clone()))?;
    Ok((prompt, constraint))
}

/// A generated turn read: the calls split from the text when tools were offered.
pub fn read_turn(
    text: &str,
    tools: &[ToolSpec],
    mode: CallMode,
    prompt_tokens: usize,
    completion_tokens: usize,
) -> ModelTurn {
    let (content, calls) = if mode != CallMode::Answer && !tools.is_empty() {
        let parsed = parse_tool_calls(text);
        (parsed.content, parsed.calls)
    } else {
        (text.trim().to_string(), Vec::new())
    };
    ModelTurn {
        content,
        calls,
        prompt_tokens,
        completion_tokens,
    }
}

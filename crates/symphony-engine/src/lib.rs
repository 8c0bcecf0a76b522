//! Symphony's inference runtime: sampling, streamed generation with stop sequences and
//! cancellation, perplexity and throughput benchmarks, on top of `symphony-models`.
//!
//! Architecture invariant: the engine owns per-sequence state ([`generate::Session`]) and the
//! policies that turn logits into text; it never parses files or speaks HTTP.

pub mod bench;
pub mod blocks;
pub mod constraint;
pub mod generate;
pub mod overload;
pub mod perplexity;
pub mod sampling;
pub mod scheduler;
pub mod tool_choice;
pub mod tools;

pub use constraint::{Constraint, Grammar, GrammarCompiler, MAX_GRAMMAR_BYTES};
pub use generate::{
    chat_prompt, chat_prompt_with_tools, raw_prompt, token_logprob, Decoder, FinishReason,
    Generation, GenerationParams, Session, Step, TokenLogprob,
};
pub use overload::Overloaded;
pub use sampling::{Sampler, SamplingParams};
pub use scheduler::{
    Completion, Event, EventSink, Output, Request, RequestId, Scheduler, SchedulerConfig,
    SchedulerStats,
};
pub use tool_choice::{tool_grammar, ToolChoice, ToolChoiceError, ToolGrammar};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Model(#[from] symphony_models::Error),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A grammar or schema that cannot be compiled (or, rarely, a matcher that failed).
    #[error("invalid grammar: {0}")]
    InvalidGrammar(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// No room for the work now (see [`Overloaded`]).
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
}

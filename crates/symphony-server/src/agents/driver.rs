//! Driving a run on the server: its thread, its model turns through the model's scheduler
//! (queued with every other request for that model), and the sampling its MCP servers ask
//! for, answered the same way.

use std::sync::Arc;

use serde_json::{json, Value};
use symphony_agents::mcp::Sampler;
use symphony_agents::model::CallMode;
use symphony_agents::tools::MAX_ANSWER_TOKENS;
use symphony_agents::{
    turn_params, Approval, ChatModel, ClaimedRun, Completed, Completer, Event, Finished, Front,
    ToolRegistry,
};
use symphony_engine::{Constraint, GenerationParams, GrammarCompiler, Output};
use symphony_models::{Model, TokenId};
use symphony_types::ChatMessage;

use super::LiveRun;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::generation::{self, Job};
use crate::registry::Loaded;
use crate::util::lock;
use crate::SharedState;

/// What a run's thread needs to reach the model.
#[derive(Clone)]
pub(super) struct Driver {
    pub(super) app: SharedState,
    pub(super) principal: Principal,
    pub(super) model: Loaded,
    pub(super) handle: tokio::runtime::Handle,
}

/// A chat on `model` through its scheduler, answers capped at `max_tokens`, for turns
/// outside an agent run (a crew's members).
pub(crate) fn scheduler_chat(
    app: SharedState,
    principal: Principal,
    model: Loaded,
    handle: tokio::runtime::Handle,
    max_tokens: usize,
) -> Result<Box<dyn ChatModel + Send>, symphony_agents::Error> {
    let driver = Driver {
        app,
        principal,
        model,
        handle,
    };
    let mut chat = driver.chat()?;
    chat.params.max_tokens = max_tokens;
    Ok(Box::new(chat))
}

impl Driver {
    fn chat(&self) -> Result<SchedulerChat, symphony_agents::Error> {
        Ok(SchedulerChat {
            compiler: self
                .model
                .grammars()
                .map_err(symphony_agents::Error::Engine)?,
            app: self.app.clone(),
            principal: self.principal.clone(),
            model: self.model.clone(),
            handle: self.handle.clone(),
            params: turn_params(),
        })
    }

    /// Drives `run` to its end or a pause, its events to `live`; the last event says how
    /// it ended, or why it failed.
    pub(super) fn drive(self, run: ClaimedRun, tools: ToolRegistry, live: &LiveRun) {
        let (id, agent) = (run.id().to_string(), run.spec().name.clone());
        let result = (|| -> Result<Finished, symphony_agents::Error> {
            let mut chat = self.chat()?;
            let more = || -> Result<Box<dyn ChatModel + Send + '_>, symphony_agents::Error> {
                Ok(Box::new(self.chat()?))
            };
            // No one to ask on the server: the run waits for POST .../approve.
            let mut approve = |_: &str, _: &Value| Approval::Pause;
            let mut on_event = |e: &Event| live.push(serde_json::to_value(e).unwrap_or_default());
            run.drive(
                &tools,
                Front {
                    chat: &mut chat,
                    more: Some(&more),
                    approve: &mut approve,
                    on_event: &mut on_event,
                },
            )
        })();
        match result {
            Ok(Finished {
                outcome,
                memory_error,
            }) => {
                if let Some(e) = memory_error {
                    tracing::warn!(event = "agent_memory_failed", run = %id, error = %e);
                }
                live.push(json!({
                    "type": "summary",
                    "id": id,
                    "agent": agent,
                    "ending": outcome.ending,
                    "answer": outcome.answer,
                    "steps": outcome.steps,
                    "tool_calls": outcome.tool_calls,
                    "prompt_tokens": outcome.prompt_tokens,
                    "completion_tokens": outcome.completion_tokens,
                }))
            }
            Err(e) => {
                tracing::error!(event = "agent_run_failed", run = %id, error = %e);
                live.push(json!({"type": "error", "id": id, "message": e.to_string()}));
            }
        }
        lock(&self.app.agents.live).remove(&id);
        live.finish();
    }
}

/// A sampling request of one of the run's MCP servers: a turn without tools, queued with
/// the other requests for the model like the run's own turns.
impl Sampler for Driver {
    fn sample(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<String, String> {
        let mut chat = self.chat().map_err(|e| e.to_string())?;
        chat.params.max_tokens = max_tokens.clamp(1, MAX_ANSWER_TOKENS);
        let turn = chat
            .turn(messages, &[], CallMode::Answer)
            .map_err(|e| e.to_string())?;
        Ok(turn.content)
    }

    fn model_name(&self) -> String {
        self.model.name.clone()
    }
}

/// An agent's model turns through the model's scheduler.
struct SchedulerChat {
    app: SharedState,
    principal: Principal,
    model: Loaded,
    compiler: Arc<GrammarCompiler>,
    handle: tokio::runtime::Handle,
    params: GenerationParams,
}

impl Completer for SchedulerChat {
    fn model(&self) -> &Model {
        self.model.model()
    }

    fn grammars(&self) -> &GrammarCompiler {
        &self.compiler
    }

    /// One completion, waited for on this (non-async) thread. A full queue is waited out:
    /// an agent's turn is not a request its client can retry.
    fn complete(
        &mut self,
        prompt: Vec<TokenId>,
        constraint: Option<Constraint>,
    ) -> Result<Completed, symphony_agents::Error> {
        let _runtime = self.handle.enter();
        self.model.touch(None);
        let (tx, mut rx) = generation::channel(&self.app, &self.principal);
        loop {
            let job = Job {
                prompt: prompt.clone(),
                params: GenerationParams {
                    constraint: constraint.clone(),
                    ..self.params.clone()
                },
                logprobs: None,
                prompt_logprobs: false,
                n: 1,
            };
            match generation::submit(&self.app, &self.model, job, &tx, 0) {
                Ok(()) => break,
                Err(refusal) if refusal.is_overloaded() => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(refusal) => {
                    return Err(symphony_agents::Error::Model(
                        ApiError::from(refusal).message,
                    ))
                }
            }
        }
        drop(tx);
        let mut out = Output::default();
        loop {
            let Some((_, event)) = rx.blocking_recv() else {
                return Err(symphony_agents::Error::Model(
                    "the model's scheduler stopped".into(),
                ));
            };
            if out.record(event).map_err(symphony_agents::Error::Model)? {
                break;
            }
        }
        let (prompt_tokens, completion_tokens) = out
            .completion
            .as_ref()
            .map_or((prompt.len(), out.tokens.len()), |c| {
                (c.prompt_tokens, c.completion_tokens)
            });
        Ok(Completed {
            text: out.text,
            prompt_tokens,
            completion_tokens,
        })
    }

    fn sampling_mut(&mut self) -> Option<&mut symphony_engine::SamplingParams> {
        Some(&mut self.params.sampling)
    }
}

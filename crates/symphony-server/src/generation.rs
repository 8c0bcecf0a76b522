//! The bridge from HTTP handlers to a model's scheduler: submit `n` sequences of one request
//! and receive their events on a tokio channel. Dropping the receiver (the client went away)
//! closes every sink, and the scheduler stops those sequences within a step.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use symphony_engine::{Event, EventSink, GenerationParams, Request};
use symphony_models::TokenId;
use symphony_types::{ChatMessage, ToolSpec};
pub use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::registry::LoadedModel;
use crate::util::lock;
use crate::SharedState;

mod valid;

pub use valid::{ValidPrompt, ValidRequest};

/// A sink that forwards a sequence's events, tagged with its choice index, and keeps count
/// of the tokens it produced so that a cancelled sequence is still charged.
struct ChannelSink {
    index: usize,
    tx: UnboundedSender<(usize, Event)>,
    owed: Owed,
}

impl EventSink for ChannelSink {
    fn send(&mut self, event: Event) -> bool {
        let done = matches!(event, Event::Done(_));
        if let Event::Delta { token: Some(_), .. } = &event {
            self.owed.generated += 1;
        }
        let delivered = self.tx.send((self.index, event)).is_ok();
        // A delivered `Done` is charged by the channel's task (see `channel`).
        self.owed.settled |= done && delivered;
        delivered
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What a sequence owes its caller's token limits if it ends without a delivered `Done`
/// (the client went away mid-stream, or it failed): the tokens it actually produced, and its
/// prompt once it got that far. Charged when the scheduler drops the sequence's sink.
struct Owed {
    state: SharedState,
    principal: Principal,
    runtime: tokio::runtime::Handle,
    prompt: usize,
    generated: usize,
    settled: bool,
}

impl Drop for Owed {
    fn drop(&mut self) {
        if self.settled || self.generated == 0 {
            return;
        }
        let tokens = (self.prompt + self.generated) as u64;
        let (state, principal) = (self.state.clone(), self.principal.clone());
        self.runtime.spawn(async move {
            state.limiter.record_tokens(&principal, tokens).await;
        });
    }
}

pub struct Job {
    pub prompt: Vec<TokenId>,
    pub params: GenerationParams,
    pub logprobs: Option<usize>,
    pub prompt_logprobs: bool,
    pub n: usize,
}

/// Where a request's sequences send their events (from [`channel`], for [`submit`]).
pub struct Sender {
    tx: UnboundedSender<(usize, Event)>,
    principal: Principal,
    runtime: tokio::runtime::Handle,
    /// The first choice of each prompt submitted: the one its prompt is charged with.
    first_choices: Arc<Mutex<HashSet<usize>>>,
}

/// A channel for a request's choices: the scheduler's sinks send into the first half, the
/// handler reads the second. Between them a task records each finished choice in the metrics
/// and against the caller's token limits, and, when the handler drops its receiver (the
/// client went away), closes the sinks' channel at once so the scheduler stops the sequences
/// at its next step, even in the middle of a prefill. Call within the tokio runtime.
pub fn channel(
    state: &SharedState,
    principal: &Principal,
) -> (Sender, UnboundedReceiver<(usize, Event)>) {
    let (inner_tx, mut inner_rx) = unbounded_channel::<(usize, Event)>();
    let (outer_tx, outer_rx) = unbounded_channel();
    let (task_state, task_principal) = (state.clone(), principal.clone());
    let first_choices = Arc::new(Mutex::new(HashSet::new()));
    let task_first_choices = first_choices.clone();
    let finished = move |i: usize, event: &Event| {
        let (state, principal) = (task_state.clone(), task_principal.clone());
        let tokens = match event {
            Event::Done(c) => {
                state.metrics.observe_generation(c);
                // Each prompt is counted once, with its first choice (its other choices
                // share it); every prompt of a request is counted.
                let first = lock(&task_first_choices).contains(&i);
                let prompt = if first { c.prompt_tokens } else { 0 };
                Some((prompt + c.completion_tokens) as u64)
            }
            _ => None,
        };
        async move {
            if let Some(tokens) = tokens {
                state.limiter.record_tokens(&principal, tokens).await;
            }
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                event = inner_rx.recv() => {
                    let Some((i, event)) = event else { break };
                    finished(i, &event).await;
                    if outer_tx.send((i, event)).is_err() {
                        break;
                    }
                }
                _ = outer_tx.closed() => break,
            }
        }
        // No sink can deliver any more (so each charges itself when dropped); a `Done`
        // delivered before that is charged here.
        inner_rx.close();
        while let Ok((i, event)) = inner_rx.try_recv() {
            finished(i, &event).await;
        }
    });
    let sender = Sender {
        tx: inner_tx,
        principal: principal.clone(),
        runtime: tokio::runtime::Handle::current(),
        first_choices,
    };
    (sender, outer_rx)
}

/// Submits `job.n` sequences (seeds `seed`, `seed + 1`, ... so choices differ) and returns
/// their events.
pub fn start(
    state: &SharedState,
    principal: &Principal,
    model: &LoadedModel,
    job: Job,
) -> Result<UnboundedReceiver<(usize, Event)>, ApiError> {
    let (tx, rx) = channel(state, principal);
    submit(state, model, job, &tx, 0)?;
    Ok(rx)
}

/// Submits every sequence of a validated request and returns their events, choice
/// `p * n + i` being the `i`th sequence of prompt `p`. The whole request is counted against
/// the queue before any of it is submitted.
pub fn launch(
    state: &SharedState,
    principal: &Principal,
    request: &ValidRequest,
) -> Result<UnboundedReceiver<(usize, Event)>, ApiError> {
    check_room(state, &request.model, request.sequences())?;
    let (tx, rx) = channel(state, principal);
    for (p, prompt) in request.prompts.iter().enumerate() {
        let job = Job {
            prompt: prompt.tokens.clone(),
            params: GenerationParams {
                max_tokens: prompt.max_tokens,
                ..request.params.clone()
            },
            logprobs: request.logprobs,
            prompt_logprobs: request.prompt_logprobs,
            n: request.n,
        };
        submit(state, &request.model, job, &tx, p * request.n)?;
    }
    Ok(rx)
}

/// Submits `job.n` sequences whose events arrive on `tx` as choices `first_index..`.
/// Refuses while the model's queue has no room for them (see [`check_room`]).
pub fn submit(
    state: &SharedState,
    model: &LoadedModel,
    job: Job,
    tx: &Sender,
    first_index: usize,
) -> Result<(), Refusal> {
    check_room(state, model, job.n)?;
    lock(&tx.first_choices).insert(first_index);
    for i in 0..job.n {
        let index = first_index + i;
        let mut params = job.params.clone();
        params.sampling.seed = params.sampling.seed.wrapping_add(i as u64);
        let request = Request {
            prompt: job.prompt.clone(),
            params,
            logprobs: job.logprobs,
            prompt_logprobs: job.prompt_logprobs,
        };
        let owed = Owed {
            state: state.clone(),
            principal: tx.principal.clone(),
            runtime: tx.runtime.clone(),
            // As for a finished request: the prompt goes with its first choice.
            prompt: if i == 0 { job.prompt.len() } else { 0 },
            generated: 0,
            settled: false,
        };
        model.scheduler.submit(
            request,
            ChannelSink {
                index,
                tx: tx.tx.clone(),
                owed,
            },
        )?;
    }
    Ok(())
}

/// Refuses a request whose `sequences` (prompts × n, counted whole before any is submitted)
/// would not fit the model's queue: 400 when they never could (more than `--max-waiting`),
/// 503 while the queue is too full for them now.
pub fn check_room(
    state: &SharedState,
    model: &LoadedModel,
    sequences: usize,
) -> Result<(), Refusal> {
    let max = state.config.max_waiting;
    if sequences > max {
        return Err(Refusal::Invalid(format!(
            "the request asks for {sequences} sequences (prompts × n); at most {max} may \
             wait per model (--max-waiting): send fewer prompts or a smaller n"
        )));
    }
    let waiting = model
        .scheduler
        .stats()
        .waiting
        .load(std::sync::atomic::Ordering::Relaxed);
    if waiting.saturating_add(sequences) > max {
        return Err(Refusal::Overloaded(symphony_engine::Overloaded::for_now(
            format!(
                "'{}' has {waiting} requests waiting; retry shortly",
                model.name
            ),
            std::time::Duration::from_secs(1),
        )));
    }
    Ok(())
}

/// Why sequences were not queued: the request could never fit (the client's error), or the
/// queue is full now (try again). Callers outside HTTP, such as an agent run waiting for
/// room, tell the two apart by variant; handlers turn it into a 400 or a 503.
#[derive(Debug)]
pub enum Refusal {
    Invalid(String),
    Overloaded(symphony_engine::Overloaded),
    /// The scheduler refused the request itself (its parameters, its length).
    Engine(symphony_engine::Error),
}

impl Refusal {
    /// Whether the same request may succeed later, once the queue has room.
    pub fn is_overloaded(&self) -> bool {
        matches!(
            self,
            Refusal::Overloaded(_) | Refusal::Engine(symphony_engine::Error::Overloaded(_))
        )
    }
}

impl From<symphony_engine::Error> for Refusal {
    fn from(e: symphony_engine::Error) -> Self {
        Refusal::Engine(e)
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(message) => ApiError::bad_request(message),
            Refusal::Overloaded(overloaded) => overloaded.into(),
            Refusal::Engine(e) => e.into(),
        }
    }
}

/// One choice, collected: the engine's collected request.
pub type Choice = symphony_engine::Output;

/// Waits for every choice to finish, within the server's request timeout (504 beyond; the
/// sequences are then cancelled).
pub async fn collect(
    state: &SharedState,
    rx: UnboundedReceiver<(usize, Event)>,
    n: usize,
) -> Result<Vec<Choice>, ApiError> {
    let limit = state.config.request_timeout;
    tokio::time::timeout(limit, collect_all(rx, n))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                format!("the request took longer than {limit:?} (--request-timeout)"),
            ))
        })
}

async fn collect_all(
    mut rx: UnboundedReceiver<(usize, Event)>,
    n: usize,
) -> Result<Vec<Choice>, ApiError> {
    let mut choices = vec![Choice::default(); n];
    let mut done = 0;
    while done < n {
        let Some((i, event)) = rx.recv().await else {
            return Err(ApiError::internal("the model's scheduler stopped"));
        };
        if choices[i].record(event).map_err(ApiError::internal)? {
            done += 1;
        }
    }
    Ok(choices)
}

/// A token's text for logprob listings.
pub fn token_text(model: &LoadedModel, id: TokenId) -> String {
    String::from_utf8_lossy(&model.model().tokenizer.token_bytes(id, true)).into_owned()
}

pub use crate::registry::Loaded;

/// Renders a conversation with the model's chat template and tokenizes it, on a blocking
/// thread: the template is code that came with the model and may spend its whole budget
/// (see `symphony_models::chat_template`), which must not stall the other requests on the
/// async runtime.
pub async fn chat_prompt(
    model: &Loaded,
    messages: Vec<ChatMessage>,
    tools: Vec<ToolSpec>,
) -> Result<Vec<TokenId>, ApiError> {
    let model = model.model().clone();
    crate::util::blocking(move || {
        symphony_engine::chat_prompt_with_tools(&model, &messages, &tools).map_err(ApiError::from)
    })
    .await
}

//! Continuous batching: one thread per model runs every active sequence together.
//!
//! Each step takes one token of every decoding sequence plus chunks of waiting prompts, up
//! to a token budget, and runs them in one batched forward pass ([`Model::forward_batch`]),
//! so running streams keep producing tokens while a long prompt is prefilled piece by piece.
//! New requests join between steps. Keys and values live in a paged store shared by all
//! sequences; full blocks of a prompt are cached by content ([`BlockAllocator`]), so a prefix
//! that another request already computed (a shared system prompt) is taken, not recomputed.
//! When blocks run out the most recently admitted sequence is preempted: its blocks are
//! released and it is recomputed later, losing nothing it has generated.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use symphony_models::{BatchItem, KvStore, Logits, Model, TokenId, KV_BLOCK_SIZE};

use crate::blocks::{BlockAllocator, BlockKey};
use crate::generate::{token_logprob, FinishReason, GenerationParams, TokenLogprob};
use crate::{Error, Result};

mod budget;
mod sequence;

use budget::{Need, StepBudget};
use sequence::Sequence;

/// How a scheduler shares the machine among its sequences.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// KV blocks of [`KV_BLOCK_SIZE`] positions in the shared store.
    pub kv_blocks: usize,
    /// Tokens one step may run: every decoding sequence's next token, then prompt chunks.
    /// Smaller keeps running streams smooth while long prompts arrive.
    pub max_batch_tokens: usize,
    /// Prompts with at most this many tokens left to compute are short: they go before
    /// longer ones, and a step that answers short prompts holds at most this many of their
    /// tokens (and at most as many of a longer prompt's), so a burst of them is answered a
    /// few per step instead of all together after one long step. Longer prompts alone get
    /// steps of `max_batch_tokens`.
    pub short_prompt_tokens: usize,
    /// Sequences running at once; more wait.
    pub max_running: usize,
    /// Share computed prompt blocks between requests.
    pub prefix_cache: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            kv_blocks: 1024,
            max_batch_tokens: 256,
            short_prompt_tokens: 32,
            max_running: 32,
            prefix_cache: true,
        }
    }
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<TokenId>,
    pub params: GenerationParams,
    /// `Some(n)`: each generated token's log-probability and the `n` most likely alternatives.
    pub logprobs: Option<usize>,
    /// Also the log-probability of every prompt token (the first has none), with as many
    /// alternatives as `logprobs` asks for. Such a request computes its whole prompt: cached
    /// blocks carry no logits.
    pub prompt_logprobs: bool,
}

impl Request {
    pub fn new(prompt: Vec<TokenId>, params: GenerationParams) -> Self {
        Self {
            prompt,
            params,
            logprobs: None,
            prompt_logprobs: false,
        }
    }
}

/// How a finished request went.
#[derive(Debug, Clone)]
pub struct Completion {
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    /// From submission to the first generated token (or to the end, if there was none).
    pub time_to_first_token: Duration,
    pub total_time: Duration,
}

/// What a request's sink receives, in this order: prompt log-probabilities (if asked for),
/// deltas, then `Done` or `Error`.
#[derive(Debug, Clone)]
pub enum Event {
    PromptLogprobs(Vec<Option<TokenLogprob>>),
    /// New text and the token it came from (`None` for text released at the end).
    Delta {
        token: Option<TokenId>,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    Done(Completion),
    Error(String),
}

/// Where a request's events go. A closed sink cancels its request within one step.
pub trait EventSink: Send + 'static {
    /// Delivers an event; `false` means nobody is listening any more.
    fn send(&mut self, event: Event) -> bool;

    /// Whether the listener has gone (checked every step, also while a prompt is prefilled).
    fn is_closed(&self) -> bool {
        false
    }
}

impl EventSink for mpsc::Sender<Event> {
    fn send(&mut self, event: Event) -> bool {
        mpsc::Sender::send(self, event).is_ok()
    }
}

/// Live figures, read by the server's metrics.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub running: AtomicUsize,
    pub waiting: AtomicUsize,
    pub kv_blocks_used: AtomicUsize,
    pub kv_blocks_total: AtomicUsize,
    /// Prompt blocks looked up in, and found in, the prefix cache.
    pub prefix_lookups: AtomicU64,
    pub prefix_hits: AtomicU64,
    pub preemptions: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub steps: AtomicU64,
}

pub type RequestId = u64;

enum Command {
    Submit(Box<Sequence>),
    Cancel(RequestId),
}

/// A handle on a model's scheduler thread; clones share it. The thread ends once every
/// handle is dropped and its last sequence has finished.
#[derive(Clone)]
pub struct Scheduler {
    model: Arc<Model>,
    tx: mpsc::Sender<Command>,
    stats: Arc<SchedulerStats>,
    next_id: Arc<AtomicU64>,
    kv_blocks: usize,
}

impl Scheduler {
    /// Starts the scheduler thread for `model`, with a KV store of `config.kv_blocks` blocks.
    pub fn spawn(model: Arc<Model>, config: SchedulerConfig) -> Result<Self> {
        if config.kv_blocks == 0 || config.max_batch_tokens == 0 || config.max_running == 0 {
            return Err(Error::InvalidRequest(
                "the scheduler needs at least one KV block, batch token and running sequence"
                    .into(),
            ));
        }
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(SchedulerStats::default());
        let kv_blocks = config.kv_blocks;
        let worker = Worker {
            store: model.new_kv_store(config.kv_blocks),
            alloc: BlockAllocator::new(config.kv_blocks),
            model: model.clone(),
            config,
            rx,
            waiting: VecDeque::new(),
            running: Vec::new(),
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("symphony-scheduler".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::InvalidRequest(format!("cannot start the scheduler: {e}")))?;
        Ok(Self {
            model,
            tx,
            stats,
            next_id: Arc::new(AtomicU64::new(1)),
            kv_blocks,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn stats(&self) -> &SchedulerStats {
        &self.stats
    }

    /// Queues a request; its events go to `sink`. Errors at once for a request that can never
    /// run (empty or over-long prompt, bad sampling settings, larger than the whole KV store).
    pub fn submit(&self, request: Request, sink: impl EventSink) -> Result<RequestId> {
        request
            .params
            .sampling
            .validate()
            .map_err(Error::InvalidRequest)?;
        if request.prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        let limit = self.model.context_length();
        if request.prompt.len() >= limit {
            return Err(symphony_models::Error::ContextLength {
                requested: request.prompt.len() + 1,
                limit,
            }
            .into());
        }
        let n_vocab = self.model.tokenizer.n_vocab();
        if let Some(&id) = request.prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(symphony_models::Error::TokenOutOfRange { id, n_vocab }.into());
        }
        let needed = (request.prompt.len() + 1).div_ceil(KV_BLOCK_SIZE);
        if needed > self.kv_blocks {
            return Err(Error::InvalidRequest(format!(
                "the prompt needs {needed} KV blocks, the store has {}",
                self.kv_blocks
            )));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let seq = Sequence::new(id, request, Box::new(sink));
        self.tx
            .send(Command::Submit(Box::new(seq)))
            .map_err(|_| Error::InvalidRequest("the scheduler has stopped".into()))?;
        Ok(id)
    }

    /// Stops a request before its next step.
    pub fn cancel(&self, id: RequestId) {
        let _ = self.tx.send(Command::Cancel(id));
    }

    /// Runs a request to the end and collects it (for callers without a stream).
    pub fn generate(&self, request: Request) -> Result<Output> {
        let (tx, rx) = mpsc::channel();
        self.submit(request, tx)?;
        let mut out = Output::default();
        for event in rx {
            if out.record(event).map_err(Error::InvalidRequest)? {
                return Ok(out);
            }
        }
        Err(Error::InvalidRequest("the scheduler stopped".into()))
    }
}

/// A collected request ([`Scheduler::generate`]).
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub text: String,
    pub tokens: Vec<TokenId>,
    pub logprobs: Vec<TokenLogprob>,
    pub prompt_logprobs: Vec<Option<TokenLogprob>>,
    pub completion: Option<Completion>,
}

impl Output {
    /// Adds one of the request's events. `Ok(true)` once it is done; the error's message
    /// when the request failed.
    pub fn record(&mut self, event: Event) -> Result<bool, String> {
        match event {
            Event::PromptLogprobs(lp) => self.prompt_logprobs = lp,
            Event::Delta {
                token,
                text,
                logprob,
            } => {
                self.text.push_str(&text);
                self.tokens.extend(token);
                self.logprobs.extend(logprob);
            }
            Event::Done(c) => {
                self.completion = Some(c);
                return Ok(true);
            }
            Event::Error(e) => return Err(e),
        }
        Ok(false)
    }
}

struct Worker {
    model: Arc<Model>,
    config: SchedulerConfig,
    store: KvStore,
    alloc: BlockAllocator,
    rx: mpsc::Receiver<Command>,
    waiting: VecDeque<Box<Sequence>>,
    // Boxed: a sequence (its decoder, constraint and block table) moves between `waiting`
    // and `running` on admission and preemption, and a pointer moves cheaper than the whole.
    #[allow(clippy::vec_box)]
    running: Vec<Box<Sequence>>,
    stats: Arc<SchedulerStats>,
}

impl Worker {
    fn run(mut self) {
        let mut connected = true;
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                if !connected {
                    return;
                }
                match self.rx.recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(_) => return,
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        connected = false;
                        break;
                    }
                }
            }
            self.drop_closed();
            self.admit();
            self.step();
            self.publish();
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(seq) => self.waiting.push_back(seq),
            Command::Cancel(id) => {
                if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
                    let seq = self.waiting.remove(i).expect("index from position");
                    self.finish(seq, FinishReason::Cancelled);
                }
                if let Some(i) = self.running.iter().position(|s| s.id == id) {
                    let seq = self.running.remove(i);
                    self.finish(seq, FinishReason::Cancelled);
                }
            }
        }
    }

    /// Drops requests whose listener has gone, so they stop using compute.
    fn drop_closed(&mut self) {
        let (closed, waiting): (Vec<_>, Vec<_>) =
            self.waiting.drain(..).partition(|s| s.sink.is_closed());
        self.waiting = waiting.into();
        let (closed_running, running): (Vec<_>, Vec<_>) =
            self.running.drain(..).partition(|s| s.sink.is_closed());
        self.running = running;
        for seq in closed.into_iter().chain(closed_running) {
            self.finish(seq, FinishReason::Cancelled);
        }
    }

    /// Moves waiting sequences into the running set while there is room, taking cached
    /// prefix blocks for them.
    fn admit(&mut self) {
        while self.running.len() < self.config.max_running {
            let Some(mut seq) = self.waiting.pop_front() else {
                break;
            };
            if self.config.prefix_cache {
                seq.take_cached_blocks(&mut self.alloc, &mut self.store);
            }
            // Room for the rest of its prompt and a first token, or it waits (unless nothing
            // runs: then it takes what there is and preempts as it needs).
            let needed = (seq.tokens.len() + 1).div_ceil(KV_BLOCK_SIZE) - seq.blocks.len();
            if self.alloc.available() < needed && !self.running.is_empty() {
                self.release_blocks(&mut seq);
                self.waiting.push_front(seq);
                break;
            }
            // Admitted: its wait ends here.
            seq.queued = None;
            self.running.push(seq);
        }
    }

    /// The keys of the whole prompt blocks that computing `n` more positions of sequence
    /// `i` completes (none unless its computed blocks are all keyed).
    fn prompt_keys(&self, i: usize, n: usize) -> Vec<BlockKey> {
        if !self.config.prefix_cache
            || self.running[i].computed != self.running[i].keys.len() * KV_BLOCK_SIZE
        {
            return Vec::new();
        }
        let seq = &self.running[i];
        // Decoding sequences complete no prompt block.
        let end = (seq.computed + n).min(seq.prompt_len).max(seq.computed);
        BlockKey::chain_from(seq.keys.last().copied(), &seq.tokens[seq.computed..end])
    }

    fn release_blocks(&mut self, seq: &mut Sequence) {
        if self.config.prefix_cache {
            // What it computed stays cached for a later sequence with the same start.
            seq.register_partial_block(&mut self.alloc);
        }
        // Last block first: cached blocks are evicted least recently released first, so a
        // sequence's tail goes before its head, and a prefix many requests share (a system
        // prompt) is the last of their blocks to go.
        for block in seq.blocks.drain(..).rev() {
            self.alloc.release(block);
        }
        seq.keys.clear();
        seq.computed = 0;
    }

    /// Gives sequence `index` blocks for `positions` positions, preempting the most recently
    /// admitted sequences after it (those not yet planned for this step). Returns false when
    /// none is left to preempt.
    fn reserve(&mut self, index: usize, positions: usize) -> bool {
        let needed = positions.div_ceil(KV_BLOCK_SIZE);
        while self.running[index].blocks.len() < needed {
            if let Some(block) = self.alloc.allocate() {
                self.running[index].blocks.push(block);
                continue;
            }
            let victim = (index + 1..self.running.len()).max_by_key(|&i| self.running[i].arrived);
            let Some(victim) = victim else {
                return false;
            };
            let mut seq = self.running.remove(victim);
            self.preempt(&mut seq);
            self.waiting.push_front(seq);
        }
        true
    }

    fn preempt(&mut self, seq: &mut Sequence) {
        self.release_blocks(seq);
        seq.queued = Some(tracing::info_span!(parent: &seq.span, "queue_wait", preempted = true));
        if seq.first_token.is_none() {
            if let Some(lp) = &mut seq.prompt_logprobs {
                lp.clear();
            }
        }
        self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
    }

    fn step(&mut self) {
        // Decoding sequences first (one token each), then short prompts, then long ones,
        // each in arrival order.
        let short = self.config.short_prompt_tokens;
        self.running
            .sort_by_key(|s| (Need::of(s, short), s.arrived));
        let prompts = self
            .running
            .iter()
            .filter(|s| Need::of(s, short) != Need::Decode)
            .count();
        let mut budget = StepBudget::new(
            self.config.max_batch_tokens,
            self.running.len() - prompts,
            prompts,
            short,
        );
        let mut plan: Vec<(RequestId, usize)> = Vec::new();
        // Prompt blocks this step computes: a prompt whose next block is one of them waits a
        // step and takes it from the cache, instead of computing it again beside it.
        let mut in_flight: HashSet<BlockKey> = HashSet::new();
        let mut i = 0;
        // Every sequence before `i` is planned or waits, so preemption only takes later ones.
        while i < self.running.len() && !budget.spent() {
            if self.config.prefix_cache {
                let seq = &mut self.running[i];
                // Blocks other prompts computed since it was admitted (probed first, so
                // that the hit counters count one lookup per block taken or missed once).
                if seq
                    .next_prompt_key()
                    .is_some_and(|key| self.alloc.contains(key))
                {
                    seq.take_cached_blocks(&mut self.alloc, &mut self.store);
                }
                if seq
                    .next_prompt_key()
                    .is_some_and(|key| in_flight.contains(&key))
                {
                    i += 1;
                    continue;
                }
            }
            let seq = &self.running[i];
            let need = Need::of(seq, short);
            let n = budget.grant(need, seq.tokens.len() - seq.computed);
            if n == 0 {
                i += 1;
                continue;
            }
            let (id, end) = (seq.id, seq.computed + n);
            if self.reserve(i, end) {
                in_flight.extend(self.prompt_keys(i, n));
                plan.push((id, n));
                budget.spend(need, n);
                i += 1;
                continue;
            }
            let mut seq = self.running.remove(i);
            if plan.is_empty() {
                // Alone and still out of blocks: the store cannot hold this sequence.
                self.finish(seq, FinishReason::ContextFull);
            } else {
                // It waits for the planned sequences to finish and free their blocks.
                self.preempt(&mut seq);
                self.waiting.push_front(seq);
            }
        }
        if plan.is_empty() {
            return;
        }
        let order: Vec<usize> = plan
            .iter()
            .map(|(id, _)| {
                self.running
                    .iter()
                    .position(|s| s.id == *id)
                    .expect("planned")
            })
            .collect();
        let items: Vec<BatchItem<'_>> = order
            .iter()
            .zip(&plan)
            .map(|(&i, &(_, n))| {
                let seq = &self.running[i];
                let wants_prompt = seq.prompt_logprobs.is_some() && seq.computed < seq.prompt_len;
                BatchItem {
                    tokens: &seq.tokens[seq.computed..seq.computed + n],
                    first_pos: seq.computed,
                    blocks: &seq.blocks,
                    logits: if wants_prompt {
                        Logits::All
                    } else {
                        Logits::Last
                    },
                }
            })
            .collect();
        // One span per sequence for its share of this step: a prompt chunk or a decode step
        // (the batched forward pass and then its own sampling). At debug level: off, and
        // free, unless a trace layer asks for them, since there is one per token.
        let spans: Vec<tracing::Span> = order
            .iter()
            .zip(&plan)
            .map(|(&i, &(_, n))| {
                let seq = &self.running[i];
                if seq.computed < seq.prompt_len {
                    tracing::debug_span!(parent: &seq.span, "prefill_chunk", tokens = n as i64, first_position = seq.computed as i64, batch = plan.len() as i64)
                } else {
                    tracing::debug_span!(parent: &seq.span, "decode_step", position = seq.computed as i64, batch = plan.len() as i64)
                }
            })
            .collect();
        let logit_rows: Vec<usize> = items
            .iter()
            .map(|it| match it.logits {
                Logits::All => it.tokens.len(),
                Logits::Last => 1,
            })
            .collect();
        let result = self
            .model
            .forward_batch(&items, &mut self.store)
            .and_then(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?));
        drop(items);
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        let mut logits = match result {
            Ok(l) => l,
            Err(e) => {
                let message = e.to_string();
                let mut failed: Vec<Box<Sequence>> = Vec::new();
                for (id, _) in &plan {
                    let i = self
                        .running
                        .iter()
                        .position(|s| s.id == *id)
                        .expect("planned");
                    failed.push(self.running.remove(i));
                }
                for mut seq in failed {
                    seq.span.record("otel.status_code", "ERROR");
                    seq.sink.send(Event::Error(message.clone()));
                    self.release_blocks(&mut seq);
                }
                return;
            }
        };
        let prompt_tokens: usize = plan
            .iter()
            .zip(&order)
            .map(|(&(_, n), &i)| {
                let s = &self.running[i];
                (s.computed + n)
                    .min(s.prompt_len)
                    .saturating_sub(s.computed)
            })
            .sum();
        self.stats
            .prompt_tokens
            .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        let n_vocab = self.model.tokenizer.n_vocab();
        let mut finished = Vec::new();
        let mut row = 0;
        for (((&i, &(_, n)), rows), span) in order.iter().zip(&plan).zip(&logit_rows).zip(&spans) {
            let _span = span.enter();
            let chunk = &mut logits[row * n_vocab..(row + rows) * n_vocab];
            row += rows;
            if let Some(reason) = self.advance(i, n, chunk, *rows) {
                finished.push((self.running[i].id, reason));
            }
        }
        // The step's spans close before a finished generation's does.
        drop(spans);
        for (id, reason) in finished {
            let i = self
                .running
                .iter()
                .position(|s| s.id == id)
                .expect("running");
            let seq = self.running.remove(i);
            self.finish(seq, reason);
        }
    }

    /// Records that sequence `i` computed `n` more positions, whose logits are `logits`
    /// (`rows` rows), and samples its next token if its input is all in. Returns a reason
    /// when the sequence is done.
    fn advance(
        &mut self,
        i: usize,
        n: usize,
        logits: &mut [f32],
        rows: usize,
    ) -> Option<FinishReason> {
        let n_vocab = self.model.tokenizer.n_vocab();
        let prefix_cache = self.config.prefix_cache;
        let seq = &mut self.running[i];
        if let Some(prompt_lp) = &mut seq.prompt_logprobs {
            if rows == n {
                for r in 0..rows {
                    let pos = seq.computed + r;
                    if pos + 1 < seq.prompt_len {
                        let row = &logits[r * n_vocab..(r + 1) * n_vocab];
                        let (token, top) = (seq.tokens[pos + 1], seq.prompt_alternatives);
                        prompt_lp.push(Some(token_logprob(row, token, top)));
                    }
                }
            }
        }
        seq.computed += n;
        if prefix_cache {
            while (seq.keys.len() + 1) * KV_BLOCK_SIZE <= seq.computed {
                let b = seq.keys.len();
                let chunk = &seq.tokens[b * KV_BLOCK_SIZE..(b + 1) * KV_BLOCK_SIZE];
                let parent = seq.keys.last().copied();
                let key = self.alloc.register(seq.blocks[b], parent, chunk);
                seq.keys.push(key.expect("a full block has a key"));
            }
        }
        if seq.computed < seq.tokens.len() {
            return None;
        }
        if prefix_cache && seq.first_token.is_none() {
            // The whole prompt is in: its last block, partly filled, can be shared while
            // this sequence still runs (the positions it computes next do not change them).
            seq.register_partial_block(&mut self.alloc);
        }
        if let Some(lp) = seq
            .prompt_logprobs
            .as_mut()
            .filter(|_| seq.first_token.is_none())
        {
            let mut all = Vec::with_capacity(seq.prompt_len);
            all.push(None);
            all.append(lp);
            seq.sink.send(Event::PromptLogprobs(all));
        }
        let last = &mut logits[(rows - 1) * n_vocab..rows * n_vocab];
        let step = seq.decoder.step(&self.model.tokenizer, last, &seq.tokens);
        seq.first_token.get_or_insert_with(Instant::now);
        if let Some(t) = step.token {
            seq.tokens.push(t);
            self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        }
        if step.token.is_some() || !step.text.is_empty() || step.logprob.is_some() {
            let open = seq.sink.send(Event::Delta {
                token: step.token,
                text: step.text,
                logprob: step.logprob,
            });
            if !open {
                return Some(FinishReason::Cancelled);
            }
        }
        if let Some(reason) = step.finish {
            return Some(reason);
        }
        if seq.tokens.len() >= self.model.context_length() {
            return Some(FinishReason::ContextFull);
        }
        None
    }

    fn finish(&mut self, mut seq: Box<Sequence>, reason: FinishReason) {
        if matches!(reason, FinishReason::Cancelled | FinishReason::ContextFull) {
            // Ended from outside the decoder: whatever it still holds back is released, as
            // it is when the decoder ends a sequence itself.
            let text = seq.decoder.finish(reason);
            if !text.is_empty() {
                seq.sink.send(Event::Delta {
                    token: None,
                    text,
                    logprob: None,
                });
            }
        }
        let completion = seq.completion(reason);
        seq.span.record("finish_reason", reason.as_str());
        seq.span
            .record("completion_tokens", completion.completion_tokens as i64);
        seq.span
            .record("cached_tokens", completion.cached_tokens as i64);
        // The generation's span ends before its caller hears it is done, so it ends inside
        // the caller's span.
        seq.queued = None;
        seq.span = tracing::Span::none();
        seq.sink.send(Event::Done(completion));
        self.release_blocks(&mut seq);
    }

    fn publish(&self) {
        let s = &self.stats;
        s.running.store(self.running.len(), Ordering::Relaxed);
        s.waiting.store(self.waiting.len(), Ordering::Relaxed);
        s.kv_blocks_used.store(self.alloc.used(), Ordering::Relaxed);
        s.kv_blocks_total
            .store(self.alloc.n_blocks(), Ordering::Relaxed);
        s.prefix_lookups
            .store(self.alloc.lookups, Ordering::Relaxed);
        s.prefix_hits.store(self.alloc.hits, Ordering::Relaxed);
    }
}

//! One request inside the scheduler: its tokens, its KV blocks (and which of them came from
//! the prefix cache), its decoder and where its events go.

use std::time::Instant;

use symphony_models::{KvStore, TokenId, KV_BLOCK_SIZE};

use super::{Completion, EventSink, Request, RequestId};
use crate::blocks::{BlockAllocator, BlockKey};
use crate::generate::{Decoder, FinishReason, TokenLogprob};

pub(super) struct Sequence {
    pub(super) id: RequestId,
    /// Prompt then generated tokens.
    pub(super) tokens: Vec<TokenId>,
    pub(super) prompt_len: usize,
    /// Positions whose keys and values are in `blocks`.
    pub(super) computed: usize,
    pub(super) blocks: Vec<u32>,
    /// Keys of the full blocks registered in (or taken from) the prefix cache.
    pub(super) keys: Vec<BlockKey>,
    pub(super) cached_tokens: usize,
    pub(super) decoder: Decoder,
    pub(super) prompt_logprobs: Option<Vec<Option<TokenLogprob>>>,
    /// Alternatives reported at each prompt position (`Request::logprobs`).
    pub(super) prompt_alternatives: usize,
    pub(super) sink: Box<dyn EventSink>,
    pub(super) arrived: Instant,
    pub(super) first_token: Option<Instant>,
    /// The whole generation, as a trace span (a child of the submitter's span).
    pub(super) span: tracing::Span,
    /// Open while the sequence waits for room to run: before admission or once preempted.
    pub(super) queued: Option<tracing::Span>,
}

impl Sequence {
    pub(super) fn new(id: RequestId, request: Request, sink: Box<dyn EventSink>) -> Self {
        // Counts go in as i64: the OpenTelemetry bridge exports unsigned integers as text.
        let span = tracing::info_span!(
            "generate",
            prompt_tokens = request.prompt.len() as i64,
            cached_tokens = tracing::field::Empty,
            completion_tokens = tracing::field::Empty,
            finish_reason = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let queued = Some(tracing::info_span!(parent: &span, "queue_wait"));
        Self {
            id,
            prompt_len: request.prompt.len(),
            tokens: request.prompt,
            computed: 0,
            blocks: Vec::new(),
            keys: Vec::new(),
            cached_tokens: 0,
            decoder: Decoder::new(&request.params, request.logprobs),
            prompt_logprobs: request.prompt_logprobs.then(Vec::new),
            prompt_alternatives: request.logprobs.unwrap_or(0),
            sink,
            arrived: Instant::now(),
            first_token: None,
            span,
            queued,
        }
    }

    /// Whether its next positions may come from the prefix cache: no prompt logprobs wanted
    /// (cached blocks carry no logits), every computed block keyed, none reserved beyond.
    pub(super) fn shareable(&self) -> bool {
        let b = self.keys.len();
        self.prompt_logprobs.is_none()
            && self.computed == b * KV_BLOCK_SIZE
            && self.blocks.len() == b
    }

    /// The key of the next prompt block to compute, if it can be shared and is a whole
    /// block before the prompt's last token (always computed, for its logits).
    pub(super) fn next_prompt_key(&self) -> Option<BlockKey> {
        let b = self.keys.len();
        if !self.shareable() || (b + 1) * KV_BLOCK_SIZE > self.tokens.len() - 1 {
            return None;
        }
        let chunk = &self.tokens[b * KV_BLOCK_SIZE..(b + 1) * KV_BLOCK_SIZE];
        Some(BlockKey::next(self.keys.last().copied(), chunk))
    }

    /// Takes the prompt's next blocks from the prefix cache for as long as it has them, then
    /// a copy of the cached block that begins with the longest run of the prompt's next
    /// tokens (the prompt's last token excepted).
    pub(super) fn take_cached_blocks(&mut self, alloc: &mut BlockAllocator, store: &mut KvStore) {
        while let Some(key) = self.next_prompt_key() {
            let b = self.keys.len();
            let chunk = &self.tokens[b * KV_BLOCK_SIZE..(b + 1) * KV_BLOCK_SIZE];
            let Some(block) = alloc.lookup(key, chunk) else {
                break;
            };
            self.blocks.push(block);
            self.keys.push(key);
            self.computed += KV_BLOCK_SIZE;
        }
        self.copy_cached_start(alloc, store);
        self.cached_tokens = self.cached_tokens.max(self.computed.min(self.prompt_len));
    }

    /// Copies the cached block that begins with the longest run of the next block's tokens.
    pub(super) fn copy_cached_start(&mut self, alloc: &mut BlockAllocator, store: &mut KvStore) {
        let end = (self.computed + KV_BLOCK_SIZE).min(self.tokens.len() - 1);
        if !self.shareable() || end <= self.computed {
            return;
        }
        let parent = self.keys.last().copied();
        let Some((source, n)) = alloc.longest_match(parent, &self.tokens[self.computed..end])
        else {
            return;
        };
        let Some(block) = alloc.allocate_copy_of(source) else {
            return;
        };
        store.copy_block(source, block);
        self.blocks.push(block);
        self.computed += n;
    }

    /// Registers the block being filled, if its computed positions follow keyed blocks, so
    /// that a sequence whose prefix ends inside it can copy it.
    pub(super) fn register_partial_block(&self, alloc: &mut BlockAllocator) {
        let b = self.keys.len();
        let start = b * KV_BLOCK_SIZE;
        if self.computed > start && self.computed < start + KV_BLOCK_SIZE {
            let parent = self.keys.last().copied();
            alloc.register(self.blocks[b], parent, &self.tokens[start..self.computed]);
        }
    }

    pub(super) fn completion(&self, reason: FinishReason) -> Completion {
        let now = Instant::now();
        Completion {
            finish_reason: reason,
            prompt_tokens: self.prompt_len,
            cached_tokens: self.cached_tokens,
            completion_tokens: self.decoder.tokens_generated(),
            time_to_first_token: self.first_token.unwrap_or(now) - self.arrived,
            total_time: now - self.arrived,
        }
    }
}

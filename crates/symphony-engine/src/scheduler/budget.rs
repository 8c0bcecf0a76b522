//! How one step's tokens are shared: decoding first, then short prompts, then long ones.

use super::sequence::Sequence;

/// What a sequence needs from a step, in the order steps serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Need {
    /// Its next token.
    Decode,
    /// The rest of a prompt of at most `short_prompt_tokens`.
    ShortPrompt,
    LongPrompt,
}

impl Need {
    pub(super) fn of(seq: &Sequence, short: usize) -> Need {
        match seq.tokens.len() - seq.computed {
            0 | 1 => Need::Decode,
            left if left <= short => Need::ShortPrompt,
            _ => Need::LongPrompt,
        }
    }
}

/// The tokens one step runs: every decoding sequence's next token, then prompt chunks.
///
/// Steps stay short while several prompts wait, so that each one's first token comes when
/// its own tokens are done, and so that a request arriving meanwhile waits less for the
/// step under way. Short prompts go first, at most `short` of their tokens a step: 16
/// requests after a cached system prompt arrive with ~12 tokens each, and one 256-token step
/// answered them all at once (~200 ms) where 32-token steps answer them about three at a
/// time (~40 ms each). Longer prompts share the prompt room, `1 / k` of it a step for `k`
/// waiting prompts but at least `short` tokens, and only `short` when short prompts are in
/// the step, so they are neither starved nor in the way; alone, a prompt keeps whole steps
/// (64-token chunks made a 1500-token prompt on Qwen2.5 0.5B 10 % slower).
pub(super) struct StepBudget {
    /// Decoding tokens left: every decoding sequence keeps its token, however many prompts
    /// wait (up to the whole step).
    pub(super) decoding: usize,
    /// Prompt tokens: the step's tokens less the decoding ones.
    pub(super) room: usize,
    pub(super) short: usize,
    /// What long prompts may take when no short one is in the step.
    pub(super) long: usize,
    pub(super) short_planned: usize,
    pub(super) long_planned: usize,
}

impl StepBudget {
    pub(super) fn new(
        max_batch_tokens: usize,
        decoding: usize,
        prompts: usize,
        short: usize,
    ) -> Self {
        let decoding = decoding.min(max_batch_tokens);
        let room = max_batch_tokens - decoding;
        Self {
            decoding,
            room,
            short,
            long: (room / prompts.max(1)).clamp(short.min(room), room),
            short_planned: 0,
            long_planned: 0,
        }
    }

    /// Tokens a sequence that needs `need` and has `left` tokens to compute may run;
    /// sequences come in the order of their needs.
    pub(super) fn grant(&self, need: Need, left: usize) -> usize {
        let room = self.room - self.short_planned - self.long_planned;
        let cap = match need {
            Need::Decode => self.decoding,
            Need::ShortPrompt => (self.short - self.short_planned).min(room),
            Need::LongPrompt if self.short_planned > 0 => {
                self.short.saturating_sub(self.long_planned).min(room)
            }
            Need::LongPrompt => (self.long - self.long_planned).min(room),
        };
        left.min(cap)
    }

    pub(super) fn spend(&mut self, need: Need, n: usize) {
        match need {
            Need::Decode => self.decoding -= n,
            Need::ShortPrompt => self.short_planned += n,
            Need::LongPrompt => self.long_planned += n,
        }
    }

    pub(super) fn spent(&self) -> bool {
        self.decoding == 0 && self.short_planned + self.long_planned == self.room
    }
}

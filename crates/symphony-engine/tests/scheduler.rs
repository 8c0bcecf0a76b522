//! The continuous-batching scheduler on the real SmolLM2: sequences batched together, taken
//! from the prefix cache, or preempted and recomputed produce exactly the tokens they
//! produce alone in a [`Session`]; closed listeners stop their requests.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use symphony_engine::sampling::SamplingParams;
use symphony_engine::{
    raw_prompt, Event, EventSink, FinishReason, GenerationParams, Request, Scheduler,
    SchedulerConfig, Session,
};
use symphony_models::{Logits, Model, KV_BLOCK_SIZE};

fn smollm2() -> Arc<Model> {
    Arc::new(Model::load(common::SMOLLM2.path()).expect("SmolLM2 loads"))
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop: Vec::new(),
        ignore_eos: false,
        constraint: None,
    }
}

const PROMPTS: [&str; 4] = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "Water boils at",
];

/// Each prompt's greedy continuation, one sequence at a time.
fn alone(model: &Model, prompts: &[Vec<u32>], max_tokens: usize) -> Vec<Vec<u32>> {
    prompts
        .iter()
        .map(|prompt| {
            let mut session = Session::new(model);
            session
                .generate(prompt, &greedy(max_tokens), None, |_| {})
                .unwrap()
                .tokens
        })
        .collect()
}

/// How many leading tokens `a` and `b` have in common.
fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Submits every prompt at once and collects the outputs in order.
fn together(scheduler: &Scheduler, prompts: &[Vec<u32>], max_tokens: usize) -> Vec<Vec<u32>> {
    let receivers: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (tx, rx) = mpsc::channel();
            scheduler
                .submit(Request::new(p.clone(), greedy(max_tokens)), tx)
                .unwrap();
            rx
        })
        .collect();
    receivers
        .into_iter()
        .map(|rx| {
            let mut tokens = Vec::new();
            for event in rx {
                match event {
                    Event::Delta { token, .. } => tokens.extend(token),
                    Event::Done(_) => break,
                    Event::Error(e) => panic!("{e}"),
                    Event::PromptLogprobs(_) => {}
                }
            }
            tokens
        })
        .collect()
}

#[test]
fn batched_sequences_match_sequences_run_alone() {
    let model = smollm2();
    let scheduler = Scheduler::spawn(
        model.clone(),
        SchedulerConfig {
            // Small chunks: prompts are prefilled over several steps beside decoding ones.
            max_batch_tokens: 8,
            ..SchedulerConfig::default()
        },
    )
    .unwrap();
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| raw_prompt(&model, p)).collect();
    assert_eq!(
        together(&scheduler, &prompts, 24),
        alone(&model, &prompts, 24)
    );
    assert!(scheduler.stats().steps.load(Ordering::Relaxed) < 4 * 24);
}

#[test]
fn preempted_sequences_are_recomputed_without_losing_tokens() {
    let model = smollm2();
    // Room for about two of the four sequences at a time.
    let scheduler = Scheduler::spawn(
        model.clone(),
        SchedulerConfig {
            kv_blocks: 9,
            max_batch_tokens: 64,
            ..SchedulerConfig::default()
        },
    )
    .unwrap();
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| raw_prompt(&model, p)).collect();
    assert_eq!(
        together(&scheduler, &prompts, 40),
        alone(&model, &prompts, 40)
    );
    assert!(scheduler.stats().preemptions.load(Ordering::Relaxed) > 0);
}

/// Two questions after the same system prompt (which ends inside a KV block).
fn after_system_prompt(model: &Model) -> [Vec<u32>; 2] {
    let system =
        "You are a helpful assistant. Answer briefly and precisely, and never make up facts. "
            .repeat(3);
    ["What is the capital of Italy?", "Name a prime number."]
        .map(|q| raw_prompt(model, &format!("{system}{q}")))
}

#[test]
fn a_shared_prefix_is_computed_once() {
    let model = smollm2();
    let prompts = after_system_prompt(&model);
    let scheduler = Scheduler::spawn(model.clone(), SchedulerConfig::default()).unwrap();
    let first = scheduler
        .generate(Request::new(prompts[0].clone(), greedy(8)))
        .unwrap();
    assert_eq!(first.completion.unwrap().cached_tokens, 0);
    let second = scheduler
        .generate(Request::new(prompts[1].clone(), greedy(8)))
        .unwrap();
    // Every token the prompts share, to the token: the full blocks, and the start of the
    // block where they part, copied.
    let shared = shared_prefix(&prompts[0], &prompts[1]);
    assert!(
        shared >= 48 && !shared.is_multiple_of(KV_BLOCK_SIZE),
        "{shared}"
    );
    let cached = second.completion.unwrap().cached_tokens;
    assert_eq!(cached, shared);
    // The same tokens as computing everything.
    let mut session = Session::new(&model);
    let fresh = session
        .generate(&prompts[1], &greedy(8), None, |_| {})
        .unwrap();
    assert_eq!(second.tokens, fresh.tokens);
    // The same request again takes every position but its last token's (computed, for
    // its logits).
    let again = scheduler
        .generate(Request::new(prompts[1].clone(), greedy(8)))
        .unwrap();
    assert_eq!(
        again.completion.unwrap().cached_tokens,
        prompts[1].len() - 1
    );
    assert_eq!(again.tokens, fresh.tokens);
}

#[test]
fn a_shared_prefix_outlives_the_tails_of_finished_sequences() {
    let model = smollm2();
    let [first, second] = after_system_prompt(&model);
    let other = raw_prompt(&model, &format!("{} ", PROMPTS[2]).repeat(5));
    let prefix_blocks = shared_prefix(&first, &second) / KV_BLOCK_SIZE;
    let generated = 8;
    let first_blocks = (first.len() + generated).div_ceil(KV_BLOCK_SIZE);
    let other_blocks = (other.len() + generated).div_ceil(KV_BLOCK_SIZE);
    // Beyond the shared full blocks, the first request holds at least two more.
    assert!(
        prefix_blocks >= 2 && first_blocks >= prefix_blocks + 2,
        "{prefix_blocks} shared blocks of {first_blocks}"
    );
    // Room for both but two blocks: the other request evicts two of the first's.
    let scheduler = Scheduler::spawn(
        model.clone(),
        SchedulerConfig {
            kv_blocks: first_blocks + other_blocks - 2,
            ..SchedulerConfig::default()
        },
    )
    .unwrap();
    for prompt in [&first, &other] {
        scheduler
            .generate(Request::new(prompt.clone(), greedy(generated)))
            .unwrap();
    }
    // Its last two went, not its first: the prefix is still there.
    let again = scheduler
        .generate(Request::new(second.clone(), greedy(generated)))
        .unwrap();
    let cached = again.completion.unwrap().cached_tokens;
    assert!(
        cached >= prefix_blocks * KV_BLOCK_SIZE,
        "{cached} tokens cached of {prefix_blocks} shared blocks"
    );
    assert_eq!(again.tokens, alone(&model, &[second], generated)[0]);
}

#[test]
fn prompts_arriving_together_compute_their_shared_prefix_once() {
    let model = smollm2();
    let system = "You are a careful assistant. Keep every answer short, check each fact twice, \
                  and say so when you do not know. "
        .repeat(3);
    let prompts: Vec<Vec<u32>> = [
        "What is the capital of Italy?",
        "Name a prime number.",
        "Why is the sky blue?",
    ]
    .iter()
    .map(|q| raw_prompt(&model, &format!("{system}{q}")))
    .collect();
    let shared = shared_prefix(&prompts[0], &prompts[1]);
    assert!(shared >= 64, "the prompts share {shared} tokens");
    let scheduler = Scheduler::spawn(model.clone(), SchedulerConfig::default()).unwrap();
    let outputs = together(&scheduler, &prompts, 6);
    // Only the first prompt computes the shared tokens; the others wait a step for its
    // blocks (and copy the one where they part from it).
    let total: usize = prompts.iter().map(Vec::len).sum();
    let computed = scheduler.stats().prompt_tokens.load(Ordering::Relaxed) as usize;
    assert_eq!(computed, total - 2 * shared);
    // With the same tokens as each computed alone.
    assert_eq!(outputs, alone(&model, &prompts, 6));
}

/// A listener that forwards its request's events, tagged, with the number of steps the
/// scheduler had run when each came.
struct Tagged {
    tag: usize,
    scheduler: Scheduler,
    tx: mpsc::Sender<(usize, u64, Event)>,
}

impl EventSink for Tagged {
    fn send(&mut self, event: Event) -> bool {
        let step = self.scheduler.stats().steps.load(Ordering::Relaxed);
        self.tx.send((self.tag, step, event)).is_ok()
    }
}

#[test]
fn short_prompts_go_first_a_few_per_step() {
    let model = smollm2();
    let config = SchedulerConfig {
        max_batch_tokens: 64,
        short_prompt_tokens: 8,
        ..SchedulerConfig::default()
    };
    let long = raw_prompt(&model, &format!("{} ", PROMPTS[2]).repeat(16));
    let shorts: Vec<Vec<u32>> = [PROMPTS[0], PROMPTS[1], PROMPTS[3]]
        .iter()
        .map(|p| raw_prompt(&model, p))
        .collect();
    let short_tokens: usize = shorts.iter().map(Vec::len).sum();
    let lengths: Vec<usize> = shorts.iter().map(Vec::len).collect();
    assert!(
        long.len() > 4 * 64,
        "the long prompt holds {} tokens",
        long.len()
    );
    assert!(
        lengths.iter().all(|&n| n <= 8),
        "short prompts of {lengths:?} tokens"
    );
    assert!(
        short_tokens > 8,
        "the short prompts hold {short_tokens} tokens"
    );
    // Alone, a long prompt runs in steps of the whole budget.
    let solo = Scheduler::spawn(model.clone(), config.clone()).unwrap();
    together(&solo, std::slice::from_ref(&long), 1);
    let steps = solo.stats().steps.load(Ordering::Relaxed) as usize;
    assert_eq!(steps, long.len().div_ceil(64));
    // Short prompts sent just after it are answered before it, over more than one step
    // (they hold more tokens than a step gives short prompts).
    let scheduler = Scheduler::spawn(model.clone(), config).unwrap();
    let (tx, rx) = mpsc::channel();
    let prompts: Vec<Vec<u32>> = std::iter::once(long).chain(shorts).collect();
    for (tag, prompt) in prompts.iter().enumerate() {
        let sink = Tagged {
            tag,
            scheduler: scheduler.clone(),
            tx: tx.clone(),
        };
        scheduler
            .submit(Request::new(prompt.clone(), greedy(4)), sink)
            .unwrap();
    }
    drop(tx);
    let mut first_step = vec![None; prompts.len()];
    let mut outputs = vec![Vec::new(); prompts.len()];
    for (tag, step, event) in rx {
        match event {
            Event::Delta { token, .. } => {
                first_step[tag].get_or_insert(step);
                outputs[tag].extend(token);
            }
            Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    let first_step: Vec<u64> = first_step.into_iter().map(Option::unwrap).collect();
    assert!(
        first_step[1..].iter().all(|&s| s < first_step[0]),
        "first tokens at steps {first_step:?}"
    );
    let (earliest, latest) = (first_step[1..].iter().min(), first_step[1..].iter().max());
    assert!(earliest < latest, "first tokens at steps {first_step:?}");
    assert_eq!(outputs, alone(&model, &prompts, 4));
}

/// A listener that hangs up after `limit` deltas.
struct HangUp {
    deltas: Arc<AtomicUsize>,
    limit: usize,
}

impl EventSink for HangUp {
    fn send(&mut self, event: Event) -> bool {
        if matches!(event, Event::Delta { .. }) {
            return self.deltas.fetch_add(1, Ordering::SeqCst) + 1 < self.limit;
        }
        true
    }
}

#[test]
fn a_closed_listener_stops_its_request() {
    let model = smollm2();
    let scheduler = Scheduler::spawn(model.clone(), SchedulerConfig::default()).unwrap();
    let deltas = Arc::new(AtomicUsize::new(0));
    let sink = HangUp {
        deltas: deltas.clone(),
        limit: 3,
    };
    let prompt = raw_prompt(&model, PROMPTS[2]);
    scheduler
        .submit(Request::new(prompt.clone(), greedy(200)), sink)
        .unwrap();
    // A request behind it runs to the end, and by then the first has long stopped.
    let out = scheduler
        .generate(Request::new(prompt, greedy(20)))
        .unwrap();
    assert_eq!(out.completion.unwrap().finish_reason, FinishReason::Length);
    assert_eq!(deltas.load(Ordering::SeqCst), 3);
    assert!(scheduler.stats().generated_tokens.load(Ordering::Relaxed) < 30);
}

#[test]
fn prompt_and_token_logprobs_follow_the_model() {
    let model = smollm2();
    let prompt = raw_prompt(&model, PROMPTS[0]);
    let scheduler = Scheduler::spawn(model.clone(), SchedulerConfig::default()).unwrap();
    let out = scheduler
        .generate(Request {
            logprobs: Some(3),
            prompt_logprobs: true,
            ..Request::new(prompt.clone(), greedy(4))
        })
        .unwrap();
    // Log-softmax computed here from a plain forward pass over prompt + output.
    let all: Vec<u32> = prompt.iter().chain(&out.tokens).copied().collect();
    let mut cache = model.new_cache();
    let logits = model
        .forward(&all, &mut cache, Logits::All)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let log_softmax = |row: &[f32], id: u32| {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
        (row[id as usize] as f64 - max - z.ln()) as f32
    };
    assert_eq!(out.prompt_logprobs.len(), prompt.len());
    assert!(out.prompt_logprobs[0].is_none());
    for (i, lp) in out.prompt_logprobs.iter().enumerate().skip(1) {
        let lp = lp.as_ref().unwrap();
        assert_eq!(lp.token, prompt[i]);
        assert!((lp.logprob - log_softmax(&logits[i - 1], prompt[i])).abs() < 1e-4);
    }
    assert_eq!(out.logprobs.len(), out.tokens.len());
    for (k, lp) in out.logprobs.iter().enumerate() {
        let row = &logits[prompt.len() - 1 + k];
        assert!((lp.logprob - log_softmax(row, out.tokens[k])).abs() < 1e-4);
        // Greedy: the chosen token is the most likely, listed first of the three.
        assert_eq!(lp.top.len(), 3);
        assert_eq!(lp.top[0].0, out.tokens[k]);
        assert!(lp.top[0].1 >= lp.top[1].1 && lp.top[1].1 >= lp.top[2].1);
    }
}

#[test]
fn impossible_requests_are_refused_at_submission() {
    let model = smollm2();
    let scheduler = Scheduler::spawn(
        model.clone(),
        SchedulerConfig {
            kv_blocks: 2,
            ..SchedulerConfig::default()
        },
    )
    .unwrap();
    let (tx, _rx) = mpsc::channel();
    let empty = scheduler.submit(Request::new(vec![], greedy(4)), tx.clone());
    assert!(empty.unwrap_err().to_string().contains("empty"));
    let long = scheduler.submit(Request::new(vec![1; 40], greedy(4)), tx.clone());
    assert!(long.unwrap_err().to_string().contains("KV blocks"));
    let unknown = scheduler.submit(Request::new(vec![u32::MAX], greedy(4)), tx);
    assert!(unknown.is_err());
}

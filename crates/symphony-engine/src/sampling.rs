//! Turning logits into the next token: repetition penalty, top-k, top-p, min-p, temperature,
//! then a draw from a seeded generator (or the argmax when the temperature is 0, or so close
//! to 0 that it means the same: see [`GREEDY_BELOW`]).
//!
//! The order is llama.cpp's default chain, so the same settings mean the same thing.

use symphony_models::TokenId;

/// Temperatures below this are greedy. Dividing a logit by a tiny temperature overflows f32
/// (at 1e-40 any logit above ~1e-2 becomes infinite, and the softmax of infinities is NaN:
/// the draw then returns an arbitrary token). Long before that the draw is already greedy in
/// all but name: at 1e-4 a token 0.075 below the best logit has a weight of e^-745, which is
/// 0 in f64, and logits closer than that are within the rounding noise of quantized weights.
pub const GREEDY_BELOW: f32 = 1e-4;

/// Sampling settings, validated by [`SamplingParams::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 (or anything below [`GREEDY_BELOW`]) means greedy (argmax).
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables. Divides positive logits (multiplies negative ones) of recent tokens.
    pub repetition_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Whether the temperature leaves no randomness: the argmax is the answer.
    pub fn is_greedy(&self) -> bool {
        self.temperature < GREEDY_BELOW
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        Ok(())
    }
}

/// xoshiro256** seeded through SplitMix64: small, fast, and stable across releases, so a
/// seed gives the same text on every version of Symphony (unlike a library's `StdRng`).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = Rng::new(params.seed);
        Self { params, rng }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` given the tokens so far (for the penalty).
    pub fn sample(&mut self, logits: &mut [f32], history: &[TokenId]) -> TokenId {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            let start = history.len().saturating_sub(p.repeat_last_n);
            let mut seen = history[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &id in &seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.is_greedy() {
            return argmax(logits);
        }
        let mut candidates = top_candidates(logits, p.top_k);
        // Softmax at temperature 1 for top-p and min-p, as llama.cpp's chain does.
        let probs = softmax(candidates.iter().map(|c| c.1));
        if p.top_p < 1.0 {
            let mut cumulative = 0.0;
            let mut keep = candidates.len();
            for (i, prob) in probs.iter().enumerate() {
                cumulative += prob;
                if cumulative >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            candidates.truncate(keep);
        }
        if p.min_p > 0.0 {
            let threshold = probs[0] * p.min_p as f64;
            let keep = probs
                .iter()
                .take(candidates.len())
                .take_while(|&&q| q >= threshold)
                .count()
                .max(1);
            candidates.truncate(keep);
        }
        let probs = softmax(candidates.iter().map(|c| c.1 / p.temperature));
        let mut r = self.rng.next_f64();
        for (c, prob) in candidates.iter().zip(&probs) {
            if r < *prob {
                return c.0;
            }
            r -= prob;
        }
        candidates.last().map_or(0, |c| c.0)
    }
}

/// The candidates by logit, highest first, ties to the lower id; the first `top_k` only
/// (all when 0). Tokens at −∞ (masked by a grammar) have no chance and are left out.
fn top_candidates(logits: &[f32], top_k: usize) -> Vec<(TokenId, f32)> {
    let mut candidates: Vec<(TokenId, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_nan() && **l != f32::NEG_INFINITY)
        .map(|(i, &l)| (i as TokenId, l))
        .collect();
    let order = |a: &(TokenId, f32), b: &(TokenId, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if top_k > 0 && top_k < candidates.len() {
        // Only the first k are kept: split around the k-th in linear time and sort those
        // alone. The order is total, so these are the same k in the same order as a sort
        // of all; sorting a 150k-token vocabulary was a third of a sampled decode step.
        candidates.select_nth_unstable_by(top_k - 1, order);
        candidates.truncate(top_k);
    }
    candidates.sort_by(order);
    candidates
}

/// Index of the largest finite logit, if any is finite (the lowest index wins ties).
pub fn argmax_finite(logits: &[f32]) -> Option<TokenId> {
    let best = argmax(logits);
    logits[best as usize].is_finite().then_some(best)
}

/// Index of the largest logit; the lowest index wins ties, as in llama.cpp.
pub fn argmax(logits: &[f32]) -> TokenId {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as TokenId
}

fn softmax(logits: impl Iterator<Item = f32> + Clone) -> Vec<f64> {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.map(|l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.5, -1.0, 0.5, 2.9]
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&mut logits(), &[]), 1);
        assert_eq!(argmax(&[0.0, 5.0, 5.0]), 1, "ties go to the lowest id");
    }

    #[test]
    fn a_vanishing_temperature_is_greedy() {
        // Logits large enough that logit / 1e-40 overflows f32.
        let big = || vec![10.0, 30.0, 25.0, -10.0, 5.0, 29.0];
        for temperature in [1e-40, f32::MIN_POSITIVE, 1e-30, 1e-6, GREEDY_BELOW / 2.0] {
            for seed in 0..20 {
                let mut s = Sampler::new(SamplingParams {
                    temperature,
                    top_k: 0,
                    top_p: 1.0,
                    min_p: 0.0,
                    seed,
                    ..SamplingParams::default()
                });
                assert_eq!(s.sample(&mut big(), &[]), 1, "temperature {temperature}");
                assert_eq!(s.sample(&mut logits(), &[]), 1, "temperature {temperature}");
            }
        }
    }

    #[test]
    fn same_seed_same_tokens_and_different_seed_differs() {
        let params = SamplingParams {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplingParams::default()
        };
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed,
                ..params.clone()
            });
            (0..200)
                .map(|_| s.sample(&mut logits(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn the_top_k_are_those_a_full_sort_keeps_in_its_order() {
        // A vocabulary with many ties and masked entries, as a grammar leaves it.
        let mut rng = Rng::new(7);
        let logits: Vec<f32> = (0..20_000)
            .map(|i| match i % 7 {
                0 => f32::NEG_INFINITY,
                _ => (rng.next_f64() * 64.0).floor() as f32 / 8.0,
            })
            .collect();
        let mut all: Vec<(TokenId, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as TokenId, l))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for k in [1, 2, 40, 1000, all.len(), all.len() + 5] {
            let want = &all[..k.min(all.len())];
            assert_eq!(top_candidates(&logits, k), want, "k = {k}");
        }
        assert_eq!(top_candidates(&logits, 0), all);
    }

    #[test]
    fn top_k_one_is_greedy_and_samples_stay_in_top_k() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 5.0,
            top_k: 1,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplingParams::default()
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&mut logits(), &[]), 1);
        }
        let mut s = Sampler::new(SamplingParams {
            temperature: 5.0,
            top_k: 3,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplingParams::default()
        });
        for _ in 0..300 {
            assert!([1, 5, 2].contains(&s.sample(&mut logits(), &[])));
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities at T=1: token 1 dominates. top_p small keeps only it.
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.01,
            min_p: 0.0,
            ..SamplingParams::default()
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&mut logits(), &[]), 1);
        }
        // min_p 0.7: only tokens with p >= 0.7 × the top one survive: id 5 (e^-0.1) but not id 2 (e^-0.5).
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.7,
            ..SamplingParams::default()
        });
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            seen.insert(s.sample(&mut logits(), &[]));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 5]);
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        });
        // Token 1 (3.0 → 1.5) loses to token 5 (2.9).
        assert_eq!(s.sample(&mut logits(), &[1]), 5);
    }

    #[test]
    fn distribution_follows_temperature() {
        // Two tokens with logits 0 and ln 3: at T=1 the second is drawn ~75% of the time.
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 3,
            ..SamplingParams::default()
        });
        let n = 20_000;
        let hits = (0..n)
            .filter(|_| s.sample(&mut [0.0, 3f32.ln()], &[]) == 1)
            .count();
        let freq = hits as f64 / n as f64;
        assert!((freq - 0.75).abs() < 0.02, "frequency {freq}");
    }

    #[test]
    fn invalid_params_are_rejected() {
        assert!(SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        }
        .validate()
        .is_err());
        assert!(SamplingParams {
            top_p: 0.0,
            ..SamplingParams::default()
        }
        .validate()
        .is_err());
        assert!(SamplingParams {
            min_p: 2.0,
            ..SamplingParams::default()
        }
        .validate()
        .is_err());
        assert!(SamplingParams::default().validate().is_ok());
    }
}

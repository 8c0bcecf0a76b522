//! A team against one agent (`symphony bench team`): generated arithmetic word problems
//! with exact answers, answered by one agent, by self-consistency and by a debate, each
//! method held to the same token budget per problem; accuracy with a 95 % Wilson interval
//! and the tokens each method spent.

use serde::Serialize;
use symphony_agents::ChatModel;

use crate::reasoning::{self, debate, normalize, self_consistency, Debater, ReasoningError};

/// A word problem and its exact answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    pub question: String,
    pub answer: i64,
}

const NAMES: [&str; 8] = [
    "Ada", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hugo",
];

/// `n` problems from seed `seed`: the same seed gives the same problems on every machine.
/// Eight templates, one or two operations each, every answer a whole number.
pub fn problems(n: usize, seed: u64) -> Vec<Problem> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |lo: i64, hi: i64| -> i64 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        lo + (state % (hi - lo + 1) as u64) as i64
    };
    (0..n)
        .map(|i| {
            let name = NAMES[next(0, NAMES.len() as i64 - 1) as usize];
            let (a, b, c, d) = (next(2, 30), next(2, 12), next(2, 12), next(2, 9));
            let (question, answer) = match i % 8 {
                0 => (
                    format!("{name} has {a} apples and buys {b} bags of {c} apples each. How many apples does {name} have now?"),
                    a + b * c,
                ),
                1 => (
                    format!("A train travels {a} km each hour for {b} hours, then {c} km more. How many km does it travel in all?"),
                    a * b + c,
                ),
                2 => {
                    let start = b + c + a * 3;
                    (
                        format!("{name} had {start} dollars, spent {b} dollars on lunch and {c} dollars on a book. How many dollars are left?"),
                        start - b - c,
                    )
                }
                3 => {
                    let given = next(1, a * b - 1);
                    (
                        format!("There are {a} boxes with {b} pencils in each. {given} pencils are given away. How many pencils remain?"),
                        a * b - given,
                    )
                }
                4 => (
                    format!("A class of {} students splits into groups of {b}. How many groups are there?", b * c),
                    c,
                ),
                5 => (
                    format!("{name} reads {b} pages a day for {c} days, then {a} pages on the last day. How many pages does {name} read in all?"),
                    b * c + a,
                ),
                6 => (
                    format!("Pens cost {b} dollars each and notebooks {c} dollars each. How many dollars do {d} pens and {a} notebooks cost?"),
                    b * d + c * a,
                ),
                _ => {
                    let each = next(2, 9);
                    let eaten = next(1, 5);
                    let total = each * d + eaten;
                    (
                        format!("{name} bakes {total} cookies, eats {eaten}, and shares the rest equally among {d} friends. How many cookies does each friend get?"),
                        each,
                    )
                }
            };
            Problem { question, answer }
        })
        .collect()
}

/// Whether `given` is the problem's answer: as [`normalize`] compares answers, or, as
/// GSM8K is scored, by the last number in it (`14 apples`, `x = 14`).
pub fn is_correct(given: &str, problem: &Problem) -> bool {
    let expected = problem.answer.to_string();
    if normalize(given) == expected {
        return true;
    }
    let cleaned: String = given.chars().filter(|c| *c != ',').collect();
    let last_number = cleaned
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .rfind(|t| t.chars().any(|c| c.is_ascii_digit()));
    last_number.is_some_and(|n| normalize(n.trim_matches('.')) == expected)
}

/// The methods compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// One agent, one answer.
    Single,
    /// One model sampled up to five times, the majority.
    SelfConsistency,
    /// Two agents with different personas, up to two rounds, a confidence-weighted vote.
    Debate,
}

impl Method {
    pub fn parse(name: &str) -> Option<Method> {
        match name {
            "single" => Some(Self::Single),
            "self-consistency" | "sc" => Some(Self::SelfConsistency),
            "debate" => Some(Self::Debate),
            _ => None,
        }
    }
}

/// One method's figures.
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    pub method: Method,
    pub problems: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// The 95 % Wilson score interval of the accuracy.
    pub ci95: (f64, f64),
    pub mean_tokens: f64,
}

/// The 95 % Wilson score interval for `k` successes in `n` trials.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n, z) = (k as f64, n as f64, 1.959_964);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The sessions a method runs on: a greedy one (single, first debater), a sampling one
/// (self-consistency), and a second greedy one (the other debater).
pub struct Sessions<'a> {
    pub greedy: &'a mut dyn ChatModel,
    pub sampled: &'a mut dyn ChatModel,
    pub second: &'a mut dyn ChatModel,
}

/// One problem by `method` within `budget` tokens: the answer given and the tokens spent.
pub fn solve(
    method: Method,
    sessions: &mut Sessions<'_>,
    problem: &Problem,
    budget: usize,
    seed: u64,
) -> Result<(String, usize), ReasoningError> {
    match method {
        Method::Single => {
            let messages = reasoning::question_messages("", &problem.question);
            let a = reasoning::ask(sessions.greedy, "single", &messages)?;
            Ok((a.answer, a.tokens))
        }
        Method::SelfConsistency => {
            let found = self_consistency(sessions.sampled, &problem.question, 5, seed, budget)?;
            let answer = found.verdict.map(|v| v.answer).unwrap_or_default();
            Ok((answer, found.tokens))
        }
        Method::Debate => {
            let mut debaters = [
                Debater {
                    name: "checker".into(),
                    persona: "You solve word problems carefully and check each operation.".into(),
                    model: &mut *sessions.greedy,
                },
                Debater {
                    name: "teacher".into(),
                    persona: "You are a maths teacher who writes out every step.".into(),
                    model: &mut *sessions.second,
                },
            ];
            let argued = debate(&mut debaters, &problem.question, 2, budget)?;
            let answer = argued.verdict.map(|v| v.answer).unwrap_or_default();
            Ok((answer, argued.tokens))
        }
    }
}

/// Runs `method` over `problems`, calling `on_problem(index, correct, tokens)` after each.
pub fn evaluate(
    method: Method,
    sessions: &mut Sessions<'_>,
    problems: &[Problem],
    budget: usize,
    on_problem: &mut dyn FnMut(usize, bool, usize),
) -> Result<MethodReport, ReasoningError> {
    let (mut correct, mut tokens) = (0, 0);
    for (i, problem) in problems.iter().enumerate() {
        let (answer, spent) = solve(method, sessions, problem, budget, 1000 + i as u64)?;
        let right = is_correct(&answer, problem);
        correct += usize::from(right);
        tokens += spent;
        on_problem(i, right, spent);
    }
    let n = problems.len();
    Ok(MethodReport {
        method,
        problems: n,
        correct,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        ci95: wilson(correct, n),
        mean_tokens: if n == 0 {
            0.0
        } else {
            tokens as f64 / n as f64
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_fixed_by_their_seed_and_exact() {
        let a = problems(200, 1);
        assert_eq!(a, problems(200, 1));
        assert_ne!(a, problems(200, 2));
        assert!(a.iter().all(|p| p.answer > 0), "{a:?}");
        // Every template appears, and the cookie problems divide exactly.
        assert!(a[7].question.contains("cookies"));
        let distinct: std::collections::HashSet<_> = a.iter().map(|p| &p.question).collect();
        assert!(distinct.len() > 190);
        assert!(is_correct(
            "$42.00",
            &Problem {
                question: String::new(),
                answer: 42
            }
        ));
    }

    #[test]
    fn the_wilson_interval_matches_its_formula() {
        let (lo, hi) = wilson(50, 100);
        assert!(
            (lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 10);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.2775).abs() < 1e-3);
    }
}

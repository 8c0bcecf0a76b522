//! A team against one agent (`symphony bench team`): generated arithmetic word problems
//! with exact answers, answered by one agent, by self-consistency and by a debate, each
//! method held to the same token budget per problem; accuracy with a 95 % Wilson interval
//! and the tokens each method spent.

use serde::Serialize;
use serde_json::json;
use symphony_agents::ChatModel;
use symphony_types::ChatMessage;

use crate::acl::AgentId;
use crate::delegation::{score, Bid, TrackRecord};

use crate::reasoning::{
    self, debate, normalize, self_consistency, Answer, Debater, ReasoningError,
};

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
    /// Three contractors bid for each problem; the best bid (weighed by the track record)
    /// answers, the second best checks it by solving it too, the third breaks a tie. The
    /// record learns who agrees with the answer the team settles on.
    ContractNet,
}

impl Method {
    pub fn parse(name: &str) -> Option<Method> {
        match name {
            "single" => Some(Self::Single),
            "self-consistency" | "sc" => Some(Self::SelfConsistency),
            "debate" => Some(Self::Debate),
            "contract-net" => Some(Self::ContractNet),
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
    /// Contract-net only: who was awarded each problem, in order (the record shifting
    /// shows there), and the track record at the end.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub awards: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_record: Option<TrackRecord>,
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
/// (self-consistency), and a second greedy one (the other debater); the contract-net's
/// three contractors use all three. `record` is the contract-net's track record, kept
/// from problem to problem.
pub struct Sessions<'a> {
    pub greedy: &'a mut dyn ChatModel,
    pub sampled: &'a mut dyn ChatModel,
    pub second: &'a mut dyn ChatModel,
    pub record: TrackRecord,
    /// Contract-net: who was awarded each problem so far.
    pub awards: Vec<String>,
}

/// The contract-net's contractors: name and persona (the third samples).
const CONTRACTORS: [(&str, &str); 3] = [
    (
        "checker",
        "You solve word problems carefully and check each operation.",
    ),
    (
        "teacher",
        "You are a maths teacher who writes out every step.",
    ),
    (
        "quick",
        "You solve word problems by writing the one equation they need.",
    ),
];

/// One problem by contract-net: bids, an answer, a check, and a tie-break when needed.
fn contract_net(
    sessions: &mut Sessions<'_>,
    problem: &Problem,
    budget: usize,
) -> Result<(String, usize), ReasoningError> {
    let call = format!(
        "A problem is up for contract:\n{}\n\nBid for it: how likely you are to solve it \
         exactly (confidence, 0 to 1).",
        problem.question
    );
    let (scored, mut tokens) = bidding_round(sessions, &CONTRACTORS, KIND, &call)?;
    let mut answers: Vec<(usize, Answer)> = Vec::new();
    for &i in &scored {
        if tokens >= budget {
            break;
        }
        let (name, persona) = CONTRACTORS[i];
        let messages = reasoning::question_messages(persona, &problem.question);
        let answer = reasoning::ask(contractor(sessions, i), name, &messages)?;
        tokens += answer.tokens;
        answers.push((i, answer));
        // The winner's answer stands once someone else reached it too.
        if answers.len() >= 2 {
            let keys: Vec<String> = answers.iter().map(|(_, a)| a.key()).collect();
            if keys
                .iter()
                .any(|k| keys.iter().filter(|o| *o == k).count() >= 2)
            {
                break;
            }
        }
    }
    let Some(winner) = answers.first() else {
        return Ok((String::new(), tokens));
    };
    sessions.awards.push(CONTRACTORS[winner.0].0.to_string());
    // Settled by a majority when there is one, else the best bidder's answer.
    let settled = answers
        .iter()
        .map(|(_, a)| a.key())
        .find(|k| answers.iter().filter(|(_, a)| a.key() == *k).count() >= 2)
        .unwrap_or_else(|| winner.1.key());
    let final_answer = answers
        .iter()
        .find(|(_, a)| a.key() == settled)
        .map(|(_, a)| a.answer.clone())
        .unwrap_or_default();
    for (i, answer) in &answers {
        let agreed = answers.len() > 1 && answer.key() == settled;
        sessions
            .record
            .record(&AgentId::new(CONTRACTORS[*i].0), KIND, agreed);
    }
    Ok((final_answer, tokens))
}

/// The kind of task the contract-net's record is kept for.
const KIND: &str = "arithmetic";

/// Contractor `i`'s session: the greedy one, the second, then the sampling one.
pub(crate) fn contractor<'s>(sessions: &'s mut Sessions<'_>, i: usize) -> &'s mut dyn ChatModel {
    match i {
        0 => &mut *sessions.greedy,
        1 => &mut *sessions.second,
        _ => &mut *sessions.sampled,
    }
}

/// A contract-net's call: each contractor (`(name, persona)`, on [`contractor`]'s session)
/// bids its confidence in a structured turn, scored against the track record for `kind`.
/// The contractors' indices, best score first, and the tokens the bids cost.
pub(crate) fn bidding_round(
    sessions: &mut Sessions<'_>,
    contractors: &[(&str, &str)],
    kind: &str,
    call: &str,
) -> Result<(Vec<usize>, usize), ReasoningError> {
    let schema = json!({
        "type": "object",
        "properties": {"confidence": {"type": "number"}},
        "required": ["confidence"],
        "additionalProperties": false
    });
    let mut tokens = 0;
    let mut scored = Vec::new();
    for (i, (name, persona)) in contractors.iter().enumerate() {
        let messages = [ChatMessage::system(*persona), ChatMessage::user(call)];
        let turn = contractor(sessions, i).structured(&messages, &schema)?;
        tokens += turn.prompt_tokens + turn.completion_tokens;
        let confidence = serde_json::from_str::<serde_json::Value>(&turn.content)
            .ok()
            .and_then(|v| v.get("confidence").and_then(|c| c.as_f64()))
            .unwrap_or(0.0);
        let bid = Bid {
            cost: 0.0,
            confidence,
            load: 0,
        };
        scored.push((i, score(&sessions.record, kind, &AgentId::new(*name), &bid)));
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok((scored.into_iter().map(|(i, _)| i).collect(), tokens))
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
        Method::ContractNet => contract_net(sessions, problem, budget),
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
    evaluate_with(
        method, sessions, problems, budget, solve, is_correct, on_problem,
    )
}

/// How a task's problem is solved: by a method, on the sessions, within a budget, with a
/// seed; the answer and the tokens spent.
pub(crate) type Solver<P> =
    fn(Method, &mut Sessions<'_>, &P, usize, u64) -> Result<(String, usize), ReasoningError>;

/// Runs `method` over any task's `problems`: `solve` gives an answer and the tokens spent,
/// `judge` says whether the answer is right. The report counts both.
pub(crate) fn evaluate_with<P>(
    method: Method,
    sessions: &mut Sessions<'_>,
    problems: &[P],
    budget: usize,
    solve: Solver<P>,
    judge: fn(&str, &P) -> bool,
    on_problem: &mut dyn FnMut(usize, bool, usize),
) -> Result<MethodReport, ReasoningError> {
    let (mut correct, mut tokens) = (0, 0);
    for (i, problem) in problems.iter().enumerate() {
        let (answer, spent) = solve(method, sessions, problem, budget, 1000 + i as u64)?;
        let right = judge(&answer, problem);
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
        awards: std::mem::take(&mut sessions.awards),
        track_record: (method == Method::ContractNet).then(|| sessions.record.clone()),
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

    /// A contractor (a test double standing for a model): bids `confidence`, answers `answer`.
    struct Contractor {
        confidence: f64,
        answer: &'static str,
    }

    impl ChatModel for Contractor {
        fn turn(
            &mut self,
            messages: &[ChatMessage],
            _: &[symphony_types::ToolSpec],
            _: symphony_agents::CallMode,
        ) -> Result<symphony_agents::ModelTurn, symphony_agents::Error> {
            let content = if messages.last().unwrap().content.contains("Bid for it") {
                json!({"confidence": self.confidence}).to_string()
            } else {
                json!({"reasoning": "r", "answer": self.answer, "confidence": 0.9}).to_string()
            };
            Ok(symphony_agents::ModelTurn {
                content,
                calls: Vec::new(),
                prompt_tokens: 10,
                completion_tokens: 10,
            })
        }

        fn structured(
            &mut self,
            messages: &[ChatMessage],
            _: &serde_json::Value,
        ) -> Result<symphony_agents::ModelTurn, symphony_agents::Error> {
            self.turn(messages, &[], symphony_agents::CallMode::Answer)
        }
    }

    #[test]
    fn a_contract_net_checks_its_winner_and_learns_who_agrees() {
        let problem = Problem {
            question: "2 + 2?".into(),
            answer: 4,
        };
        // The confident checker is wrong; the others agree on the right answer.
        let mut checker = Contractor {
            confidence: 0.9,
            answer: "5",
        };
        let mut teacher = Contractor {
            confidence: 0.5,
            answer: "4",
        };
        let mut quick = Contractor {
            confidence: 0.4,
            answer: "4",
        };
        let mut sessions = Sessions {
            greedy: &mut checker,
            second: &mut teacher,
            sampled: &mut quick,
            record: TrackRecord::default(),
            awards: Vec::new(),
        };
        let (answer, tokens) =
            solve(Method::ContractNet, &mut sessions, &problem, 4000, 1).unwrap();
        assert_eq!(answer, "4", "the tie-break settles it");
        assert_eq!(tokens, 6 * 20, "three bids and three answers");
        let of = |name: &str| sessions.record.of(&AgentId::new(name), KIND);
        assert_eq!(
            (of("checker"), of("teacher"), of("quick")),
            ((0, 1), (1, 0), (1, 0))
        );
        // As the record grows the checker's confident bids stop winning (UCB1 still gives it
        // tries while its record is short): the teacher answers first, the quick one agrees,
        // and no tie-break is needed.
        for _ in 0..20 {
            solve(Method::ContractNet, &mut sessions, &problem, 4000, 1).unwrap();
        }
        let (answer, tokens) =
            solve(Method::ContractNet, &mut sessions, &problem, 4000, 1).unwrap();
        assert_eq!(answer, "4");
        assert_eq!(tokens, 5 * 20, "three bids and two answers");
        assert_eq!(sessions.awards.first().unwrap(), "checker");
        assert_eq!(sessions.awards.last().unwrap(), "teacher");
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

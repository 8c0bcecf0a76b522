//! A team against one agent (`symphony bench team`): generated arithmetic word problems
//! with exact answers, answered by one agent, by self-consistency and by a debate, each
//! method held to the same token budget per problem; accuracy with a 95 % Wilson interval
//! and the tokens each method spent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};

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
    /// record learns who agrees with the majority (and nothing when no two agree).
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
/// three contractors use all three. Problems solved side by side each have their own
/// sessions and share one [`Conductor`].
pub struct Sessions<'a> {
    pub greedy: &'a mut (dyn ChatModel + Send),
    pub sampled: &'a mut (dyn ChatModel + Send),
    pub second: &'a mut (dyn ChatModel + Send),
    pub conductor: &'a Mutex<Conductor>,
}

/// What the contract-net's conductor keeps from problem to problem: the track record it
/// awards by, and who was awarded each problem so far (in the order awarded).
#[derive(Clone, Debug, Default)]
pub struct Conductor {
    pub record: TrackRecord,
    pub awards: Vec<String>,
}

impl Sessions<'_> {
    pub(crate) fn conductor(&self) -> MutexGuard<'_, Conductor> {
        // A worker that panicked left nothing half-written: every update is one call.
        self.conductor.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    let mut conductor = sessions.conductor();
    conductor.awards.push(CONTRACTORS[winner.0].0.to_string());
    // Settled by a majority when there is one, else the best bidder's answer.
    let majority = answers
        .iter()
        .map(|(_, a)| a.key())
        .find(|k| answers.iter().filter(|(_, a)| a.key() == *k).count() >= 2);
    let settled = majority.clone().unwrap_or_else(|| winner.1.key());
    let final_answer = answers
        .iter()
        .find(|(_, a)| a.key() == settled)
        .map(|(_, a)| a.answer.clone())
        .unwrap_or_default();
    // Only agreement is evidence: with no two answers alike (or a lone answer, the budget
    // spent) nobody's record moves. Crediting the winner's lone answer taught the record
    // that confident bidders were right when nobody had checked them.
    if let Some(majority) = &majority {
        for (i, answer) in &answers {
            let agreed = answer.key() == *majority;
            conductor
                .record
                .record(&AgentId::new(CONTRACTORS[*i].0), KIND, agreed);
        }
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
        let score = score(
            &sessions.conductor().record,
            kind,
            &AgentId::new(*name),
            &bid,
        );
        scored.push((i, score));
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

/// Runs `method` over `problems`, calling `on_problem(index, correct, tokens)` after each;
/// one worker per [`Sessions`] in `workers`, each taking the next problem left.
pub fn evaluate(
    method: Method,
    workers: &mut [Sessions<'_>],
    problems: &[Problem],
    budget: usize,
    on_problem: &mut dyn FnMut(usize, bool, usize),
) -> Result<MethodReport, ReasoningError> {
    evaluate_with(
        method, workers, problems, budget, solve, is_correct, on_problem,
    )
}

/// How a task's problem is solved: by a method, on the sessions, within a budget, with a
/// seed; the answer and the tokens spent.
pub(crate) type Solver<P> =
    fn(Method, &mut Sessions<'_>, &P, usize, u64) -> Result<(String, usize), ReasoningError>;

/// Runs `method` over any task's `problems`: `solve` gives an answer and the tokens spent,
/// `judge` says whether the answer is right. The report counts both.
///
/// One thread per worker, each on its own sessions, takes the next problem left, so that as
/// many problems are in flight as there are workers (on a shared scheduler their turns
/// decode in the same batched steps). Problem `i` is solved with seed `1000 + i` whichever
/// worker takes it; `on_problem` runs on the calling thread, in the order problems finish.
/// The first error stops the workers and is returned.
pub(crate) fn evaluate_with<P: Sync>(
    method: Method,
    workers: &mut [Sessions<'_>],
    problems: &[P],
    budget: usize,
    solve: Solver<P>,
    judge: fn(&str, &P) -> bool,
    on_problem: &mut dyn FnMut(usize, bool, usize),
) -> Result<MethodReport, ReasoningError> {
    let next = AtomicUsize::new(0);
    let (mut correct, mut tokens, mut failure) = (0, 0, None);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        for sessions in workers.iter_mut() {
            let (tx, next) = (tx.clone(), &next);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(problem) = problems.get(i) else {
                    break;
                };
                let outcome = solve(method, sessions, problem, budget, 1000 + i as u64)
                    .map(|(answer, spent)| (judge(&answer, problem), spent));
                let failed = outcome.is_err();
                if tx.send((i, outcome)).is_err() || failed {
                    next.store(problems.len(), Ordering::Relaxed);
                    break;
                }
            });
        }
        drop(tx);
        for (i, outcome) in rx {
            match outcome {
                Ok((right, spent)) => {
                    correct += usize::from(right);
                    tokens += spent;
                    on_problem(i, right, spent);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let n = problems.len();
    let conductor = workers.first().map(|w| {
        let mut c = w.conductor();
        (std::mem::take(&mut c.awards), c.record.clone())
    });
    let (awards, record) = conductor.unwrap_or_default();
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
        awards,
        track_record: (method == Method::ContractNet).then_some(record),
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
        let conductor = Mutex::default();
        let mut sessions = Sessions {
            greedy: &mut checker,
            second: &mut teacher,
            sampled: &mut quick,
            conductor: &conductor,
        };
        let (answer, tokens) =
            solve(Method::ContractNet, &mut sessions, &problem, 4000, 1).unwrap();
        assert_eq!(answer, "4", "the tie-break settles it");
        assert_eq!(tokens, 6 * 20, "three bids and three answers");
        let of = |name: &str| sessions.conductor().record.of(&AgentId::new(name), KIND);
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
        let awards = sessions.conductor().awards.clone();
        assert_eq!(awards.first().unwrap(), "checker");
        assert_eq!(awards.last().unwrap(), "teacher");
    }

    #[test]
    fn a_contract_net_without_a_majority_credits_nobody() {
        let problem = Problem {
            question: "2 + 2?".into(),
            answer: 4,
        };
        let (mut a, mut b, mut c) = (
            Contractor {
                confidence: 0.9,
                answer: "5",
            },
            Contractor {
                confidence: 0.5,
                answer: "4",
            },
            Contractor {
                confidence: 0.4,
                answer: "3",
            },
        );
        let conductor = Mutex::default();
        let mut sessions = Sessions {
            greedy: &mut a,
            second: &mut b,
            sampled: &mut c,
            conductor: &conductor,
        };
        let (answer, _) = solve(Method::ContractNet, &mut sessions, &problem, 4000, 1).unwrap();
        assert_eq!(answer, "5", "the best bid's answer stands");
        let record = &sessions.conductor().record;
        for name in ["checker", "teacher", "quick"] {
            assert_eq!(record.of(&AgentId::new(name), KIND), (0, 0), "{name}");
        }
    }

    /// A model that fails every turn (a test double).
    struct Broken;

    impl ChatModel for Broken {
        fn turn(
            &mut self,
            _: &[ChatMessage],
            _: &[symphony_types::ToolSpec],
            _: symphony_agents::CallMode,
        ) -> Result<symphony_agents::ModelTurn, symphony_agents::Error> {
            Err(symphony_agents::Error::Model("gone".into()))
        }

        fn structured(
            &mut self,
            _: &[ChatMessage],
            _: &serde_json::Value,
        ) -> Result<symphony_agents::ModelTurn, symphony_agents::Error> {
            Err(symphony_agents::Error::Model("gone".into()))
        }
    }

    #[test]
    fn workers_side_by_side_solve_each_problem_once_and_stop_at_an_error() {
        let set: Vec<Problem> = (0..10)
            .map(|i| Problem {
                question: format!("problem {i}"),
                answer: if i % 2 == 0 { 4 } else { 5 },
            })
            .collect();
        let four = || Contractor {
            confidence: 0.5,
            answer: "4",
        };
        let mut models = [four(), four(), four(), four(), four(), four()];
        let conductor = Mutex::default();
        let mut workers: Vec<Sessions> = models
            .chunks_mut(3)
            .map(|c| {
                let [greedy, sampled, second] = c else {
                    unreachable!()
                };
                Sessions {
                    greedy,
                    sampled,
                    second,
                    conductor: &conductor,
                }
            })
            .collect();
        let mut seen = Vec::new();
        let report = evaluate(Method::Single, &mut workers, &set, 4000, &mut |i, _, _| {
            seen.push(i)
        })
        .unwrap();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!((report.correct, report.problems), (5, 10));
        assert_eq!(report.mean_tokens, 20.0);

        let (mut a, mut b, mut c) = (Broken, Broken, Broken);
        let mut broken = [Sessions {
            greedy: &mut a,
            sampled: &mut b,
            second: &mut c,
            conductor: &conductor,
        }];
        let failed = evaluate(Method::Single, &mut broken, &set, 4000, &mut |_, _, _| {});
        assert!(failed.is_err());
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

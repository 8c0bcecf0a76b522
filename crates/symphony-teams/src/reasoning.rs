//! Reasoning together: several answers to one question, and one answer from them.
//!
//! - [`self_consistency`]: one model sampled `n` times, the majority answer; it stops as
//!   soon as no remaining sample could change the winner.
//! - [`debate`]: `N` agents answer, then for `R` rounds each sees the others' answers and
//!   answers again; it stops early when all agree; a vote weighted by confidence decides.
//! - [`vote`]: answers counted by weight (confidence, a track record, both).
//! - [`synthesize`]: one model merges the answers, naming where they conflict and how it
//!   resolved each conflict.
//!
//! Every answer is a JSON object held to [`answer_schema`] by constrained decoding, so the
//! final answer and the stated confidence are read, not guessed from prose. Every method
//! counts the tokens it spends (prompt and completion) and stops at its budget.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use symphony_agents::ChatModel;
use symphony_types::ChatMessage;

/// The longest reasoning and final answer an answer may have, in characters.
pub const REASONING_CHARS: usize = 600;
pub const ANSWER_CHARS: usize = 80;

/// What each answer must be: the reasoning, the final answer alone, and a confidence.
pub fn answer_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            // Bounded so that a rambling model still reaches its answer within its tokens.
            "reasoning": {"type": "string", "maxLength": REASONING_CHARS},
            "answer": {"type": "string", "minLength": 1, "maxLength": ANSWER_CHARS},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1}
        },
        "required": ["reasoning", "answer", "confidence"],
        "additionalProperties": false
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ReasoningError {
    #[error(transparent)]
    Model(#[from] symphony_agents::Error),
    #[error("{agent}'s answer is not the JSON asked for: {reason}")]
    Unreadable { agent: String, reason: String },
    #[error("nothing to do: {0}")]
    Nothing(&'static str),
}

/// One agent's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub agent: String,
    pub reasoning: String,
    pub answer: String,
    pub confidence: f64,
    /// Prompt and completion tokens of the turn.
    pub tokens: usize,
}

impl Answer {
    /// The answer as votes compare it ([`normalize`]).
    pub fn key(&self) -> String {
        normalize(&self.answer)
    }
}

/// Answers that mean the same compare equal: case, surrounding space and punctuation,
/// thousands separators and a currency sign do not count, and numbers compare by value
/// (`42.0`, `42` and `$42` are one answer).
pub fn normalize(answer: &str) -> String {
    let trimmed = answer
        .trim()
        .trim_end_matches(['.', '!', ';'])
        .trim()
        .to_lowercase();
    let collapsed: String = trimmed.split_whitespace().collect::<Vec<_>>().join(" ");
    let numeric: String = collapsed
        .trim_start_matches(['$', '€', '£'])
        .chars()
        .filter(|c| *c != ',')
        .collect();
    match numeric.parse::<f64>() {
        Ok(x) if x.is_finite() => {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else {
                format!("{x}")
            }
        }
        _ => collapsed,
    }
}

/// Asks `model` for one answer to the conversation `messages`, held to the answer schema.
pub fn ask(
    model: &mut dyn ChatModel,
    agent: &str,
    messages: &[ChatMessage],
) -> Result<Answer, ReasoningError> {
    let turn = model.structured(messages, &answer_schema())?;
    let unreadable = |reason: String| ReasoningError::Unreadable {
        agent: agent.to_string(),
        reason,
    };
    let value: Value =
        serde_json::from_str(&turn.content).map_err(|e| unreadable(e.to_string()))?;
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    Ok(Answer {
        agent: agent.to_string(),
        reasoning: text("reasoning").unwrap_or_default(),
        answer: text("answer").ok_or_else(|| unreadable("no `answer`".into()))?,
        confidence: value
            .get("confidence")
            .and_then(Value::as_f64)
            .unwrap_or(0.5)
            .clamp(0.0, 1.0),
        tokens: turn.prompt_tokens + turn.completion_tokens,
    })
}

/// The instructions every answering agent gets, after its own persona.
pub const ANSWER_INSTRUCTIONS: &str =
    "Think step by step in `reasoning`, then give only the final answer in `answer` \
(a number or a few words, no explanation) and how sure you are, from 0 to 1, in `confidence`.";

/// The system prompt (`persona`, then [`ANSWER_INSTRUCTIONS`]) and the question.
pub fn question_messages(persona: &str, question: &str) -> Vec<ChatMessage> {
    let system = if persona.is_empty() {
        ANSWER_INSTRUCTIONS.to_string()
    } else {
        format!("{persona}\n\n{ANSWER_INSTRUCTIONS}")
    };
    vec![ChatMessage::system(system), ChatMessage::user(question)]
}

/// How a vote came out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The winning answer as first written by an agent that gave it.
    pub answer: String,
    /// The winner's share of the total weight (1.0: unanimous).
    pub support: f64,
    /// Each distinct answer ([`normalize`]d) and its weight, heaviest first.
    pub tally: Vec<(String, f64)>,
}

/// Counts `answers` by `weight`; ties go to the answer given first. `None` without answers
/// or weight.
pub fn vote(answers: &[Answer], weight: impl Fn(&Answer) -> f64) -> Option<Verdict> {
    let mut order: Vec<String> = Vec::new();
    let mut weights: HashMap<String, f64> = HashMap::new();
    let mut first_text: HashMap<String, String> = HashMap::new();
    for a in answers {
        let key = a.key();
        if key.is_empty() {
            // An empty answer abstains.
            continue;
        }
        if !weights.contains_key(&key) {
            order.push(key.clone());
            first_text.insert(key.clone(), a.answer.trim().to_string());
        }
        *weights.entry(key).or_default() += weight(a).max(0.0);
    }
    let total: f64 = weights.values().sum();
    if total <= 0.0 {
        return None;
    }
    let mut tally: Vec<(String, f64)> = order.iter().map(|k| (k.clone(), weights[k])).collect();
    // Stable: equal weights keep the order answers were first given in.
    tally.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (winner, w) = tally[0].clone();
    Some(Verdict {
        answer: first_text.remove(&winner).unwrap_or(winner),
        support: w / total,
        tally,
    })
}

/// One vote per answer.
pub fn majority(answers: &[Answer]) -> Option<Verdict> {
    vote(answers, |_| 1.0)
}

/// Each answer weighs its stated confidence times its agent's standing (`standing(agent)`,
/// e.g. a track record's success rate; 1.0 when there is none).
pub fn weighted(answers: &[Answer], standing: impl Fn(&str) -> f64) -> Option<Verdict> {
    vote(answers, |a| a.confidence * standing(&a.agent))
}

/// What self-consistency found.
#[derive(Clone, Debug, Serialize)]
pub struct Consensus {
    pub verdict: Option<Verdict>,
    pub answers: Vec<Answer>,
    pub tokens: usize,
    /// It stopped before `n` samples: the winner could no longer change, or the budget ran
    /// out (`tokens` says which).
    pub stopped_early: bool,
}

/// Samples `model` up to `n` times (sample `i` drawn with seed `seed + i`) and takes the
/// majority; stops when the leader cannot be caught by the samples left, or when
/// `max_tokens` have been spent.
pub fn self_consistency(
    model: &mut dyn ChatModel,
    question: &str,
    n: usize,
    seed: u64,
    max_tokens: usize,
) -> Result<Consensus, ReasoningError> {
    if n == 0 {
        return Err(ReasoningError::Nothing("self-consistency needs n ≥ 1"));
    }
    let messages = question_messages("", question);
    let mut answers: Vec<Answer> = Vec::new();
    let mut tokens = 0;
    for i in 0..n {
        if tokens >= max_tokens {
            break;
        }
        model.reseed(seed.wrapping_add(i as u64));
        let answer = ask(model, &format!("sample-{}", i + 1), &messages)?;
        tokens += answer.tokens;
        answers.push(answer);
        let verdict = majority(&answers).expect("answers carry weight");
        let leader = verdict.tally[0].1;
        let second = verdict.tally.get(1).map_or(0.0, |t| t.1);
        let left = (n - answers.len()) as f64;
        if leader > second + left {
            break;
        }
    }
    Ok(Consensus {
        verdict: majority(&answers),
        stopped_early: answers.len() < n,
        answers,
        tokens,
    })
}

/// One debater: a name, a persona (its system prompt's first part) and its model.
pub struct Debater<'a> {
    pub name: String,
    pub persona: String,
    pub model: &'a mut dyn ChatModel,
}

/// What a debate produced.
#[derive(Clone, Debug, Serialize)]
pub struct Debate {
    /// Each round's answers, debaters in order.
    pub rounds: Vec<Vec<Answer>>,
    /// The last round's vote, weighted by confidence.
    pub verdict: Option<Verdict>,
    pub tokens: usize,
    /// All agreed before the last round, or the budget ran out.
    pub stopped_early: bool,
}

/// `debaters` answer `question`, then for up to `rounds − 1` more rounds each reads the
/// others' latest answers and answers again. All agreeing ends it early; so does spending
/// `max_tokens`.
pub fn debate(
    debaters: &mut [Debater<'_>],
    question: &str,
    rounds: usize,
    max_tokens: usize,
) -> Result<Debate, ReasoningError> {
    if debaters.is_empty() || rounds == 0 {
        return Err(ReasoningError::Nothing(
            "a debate needs debaters and a round",
        ));
    }
    let mut all: Vec<Vec<Answer>> = Vec::new();
    let mut tokens = 0;
    let mut out_of_budget = false;
    for round in 0..rounds {
        let mut answers = Vec::with_capacity(debaters.len());
        for (i, debater) in debaters.iter_mut().enumerate() {
            if tokens >= max_tokens {
                out_of_budget = true;
                break;
            }
            let mut messages = question_messages(&debater.persona, question);
            if let Some(previous) = all.last() {
                messages.push(ChatMessage::user(others_said(previous, i)));
            }
            let answer = ask(debater.model, &debater.name, &messages)?;
            tokens += answer.tokens;
            answers.push(answer);
        }
        let complete = answers.len() == debaters.len();
        let unanimous = complete && answers.windows(2).all(|w| w[0].key() == w[1].key());
        if !answers.is_empty() {
            all.push(answers);
        }
        if out_of_budget || unanimous {
            let stopped_early = round + 1 < rounds;
            let verdict = all.last().and_then(|last| weighted(last, |_| 1.0));
            return Ok(Debate {
                rounds: all,
                verdict,
                tokens,
                stopped_early,
            });
        }
    }
    let verdict = all.last().and_then(|last| weighted(last, |_| 1.0));
    Ok(Debate {
        rounds: all,
        verdict,
        tokens,
        stopped_early: false,
    })
}

/// The message that shows debater `me` what the others answered last round.
fn others_said(previous: &[Answer], me: usize) -> String {
    let mut text = String::from(
        "The other agents answered as follows. Check their reasoning against yours; keep your \
answer if you still think it right, change it if they convinced you.\n",
    );
    for (i, a) in previous.iter().enumerate() {
        if i != me {
            text.push_str(&format!(
                "\n{} (confidence {:.2}): {}\nReasoning: {}\n",
                a.agent, a.confidence, a.answer, a.reasoning
            ));
        }
    }
    text
}

/// A point on which the answers disagree, and how the synthesis settled it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub topic: String,
    pub positions: Vec<String>,
    pub resolution: String,
}

/// One answer merged from many.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Synthesis {
    pub answer: String,
    pub conflicts: Vec<Conflict>,
    #[serde(default)]
    pub tokens: usize,
}

fn synthesis_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "conflicts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "topic": {"type": "string"},
                        "positions": {"type": "array", "items": {"type": "string"}},
                        "resolution": {"type": "string"}
                    },
                    "required": ["topic", "positions", "resolution"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["answer", "conflicts"],
        "additionalProperties": false
    })
}

/// Merges `answers` to `question` into one: what they share, each conflict named with the
/// positions taken and how it is resolved.
pub fn synthesize(
    model: &mut dyn ChatModel,
    question: &str,
    answers: &[Answer],
) -> Result<Synthesis, ReasoningError> {
    if answers.is_empty() {
        return Err(ReasoningError::Nothing("no answers to synthesise"));
    }
    let mut listing = String::new();
    for a in answers {
        listing.push_str(&format!(
            "\n{} (confidence {:.2}): {}\nReasoning: {}\n",
            a.agent, a.confidence, a.answer, a.reasoning
        ));
    }
    let messages = vec![
        ChatMessage::system(
            "You merge several agents' answers into one. Keep what they agree on. For each point \
where they disagree, add a conflict: the topic, each position taken, and your resolution with \
its reason. Then give the merged final answer in `answer`.",
        ),
        ChatMessage::user(format!("Question: {question}\n\nAnswers:{listing}")),
    ];
    let turn = model.structured(&messages, &synthesis_schema())?;
    let mut synthesis: Synthesis =
        serde_json::from_str(&turn.content).map_err(|e| ReasoningError::Unreadable {
            agent: "synthesis".into(),
            reason: e.to_string(),
        })?;
    synthesis.tokens = turn.prompt_tokens + turn.completion_tokens;
    Ok(synthesis)
}

#[cfg(test)]
mod tests;

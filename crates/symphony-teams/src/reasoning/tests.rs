//! The methods' logic over a scripted model (a test double standing for the model: it
//! answers from a list, so early stops, budgets and votes can be checked exactly). The
//! same methods on a real model are in tests/reasoning.rs.

use symphony_agents::{CallMode, ModelTurn};
use symphony_types::ToolSpec;

use super::*;

/// Answers with `answers[i]` on its i-th turn, each costing 100 tokens; keeps what it was
/// shown and the seeds it was given.
struct Scripted {
    answers: Vec<(&'static str, f64)>,
    turns: usize,
    seen: Vec<Vec<ChatMessage>>,
    seeds: Vec<u64>,
}

impl Scripted {
    fn new(answers: &[(&'static str, f64)]) -> Self {
        Self {
            answers: answers.to_vec(),
            turns: 0,
            seen: Vec::new(),
            seeds: Vec::new(),
        }
    }
}

impl ChatModel for Scripted {
    fn turn(
        &mut self,
        _: &[ChatMessage],
        _: &[ToolSpec],
        _: CallMode,
    ) -> Result<ModelTurn, symphony_agents::Error> {
        unreachable!("reasoning asks for structured turns")
    }

    fn structured(
        &mut self,
        messages: &[ChatMessage],
        _: &Value,
    ) -> Result<ModelTurn, symphony_agents::Error> {
        self.seen.push(messages.to_vec());
        let (answer, confidence) = self.answers[self.turns % self.answers.len()];
        self.turns += 1;
        let content = json!({"reasoning": "because", "answer": answer, "confidence": confidence});
        Ok(ModelTurn {
            content: content.to_string(),
            calls: Vec::new(),
            prompt_tokens: 80,
            completion_tokens: 20,
        })
    }

    fn reseed(&mut self, seed: u64) {
        self.seeds.push(seed);
    }
}

fn answer(agent: &str, text: &str, confidence: f64) -> Answer {
    Answer {
        agent: agent.into(),
        reasoning: String::new(),
        answer: text.into(),
        confidence,
        tokens: 0,
    }
}

#[test]
fn answers_that_mean_the_same_are_one() {
    for (a, b) in [
        ("42", "42.0"),
        ("$1,200", "1200"),
        ("Paris.", " paris "),
        ("New  York", "new york"),
    ] {
        assert_eq!(normalize(a), normalize(b), "{a} vs {b}");
    }
    assert_ne!(normalize("42"), normalize("43"));
    assert_eq!(normalize("0.5"), "0.5");
}

#[test]
fn votes_count_weight_and_break_ties_by_order() {
    let answers = [
        answer("a", "7", 0.9),
        answer("b", "8", 0.2),
        answer("c", "8.0", 0.3),
        answer("d", "seven", 0.1),
    ];
    let plain = majority(&answers).unwrap();
    assert_eq!(plain.answer, "8");
    assert_eq!(plain.support, 0.5);
    let by_confidence = weighted(&answers, |_| 1.0).unwrap();
    assert_eq!(by_confidence.answer, "7");
    // A poor record outweighs a confident voice.
    let by_record = weighted(&answers, |agent| if agent == "a" { 0.1 } else { 1.0 }).unwrap();
    assert_eq!(by_record.answer, "8");
    let tie = majority(&[answer("x", "1", 1.0), answer("y", "2", 1.0)]).unwrap();
    assert_eq!(tie.answer, "1");
    assert!(vote(&[], |_| 1.0).is_none());
    assert!(vote(&[answer("z", "1", 0.0)], |a| a.confidence).is_none());
}

#[test]
fn self_consistency_stops_once_the_winner_is_settled() {
    // 3 of 5 agreeing settles it at the third sample.
    let mut model = Scripted::new(&[("12", 0.8)]);
    let found = self_consistency(&mut model, "q", 5, 100, 10_000).unwrap();
    assert_eq!(found.answers.len(), 3);
    assert!(found.stopped_early);
    assert_eq!(found.verdict.unwrap().answer, "12");
    assert_eq!(found.tokens, 300);
    assert_eq!(model.seeds, [100, 101, 102], "each sample its own seed");

    // Split answers need all five.
    let mut model = Scripted::new(&[("1", 0.5), ("2", 0.5), ("1", 0.5), ("2", 0.5), ("2", 0.5)]);
    let found = self_consistency(&mut model, "q", 5, 0, 10_000).unwrap();
    assert_eq!(found.answers.len(), 5);
    assert!(!found.stopped_early);
    let verdict = found.verdict.unwrap();
    assert_eq!((verdict.answer.as_str(), verdict.support), ("2", 0.6));

    // The budget is a hard stop.
    let mut model = Scripted::new(&[("1", 0.5), ("2", 0.5)]);
    let found = self_consistency(&mut model, "q", 9, 0, 250).unwrap();
    assert_eq!((found.answers.len(), found.tokens), (3, 300));
}

#[test]
fn debaters_see_each_other_and_stop_when_all_agree() {
    let mut a = Scripted::new(&[("10", 0.9), ("12", 0.9)]);
    let mut b = Scripted::new(&[("12", 0.6), ("12", 0.7)]);
    let mut debaters = [
        Debater {
            name: "alice".into(),
            persona: "You are careful.".into(),
            model: &mut a,
        },
        Debater {
            name: "bob".into(),
            persona: String::new(),
            model: &mut b,
        },
    ];
    let result = debate(&mut debaters, "what is 3 * 4?", 4, 10_000).unwrap();
    assert_eq!(result.rounds.len(), 2, "unanimous in round 2");
    assert!(result.stopped_early);
    assert_eq!(result.verdict.unwrap().answer, "12");
    assert_eq!(result.tokens, 400);
    // Round 1: persona and question only; round 2: the other's answer, not one's own.
    assert_eq!(a.seen[0].len(), 2);
    assert!(a.seen[0][0].content.starts_with("You are careful."));
    let shown = &a.seen[1].last().unwrap().content;
    assert!(shown.contains("bob (confidence 0.60): 12"), "{shown}");
    assert!(!shown.contains("alice"));

    // Disagreement to the end: the last round's confidence-weighted vote decides.
    let mut a = Scripted::new(&[("10", 0.9)]);
    let mut b = Scripted::new(&[("12", 0.4)]);
    let mut debaters = [
        Debater {
            name: "a".into(),
            persona: String::new(),
            model: &mut a,
        },
        Debater {
            name: "b".into(),
            persona: String::new(),
            model: &mut b,
        },
    ];
    let result = debate(&mut debaters, "q", 3, 10_000).unwrap();
    assert_eq!(result.rounds.len(), 3);
    assert!(!result.stopped_early);
    assert_eq!(result.verdict.unwrap().answer, "10");

    // Out of budget mid-round: the partial round counts.
    let mut a = Scripted::new(&[("1", 0.9)]);
    let mut b = Scripted::new(&[("2", 0.9)]);
    let mut debaters = [
        Debater {
            name: "a".into(),
            persona: String::new(),
            model: &mut a,
        },
        Debater {
            name: "b".into(),
            persona: String::new(),
            model: &mut b,
        },
    ];
    let result = debate(&mut debaters, "q", 3, 250).unwrap();
    assert_eq!(result.tokens, 300);
    assert_eq!(
        result.rounds.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 1]
    );
}

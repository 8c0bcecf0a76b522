//! Shared helpers for the tests that run the real packaged models against llama.cpp's golden
//! files (written by scripts/reference/make_golden.py).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use symphony_models::Model;

/// A packaged model the reference tests run.
pub struct TestModel {
    /// Its name in the store, as `symphony models fetch` gives it.
    pub store_name: &'static str,
    /// Environment variable that may point at the file instead.
    pub env: &'static str,
    /// Directory under tests/fixtures/golden.
    pub golden_dir: &'static str,
    slot: usize,
}

pub const SMOLLM2: TestModel = TestModel {
    store_name: "smollm2",
    env: "SYMPHONY_TEST_SMOLLM2",
    golden_dir: "smollm2-q4_1",
    slot: 0,
};

pub const QWEN2_5_CODER_0_5B: TestModel = TestModel {
    store_name: "qwen2.5-coder:0.5b",
    env: "SYMPHONY_TEST_QWEN",
    golden_dir: "qwen2.5-coder-0.5b-q4_k_m",
    slot: 1,
};

pub const GEMMA3_270M: TestModel = TestModel {
    store_name: "gemma3:270m",
    env: "SYMPHONY_TEST_GEMMA3",
    golden_dir: "gemma3-270m-q4_k_m",
    slot: 2,
};

impl TestModel {
    /// The GGUF file: the environment variable's path, or the store's blob for the name.
    pub fn path(&self) -> PathBuf {
        if let Some(p) = std::env::var_os(self.env) {
            return PathBuf::from(p);
        }
        let store = symphony_store::Store::from_env().expect("a data directory for the store");
        match store.get(self.store_name) {
            Ok(manifest) => store.blob_path(&manifest),
            Err(e) => panic!(
                "{e}\nrun `symphony models fetch {}` (the README's test command does), or set {} to the .gguf file",
                self.store_name, self.env
            ),
        }
    }

    /// The loaded model, shared by all tests of a binary.
    pub fn model(&self) -> &'static Model {
        static MODELS: [OnceLock<Model>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        MODELS[self.slot].get_or_init(|| {
            Model::load(self.path()).unwrap_or_else(|e| panic!("{} loads: {e}", self.store_name))
        })
    }

    pub fn golden(&self, name: &str) -> serde_json::Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/golden")
            .join(self.golden_dir)
            .join(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("golden files are JSON")
    }
}

pub fn smollm2() -> &'static Model {
    SMOLLM2.model()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

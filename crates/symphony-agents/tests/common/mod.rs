//! What the end-to-end tests share: the real models from the store.

#![allow(dead_code)]

use std::path::PathBuf;

use symphony_models::Model;

/// Where the store keeps a model (scripts/test.sh fetches the ones the tests use).
pub fn stored_path(name: &str) -> PathBuf {
    let store = symphony_store::Store::from_env().expect("a data directory");
    match store.get(name) {
        Ok(manifest) => store.blob_path(&manifest),
        Err(e) => {
            panic!("{e}\nrun `symphony models fetch {name}` (the README's test command does)")
        }
    }
}

/// A model from the store.
pub fn stored(name: &str) -> Model {
    Model::load(stored_path(name)).expect("the model loads")
}

//! What the end-to-end tests share: the real models from the store.

use symphony_models::Model;

/// A model from the store (scripts/test.sh fetches the ones the tests use).
pub fn stored(name: &str) -> Model {
    let store = symphony_store::Store::from_env().expect("a data directory");
    let path = match store.get(name) {
        Ok(manifest) => store.blob_path(&manifest),
        Err(e) => {
            panic!("{e}\nrun `symphony models fetch {name}` (the README's test command does)")
        }
    };
    Model::load(path).expect("the model loads")
}

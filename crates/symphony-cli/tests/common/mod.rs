//! What the CLI test binaries share.

use std::path::PathBuf;

/// The SmolLM2 file: `$SYMPHONY_TEST_SMOLLM2`, or the user's store (`symphony models fetch
/// smollm2`, which scripts/test.sh runs).
pub fn smollm2() -> PathBuf {
    if let Some(path) = std::env::var_os("SYMPHONY_TEST_SMOLLM2") {
        return PathBuf::from(path);
    }
    let store = symphony_store::Store::from_env().expect("a data directory for the store");
    let manifest = store.get("smollm2").unwrap_or_else(|e| {
        panic!("{e}\nrun `symphony models fetch smollm2` (scripts/test.sh does)")
    });
    store.blob_path(&manifest)
}

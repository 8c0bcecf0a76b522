#!/usr/bin/env python3
"""A team against one agent: the table in docs/BENCHMARKS.md ("A team against one agent").

Runs `symphony bench team` once per method (each its own process, so that one method's
failure or a stop loses only that method), keeps each method's JSON report in --out, and
prints the markdown table. A method whose report is already in --out is not run again, so
an interrupted run continues where it stopped.

  scripts/bench_team.py --model qwen2.5-coder:0.5b --task arithmetic --problems 200 \\
      --out bench-team/0.5b-arithmetic [--symphony target/release/symphony] [--parallel 8]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METHODS = ["single", "self-consistency", "debate", "contract-net"]

NAMES = {
    "single": "one agent (greedy)",
    "self-consistency": "self-consistency (≤ 5 samples)",
    "debate": "debate (2 × ≤ 2 rounds)",
    "contract-net": "contract-net (3 bidders)",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symphony", default="target/release/symphony")
    ap.add_argument("--model", default="qwen2.5-coder:0.5b")
    ap.add_argument("--task", default="arithmetic", choices=["arithmetic", "humaneval"])
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", required=True, help="a folder for each method's JSON report")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in args.methods.split(","):
        path = out / f"{method}.json"
        if not path.exists():
            started = time.monotonic()
            run = subprocess.run(
                [args.symphony, "bench", "team", "--model", args.model, "--task", args.task,
                 "--problems", str(args.problems), "--seed", str(args.seed),
                 "--methods", method, "--parallel", str(args.parallel),
                 "--threads", str(args.threads), "--json"],
                capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"{method} failed ({run.returncode}):\n{run.stderr[-2000:]}")
            report = json.loads(run.stdout)
            report["seconds"] = round(time.monotonic() - started, 1)
            path.write_text(json.dumps(report, indent=1) + "\n")
        report = json.loads(path.read_text())
        rows.append((report, report["methods"][0]))

    print(f"{args.model}, {args.task}, {args.problems} problems (seed {args.seed})\n")
    print("| method | correct | accuracy | 95 % CI | mean tokens | wall time |")
    print("|---|---:|---:|---|---:|---:|")
    for report, m in rows:
        lo, hi = m["ci95"]
        print(f"| {NAMES.get(m['method'], m['method'])} | {m['correct']}/{m['problems']} | "
              f"{100 * m['accuracy']:.1f} % | {100 * lo:.1f}–{100 * hi:.1f} % | "
              f"{m['mean_tokens']:,.0f} | {report.get('seconds', 0) / 60:.0f} min |")
    for report, m in rows:
        if m.get("awards"):
            counts = {}
            for name in m["awards"]:
                counts[name] = counts.get(name, 0) + 1
            half = len(m["awards"]) // 2
            early = {n: m["awards"][:half].count(n) for n in counts}
            late = {n: m["awards"][half:].count(n) for n in counts}
            print(f"\ncontract-net awards: {counts}; first half {early}, second half {late}")
            print(f"track record: {json.dumps(m.get('track_record'))}")


if __name__ == "__main__":
    main()

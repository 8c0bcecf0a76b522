#!/usr/bin/env python3
"""The built-in `software` crew on five feature requests, its transcripts kept.

Each request runs as `symphony crew run software REQUEST --json`; the whole report (every
FIPA message, the result, usage and status) is written to
docs/transcripts/software/NN-NAME.json. The crew's own check ran each final program in the
sandbox: a completed run's result is a program that passed its own tests.

The crews share the track record in $SYMPHONY_HOME/crews (or $SYMPHONY_CREWS), so the
coordinator's awards in later requests learn from the earlier ones; --fresh-record starts
from none.

  scripts/software_crew.py [--symphony target/release/symphony] [--only N] [--fresh-record]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "transcripts" / "software"

REQUESTS = [
    ("word-counter", "A command-line word counter: a function that counts the lines, words and "
     "characters of a text, like wc, and a main that reads standard input"),
    ("lru-cache", "An LRU cache class with get and put and a fixed capacity that evicts the "
     "least recently used entry"),
    ("roman-numerals", "Convert integers from 1 to 3999 to Roman numerals and back"),
    ("rpn-calculator", "A calculator for expressions in reverse Polish notation with + - * / on "
     "integers, that reports a clear error for a malformed expression"),
    ("slugify", "Slugify: turn a title into a URL slug (lowercase, ASCII letters and digits, "
     "words joined by single hyphens)"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symphony", default=str(ROOT / "target" / "release" / "symphony"))
    parser.add_argument("--only", type=int, help="run request N (1-5) alone")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--fresh-record", action="store_true")
    args = parser.parse_args()

    if args.fresh_record:
        home = Path(os.environ.get("SYMPHONY_CREWS") or
                    Path(os.environ.get("SYMPHONY_HOME", "")) / "crews")
        (home / "track-record.json").unlink(missing_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    for n, (name, request) in enumerate(REQUESTS, start=1):
        if args.only and args.only != n:
            continue
        started = time.time()
        out = subprocess.run(
            [args.symphony, "crew", "run", "software", request, "--json",
             "--max-tokens", str(args.max_tokens)],
            capture_output=True, text=True,
        )
        seconds = time.time() - started
        try:
            report = json.loads(out.stdout)
        except json.JSONDecodeError:
            sys.exit(f"{name}: no report\n{out.stderr}")
        report["request"] = request
        report["seconds"] = round(seconds)
        (OUT / f"{n}-{name}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        delivered = [m["sender"] for m in report["messages"] if m["performative"] == "confirm"]
        awarded = [m["receivers"][0] for m in report["messages"]
                   if m["performative"] == "accept-proposal"]
        usage = report["usage"]
        print(f"| {n} {name} | {report['status']['state']} | {', '.join(awarded)} | "
              f"{'passed' if delivered else 'no'} | {usage['steps']} | "
              f"{usage['prompt_tokens'] + usage['completion_tokens']} | {seconds / 60:.0f} min |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""One markdown table from several `symphony agent bench --json` outputs.

    symphony agent bench --model qwen2.5-coder:0.5b --loop react --json > react-0.5b.jsonl
    python3 scripts/agent_suite_table.py react-0.5b.jsonl reflect-0.5b.jsonl ...

Each file holds one JSON line per task and a summary line last (model, loop, tool choice).
A file whose run was stopped early has no summary: its rows say how many tasks it holds,
and the loop and model are taken from its file name (`LOOP-MODEL.jsonl`).
Files of the same loop and model are one row: a run stopped early and finished later with
`--tasks` (the ids it lacks) adds up to the whole suite. A row short of the suite says how
many tasks it holds. `--subset-of FILE` keeps only the tasks FILE holds, to set a full run
beside a partial one.
"""

import json
import sys
from pathlib import Path

KINDS = ["arithmetic", "lookup", "multi-step"]
SUITE = Path(__file__).resolve().parent.parent / "tests" / "agent-tasks.yaml"


def suite_size():
    return sum(1 for line in SUITE.read_text().splitlines() if line.strip().startswith("- id:"))


def load(path):
    tasks, summary = [], None
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("type") == "summary":
            summary = record
        else:
            tasks.append(record)
    if summary is None:
        loop, _, model = Path(path).stem.partition("-")
        summary = {"loop": loop, "model": model, "partial": True}
    return tasks, summary


def short(model):
    # "qwen2.5-coder:1.5b" -> "1.5B"; a file path stays as it is.
    return model.rsplit(":", 1)[-1].upper() if ":" in model else model


def row(label, kind, tasks):
    n = len(tasks)
    passed = sum(t["passed"] for t in tasks)
    mean = lambda key: sum(t[key] for t in tasks) / n
    return (
        f"| {label} | {kind} | {passed}/{n} ({100 * passed / n:.0f}%) | {mean('steps'):.1f} "
        f"| {mean('tool_calls'):.1f} | {mean('prompt_tokens'):.0f} "
        f"| {mean('completion_tokens'):.0f} | {mean('seconds'):.1f} |"
    )


def main(paths, subset=None):
    print(
        "| loop, model | kind | passed | steps | tool calls | prompt tokens "
        "| completion tokens | s/task |"
    )
    print("|---|---|---|---|---|---|---|---|")
    # One row per loop and model, in the order they first appear; a task in two files
    # counts once (the first file's result).
    runs = {}
    for path in paths:
        tasks, summary = load(path)
        key = (summary["loop"], summary["model"])
        merged = runs.setdefault(key, {})
        for task in tasks:
            merged.setdefault(task["id"], task)
    size = suite_size()
    for (loop, model), merged in runs.items():
        tasks = list(merged.values())
        label = f"{loop}, {short(model)}"
        if subset is not None:
            tasks = [t for t in tasks if t["id"] in subset]
            label += f" ({len(tasks)} tasks)"
        elif len(tasks) < size:
            label += f" ({len(tasks)} of {size} tasks)"
        if not tasks:
            continue
        for kind in KINDS:
            of_kind = [t for t in tasks if t["kind"] == kind]
            if of_kind:
                print(row(label, kind, of_kind))
        print(row(f"**{label}**", "**all**", tasks))


if __name__ == "__main__":
    args = sys.argv[1:]
    subset = None
    if args[:1] == ["--subset-of"] and len(args) >= 2:
        subset = {t["id"] for t in load(args[1])[0]}
        args = args[2:]
    if not args:
        sys.exit(__doc__)
    main(args, subset)

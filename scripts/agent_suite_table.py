#!/usr/bin/env python3
"""One markdown table from several `symphony agent bench --json` outputs.

    symphony agent bench --model qwen2.5-coder:0.5b --loop react --json > react-0.5b.jsonl
    python3 scripts/agent_suite_table.py react-0.5b.jsonl reflect-0.5b.jsonl ...

Each file holds one JSON line per task and a summary line last (model, loop, tool choice).
A file whose run was stopped early has no summary: its rows say how many tasks it holds,
and the loop and model are taken from its file name (`LOOP-MODEL.jsonl`).
`--subset-of FILE` keeps only the tasks FILE holds, to set a full run beside a partial one.
"""

import json
import sys
from pathlib import Path

KINDS = ["arithmetic", "lookup", "multi-step"]


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
    for path in paths:
        tasks, summary = load(path)
        label = f"{summary['loop']}, {short(summary['model'])}"
        if subset is not None:
            tasks = [t for t in tasks if t["id"] in subset]
            label += f" ({len(tasks)} tasks)"
        elif summary.get("partial"):
            label += f" (first {len(tasks)} tasks)"
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

#!/usr/bin/env python3
"""Structured output benchmark: validity of sampled JSON and the cost of constraining.

Starts `symphony serve` on a loopback port (or uses --base-url) and, through the official
`openai` package:

1. Validity: for each of the ten schemas in crates/symphony-cli/tests/clients/schemas.py
   and each model, `--samples` chat completions at temperature 1.0 with
   `response_format: json_schema`; each output is parsed with `json` and validated with the
   `jsonschema` package (formats checked), independent of Symphony's code.
2. Speed: one stream, decode tokens/s of the same model with and without a schema
   (`--speed-runs` runs each, median), measured from the streamed chunks' arrival times
   (first chunk to last), so prompt time is left out.

Run with the Python of the test clients' virtual environment (scripts/test.sh makes it):

  .venv-clients/bin/python scripts/bench_structured.py [--samples 50] [--write]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "crates/symphony-cli/tests/clients"))
from schemas import SCHEMAS, sample  # noqa: E402

from benchmarks_doc import write_section  # noqa: E402

MODELS = ["smollm2", "qwen2.5-coder:0.5b"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, threads):
    port = free_port()
    proc = subprocess.Popen(
        [binary, "serve", "--no-auth", "--port", str(port), "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            import urllib.request

            if urllib.request.urlopen(f"{base}/ready", timeout=2).status == 200:
                return proc, base
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("symphony serve did not become ready")


def validity(client, model, schema, samples, max_tokens):
    parsed = valid = 0
    finishes = {}
    checker = jsonschema.FormatChecker()
    outputs, mean_tokens = sample(client, model, schema, samples, max_tokens)
    for text, finish in outputs:
        finishes[finish] = finishes.get(finish, 0) + 1
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        parsed += 1
        try:
            jsonschema.validate(value, schema["schema"], format_checker=checker)
            valid += 1
        except jsonschema.ValidationError:
            pass
    return parsed, valid, finishes, mean_tokens


def decode_rate(client, model, schema, max_tokens, temperature):
    """Decode tokens/s of one streamed reply: chunks after the first over their time."""
    kw = dict(
        model=model,
        messages=[{"role": "user", "content": (schema or SCHEMAS[5])["prompt"]}],
        temperature=temperature,
        seed=11,
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    if schema is not None:
        kw["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema["name"], "schema": schema["schema"]},
        }
    else:
        kw["extra_body"] = {"ignore_eos": True}
    times, tokens = [], None
    for chunk in client.chat.completions.create(**kw):
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    if len(times) < 2 or not tokens:
        return float("nan"), 0
    # Chunks can carry several tokens; the first chunk's token is not counted.
    return (tokens - 1) / (times[-1] - times[0]), tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(ROOT / "target/release/symphony"))
    ap.add_argument("--base-url", help="use a running server instead of starting one")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--speed-runs", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write the tables into docs/BENCHMARKS.md")
    args = ap.parse_args()

    proc = None
    base = args.base_url
    if base is None:
        proc, base = start_server(args.binary, args.threads)
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=3600)
    try:
        rows = []
        totals = {}
        for model in MODELS:
            for schema in SCHEMAS:
                start = time.time()
                parsed, valid, finishes, mean_tokens = validity(
                    client, model, schema, args.samples, args.max_tokens
                )
                t = totals.setdefault(model, [0, 0, 0])
                t[0] += parsed
                t[1] += valid
                t[2] += args.samples
                fin = ", ".join(f"{k} {v}" for k, v in sorted(finishes.items()))
                rows.append(
                    f"| {model} | {schema['name']} | {args.samples} | {parsed} | {valid} | "
                    f"{100 * valid / args.samples:.0f} % | {mean_tokens:.0f} | {fin} |"
                )
                print(rows[-1], f"({time.time() - start:.0f} s)", flush=True)
        for model, (parsed, valid, n) in totals.items():
            rows.append(f"| **{model}** | **all ten** | **{n}** | **{parsed}** | **{valid}** | **{100 * valid / n:.1f} %** | | |")
        validity_table = "\n".join(
            [
                "| model | schema | samples | parse | validate | valid | tokens/reply | finish |",
                "|---|---|---:|---:|---:|---:|---:|---|",
                *rows,
            ]
        )

        speed_rows = []
        for model in MODELS:
            for temperature in (0.0, 1.0):
                free = [decode_rate(client, model, None, 128, temperature)[0] for _ in range(args.speed_runs)]
                held = []
                for schema in (SCHEMAS[5], SCHEMAS[9]):
                    held += [decode_rate(client, model, schema, 256, temperature)[0] for _ in range(args.speed_runs)]
                f, h = statistics.median(free), statistics.median(held)
                speed_rows.append(f"| {model} | {temperature:.0f} | {f:.1f} | {h:.1f} | {100 * (h - f) / f:+.1f} % |")
                print(speed_rows[-1], flush=True)
        speed_table = "\n".join(
            [
                "| model | temperature | unconstrained decode t/s | JSON Schema decode t/s | change |",
                "|---|---:|---:|---:|---:|",
                *speed_rows,
            ]
        )
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    header = (
        f"Commit {commit}, {args.threads} threads, temperature 1.0, top_p 1, `max_tokens` "
        f"{args.max_tokens}; validated with the `jsonschema` package (formats checked)."
    )
    out = f"{header}\n\n{validity_table}\n\nDecode speed, one stream, medians of {args.speed_runs} runs " \
          f"(schemas array_of_objects and unions_and_consts; unconstrained with ignore_eos):\n\n{speed_table}"
    print(out)
    if args.write:
        write_section("structured", "Structured output", out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Serving benchmark: `symphony serve` and llama.cpp's llama-server under the same load.

For each server (same GGUF file, same thread count) and each concurrency level, N streams
each send `--requests-per-stream` streamed completions of `--max-tokens` tokens
(`ignore_eos`, greedy) one after another. Prompts are a short question alone ("short":
decode throughput), or a ~200-token preamble plus the question, the preamble the same for
every request ("shared", where a prefix cache helps) or different for each ("unique"). Reported: aggregate generated tokens/s, time to
first token p50/p95, request latency p50/p95, errors.

For Symphony it also measures a cached identical deterministic request (the response
cache), and `--soak SECONDS` runs a mixed load (streamed and whole, chat and completions,
some cancelled midway) while sampling the server's resident memory.

Loopback only, bounded in requests and time. Standard library only.

  scripts/bench_serving.py --threads 2 [--llama-server PATH] [--write]
"""

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks_doc import write_section

ROOT = Path(__file__).resolve().parent.parent
WORDS = (
    "system model token batch cache prefix stream memory kernel thread latency request "
    "server client answer question context window budget schedule engine quantized "
    "weights vector matrix attention layer norm rotary embedding vocabulary sample "
    "temperature nucleus greedy decode prefill chunk block table page evict share"
).split()


def preamble(seed, n_words=150):
    """About 200 tokens of text; the same seed gives the same text."""
    rng = random.Random(seed)
    return "You are a careful assistant. Context: " + " ".join(
        rng.choice(WORDS) for _ in range(n_words)
    ) + ".\n"


def prompt_for(i, mode):
    """`short`: a ~15-token question alone; `shared`: after the same ~200-token preamble as
    every other request; `unique`: after a preamble of its own (same length)."""
    head = {"short": "", "shared": preamble(0)}.get(mode) if mode != "unique" else preamble(1000 + i)
    return f"{head}Question {i}: write a short essay about {WORDS[i % len(WORDS)]}s.\nAnswer:"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, path, deadline_s=300):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server on port {port} never became ready")


def stream_completion(port, model, prompt, max_tokens, cancel_after=None):
    """One streamed completion. Returns (ttft_s, latency_s, tokens)."""
    body = json.dumps({
        "model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True,
    })
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    ttft, chunks, usage = None, 0, None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        event = json.loads(data)
        if event.get("usage"):
            usage = event["usage"].get("completion_tokens")
        for choice in event.get("choices", []):
            if choice.get("text"):
                chunks += 1
                if ttft is None:
                    ttft = time.perf_counter() - start
        if cancel_after is not None and chunks >= cancel_after:
            conn.close()
            return ttft, time.perf_counter() - start, chunks
    latency = time.perf_counter() - start
    conn.close()
    return ttft, latency, usage or chunks


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def run_level(port, model, streams, per_stream, max_tokens, mode, offset):
    results, errors = [], []

    def worker(s):
        for r in range(per_stream):
            i = offset + s * per_stream + r
            try:
                results.append(stream_completion(port, model, prompt_for(i, mode), max_tokens))
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(str(e))

    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(worker, range(streams)))
    wall = time.perf_counter() - start
    tokens = sum(r[2] for r in results)
    return {
        "streams": streams,
        "prompt": mode,
        "requests": len(results),
        "errors": len(errors),
        "tokens_per_s": tokens / wall,
        "ttft_p50_ms": percentile([r[0] * 1e3 for r in results if r[0]], 50),
        "ttft_p95_ms": percentile([r[0] * 1e3 for r in results if r[0]], 95),
        "latency_p50_s": percentile([r[1] for r in results], 50),
        "latency_p95_s": percentile([r[1] for r in results], 95),
    }


def cached_request_latency(port, model, n=50):
    body = json.dumps({
        "model": model, "messages": [{"role": "user", "content": "Name three colors."}],
        "max_tokens": 32, "temperature": 0,
    })

    def once():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start = time.perf_counter()
        c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        r = c.getresponse()
        r.read()
        elapsed = time.perf_counter() - start
        hit = r.getheader("x-symphony-cache") == "hit"
        c.close()
        return elapsed, hit

    once()  # computes and stores it
    samples = [once() for _ in range(n)]
    times = [t * 1e3 for t, hit in samples if hit]
    return {"hits": len(times), "of": n, "p50_ms": percentile(times, 50),
            "p95_ms": percentile(times, 95)}


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def soak(port, model, pid, seconds, streams=8):
    """Mixed load for `seconds`; samples RSS every 10 s."""
    stop = time.time() + seconds
    errors, done, samples = [], [0], []
    lock = threading.Lock()

    def worker(w):
        rng = random.Random(w)
        i = 0
        while time.time() < stop:
            i += 1
            kind = rng.choice(["stream", "stream", "cancel", "chat", "cached"])
            try:
                if kind in ("stream", "cancel"):
                    stream_completion(port, model, prompt_for(w * 100000 + i, rng.choice(["short", "shared", "unique"])),
                                      rng.choice([16, 64, 128]),
                                      cancel_after=5 if kind == "cancel" else None)
                else:
                    temperature = 0 if kind == "cached" else 0.8
                    body = json.dumps({
                        "model": model, "max_tokens": rng.choice([8, 32]),
                        "temperature": temperature,
                        "messages": [{"role": "user", "content": f"Say something about {rng.choice(WORDS)}."}],
                    })
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                    c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
                    r = c.getresponse()
                    r.read()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}")
                    c.close()
                with lock:
                    done[0] += 1
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"{kind}: {e}")

    def sampler():
        while time.time() < stop:
            samples.append(rss_mib(pid))
            time.sleep(10)

    threading.Thread(target=sampler, daemon=True).start()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(worker, range(streams)))
    samples.append(rss_mib(pid))
    return {"seconds": seconds, "requests": done[0], "errors": len(errors),
            "error_examples": errors[:5], "rss_mib": samples}


def start_symphony(binary, model, threads, port):
    return subprocess.Popen(
        [binary, "serve", "--no-auth", "--port", str(port), "--threads", str(threads),
         "--preload", model],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def start_llama_server(binary, model_file, threads, port, slots):
    return subprocess.Popen(
        [binary, "-m", model_file, "--port", str(port), "-t", str(threads), "-np", str(slots),
         "-cb", "-c", str(slots * 1024), "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def markdown(rows, extra):
    out = ["| server | prompt | streams | tokens/s | TTFT p50 | TTFT p95 | latency p50 | latency p95 | errors |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(
            f"| {r['server']} | {r['prompt']} | {r['streams']} | {r['tokens_per_s']:.1f} | "
            f"{r['ttft_p50_ms']:.0f} ms | {r['ttft_p95_ms']:.0f} ms | {r['latency_p50_s']:.2f} s | "
            f"{r['latency_p95_s']:.2f} s | {r['errors']}/{r['requests'] + r['errors']} |")
    return "\n".join(out + [""] + extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symphony", default=str(ROOT / "target/release/symphony"))
    ap.add_argument("--llama-server", help="llama-server binary (scripts/build_llama_server.sh)")
    ap.add_argument("--model", default="smollm2", help="store name for Symphony")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--requests-per-stream", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompts", nargs="+", default=["short", "shared", "unique"],
                    choices=["short", "shared", "unique"])
    ap.add_argument("--soak", type=int, default=0, help="seconds of mixed load (Symphony)")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = ap.parse_args()

    model_file = subprocess.check_output([args.symphony, "models", "path", args.model], text=True).strip()
    servers = [("Symphony", lambda port: start_symphony(args.symphony, args.model, args.threads, port))]
    if args.llama_server:
        servers.append(("llama-server", lambda port: start_llama_server(
            args.llama_server, model_file, args.threads, port, max(args.levels))))
    rows, extra, raw = [], [], {}
    for name, start in servers:
        port = free_port()
        proc = start(port)
        try:
            wait_ready(port, "/ready" if name == "Symphony" else "/health")
            stream_completion(port, args.model, prompt_for(0, "shared"), 8)  # warm up
            offset = 1
            for mode in args.prompts:
                for level in args.levels:
                    r = run_level(port, args.model, level, args.requests_per_stream,
                                  args.max_tokens, mode, offset)
                    offset += level * args.requests_per_stream
                    r["server"] = name
                    rows.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
            if name == "Symphony":
                c = cached_request_latency(port, args.model)
                raw["cached"] = c
                extra.append(f"Cached identical deterministic request (Symphony's response cache): "
                             f"p50 {c['p50_ms']:.2f} ms, p95 {c['p95_ms']:.2f} ms "
                             f"({c['hits']}/{c['of']} hits).")
                if args.soak:
                    s = soak(port, args.model, proc.pid, args.soak)
                    raw["soak"] = s
                    rss = s["rss_mib"]
                    extra.append(f"Soak, {s['seconds']} s of mixed load at 8 streams: {s['requests']} "
                                 f"requests, {s['errors']} errors; resident memory {rss[0]:.0f} MiB at "
                                 f"the start, {max(rss):.0f} MiB peak, {rss[-1]:.0f} MiB at the end.")
                    print(json.dumps(s), file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            proc.wait()
    raw["rows"] = rows
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    header = (f"Commit {commit}, {os.cpu_count()} cores ({cpu}), {args.threads} threads per server, "
              f"model `{args.model}`, {args.max_tokens} generated tokens per request (ignore_eos, greedy), "
              f"{args.requests_per_stream} requests per stream.\n")
    table = header + "\n" + markdown(rows, extra)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))
    if args.write:
        write_section("serving", "Serving", table)


if __name__ == "__main__":
    main()

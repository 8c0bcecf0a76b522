#!/usr/bin/env python3
"""The same two-role crew (research, then write) run by CrewAI and by Symphony, on the same
model served by one `symphony serve`, in one run.

CrewAI (its own virtual environment, `.venv-crewai`, made on first use with the pinned
`crewai` from the package index) talks to the server's OpenAI-compatible API. Symphony runs
its built-in `research-and-write` crew through `POST /v1/crews/runs` on the same server, so
both use the same model, scheduler and sampling (greedy). The roles, goals and task
descriptions are the same words in both.

Each question has a whole-number answer; a crew succeeds when its final answer states that
number (among the numbers it writes: "Tom has 28 marbles left after giving away 17" is
right, "In 9 weeks there are 9 days" is not). Reported per framework: successes, mean wall time per question (the
crew's run: CrewAI's `kickoff`, Symphony's request; and for CrewAI also with its process
start, Python importing crewai), and mean prompt and completion tokens per question
(CrewAI's own usage metrics; Symphony's run usage).

  scripts/bench_crewai.py [--symphony target/release/symphony] [--model qwen2.5-coder:0.5b]
                          [--max-tokens 512] [--json]
"""

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CREWAI = "crewai==1.15.30"
VENV = ROOT / ".venv-crewai"

QUESTIONS = [
    ("How many legs do 3 spiders and 2 ants have together?", 36),
    ("A box holds 12 eggs. How many eggs are in 7 boxes?", 84),
    ("Tom has 45 marbles and gives away 17. How many marbles does he have left?", 28),
    ("How many wheels do 4 cars and 3 bicycles have in total?", 22),
    ("A train travels at 60 km per hour for 3 hours. How many km does it travel?", 180),
    ("A week has 7 days. How many days are in 9 weeks?", 63),
]

# The research-and-write crew's roles and tasks, word for word (crates/symphony-teams/crews).
RESEARCHER = ("Researcher", "Collect the facts and figures a request needs, as a short bullet list.")
WRITER = ("Writer", "Write a short, correct answer to the request from the researcher's notes.")
RESEARCH = ("List the facts needed to answer: {goal}", "At most five bullet points.")
WRITE = ("Answer the request in two or three sentences: {goal}", "Two or three sentences.")

# Runs inside .venv-crewai: one question through a CrewAI crew, one JSON line out.
CREWAI_RUNNER = r'''
import json, sys, time
from crewai import Agent, Crew, LLM, Process, Task
base, model, max_tokens, question, roles = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
llm = LLM(model="openai/" + model, base_url=base + "/v1", api_key="none", temperature=0, max_tokens=max_tokens)
researcher = Agent(role=roles["researcher"][0], goal=roles["researcher"][1], backstory=roles["researcher"][1], llm=llm, allow_delegation=False, verbose=False)
writer = Agent(role=roles["writer"][0], goal=roles["writer"][1], backstory=roles["writer"][1], llm=llm, allow_delegation=False, verbose=False)
research = Task(description=roles["research"][0].format(goal=question), expected_output=roles["research"][1], agent=researcher)
write = Task(description=roles["write"][0].format(goal=question), expected_output=roles["write"][1], agent=writer, context=[research])
crew = Crew(agents=[researcher, writer], tasks=[research, write], process=Process.sequential, verbose=False)
started = time.time()
out = crew.kickoff()
usage = out.token_usage
print(json.dumps({"answer": str(out.raw), "seconds": time.time() - started,
                  "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}))
'''


def states(text, expected):
    """Whether `text` writes the number `expected` (digits, thousands commas allowed)."""
    for number in re.findall(r"-?\d[\d,]*(?:\.\d+)?", text or ""):
        try:
            if float(number.replace(",", "")) == expected:
                return True
        except ValueError:
            pass
    return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, deadline_s=300):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("the server did not become ready")


def crewai_python():
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import crewai"], capture_output=True)
    if probe.returncode != 0:
        print(f"installing {CREWAI} into {VENV.name} ...", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", CREWAI], check=True)
    return python


def run_crewai(python, base, model, max_tokens, question):
    roles = {"researcher": RESEARCHER, "writer": WRITER, "research": RESEARCH, "write": WRITE}
    env = dict(os.environ, CREWAI_DISABLE_TELEMETRY="true", OTEL_SDK_DISABLED="true",
               CREWAI_TRACING_ENABLED="false")
    started = time.time()
    out = subprocess.run(
        [str(python), "-c", CREWAI_RUNNER, base, model, str(max_tokens), question, json.dumps(roles)],
        capture_output=True, text=True, env=env, timeout=1800,
    )
    wall = time.time() - started
    if out.returncode != 0:
        return {"answer": None, "error": out.stderr.strip()[-2000:], "seconds": wall,
                "prompt_tokens": 0, "completion_tokens": 0}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    return result


def run_symphony(port, max_tokens, question):
    body = json.dumps({"crew": "research-and-write", "goal": question, "stream": True,
                       "max_tokens": max_tokens})
    started = time.time()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
    conn.request("POST", "/v1/crews/runs", body, {"content-type": "application/json"})
    response = conn.getresponse()
    summary = None
    for raw in response:
        line = raw.decode().strip()
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event.get("type") == "summary":
                summary = event
    wall = time.time() - started
    if summary is None or summary["status"]["state"] != "completed":
        return {"answer": None, "error": json.dumps(summary), "seconds": wall,
                "prompt_tokens": 0, "completion_tokens": 0}
    return {"answer": summary["result"], "seconds": wall,
            "prompt_tokens": summary["usage"]["prompt_tokens"],
            "completion_tokens": summary["usage"]["completion_tokens"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symphony", default=str(ROOT / "target" / "release" / "symphony"))
    parser.add_argument("--model", default="qwen2.5-coder:0.5b")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    python = crewai_python()
    port = free_port()
    # The crew runs are kept apart from the user's own (`$SYMPHONY_HOME/crews`).
    runs = tempfile.TemporaryDirectory(prefix="bench-crewai-")
    server = subprocess.Popen(
        [args.symphony, "serve", "--port", str(port), "--no-auth", "--preload", args.model],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, SYMPHONY_CREWS=runs.name),
    )
    try:
        wait_ready(port)
        base = f"http://127.0.0.1:{port}"
        rows = []
        # Interleaved, question by question, so that machine noise falls on both alike.
        for question, expected in QUESTIONS[: args.questions]:
            for name, run in (
                ("crewai", lambda q: run_crewai(python, base, args.model, args.max_tokens, q)),
                ("symphony", lambda q: run_symphony(port, args.max_tokens, q)),
            ):
                result = run(question)
                result.update(framework=name, question=question, expected=expected,
                              correct=states(result.get("answer"), expected))
                rows.append(result)
                print(f"{name:9} {'ok ' if result['correct'] else 'no '} {result['seconds']:6.1f} s  "
                      f"{question}  -> {(result.get('answer') or result.get('error') or '')[-120:]!r}",
                      file=sys.stderr)
    finally:
        server.terminate()
        server.wait()

    summary = {}
    for name in ("crewai", "symphony"):
        mine = [r for r in rows if r["framework"] == name]
        n = len(mine)
        summary[name] = {
            "questions": n,
            "correct": sum(r["correct"] for r in mine),
            "mean_seconds": sum(r["seconds"] for r in mine) / n,
            # CrewAI's process start (Python importing crewai) comes on top of its crew's time.
            "mean_process_seconds": sum(r.get("process_seconds", r["seconds"]) for r in mine) / n,
            "mean_prompt_tokens": sum(r["prompt_tokens"] for r in mine) / n,
            "mean_completion_tokens": sum(r["completion_tokens"] for r in mine) / n,
            "errors": sum(1 for r in mine if r.get("error")),
        }
    if args.json:
        print(json.dumps({"model": args.model, "summary": summary, "runs": rows}))
    else:
        print("| framework | correct | mean crew time | with process start | mean prompt tokens | mean completion tokens |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, s in summary.items():
            print(f"| {name} | {s['correct']}/{s['questions']} | {s['mean_seconds']:.1f} s | "
                  f"{s['mean_process_seconds']:.1f} s | {s['mean_prompt_tokens']:.0f} | "
                  f"{s['mean_completion_tokens']:.0f} |")


if __name__ == "__main__":
    main()

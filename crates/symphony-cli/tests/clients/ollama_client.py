"""`symphony serve` driven by the official `ollama` Python package (SYMPHONY_BASE_URL)."""

import os
import unittest

import ollama

client = ollama.Client(host=os.environ["SYMPHONY_BASE_URL"])
MODEL = "smollm2"
GREEDY = {"temperature": 0, "num_predict": 10}


class Ollama(unittest.TestCase):
    def test_generate_stream_equals_whole(self):
        whole = client.generate(model=MODEL, prompt="Why is the sky blue?", options=GREEDY)
        self.assertTrue(whole.done)
        self.assertEqual(whole.eval_count, 10)
        self.assertEqual(whole.done_reason, "length")
        self.assertTrue(whole.response)
        self.assertGreater(len(whole.context), 10)
        parts = list(
            client.generate(model=MODEL, prompt="Why is the sky blue?", options=GREEDY, stream=True)
        )
        self.assertTrue(parts[-1].done)
        self.assertTrue(all(not p.done for p in parts[:-1]))
        self.assertEqual("".join(p.response for p in parts), whole.response)

    def test_generate_continues_from_context(self):
        first = client.generate(model=MODEL, prompt="Count: 1, 2, 3", raw=True, options=GREEDY)
        second = client.generate(
            model=MODEL, prompt=",", raw=True, context=first.context, options=GREEDY
        )
        self.assertGreater(len(second.context), len(first.context))
        self.assertEqual(second.context[: len(first.context)], first.context)

    def test_chat(self):
        r = client.chat(
            model=MODEL,
            messages=[
                {"role": "system", "content": "You answer in one word."},
                {"role": "user", "content": "What color is grass?"},
            ],
            options=GREEDY,
        )
        self.assertEqual(r.message.role, "assistant")
        self.assertTrue(r.message.content)
        streamed = "".join(
            part.message.content
            for part in client.chat(
                model=MODEL,
                messages=[
                    {"role": "system", "content": "You answer in one word."},
                    {"role": "user", "content": "What color is grass?"},
                ],
                options=GREEDY,
                stream=True,
            )
        )
        self.assertEqual(streamed, r.message.content)

    def test_tags_show_ps_version(self):
        names = [m.model for m in client.list().models]
        self.assertIn(MODEL, names)
        listed = next(m for m in client.list().models if m.model == MODEL)
        self.assertEqual(listed.details.quantization_level, "Q4_1")
        self.assertGreater(listed.size, 50_000_000)
        shown = client.show(MODEL)
        self.assertEqual(shown.details.family, "llama")
        self.assertIn("completion", shown.capabilities)
        client.generate(model=MODEL, prompt="hi", options={"num_predict": 1})
        self.assertIn(MODEL, [m.model for m in client.ps().models])

    def test_unknown_model_is_404(self):
        with self.assertRaises(ollama.ResponseError) as e:
            client.generate(model="no-such-model", prompt="hi")
        self.assertEqual(e.exception.status_code, 404)


if __name__ == "__main__":
    unittest.main(verbosity=2)

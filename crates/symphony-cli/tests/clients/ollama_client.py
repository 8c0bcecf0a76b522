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

    def test_a_chat_continued_from_context_keeps_its_template_tokens(self):
        # SmolLM2's BOS id is `<|im_start|>` and its tokenizer adds no BOS: the follow-up
        # turn must keep the token that opens it.
        options = {"temperature": 0, "num_predict": 24}
        first = client.generate(
            model=MODEL, prompt="What is the capital of France?", options=options
        )
        second = client.generate(
            model=MODEL,
            prompt="And what is the capital of Germany?",
            context=first.context,
            options=options,
        )
        self.assertEqual(second.context[: len(first.context)], first.context)
        added = second.context[len(first.context) :]
        opener = client.generate(model=MODEL, prompt="x", options={"num_predict": 1}).context[0]
        self.assertEqual(added[0], opener, added[:8])
        self.assertIn("Berlin", second.response)
        self.assertNotEqual(second.response, first.response)

    def test_prompt_eval_count_is_the_whole_prompt_when_cached(self):
        prompt = "List three colours of the rainbow, separated by commas."
        first = client.generate(model=MODEL, prompt=prompt, options=GREEDY)
        again = client.generate(model=MODEL, prompt=prompt, options=GREEDY)
        self.assertGreater(first.prompt_eval_count, 20)
        self.assertEqual(again.prompt_eval_count, first.prompt_eval_count)

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

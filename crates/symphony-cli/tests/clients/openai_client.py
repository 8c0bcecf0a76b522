"""`symphony serve` driven by the official `openai` Python package.

Run by crates/symphony-cli/tests/serve.rs against a server it started with SmolLM2 loaded;
SYMPHONY_BASE_URL gives the server's address.
"""

import os
import time
import unittest
import urllib.request

import openai

BASE = os.environ["SYMPHONY_BASE_URL"]
MODEL = "smollm2"
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", max_retries=0)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def metric(name):
    """The sum of a Prometheus metric's samples on /metrics."""
    text = urllib.request.urlopen(f"{BASE}/metrics").read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


class Chat(unittest.TestCase):
    def test_models_lists_the_store(self):
        ids = [m.id for m in client.models.list()]
        self.assertIn(MODEL, ids)
        self.assertEqual(client.models.retrieve(MODEL).id, MODEL)

    def test_greedy_chat_is_deterministic_and_counts_tokens(self):
        a = client.chat.completions.create(
            model=MODEL, messages=QUESTION, temperature=0, max_tokens=12
        )
        b = client.chat.completions.create(
            model=MODEL, messages=QUESTION, temperature=0, max_tokens=12
        )
        self.assertEqual(a.object, "chat.completion")
        self.assertEqual(a.choices[0].message.role, "assistant")
        self.assertTrue(a.choices[0].message.content)
        self.assertEqual(a.choices[0].message.content, b.choices[0].message.content)
        self.assertEqual(a.choices[0].finish_reason, "length")
        self.assertEqual(a.usage.completion_tokens, 12)
        self.assertGreater(a.usage.prompt_tokens, 5)
        self.assertEqual(a.usage.total_tokens, a.usage.prompt_tokens + 12)
        # The second request found the first one's prompt blocks in the prefix cache.
        self.assertGreater(b.usage.prompt_tokens_details.cached_tokens, 0)

    def test_seed_fixes_sampling(self):
        kw = dict(model=MODEL, messages=QUESTION, temperature=1.0, max_tokens=16)
        a = client.chat.completions.create(seed=7, **kw).choices[0].message.content
        b = client.chat.completions.create(seed=7, **kw).choices[0].message.content
        c = client.chat.completions.create(seed=8, **kw).choices[0].message.content
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_n_choices(self):
        r = client.chat.completions.create(
            model=MODEL, messages=QUESTION, n=3, temperature=1.0, seed=1, max_tokens=8
        )
        self.assertEqual([c.index for c in r.choices], [0, 1, 2])
        self.assertEqual(len({c.message.content for c in r.choices}), 3)
        self.assertEqual(r.usage.completion_tokens, 24)

    def test_stream_matches_non_stream_and_reports_usage(self):
        kw = dict(model=MODEL, messages=QUESTION, temperature=0, max_tokens=20)
        whole = client.chat.completions.create(**kw).choices[0].message.content
        text, finish, usage, roles = "", None, None, 0
        for chunk in client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kw
        ):
            self.assertEqual(chunk.object, "chat.completion.chunk")
            if chunk.usage is not None:
                usage = chunk.usage
                self.assertEqual(chunk.choices, [])
                continue
            delta = chunk.choices[0].delta
            roles += delta.role == "assistant"
            text += delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        self.assertEqual(text, whole)
        self.assertEqual(roles, 1)
        self.assertEqual(finish, "length")
        self.assertEqual(usage.completion_tokens, 20)

    def test_stop_sequence_ends_the_reply_before_it(self):
        kw = dict(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40)
        whole = client.chat.completions.create(**kw).choices[0].message.content
        word = whole.split()[2]
        r = client.chat.completions.create(stop=[word], **kw)
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.choices[0].message.content, whole[: whole.index(word)])

    def test_logprobs(self):
        r = client.chat.completions.create(
            model=MODEL, messages=QUESTION, temperature=0, max_tokens=5,
            logprobs=True, top_logprobs=3,
        )
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), 5)
        self.assertEqual("".join(t.token for t in content), r.choices[0].message.content)
        for t in content:
            self.assertLessEqual(t.logprob, 0.0)
            self.assertEqual(len(t.top_logprobs), 3)
            # Greedy: the chosen token is the most likely one.
            self.assertEqual(t.top_logprobs[0].token, t.token)
            self.assertAlmostEqual(t.top_logprobs[0].logprob, t.logprob, places=5)
            self.assertEqual(bytes(t.bytes).decode(), t.token)

    def test_max_completion_tokens(self):
        r = client.chat.completions.create(
            model=MODEL, messages=QUESTION, max_completion_tokens=3, temperature=0
        )
        self.assertEqual(r.usage.completion_tokens, 3)
        self.assertEqual(r.choices[0].finish_reason, "length")

    def test_closing_a_stream_stops_its_generation(self):
        stream = client.chat.completions.create(
            model=MODEL, messages=QUESTION, temperature=1.0, max_tokens=3000,
            stream=True,
        )
        for i, _ in enumerate(stream):
            if i == 3:
                break
        stream.close()
        before = metric("symphony_generated_tokens_total")
        deadline = time.time() + 10
        while metric("symphony_running_sequences") > 0 and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(metric("symphony_running_sequences"), 0)
        # It ended long before its 3000 tokens.
        self.assertLess(metric("symphony_generated_tokens_total") - before, 500)


class Completions(unittest.TestCase):
    def test_echo_with_prompt_logprobs(self):
        prompt = "The capital of France is"
        r = client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=3, echo=True, logprobs=2, temperature=0
        )
        c = r.choices[0]
        self.assertTrue(c.text.startswith(prompt))
        lp = c.logprobs
        self.assertIsNone(lp.token_logprobs[0])
        self.assertEqual(len(lp.tokens), r.usage.prompt_tokens + 3)
        self.assertTrue(all(x <= 0 for x in lp.token_logprobs[1:]))
        self.assertEqual("".join(lp.tokens), c.text)
        self.assertEqual(lp.text_offset[1], len(lp.tokens[0]))
        # Generated tokens list their alternatives, the chosen one first (greedy).
        for tok, top in zip(lp.tokens[-3:], lp.top_logprobs[-3:]):
            self.assertEqual(max(top, key=top.get), tok)

    def test_prompt_positions_list_their_alternatives(self):
        r = client.completions.create(
            model=MODEL, prompt="The quick brown fox jumps", max_tokens=1, echo=True,
            logprobs=2, temperature=0,
        )
        lp = r.choices[0].logprobs
        self.assertIsNone(lp.top_logprobs[0])
        for tok, logprob, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]):
            # The two most likely, and the token itself when it is not one of them.
            self.assertIn(len(top), (2, 3), top)
            self.assertAlmostEqual(top[tok], logprob, places=5)
            self.assertGreaterEqual(max(top.values()), logprob)

    def test_a_generated_end_token_is_listed_and_counted(self):
        # SmolLM2's most likely next token here is `<|im_end|>`, its end of generation.
        prompt = "Hello! How can I help you today?"
        for echo in (False, True):
            r = client.completions.create(
                model=MODEL, prompt=prompt, max_tokens=1, echo=echo, logprobs=1,
                temperature=0,
            )
            c = r.choices[0]
            self.assertEqual(c.finish_reason, "stop")
            self.assertEqual(r.usage.completion_tokens, 1)
            self.assertEqual(c.logprobs.tokens[-1], "<|im_end|>")
            self.assertLess(c.logprobs.token_logprobs[-1], 0)
            expected = r.usage.prompt_tokens + 1 if echo else 1
            self.assertEqual(len(c.logprobs.tokens), expected)
            self.assertEqual(len(c.logprobs.token_logprobs), expected)
            self.assertEqual(len(c.logprobs.top_logprobs), expected)
        streamed = [
            chunk.choices[0].logprobs
            for chunk in client.completions.create(
                model=MODEL, prompt=prompt, max_tokens=1, logprobs=1, temperature=0,
                stream=True,
            )
            if chunk.choices and chunk.choices[0].logprobs
        ]
        self.assertEqual([t for lp in streamed for t in lp.tokens], ["<|im_end|>"])

    def test_several_prompts_and_streaming(self):
        r = client.completions.create(
            model=MODEL, prompt=["1, 2, 3,", "a, b, c,"], max_tokens=4, temperature=0
        )
        self.assertEqual(sorted(c.index for c in r.choices), [0, 1])
        streamed = {}
        for chunk in client.completions.create(
            model=MODEL, prompt=["1, 2, 3,", "a, b, c,"], max_tokens=4, temperature=0,
            stream=True,
        ):
            for c in chunk.choices:
                streamed[c.index] = streamed.get(c.index, "") + c.text
        self.assertEqual(streamed, {c.index: c.text for c in r.choices})


class Errors(unittest.TestCase):
    def test_unknown_model_is_404(self):
        with self.assertRaises(openai.NotFoundError) as e:
            client.chat.completions.create(model="no-such-model", messages=QUESTION)
        self.assertEqual(e.exception.body["code"], "model_not_found")

    def test_bad_parameters_are_400(self):
        for kw in [
            dict(temperature=5),
            dict(top_logprobs=2),
            dict(n=0),
            dict(messages=[{"role": "wizard", "content": "hi"}]),
        ]:
            args = dict(model=MODEL, messages=QUESTION, max_tokens=2) | kw
            with self.assertRaises(openai.BadRequestError, msg=str(kw)):
                client.chat.completions.create(**args)

    def test_prompt_over_the_context_is_400(self):
        long = "word " * 9000
        with self.assertRaises(openai.BadRequestError) as e:
            client.completions.create(model=MODEL, prompt=long, max_tokens=2)
        self.assertIn("context", str(e.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)

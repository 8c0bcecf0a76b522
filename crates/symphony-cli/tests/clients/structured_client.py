"""Structured output and tool calling through `symphony serve`, driven by the official
`openai` and `ollama` Python packages. Outputs are checked with independent validators: the
`jsonschema` package, Python's `re` and a `lark` parser.

Run by crates/symphony-cli/tests/serve.rs against a server it started; SYMPHONY_BASE_URL gives
the server's address. SYMPHONY_STRUCTURED_SAMPLES sets how many samples each schema gets per
model (scripts/bench_structured.py runs the same schemas with more), and
SYMPHONY_STRUCTURED_MODELS (comma-separated) which models the schema samples run on.
"""

import json
import os
import re
import unittest

import jsonschema
import lark
import ollama
import openai

BASE = os.environ["SYMPHONY_BASE_URL"]
SAMPLES = int(os.environ.get("SYMPHONY_STRUCTURED_SAMPLES", "8"))
MODELS = os.environ.get("SYMPHONY_STRUCTURED_MODELS", "smollm2,qwen2.5-coder:0.5b").split(",")
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", max_retries=0, timeout=600)

import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from schemas import SCHEMAS, sample  # noqa: E402

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current local time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}
ASK = [
    {
        "role": "system",
        "content": "You are a helpful assistant. When a tool has answered, tell the user "
        "the result in one short sentence.",
    },
    {"role": "user", "content": "What is the weather like in Paris today?"},
]
# Tool round trips run on the 1.5B model: the 0.5B calls tools well but, given a tool's
# result, calls again instead of answering.
TOOL_MODEL = "qwen2.5-coder:1.5b"


class Schemas(unittest.TestCase):
    def test_sampled_outputs_parse_and_validate(self):
        checker = jsonschema.FormatChecker()
        for model in MODELS:
            for schema in SCHEMAS:
                for text, finish in sample(client, model, schema, SAMPLES, max_tokens=300)[0]:
                    with self.subTest(model=model, schema=schema["name"]):
                        self.assertEqual(finish, "stop", text)
                        jsonschema.validate(json.loads(text), schema["schema"], format_checker=checker)

    def test_json_object_mode_gives_an_object(self):
        r = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "List three fruits as JSON."}],
            response_format={"type": "json_object"},
            temperature=1.0,
            seed=3,
            max_tokens=400,
        )
        self.assertIsInstance(json.loads(r.choices[0].message.content), dict)

    def test_bad_schemas_are_refused_with_the_reason(self):
        cases = [
            ({"type": "array", "uniqueItems": True}, "uniqueItems"),
            ({"type": "strin"}, "strin"),
            ({"$ref": "#/$defs/missing"}, "missing"),
        ]
        for schema, mention in cases:
            with self.subTest(schema=schema):
                with self.assertRaises(openai.BadRequestError) as e:
                    client.chat.completions.create(
                        model="smollm2",
                        messages=ASK,
                        response_format={
                            "type": "json_schema",
                            "json_schema": {"name": "x", "schema": schema},
                        },
                    )
                self.assertEqual(e.exception.status_code, 400)
                self.assertIn(mention, e.exception.body["message"])
                self.assertEqual(e.exception.body["param"], "response_format")
        with self.assertRaises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model="smollm2", messages=ASK, response_format={"type": "yaml"}
            )
        self.assertIn("yaml", e.exception.body["message"])


class RegexAndGrammar(unittest.TestCase):
    def test_regex_outputs_match(self):
        pattern = r"[A-Z][a-z]{2,8} (19|20)[0-9]{2}, [A-Z]{2}"
        r = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "A name, a year and a country code."}],
            temperature=1.0,
            n=8,
            seed=1,
            max_tokens=64,
            extra_body={"guided_regex": pattern},
        )
        for c in r.choices:
            self.assertRegex(c.message.content, f"^(?:{pattern})$")
            self.assertIsNotNone(re.fullmatch(pattern, c.message.content))

    def test_grammar_outputs_parse(self):
        grammar = r"""
start: assignment | assignment assignment | assignment assignment assignment
assignment: NAME " = " expr ";\n"
expr: term | term OP term | term OP term OP term
term: NUMBER | NAME | "(" term OP term ")"
OP: " + " | " - " | " * "
NAME: /[a-z]{1,6}/
NUMBER: /[0-9]{1,4}/
"""
        parser = lark.Lark(grammar, start="start")
        r = client.completions.create(
            model="smollm2",
            prompt="Some assignments in a tiny language:\n",
            temperature=1.0,
            n=8,
            seed=2,
            max_tokens=200,
            extra_body={"guided_grammar": grammar},
        )
        for c in r.choices:
            self.assertEqual(c.finish_reason, "stop", c.text)
            parser.parse(c.text)

    def test_bad_grammar_is_refused(self):
        with self.assertRaises(openai.BadRequestError) as e:
            client.completions.create(
                model="smollm2",
                prompt="x",
                extra_body={"guided_grammar": "start: undefined_rule"},
            )
        self.assertEqual(e.exception.body["param"], "guided_grammar")
        self.assertIn("undefined_rule", e.exception.body["message"])


def stream_calls(**kw):
    """A streamed chat's content, tool calls (rebuilt from their deltas) and finish reason."""
    content, calls, finish = "", {}, None
    for chunk in client.chat.completions.create(stream=True, **kw):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        content += delta.content or ""
        for tc in delta.tool_calls or []:
            if tc.id is not None:
                # The opening chunk: id, type and name, arguments still empty.
                assert tc.index not in calls
                assert tc.type == "function" and tc.function.name
                calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": ""}
            calls[tc.index]["arguments"] += tc.function.arguments or ""
        finish = choice.finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish


class Tools(unittest.TestCase):
    def round_trip(self, tool_choice, stream):
        kw = dict(model=TOOL_MODEL, messages=ASK, tools=[WEATHER, TIME], temperature=0)
        if tool_choice is not None:
            kw["tool_choice"] = tool_choice
        if stream:
            _, calls, finish = stream_calls(**kw)
        else:
            r = client.chat.completions.create(**kw)
            finish = r.choices[0].finish_reason
            calls = [
                {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                for c in r.choices[0].message.tool_calls or []
            ]
        self.assertEqual(finish, "tool_calls")
        self.assertGreaterEqual(len(calls), 1)
        call = calls[0]
        self.assertEqual(call["name"], "get_weather")
        args = json.loads(call["arguments"])
        jsonschema.validate(args, WEATHER["function"]["parameters"])
        self.assertIn("paris", args["city"].lower())
        # Feed the result back; the model answers from it.
        messages = ASK + [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ],
            }
        ] + [
            {"role": "tool", "tool_call_id": c["id"], "content": json.dumps({"temperature_c": 23, "sky": "sunny"})}
            for c in calls
        ]
        kw = dict(
            model=TOOL_MODEL,
            messages=messages,
            tools=[WEATHER, TIME],
            temperature=0,
            max_tokens=80,
        )
        if stream:
            content, calls, finish = stream_calls(**kw)
        else:
            r = client.chat.completions.create(**kw)
            content, finish = r.choices[0].message.content, r.choices[0].finish_reason
            calls = r.choices[0].message.tool_calls or []
        self.assertEqual(calls, [])
        self.assertIn(finish, ("stop", "length"))
        self.assertIn("23", content)

    def test_auto(self):
        self.round_trip(None, stream=False)
        self.round_trip("auto", stream=True)

    def test_required(self):
        self.round_trip("required", stream=False)
        self.round_trip("required", stream=True)

    def test_named(self):
        named = {"type": "function", "function": {"name": "get_weather"}}
        self.round_trip(named, stream=False)
        self.round_trip(named, stream=True)

    def test_auto_answers_in_text_when_no_tool_fits(self):
        # (The Qwen coder models call get_weather even for this; SmolLM2 answers.)
        r = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say hello in French."}],
            tools=[WEATHER],
            temperature=0,
            max_tokens=30,
        )
        self.assertIsNone(r.choices[0].message.tool_calls)
        self.assertTrue(r.choices[0].message.content)

    def test_a_named_tool_is_forced_even_on_a_small_model(self):
        # SmolLM2's template knows no tools: they are described in its system prompt, and the
        # grammar makes the call valid whatever the model would have written.
        r = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
            tools=[WEATHER, TIME],
            tool_choice={"type": "function", "function": {"name": "get_time"}},
            temperature=1.0,
            seed=5,
            n=4,
            max_tokens=200,
        )
        for c in r.choices:
            self.assertEqual(c.finish_reason, "tool_calls")
            (call,) = c.message.tool_calls
            self.assertEqual(call.function.name, "get_time")
            jsonschema.validate(json.loads(call.function.arguments), TIME["function"]["parameters"])

    def test_tool_errors(self):
        with self.assertRaises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model=TOOL_MODEL,
                messages=ASK,
                tools=[WEATHER],
                tool_choice={"type": "function", "function": {"name": "nope"}},
            )
        self.assertIn("nope", e.exception.body["message"])
        bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "array", "contains": {}}}}}}
        with self.assertRaises(openai.BadRequestError) as e:
            client.chat.completions.create(model=TOOL_MODEL, messages=ASK, tools=[bad], tool_choice="required")
        self.assertEqual(e.exception.body["param"], "tools")
        self.assertIn("contains", e.exception.body["message"])
        # A regex shapes a reply only when the reply cannot be a call.
        with self.assertRaises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model=TOOL_MODEL, messages=ASK, tools=[WEATHER], extra_body={"guided_regex": "[a-z]+"}
            )
        self.assertEqual(e.exception.body["param"], "guided_regex")


class Ollama(unittest.TestCase):
    o = ollama.Client(host=BASE)

    def test_format_schema(self):
        schema = SCHEMAS[4]["schema"]
        r = self.o.chat(
            model="smollm2",
            messages=[{"role": "user", "content": SCHEMAS[4]["prompt"]}],
            format=schema,
            options={"temperature": 1.0, "seed": 4, "num_predict": 1024},
        )
        jsonschema.validate(json.loads(r.message.content), schema)
        r = self.o.generate(model="smollm2", prompt="A JSON object about a cat.", format="json", options={"seed": 1, "num_predict": 400})
        self.assertIsInstance(json.loads(r.response), dict)

    def test_tools(self):
        r = self.o.chat(model=TOOL_MODEL, messages=ASK, tools=[WEATHER], options={"temperature": 0})
        calls = r.message.tool_calls
        self.assertTrue(calls)
        self.assertEqual(calls[0].function.name, "get_weather")
        self.assertIn("paris", calls[0].function.arguments["city"].lower())
        # Streamed: the call arrives whole in one part's message.
        streamed = [
            call
            for part in self.o.chat(model=TOOL_MODEL, messages=ASK, tools=[WEATHER], stream=True, options={"temperature": 0})
            for call in part.message.tool_calls or []
        ]
        self.assertEqual([c.function.name for c in streamed], ["get_weather"])
        self.assertEqual(streamed[0].function.arguments, calls[0].function.arguments)
        # The result fed back in Ollama's shape; the answer streams as content.
        messages = ASK + [
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": calls[0].function.arguments}}]},
            {"role": "tool", "tool_name": "get_weather", "content": '{"temperature_c": 23}'},
        ]
        text = "".join(
            part.message.content or ""
            for part in self.o.chat(model=TOOL_MODEL, messages=messages, tools=[WEATHER], stream=True, options={"temperature": 0, "num_predict": 60})
        )
        self.assertIn("23", text)


if __name__ == "__main__":
    unittest.main()

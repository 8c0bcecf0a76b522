"""Checks `/openapi.json` against the OpenAPI 3.1 specification (openapi-spec-validator) and
against the server itself: real requests, whose bodies must match the documented request
schema, and whose replies (JSON bodies, SSE events, NDJSON lines) must match the documented
reply schema for the status and media type they came with (jsonschema, Draft 2020-12, as
OpenAPI 3.1 uses).

    python openapi_check.py BASE_URL ROUTES_JSON

ROUTES_JSON lists the router's routes as [method, path] pairs (axum's syntax); each must be
in the document, and the document must have no others.
"""

import json
import re
import sys
import urllib.error
import urllib.request

import jsonschema
from openapi_spec_validator import validate

BASE = sys.argv[1]
ROUTES = json.loads(sys.argv[2])


def fetch(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


status, _, text = fetch("GET", "/openapi.json")
assert status == 200, status
doc = json.loads(text)
validate(doc)

# Every route the router serves is documented, and nothing else is.
documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
served = {(m, re.sub(r"\{\*", "{", p)) for m, p in ROUTES}
assert documented == served, (documented - served, served - documented)


def schema_validator(schema):
    # Refs point into the document's components, so they go along.
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def operation(method, path):
    for template, item in doc["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if method.lower() in item and re.match(pattern, path.split("?")[0]):
            return item[method.lower()]
    raise AssertionError(f"{method} {path} is not in the document")


def items(media, text):
    """The JSON values a reply carries: the body, or each SSE event, or each line."""
    if media.startswith("text/event-stream"):
        return [
            json.loads(line[len("data: "):])
            for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    if media.startswith("application/x-ndjson"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [json.loads(text)]


checked = 0


def check(method, path, body=None, expect=200):
    global checked
    op = operation(method, path)
    if body is not None:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        schema_validator(schema).validate(body)
    status, content_type, text = fetch(method, path, body)
    assert status == expect, f"{method} {path}: {status} {text}"
    response = op["responses"][str(status)]
    media = content_type.split(";")[0].strip()
    assert media in response["content"], f"{method} {path}: {media} not documented for {status}"
    validator = schema_validator(response["content"][media]["schema"])
    values = items(media, text)
    assert values, f"{method} {path}: nothing in the reply"
    for value in values:
        validator.validate(value)
    checked += len(values)


chat = {
    "model": "smollm2",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "max_tokens": 3,
    "temperature": 0,
    "logprobs": True,
    "top_logprobs": 2,
}
check("GET", "/v1/models")
check("GET", "/v1/models/smollm2")
check("POST", "/v1/chat/completions", chat)
check("POST", "/v1/chat/completions", {**chat, "stream": True, "stream_options": {"include_usage": True}})
completion = {"model": "smollm2", "prompt": "The sky is", "max_tokens": 3, "logprobs": 2}
check("POST", "/v1/completions", completion)
check("POST", "/v1/completions", {**completion, "stream": True})
check("POST", "/v1/embeddings", {"model": "all-minilm", "input": ["a cat", "a dog"]})
check("POST", "/api/generate", {"model": "smollm2", "prompt": "Hi", "options": {"num_predict": 3}})
check("POST", "/api/generate", {"model": "smollm2", "prompt": "Hi", "stream": False, "options": {"num_predict": 3}})
check("POST", "/api/chat", {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "stream": False, "options": {"num_predict": 3}})
check("POST", "/api/embed", {"model": "all-minilm", "input": "a cat"})
check("POST", "/api/embeddings", {"model": "all-minilm", "prompt": "a cat"})
check("GET", "/api/tags")
check("POST", "/api/show", {"model": "smollm2"})
check("GET", "/api/ps")
check("GET", "/api/version")
check("POST", "/tokenize", {"model": "smollm2", "prompt": "Hello world"})
check("POST", "/detokenize", {"model": "smollm2", "tokens": [19556, 905]})
check("GET", "/tokenizer_info?model=smollm2")
check("GET", "/health")
check("GET", "/v1/collections")
# Errors come in each API's documented shape.
check("POST", "/v1/chat/completions", {**chat, "model": "no-such-model"}, expect=404)
check("POST", "/api/generate", {"model": "no-such-model", "prompt": "Hi"}, expect=404)
check("POST", "/v1/chat/completions", {**chat, "temperature": 9}, expect=400)

# The schemas are not vacuous: a chat without messages, or with a number for a model, fails.
request_schema = operation("POST", "/v1/chat/completions")["requestBody"]["content"]["application/json"]["schema"]
for bad in [{"model": "smollm2"}, {"model": 7, "messages": []}]:
    errors = list(schema_validator(request_schema).iter_errors(bad))
    assert errors, f"{bad} passed the request schema"

print(json.dumps({"paths": len(doc["paths"]), "schemas": len(doc["components"]["schemas"]), "values_checked": checked}))

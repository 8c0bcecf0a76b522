"""Ten JSON Schemas of increasing difficulty, each with the prompt it is sampled for, and
the sampling both users of them share.

Shared by structured_client.py (the test) and scripts/bench_structured.py (the validity
table in docs/BENCHMARKS.md).
"""


def sample(client, model, schema, n, max_tokens):
    """n chat completions of one schema at temperature 1.0 (`response_format: json_schema`),
    in requests of at most 16 choices seeded 0, 16, 32, ... Returns (text, finish_reason)
    pairs and the mean completion tokens per reply."""
    outputs, tokens = [], 0
    while len(outputs) < n:
        batch = min(16, n - len(outputs))
        r = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": schema["prompt"]}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": schema["name"], "schema": schema["schema"], "strict": True},
            },
            temperature=1.0,
            n=batch,
            seed=len(outputs),
            max_tokens=max_tokens,
        )
        outputs.extend((c.message.content, c.finish_reason) for c in r.choices)
        tokens += r.usage.completion_tokens
    return outputs, tokens / n


SCHEMAS = [
    {
        "name": "flat",
        "prompt": "Describe a person with a name and an age.",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        },
    },
    {
        "name": "enum_boolean",
        "prompt": "Describe a traffic light's state.",
        "schema": {
            "type": "object",
            "properties": {
                "colour": {"enum": ["red", "amber", "green"]},
                "blinking": {"type": "boolean"},
            },
            "required": ["colour", "blinking"],
            "additionalProperties": False,
        },
    },
    {
        "name": "bounded_numbers",
        "prompt": "Give a product review with a rating and a price.",
        "schema": {
            "type": "object",
            "properties": {
                "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
                "discount": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "required": ["rating", "price", "discount"],
            "additionalProperties": False,
        },
    },
    {
        "name": "string_array",
        "prompt": "List some fruits.",
        "schema": {
            "type": "object",
            "properties": {
                "fruits": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 2,
                    "maxItems": 5,
                }
            },
            "required": ["fruits"],
            "additionalProperties": False,
        },
    },
    {
        "name": "nested_object",
        "prompt": "Give a customer record with an address.",
        "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "address": {
                    "type": "object",
                    "properties": {
                        "street": {"type": "string"},
                        "city": {"type": "string"},
                        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                    },
                    "required": ["street", "city", "zip"],
                    "additionalProperties": False,
                },
            },
            "required": ["name", "address"],
            "additionalProperties": False,
        },
    },
    {
        "name": "array_of_objects",
        "prompt": "List the items on a shopping receipt.",
        "schema": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 4,
                    "items": {
                        "type": "object",
                        "properties": {
                            "product": {"type": "string"},
                            "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                            "unit_price": {"type": "number", "minimum": 0},
                        },
                        "required": ["product", "quantity", "unit_price"],
                        "additionalProperties": False,
                    },
                },
                "paid": {"type": "boolean"},
            },
            "required": ["items", "paid"],
            "additionalProperties": False,
        },
    },
    {
        "name": "required_and_optional",
        "prompt": "Describe a book.",
        "schema": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "author": {"type": "string"},
                "year": {"type": "integer", "minimum": 1400, "maximum": 2030},
                "isbn": {"type": "string", "pattern": "^[0-9]{13}$"},
                "genres": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                "in_print": {"type": "boolean"},
            },
            "required": ["title", "year"],
            "additionalProperties": False,
        },
    },
    {
        "name": "patterns_and_formats",
        "prompt": "Give a flight booking.",
        "schema": {
            "type": "object",
            "properties": {
                "flight": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{3,4}$"},
                "from": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "to": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "date": {"type": "string", "format": "date"},
                "seat": {"type": "string", "pattern": "^[0-9]{1,2}[A-F]$"},
                "email": {"type": "string", "format": "email"},
            },
            "required": ["flight", "from", "to", "date", "seat", "email"],
            "additionalProperties": False,
        },
    },
    {
        "name": "refs",
        "prompt": "Describe a route between two places.",
        "schema": {
            "$defs": {
                "point": {
                    "type": "object",
                    "properties": {
                        "lat": {"type": "number", "minimum": -90, "maximum": 90},
                        "lon": {"type": "number", "minimum": -180, "maximum": 180},
                        "label": {"type": "string"},
                    },
                    "required": ["lat", "lon"],
                    "additionalProperties": False,
                }
            },
            "type": "object",
            "properties": {
                "start": {"$ref": "#/$defs/point"},
                "end": {"$ref": "#/$defs/point"},
                "stops": {"type": "array", "items": {"$ref": "#/$defs/point"}, "maxItems": 3},
            },
            "required": ["start", "end"],
            "additionalProperties": False,
        },
    },
    {
        "name": "unions_and_consts",
        "prompt": "Give an event from a home-automation log.",
        "schema": {
            "type": "object",
            "properties": {
                "version": {"const": 2},
                "event": {
                    "anyOf": [
                        {
                            "type": "object",
                            "properties": {
                                "kind": {"const": "temperature"},
                                "celsius": {"type": "number", "minimum": -40, "maximum": 60},
                            },
                            "required": ["kind", "celsius"],
                            "additionalProperties": False,
                        },
                        {
                            "type": "object",
                            "properties": {
                                "kind": {"const": "door"},
                                "open": {"type": "boolean"},
                                "room": {"enum": ["hall", "kitchen", "garage"]},
                            },
                            "required": ["kind", "open", "room"],
                            "additionalProperties": False,
                        },
                    ]
                },
                "tags": {
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
                    "maxItems": 4,
                },
            },
            "required": ["version", "event", "tags"],
            "additionalProperties": False,
        },
    },
]

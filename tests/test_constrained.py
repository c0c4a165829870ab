"""Grammar-constrained decoding (backends/grammar.py) with the real embedded model."""

from __future__ import annotations

import json

import pytest

from textsynth.backends.base import Request
from textsynth.backends.grammar import json_schema
from textsynth.backends.transformers import TransformersBackend
from textsynth.config import GenerationParams, ModelConfig
from textsynth.generate import request_fingerprint
from textsynth.models import ModelIdentity
from textsynth.parse import parse_json

FIELDS = {
    "product": "str",
    "stars": "int",
    "recommended": "bool",
    "mood": ["pleased", "annoyed", "indifferent"],
}
ITEMS = ["blender", "tent", "kettle", "novel", "desk lamp", "phone"]


def _request(i: int, item: str, seed: int, schema: dict | None) -> Request:
    ask = (
        f"Describe a customer's opinion of a {item} as a JSON object with product, stars, recommended "
        "and the customer's mood."
    )
    return Request(f"r{i}-{seed}", [{"role": "user", "content": ask}], seed, schema=schema)


def test_json_schema_requires_exactly_the_fields():
    schema = json_schema(FIELDS)
    assert schema["required"] == list(FIELDS)
    assert schema["additionalProperties"] is False
    assert [p.get("type") for p in schema["properties"].values()] == ["string", "integer", "boolean", None]
    assert schema["properties"]["mood"] == {"enum": FIELDS["mood"]}


def test_a_choice_field_parses_only_its_strings():
    good = '{"product": "kettle", "stars": 4, "recommended": true, "mood": "pleased"}'
    assert parse_json(good, FIELDS)["mood"] == "pleased"
    assert parse_json(good.replace("pleased", "thrilled"), FIELDS) is None


def test_sampled_json_always_parses_to_its_fields():
    backend = TransformersBackend(ModelConfig(batch_size=8))
    params = GenerationParams(max_new_tokens=96, temperature=0.8)
    schema = json_schema(FIELDS)
    requests = [_request(i, item, seed, schema) for seed in (1, 2, 3) for i, item in enumerate(ITEMS)]
    done = list(backend.generate(requests, params))
    assert len(done) == len(requests)
    for c in done:
        assert c.finish_reason == "stop", c.text  # the row ended with the object, not at the limit
        assert list(json.loads(c.text)) == list(FIELDS)  # nothing around the object, no extra keys
        values = parse_json(c.text, FIELDS)
        assert values is not None, c.text
        assert isinstance(values["stars"], int) and isinstance(values["recommended"], bool)
        assert values["mood"] in FIELDS["mood"]
    assert len({c.text for c in done}) > len(done) // 2  # sampled, not one fixed object


@pytest.mark.slow
def test_constrained_rows_independent_of_batch_composition():
    """fp32: a row's tokens depend on its own seed and grammar, not on the rows beside it."""
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=12))
    params = GenerationParams(max_new_tokens=48, temperature=0.9)
    schema = json_schema(FIELDS)
    mixed = [_request(i, item, 7, schema if i % 2 else None) for i, item in enumerate(ITEMS)]
    together = {c.id: (c.text, c.tokens) for c in backend.generate(mixed, params)}
    backend.batch_size = 1
    alone = {c.id: (c.text, c.tokens) for c in backend.generate(mixed[::-1], params)}
    assert together == alone
    assert all(parse_json(together[r.id][0], FIELDS) for r in mixed if r.schema)


def test_schema_enters_the_fingerprint_only_when_on():
    model = ModelIdentity("m", "m", "r", "float32")
    msgs = [{"role": "user", "content": "hi"}]
    params = GenerationParams()
    plain = request_fingerprint(model, msgs, params, 1)
    assert request_fingerprint(model, msgs, params, 1, schema=None) == plain
    assert request_fingerprint(model, msgs, params, 1, schema=json_schema(FIELDS)) != plain

"""The length push: texts end near the length their prompt asked for, at a sentence end."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from textsynth.backends.base import Request
from textsynth.backends.openai import OpenAIBackend
from textsynth.backends.transformers import TransformersBackend
from textsynth.config import GenerationParams, ModelConfig
from textsynth.errors import ConfigError

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier

TOPICS = ["pizza place", "noodle bar", "steakhouse", "bakery", "taco truck", "sushi bar", "diner"]


@dataclass
class Counted:
    target: int | None
    words: int


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    return TransformersBackend(ModelConfig(dtype="float32", batch_size=7))


def _requests(target: int) -> list[Request]:
    ask = "Write a long, detailed review of a {} you visited, with all you ate. Output only the review."
    return [
        Request(f"r{i}", [{"role": "user", "content": ask.format(t)}], 2000 + i, target_words=target)
        for i, t in enumerate(TOPICS)
    ]


def test_sentence_ends_and_word_starts_come_from_the_tokenizer(backend):
    push = backend._length_push(1.0)
    assert push is not None
    tok = backend.loaded.tokenizer
    ends = set(push.ends.tolist())
    assert {tok.convert_tokens_to_ids(mark) for mark in (".", "!", "?")} <= ends
    (spaced,) = tok(" .", add_special_tokens=False)["input_ids"]
    assert spaced not in ends, "a detached full stop is no sentence end"
    assert set(push.stops.tolist()) == set(backend.eos.tolist())
    (food,) = tok(" food", add_special_tokens=False)["input_ids"]
    (the,) = tok("the", add_special_tokens=False)["input_ids"]
    assert food not in ends and push.word_starts[food] and not push.word_starts[the]
    assert not push.word_starts[spaced], "punctuation is no word"


def test_the_bonus_grows_per_word_past_the_target_and_only_on_sentence_ends(backend):
    push = backend._length_push(0.5)
    assert push is not None
    rows = [Counted(5, 4), Counted(5, 5), Counted(5, 7), Counted(None, 30)]
    logits = torch.zeros(len(rows), len(push.word_starts), dtype=torch.bfloat16)
    out = push.apply(logits, rows)
    ends, stops = push.ends, push.stops
    assert out.dtype == torch.float32 and not logits.any(), "a copy; the input is untouched"
    assert out[0].abs().sum() == 0 and out[3].abs().sum() == 0, "before the target, or without one"
    assert torch.all(out[1, ends] == 0.5) and torch.all(out[1, stops] == 0.5)
    assert torch.all(out[2, ends] == 1.5) and torch.all(out[2, stops] == 1.5)
    others = torch.ones(out.shape[1], dtype=torch.bool)
    others[ends] = False
    others[stops] = False
    assert out[:, others].abs().sum() == 0
    same = torch.zeros(1, 10)
    assert push.apply(same, [Counted(5, 1)]) is same, "nothing to add: no copy"
    full_stop = int(ends[0])
    assert push.closes(Counted(5, 5), full_stop) and not push.closes(Counted(5, 4), full_stop)
    (comma,) = backend.loaded.tokenizer(",", add_special_tokens=False)["input_ids"]
    assert not push.closes(Counted(5, 9), comma), "only a sentence end closes a row"


def test_pushed_texts_end_near_their_target_at_a_sentence_end(backend):
    free = GenerationParams(max_new_tokens=40, temperature=0.8)
    pushed = free.model_copy(update={"length_push": 1.0})
    long = {c.id: c for c in backend.generate(_requests(6), free)}
    short = {c.id: c for c in backend.generate(_requests(6), pushed)}
    words = {k: len(c.text.split()) for k, c in short.items()}
    assert sum(words.values()) < 0.6 * sum(len(c.text.split()) for c in long.values())
    for c in short.values():
        # each word past 6 adds 1 to the ends' logits: +20 outweighs any preference seen
        assert c.finish_reason == "stop" and words[c.id] <= 6 + 20, c.text
        assert c.text.rstrip().endswith((".", "!", "?")) or len(c.text.split()) < 6, c.text
    backend.batch_size = 3  # refills split differently: each row's push is its own
    apart = {c.id: c.text for c in backend.generate(_requests(6)[::-1], pushed)}
    backend.batch_size = 7
    assert apart == {k: c.text for k, c in short.items()}


def test_the_push_enters_the_fingerprint_only_when_on():
    assert "length_push" not in GenerationParams().fingerprint_params()
    assert GenerationParams(length_push=0.5).fingerprint_params()["length_push"] == 0.5


def test_a_server_backend_refuses_the_push_before_any_request():
    server = OpenAIBackend(ModelConfig(backend="openai", base_url="http://127.0.0.1:9/v1", name="m"))
    with pytest.raises(ConfigError, match=r"generation\.length_push: OpenAIBackend cannot"):
        server.check([], GenerationParams(length_push=1.0))

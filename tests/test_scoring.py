"""Choice scores go through the completion cache: each text is scored once, misses only."""

from __future__ import annotations

import numpy as np

from textsynth.backends.transformers import TransformersBackend
from textsynth.cache import CompletionCache
from textsynth.config import ModelConfig
from textsynth.models import identify
from textsynth.scoring import CachedScorer

CHOICES = ["positive", "negative"]


def _prompt(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Text: {text}\n\nIs this text positive or negative?"}]


def test_scores_are_computed_once_and_the_model_loads_only_for_misses(tmp_path):
    config = ModelConfig(dtype="float32")
    loads: list[int] = []

    def backend() -> TransformersBackend:
        loads.append(1)
        return TransformersBackend(config)

    texts = ["I love it.", "It broke on day one.", "Best purchase this year."]
    cache = CompletionCache(tmp_path / "cache.sqlite")
    first = CachedScorer(backend, cache, identify(config))
    scores = first.score([_prompt(t) for t in texts], CHOICES)
    assert first.computed == 3 and len(loads) == 1 and scores.shape == (3, 2)
    assert np.isfinite(scores).all() and (scores < 0).all(), "log-likelihoods of the two choices"
    cache.close()

    reopened = CompletionCache(tmp_path / "cache.sqlite")  # a resume: a new process, same cache
    again = CachedScorer(backend, reopened, identify(config))
    assert np.array_equal(again.score([_prompt(t) for t in texts], CHOICES), scores)
    assert again.computed == 0 and len(loads) == 1, "everything cached: the model is not loaded"
    more = again.score([_prompt(t) for t in [*texts, "Meh."]], CHOICES)
    assert again.computed == 1 and np.array_equal(more[:3], scores)
    other = again.score([_prompt(texts[0])], ["good", "bad"])
    assert again.computed == 2 and other.shape == (1, 2), "other choices are another question"

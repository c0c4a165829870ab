"""Choice scores go through the completion cache: each text is scored once, misses only."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console
from rich.progress import Progress

from textsynth.backends.transformers import TransformersBackend
from textsynth.cache import CompletionCache
from textsynth.config import ModelConfig
from textsynth.models import identify
from textsynth.scoring import CHUNK, CachedScorer

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


def test_many_texts_are_scored_in_chunks_each_cached_when_done_behind_a_progress_bar(tmp_path):
    """The second chunk fails (an injected fault: a real model does not fail on demand); the first
    chunk's scores are in the cache, those of scoring every text in one call (fp32), and the
    progress bar was shown under its name."""
    config = ModelConfig(dtype="float32")
    model = TransformersBackend(config)
    texts = [f"Review number {i}: {'great' if i % 2 else 'awful'} value." for i in range(CHUNK + 6)]
    prompts = [_prompt(t) for t in texts]
    whole = model.score(prompts, CHOICES)

    class FailsOnSecondCall:
        def __init__(self) -> None:
            self.calls = 0

        def score(self, batch, choices):
            self.calls += 1
            if self.calls == 2:
                raise OSError("the machine went away")
            return model.score(batch, choices)

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    cache = CompletionCache(tmp_path / "cache.sqlite")
    failing = FailsOnSecondCall()
    scorer = CachedScorer(
        lambda: failing, cache, identify(config), lambda: Progress(console=console), "label check"
    )
    with pytest.raises(OSError):
        scorer.score(prompts, CHOICES)
    assert "label check" in out.getvalue()
    assert scorer.computed == CHUNK
    fresh = CachedScorer(lambda: model, cache, identify(config))
    # padding differs between chunks and one call: equal up to fp32 rounding
    assert np.allclose(fresh.score(prompts, CHOICES), whole, atol=1e-4)
    assert fresh.computed == len(texts) - CHUNK  # only the chunk that failed was scored again

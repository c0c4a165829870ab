"""Choice scoring through the completion cache.

The label check asks the generating model for the log-likelihood of each label name after each
text. Keyed on model identity, prompt and choices, each answer is computed once per cache: a
top-up round scores only its new texts, a resume scores none, and a build whose scores are all
cached never loads the model for them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

import numpy as np

from textsynth.backends import Backend
from textsynth.cache import CompletionCache
from textsynth.models import ModelIdentity


class CachedScorer:
    """`Backend.score` with answers looked up first; the backend loads only for misses."""

    def __init__(self, backend: Callable[[], Backend], cache: CompletionCache, model: ModelIdentity) -> None:
        self.backend, self.cache, self.model = backend, cache, model
        self.computed = 0

    def _key(self, prompt: list[dict[str, str]], choices: Sequence[str]) -> str:
        body = {"model": [self.model.model_id, self.model.revision, self.model.dtype], "prompt": prompt}
        body["choices"] = list(choices)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def score(self, prompts: Sequence[list[dict[str, str]]], choices: Sequence[str]) -> np.ndarray:
        keys = [self._key(p, choices) for p in prompts]
        found = self.cache.get_scores(list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            where = {k: i for i, k in enumerate(keys)}
            rows = np.asarray(
                self.backend().score([prompts[where[k]] for k in missing], choices), dtype=float
            )
            self.cache.put_scores(zip(missing, rows.tolist()))
            found.update(zip(missing, rows.tolist()))
            self.computed += len(missing)
        return np.array([found[k] for k in keys], dtype=float).reshape(len(prompts), len(choices))

"""Choice scoring through the completion cache.

The label check asks the generating model for the log-likelihood of each label name after each
text. Keyed on model identity, prompt and choices, each answer is computed once per cache: a
top-up round scores only its new texts, a resume scores none, and a build whose scores are all
cached never loads the model for them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence

import numpy as np
from rich.progress import Progress

from textsynth.backends import Backend
from textsynth.cache import CompletionCache
from textsynth.models import ModelIdentity

CHUNK = 64  # texts scored, cached and shown on the progress bar at a time


class CachedScorer:
    """`Backend.score` with answers looked up first; the backend loads only for misses, which are
    scored in chunks: each chunk is cached when done (a crash keeps it) and advances a progress bar
    named `what` (scoring 300 texts against 10 labels takes minutes on a CPU)."""

    def __init__(
        self,
        backend: Callable[[], Backend],
        cache: CompletionCache,
        model: ModelIdentity,
        progress: Callable[[], Progress] | None = None,
        what: str = "scoring",
    ) -> None:
        self.backend, self.cache, self.model = backend, cache, model
        self.progress, self.what = progress, what
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
            found.update(self._compute([(k, prompts[where[k]]) for k in missing], choices))
        return np.array([found[k] for k in keys], dtype=float).reshape(len(prompts), len(choices))

    def _compute(
        self, todo: list[tuple[str, list[dict[str, str]]]], choices: Sequence[str]
    ) -> dict[str, list[float]]:
        backend, done = self.backend(), {}
        shown = self.progress is not None and len(todo) > CHUNK  # a bar only where it takes a while
        progress = self.progress() if shown else Progress(disable=True)
        with progress:
            task, start = progress.add_task(self.what, total=len(todo), rate=0.0), time.perf_counter()
            for at in range(0, len(todo), CHUNK):
                chunk = todo[at : at + CHUNK]
                rows = np.asarray(backend.score([p for _, p in chunk], choices), dtype=float).tolist()
                self.cache.put_scores(zip([k for k, _ in chunk], rows))
                done.update(zip([k for k, _ in chunk], rows))
                self.computed += len(chunk)
                progress.update(task, completed=len(done), rate=len(done) / (time.perf_counter() - start))
        return done

"""The Ray executor: one actor pool per build, one model per actor, for generation and scoring.

It wraps any backend, so completions come back through the same generation stage: stored in the
same shards and cache, batch by batch, in the order Ray finishes them. The actors start on first
use and serve every round, step, retry and choice-scoring call of the build, so each loads the
model once. `ray.init()` starts a local Ray on this machine, or joins the cluster that
`RAY_ADDRESS` names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from textsynth.backends.base import Backend, Completion, Request
from textsynth.config import ExecutorConfig, GenerationParams, ModelConfig
from textsynth.errors import ModelError
from textsynth.models import identify


class _Worker:
    """One Ray actor: loads the backend once, then completes and scores batches."""

    def __init__(self, model: dict[str, Any], threads: int) -> None:
        import torch

        from textsynth.backends import load_backend

        torch.set_num_threads(max(1, threads))
        self.backend = load_backend(ModelConfig.model_validate(model))

    def generate(self, requests: list[Request], params: dict[str, Any]) -> list[Completion]:
        done = {c.id: c for c in self.backend.generate(requests, GenerationParams.model_validate(params))}
        return [done[r.id] for r in requests]

    def score(self, prompts: list[list[dict[str, str]]], choices: list[str]) -> np.ndarray:
        return np.asarray(self.backend.score(prompts, choices), dtype=float)

    def model_loads(self) -> int:
        return self.backend.model_loads()


class RayBackend(Backend):
    def __init__(self, config: ModelConfig, executor: ExecutorConfig) -> None:
        try:
            import ray
        except ImportError:
            raise ModelError("executor: ray is not installed (pip install ray)") from None
        # the actors' own backend decodes guidance rows, pushes lengths and continues a reply's
        # opening, or it does not
        self.supports_guidance = self.supports_length_push = config.backend == "transformers"
        self.supports_opening = config.backend != "openai" or config.api == "completions"
        ident = identify(config)
        self.config, self.executor = config, executor
        self.model_id, self.revision, self.dtype = ident.model_id, ident.revision, ident.dtype
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False, include_dashboard=False)
        self._actors: list[Any] = []

    def _pool(self) -> list[Any]:
        """The build's actors, started on first use and kept for every later call."""
        if not self._actors:
            import ray

            worker = ray.remote(num_cpus=self.executor.num_cpus, num_gpus=self.executor.num_gpus)(_Worker)
            model, threads = self.config.model_dump(mode="json"), int(self.executor.num_cpus)
            self._actors = [worker.remote(model, threads) for _ in range(self.executor.actors)]
        return self._actors

    def generate(self, requests: Sequence[Request], params: GenerationParams) -> Iterator[Completion]:
        from ray.util import ActorPool

        if not requests:
            return
        size = self.config.batch_size
        chunks = [list(requests[i : i + size]) for i in range(0, len(requests), size)]
        wire = params.model_dump(mode="json")
        for batch in ActorPool(self._pool()).map_unordered(lambda a, c: a.generate.remote(c, wire), chunks):
            yield from batch

    def score(self, prompts: Sequence[list[dict[str, str]]], choices: Sequence[str]) -> np.ndarray:
        import ray

        if not prompts:
            return np.zeros((0, len(choices)))
        actors = self._pool()
        size = math.ceil(len(prompts) / len(actors))
        parts = [list(prompts[i : i + size]) for i in range(0, len(prompts), size)]
        refs = [actor.score.remote(part, list(choices)) for actor, part in zip(actors, parts)]
        return np.concatenate(ray.get(refs))

    def model_loads(self) -> int:
        import ray

        return sum(ray.get([actor.model_loads.remote() for actor in self._actors]))

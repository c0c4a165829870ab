"""The Ray executor: generation as a Ray Data `map_batches` over an actor pool, one model per actor.

It wraps any backend, so completions come back through the same generation stage: stored in the
same shards and cache, batch by batch, in the order Ray finishes them. `ray.init()` starts a local
Ray on this machine, or joins the cluster that `RAY_ADDRESS` names. Choice scoring (label check,
judge) is small and runs on one backend in the driver.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from textsynth.backends.base import Backend, Completion, Request
from textsynth.config import ExecutorConfig, GenerationParams, ModelConfig
from textsynth.errors import ModelError
from textsynth.models import identify


class _Worker:
    """One Ray actor: loads the backend once, completes batches of serialized requests."""

    def __init__(self, model: dict[str, Any], params: dict[str, Any], threads: int) -> None:
        import torch

        from textsynth.backends import make_backend

        torch.set_num_threads(max(1, threads))
        self.backend = make_backend(ModelConfig.model_validate(model))
        self.params = GenerationParams.model_validate(params)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        requests = [
            Request(str(rid), json.loads(messages), int(seed), json.loads(negative), json.loads(schema))
            for rid, messages, seed, negative, schema in zip(
                batch["id"], batch["messages"], batch["seed"], batch["negative"], batch["schema"]
            )
        ]
        done = {c.id: c for c in self.backend.generate(requests, self.params)}
        rows = [done[r.id] for r in requests]
        return {
            "id": [c.id for c in rows],
            "text": [c.text for c in rows],
            "tokens": [c.tokens for c in rows],
            "finish_reason": [c.finish_reason for c in rows],
        }


class RayBackend(Backend):
    supports_guidance = True  # each actor runs the transformers backend

    def __init__(self, config: ModelConfig, executor: ExecutorConfig) -> None:
        try:
            import ray
        except ImportError:
            raise ModelError('executor: ray is not installed (pip install "ray[data]")') from None
        ident = identify(config)
        self.config, self.executor = config, executor
        self.model_id, self.revision, self.dtype = ident.model_id, ident.revision, ident.dtype
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False, include_dashboard=False)
        self._local: Backend | None = None

    def generate(self, requests: Sequence[Request], params: GenerationParams) -> Iterator[Completion]:
        import ray

        if not requests:
            return
        ray.data.DataContext.get_current().enable_progress_bars = False
        rows = [
            {
                "id": r.id,
                "messages": json.dumps(r.messages),
                "seed": r.seed,
                "negative": json.dumps(r.negative),  # guidance prompt and JSON schema travel with
                "schema": json.dumps(r.schema),  # the request: actors decode exactly what it asks
            }
            for r in requests
        ]
        out = ray.data.from_items(rows).map_batches(
            _Worker,
            fn_constructor_kwargs={
                "model": self.config.model_dump(mode="json"),
                "params": params.model_dump(mode="json"),
                "threads": int(self.executor.num_cpus),
            },
            batch_size=self.config.batch_size,
            concurrency=self.executor.actors,
            num_cpus=self.executor.num_cpus,
            num_gpus=self.executor.num_gpus,
        )
        for row in out.iter_rows():
            yield Completion(row["id"], row["text"], int(row["tokens"]), row["finish_reason"])

    def score(self, prompts: Sequence[list[dict[str, str]]], choices: Sequence[str]) -> np.ndarray:
        if self._local is None:
            from textsynth.backends import make_backend

            self._local = make_backend(self.config)
        return self._local.score(prompts, choices)

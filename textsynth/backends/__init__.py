"""Generation backends behind one small protocol; `make_backend` picks one by name."""

from __future__ import annotations

from textsynth.backends.base import Backend, Completion, Request
from textsynth.config import ModelConfig


def make_backend(config: ModelConfig) -> Backend:
    """The backend a pipeline's `model.backend` names, with its model loaded."""
    if config.backend == "transformers":
        from textsynth.backends.transformers import TransformersBackend

        return TransformersBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")


__all__ = ["Backend", "Completion", "Request", "make_backend"]

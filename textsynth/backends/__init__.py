"""Generation backends behind one small protocol; `load_backend` picks one by name."""

from __future__ import annotations

from textsynth.backends.base import Backend, Completion, Feed, Request
from textsynth.config import ExecutorConfig, ModelConfig


def load_backend(config: ModelConfig) -> Backend:
    """The backend a pipeline's `model.backend` names, with its model loaded."""
    if config.backend == "transformers":
        from textsynth.backends.transformers import TransformersBackend

        return TransformersBackend(config)
    if config.backend == "vllm":
        from textsynth.backends.vllm import VLLMBackend

        return VLLMBackend(config)
    if config.backend == "openai":
        from textsynth.backends.openai import OpenAIBackend

        return OpenAIBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")


def start_backend(model: ModelConfig, executor: ExecutorConfig) -> Backend:
    """The pipeline's backend, run where its executor says (this process or a Ray actor pool)."""
    if executor.kind == "ray":
        from textsynth.backends.ray import RayBackend

        return RayBackend(model, executor)
    return load_backend(model)


__all__ = ["Backend", "Completion", "Feed", "Request", "load_backend", "start_backend"]

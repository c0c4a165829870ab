"""textsynth: labeled synthetic text datasets from a local language model."""

from __future__ import annotations

from typing import Any


def build(*args: Any, **kwargs: Any) -> Any:
    """Build a pipeline and return its `DatasetDict`; see `textsynth.pipeline.build`."""
    from textsynth.pipeline import build as _build

    return _build(*args, **kwargs)


__all__ = ["build"]

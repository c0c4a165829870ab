"""The backend protocol: requests in, completions out, batching inside the backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from textsynth.config import GenerationParams
from textsynth.errors import ConfigError


@dataclass(frozen=True)
class Request:
    """One prompt to complete; `seed` alone decides its random choices.

    `negatives` are the guidance prompts (the same request naming each label it is contrasted
    with), decoded beside it when `guidance_scale` > 1. `schema` is the JSON schema a JSON step's
    completion must fit; every backend constrains decoding to it, so the completion parses.
    `target_words` is the length the prompt asked for, which `length_push` holds the text to.
    """

    id: str
    messages: list[dict[str, str]]
    seed: int
    negatives: tuple[list[dict[str, str]], ...] = ()
    schema: dict[str, Any] | None = None
    target_words: int | None = None


@dataclass(frozen=True)
class Completion:
    id: str
    text: str
    tokens: int
    finish_reason: Literal["stop", "length"]


class Feed:
    """Groups of requests a caller may add to while a backend streams their completions.

    A build adds its planned-ahead requests when the probe's last completion arrives, while the
    rest still decode: a backend that batches continuously admits them as rows free up instead of
    starting a round after the stream ends. Groups are taken in order.
    """

    def __init__(self, *groups: Sequence[Request]) -> None:
        self.groups: deque[list[Request]] = deque()
        self.requests: dict[str, Request] = {}  # every request added, by id
        for group in groups:
            self.add(group)

    def add(self, group: Sequence[Request]) -> None:
        if group:
            self.groups.append(list(group))
            self.requests.update((r.id, r) for r in group)

    def take(self) -> list[Request] | None:
        """The next group, or None while nothing is waiting."""
        return self.groups.popleft() if self.groups else None


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the first of the stop strings (a backend may run past one)."""
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(ends)] if ends else text


def opening(messages: list[dict[str, str]]) -> str:
    """The reply's opening a template wrote (a final assistant message), or "": the model
    continues it, and a backend's completion is what comes after it."""
    return messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""


class Backend(ABC):
    """A loaded model that completes chat requests."""

    model_id: str
    revision: str
    dtype: str

    supports_guidance = False
    supports_length_push = False
    supports_opening = False

    def check(self, requests: Sequence[Request], params: GenerationParams) -> None:
        """Raise ConfigError if these requests cannot run with these parameters.

        The default accepts everything but guidance, the length push and a reply's opening: a remote
        server reports its other limits per request.
        """
        if params.guidance_scale != 1 and not self.supports_guidance:
            raise ConfigError(
                f"generation.guidance_scale: {type(self).__name__} cannot decode guidance rows; "
                "set it to 1 or use the transformers backend"
            )
        if not self.supports_opening and any(opening(r.messages) for r in requests):
            raise ConfigError(
                f"templates.assistant: {type(self).__name__} cannot continue a reply's opening; remove "
                "it, or use the transformers or vllm backend (or model.api: completions)"
            )
        if params.length_push and not self.supports_length_push:
            raise ConfigError(
                f"generation.length_push: {type(self).__name__} cannot change logits while decoding; "
                "set it to 0 or use the transformers backend"
            )

    @abstractmethod
    def generate(self, requests: Sequence[Request], params: GenerationParams) -> Iterator[Completion]:
        """Yield one completion per request, in whatever order they finish."""

    def stream(self, feed: Feed, params: GenerationParams) -> Iterator[Completion]:
        """Completions of every group the feed holds or is given while this runs. This default
        runs the groups one after another; a continuously batching backend overlaps them."""
        while (group := feed.take()) is not None:
            yield from self.generate(group, params)

    def score(self, prompts: Sequence[list[dict[str, str]]], choices: Sequence[str]) -> Any:
        """Log-likelihood of each choice as the reply to each chat prompt: array (prompts, choices).

        A constrained choice, not free text. Backends that cannot score raise NotImplementedError
        and callers fall back to signals that need no model.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot score choices")

    def model_loads(self) -> int:
        """Model loads this backend has cost in this process (a load is shared by every backend
        of the process) or in its workers."""
        from textsynth.models import model_loads

        return model_loads()

    def identity(self) -> dict[str, str]:
        """What identifies the weights and precision in provenance and fingerprints."""
        return {"model": self.model_id, "revision": self.revision, "dtype": self.dtype}

"""Memorization check against the seed examples: no kept text may copy a real record.

For every kept text: the cosine to its nearest seed text (embeddings, one matrix product per
block, seeds are few) and the longest word n-gram it shares with any seed text. Over either limit
the record is rejected `too_close_to_real`; both values stay in `scores` for the card's
distance-to-closest-record summary.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from textsynth.quality.base import Stage
from textsynth.quality.filters import words
from textsynth.quality_config import PrivacyConfig
from textsynth.records import Record


class SeedGrams:
    """Word n-gram sets of the seed texts, built per length on first use."""

    def __init__(self, seeds: list[str]) -> None:
        self.words = [words(s) for s in seeds]
        self._by_n: dict[int, set[tuple[str, ...]]] = {}

    def __getitem__(self, n: int) -> set[tuple[str, ...]]:
        if n not in self._by_n:
            self._by_n[n] = {tuple(w[i : i + n]) for w in self.words for i in range(len(w) - n + 1)}
        return self._by_n[n]


def longest_common_ngram(text: str, seed_grams: SeedGrams) -> int:
    """Length of the longest word n-gram that `text` shares with any seed text."""
    w = words(text)
    best = 0
    for n in range(1, len(w) + 1):
        if not any(tuple(w[i : i + n]) in seed_grams[n] for i in range(len(w) - n + 1)):
            break  # a common n-gram implies a common (n-1)-gram, so none longer exists either
        best = n
    return best


class Privacy(Stage):
    name = "privacy"

    def __init__(
        self, config: PrivacyConfig, seeds: list[str], embedder: Callable[[list[str]], np.ndarray]
    ) -> None:
        super().__init__()
        self.config = config
        self.seeds = seeds
        self.embedder = embedder

    def process(self, kept: list[Record]) -> None:
        if not kept or not self.seeds:
            return
        reals = self.embedder(self.seeds)
        vectors = self.embedder([r.text or "" for r in kept])
        grams = SeedGrams(self.seeds)
        for start in range(0, len(kept), 4096):
            sims = vectors[start : start + 4096] @ reals.T
            for r, row in zip(kept[start : start + 4096], sims):
                nearest = int(row.argmax())
                r.scores["real_cosine"] = round(float(row[nearest]), 4)
                r.scores["real_ngram"] = longest_common_ngram(r.text or "", grams)
                r.fields["nearest_real"] = nearest
                if (
                    r.scores["real_cosine"] > self.config.max_cosine_to_real
                    or r.scores["real_ngram"] >= self.config.max_common_ngram
                ):
                    r.reject("too_close_to_real")

"""The shared base of quality stages: it owns the loop over kept records and the counters.

A concrete filter only writes `check(record) -> reason | None`; the counters of all stages,
taken after each one ran, are the funnel.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field

from textsynth.records import Record


@dataclass
class StageStats:
    name: str
    seen: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


class Stage(ABC):
    """A step over the whole record list that rejects some kept records."""

    name: str = "stage"

    def __init__(self) -> None:
        self.stats = StageStats(self.name)

    def run(self, records: list[Record]) -> list[Record]:
        start = time.perf_counter()
        kept = [r for r in records if r.status == "kept"]
        self.stats.seen += len(kept)
        self.process(kept)
        for r in kept:
            if r.status == "rejected":
                self.stats.rejected[r.reasons[-1].split(":")[0]] += 1
        self.stats.seconds += time.perf_counter() - start
        return records

    @abstractmethod
    def process(self, kept: list[Record]) -> None:
        """Reject (record.reject(reason)) what fails; may also set scores."""


class Filter(Stage):
    """A per-record check."""

    def process(self, kept: list[Record]) -> None:
        for record in kept:
            reason = self.check(record)
            if reason:
                record.reject(reason)

    @abstractmethod
    def check(self, record: Record) -> str | None:
        """The rejection reason, or None to keep the record."""

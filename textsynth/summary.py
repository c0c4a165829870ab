"""What a build reports: its counts and per-phase wall times, and how it differs from the last one."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from textsynth.funnel import Funnel
from textsynth.generate import GenerationStats
from textsynth.records import Record
from textsynth.validation import Readout

T = TypeVar("T")


@dataclass
class Drift:
    """How the requests of this build differ from what the run directory already holds."""

    changed: int = 0
    new: int = 0
    dropped: int = 0

    def __bool__(self) -> bool:
        return bool(self.changed or self.new or self.dropped)


class PhaseClock:
    """Wall time per build phase; model loading is counted apart from the phase it happens in."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self.current: str | None = None
        self.since = time.perf_counter()

    def start(self, name: str | None) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.phases[self.current] = self.phases.get(self.current, 0.0) + now - self.since
        self.current, self.since = name, now

    def stop(self) -> None:
        self.start(None)

    def timed(self, name: str, make: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            outer = self.current
            self.start(name)
            try:
                return make()
            finally:
                self.start(outer)

        return run


@dataclass
class BuildSummary:
    planned: int
    gen: GenerationStats = field(default_factory=GenerationStats)
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    planned_labels: dict[str, int] = field(default_factory=dict)
    kept_labels: dict[str, int] = field(default_factory=dict)
    top_up_rounds: int = 0
    loop_rounds: int = 0  # rounds steered by real validation (loop.py)
    planned_ahead: int = 0  # extra requests from the rejection rate of the first batches
    probe_loss: dict[str, float] = field(default_factory=dict)  # that rate per label (quotas.py)
    label_signals: list[str] = field(default_factory=list)
    shortfall: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds: load, generate, quality, ...
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds per quality stage, all rounds
    model_loads: int = 0  # by this process, or by the Ray actors of the build
    drift: Drift | None = None
    funnel: Funnel | None = None
    real_validation: list[Readout] = field(default_factory=list)  # one per round, with labeled seeds

    @property
    def generated(self) -> int:
        return self.gen.generated

    @property
    def reused(self) -> int:
        return self.gen.reused

    @property
    def cached(self) -> int:
        return self.gen.cached

    @property
    def examples_per_s(self) -> float:
        return self.gen.generated / self.gen.seconds if self.gen.seconds else 0.0

    def finish(self, records: list[Record], quotas: dict[str, int]) -> None:
        """Fill the counts that depend on the final record states."""
        self.planned_labels = dict(quotas)
        self.kept_labels = dict(Counter(r.label for r in records if r.status == "kept"))
        self.kept = sum(self.kept_labels.values())
        self.rejected = Counter(r.reasons[0].split(":")[0] for r in records if r.status == "rejected")
        self.shortfall = {
            label: want - self.kept_labels.get(label, 0)
            for label, want in quotas.items()
            if self.kept_labels.get(label, 0) < want
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "generated": self.gen.generated,
            "reused": self.gen.reused,
            "cached": self.gen.cached,
            "kept": self.kept,
            "rejected": dict(self.rejected),
            "planned_labels": self.planned_labels,
            "kept_labels": self.kept_labels,
            "shortfall": self.shortfall,
            "top_up_rounds": self.top_up_rounds,
            "loop_rounds": self.loop_rounds,
            "planned_ahead": self.planned_ahead,
            "probe_loss": self.probe_loss,
            "label_check_signals": self.label_signals,
            "tokens": self.gen.tokens,
            "generation_s": round(self.gen.seconds, 2),
            "wall_s": round(self.wall_s, 2),
            "phases_s": {k: round(v, 2) for k, v in self.phases.items()},
            "stages_s": {k: round(v, 2) for k, v in self.stages.items()},
            "model_loads": self.model_loads,
            "examples_per_s": round(self.examples_per_s, 3),
            "drift": vars(self.drift) if self.drift else None,
            "real_validation": [r.to_dict() for r in self.real_validation],
        }

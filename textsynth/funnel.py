"""The funnel: how many records are still kept after each step, per label and per leaf."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from textsynth.records import Record
from textsynth.taxonomy import leaf_key


@dataclass
class Funnel:
    steps: list[str] = field(default_factory=list)
    total: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, dict[str, int]] = field(default_factory=dict)
    by_leaf: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)

    def snapshot(self, step: str, records: list[Record], count_all: bool = False) -> None:
        """Count kept records (or all records, for 'planned') after `step`."""
        chosen = records if count_all else [r for r in records if r.status == "kept"]
        self.steps.append(step)
        self.total[step] = len(chosen)
        self.by_label[step] = dict(Counter(r.label for r in chosen))
        self.by_leaf[step] = dict(Counter(f"{r.label}|{leaf_key(r.attributes)}" for r in chosen))

    def record_reasons(self, step: str, reasons: Counter[str]) -> None:
        if reasons:
            self.reasons[step] = dict(reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "total": self.total,
            "by_label": self.by_label,
            "by_leaf": self.by_leaf,
            "rejected_by_step": self.reasons,
        }

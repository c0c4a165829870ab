"""The one record type that flows through every stage (see DESIGN.md).

Records are never deleted: a stage that rejects one sets `status` and appends a reason, so the
quarantine and the funnel are the same data as the dataset.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["kept", "rejected"]


@dataclass
class Record:
    id: str
    label: str
    attributes: dict[str, str]
    text: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    status: Status = "kept"
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    cluster: str | None = None

    def reject(self, reason: str) -> None:
        self.status = "rejected"
        if reason not in self.reasons:
            self.reasons.append(reason)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Record:
        return cls(**json.loads(line))

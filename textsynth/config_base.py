"""The base of every pipeline config section."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class ConfigBase(BaseModel):
    """Every section forbids unknown keys so a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def updated(self, path: str, value: Any) -> Self:
        """A copy with the field at the dotted `path` (e.g. `quality.plan_ahead`) set to `value`:
        the sections are frozen, so each one on the way is copied."""
        head, _, rest = path.partition(".")
        if rest:
            value = getattr(self, head).updated(rest, value)
        return self.model_copy(update={head: value})

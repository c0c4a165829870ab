"""Named points in a build where a crash test can stop it.

Production code only calls `point(name)` at the places a crash matters (mid-shard, before the
quality stage, inside a top-up round, ...). Nothing happens unless a test installed a hook in
`HOOKS` (tests/crash.py kills, stops or fails the process there), so tests stop a real build at
exact places instead of racing a timer, and no production code reads a test's switch.
"""

from __future__ import annotations

from collections.abc import Callable

HOOKS: list[Callable[[str], None]] = []


def point(name: str) -> None:
    """Hand the point to every installed hook (none outside tests)."""
    for hook in HOOKS:
        hook(name)

"""Crash a real build at a named fault point (textsynth/faults.py), then or the k-th time.

Used as a script, it installs the hook and runs the CLI in this process, so a test (or
benchmarks/resume_match.py) gets a real process killed at an exact place:

    python tests/crash.py mid_shard:5 KILL build pipelines/sentiment.yaml --out runs/x

The signal is SIGKILL by default, or any other (STOP lets a test send a real signal from outside);
`write_error` raises a real OSError (no space left on device) instead.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections import Counter


class Crash:
    """A fault hook: at `target` (`name` or `name:k`, the k-th time) send `signal_name` to this
    process. A resumed process counts from zero, so it is not stopped again unless armed again."""

    def __init__(self, target: str, signal_name: str = "KILL") -> None:
        name, _, nth = target.partition(":")
        self.name, self.nth, self.signal_name = name, int(nth or 1), signal_name
        self.reached: Counter[str] = Counter()

    def __call__(self, name: str) -> None:
        if name != self.name:
            return
        self.reached[name] += 1
        if self.reached[name] != self.nth:
            return
        if name == "write_error":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.kill(os.getpid(), getattr(signal, "SIG" + self.signal_name))


def main(argv: list[str]) -> None:
    from textsynth import faults
    from textsynth.cli import app

    target, signal_name, *args = argv
    faults.HOOKS.append(Crash(target, signal_name))
    app(args)


if __name__ == "__main__":
    main(sys.argv[1:])

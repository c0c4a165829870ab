"""Named fault points for crash tests.

`TEXTSYNTH_FAULT=name` (or `name:k`, the k-th time the point is reached) makes the process
send itself a real signal there (SIGKILL, or the one named by `TEXTSYNTH_FAULT_SIGNAL`, e.g.
INT for Ctrl-C), or raise a real OSError for `write_error`, so that tests can stop a real build
at exact places instead of racing a timer.
"""

from __future__ import annotations

import errno
import os
import signal
from collections import Counter

_reached: Counter[str] = Counter()


def point(name: str) -> None:
    """Die here if the environment arms this point."""
    armed = os.environ.get("TEXTSYNTH_FAULT")
    if not armed:
        return
    target, _, nth = armed.partition(":")
    if target != name:
        return
    _reached[name] += 1
    if _reached[name] != int(nth or 1):  # the k-th time only: a resumed process is not stopped again
        return
    if name == "write_error":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    sig = getattr(signal, "SIG" + os.environ.get("TEXTSYNTH_FAULT_SIGNAL", "KILL"))
    os.kill(os.getpid(), sig)

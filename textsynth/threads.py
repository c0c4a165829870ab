"""Size torch and BLAS thread pools to the cores that are free, and notice other builds.

Two torch processes that each spin a thread per core slow each other about tenfold on a small
machine, so a build takes only the cores nobody else is using, and says so when another textsynth
build shares the machine. Builds register in a directory of PID files; stale ones are ignored.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("textsynth")


@dataclass(frozen=True)
class Peer:
    """Another live build on this machine and the threads it took."""

    pid: int
    threads: int


def _proc_state(pid: int) -> tuple[str, str] | None:
    """(state, start tick) from /proc: a reused PID has another start tick."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether `pid` still runs (not a zombie); with `start`, also that it is the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    state = _proc_state(pid)
    if state is None:
        return True  # no /proc to ask: the signal check is all we know
    return state[0] not in "ZX" and (start is None or state[1] == start)


def _computing(pid: int, samples: int = 5) -> bool:
    """Running now, not idle after its build (a notebook or a test runner that built once): an
    idle registered process holds no cores, and counting it would slow this build and change
    its thread count for nothing."""
    for _ in range(samples):
        state = _proc_state(pid)
        if state is None or state[0] == "R":
            return True
        time.sleep(0.01)
    return False


def register(directory: Path, threads: int) -> Path:
    """Announce this process as a build using `threads` cores until it exits."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{os.getpid()}.json"
    state = _proc_state(os.getpid())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "start": state and state[1], "threads": threads}))
    tmp.replace(path)
    atexit.register(path.unlink, missing_ok=True)
    return path


def peers(directory: Path) -> list[Peer]:
    """Other live builds registered in `directory` that are computing; files of dead or reused
    PIDs are removed."""
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            pid, threads = int(entry["pid"]), int(entry["threads"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours
        if pid == os.getpid():
            continue
        if not process_alive(pid, entry.get("start")):
            path.unlink(missing_ok=True)
        elif _computing(pid):
            found.append(Peer(pid, threads))
    return found


def cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def busy_cores(others: list[Peer], loadavg: str) -> int:
    """Cores held by other builds or by other running work (`loadavg`: /proc/loadavg's text).

    Other work is the smaller of the 1-minute load and the tasks runnable right now, less this
    process: a load average lags, a snapshot flickers, both high means busy cores.
    """
    busy = sum(p.threads for p in others)
    try:
        load1, _, _, runnable, _ = loadavg.split()
        return max(busy, min(round(float(load1)), int(runnable.split("/")[0])) - 1)
    except ValueError:
        return busy


def free_cores(others: list[Peer]) -> int:
    """Cores in this process's affinity that neither other builds nor other running work hold."""
    try:
        loadavg = Path("/proc/loadavg").read_text()
    except OSError:
        loadavg = ""
    return max(1, cores() - busy_cores(others, loadavg))


def _limit_blas(threads: int) -> None:
    """Cap the BLAS and OpenMP pools loaded so far (numpy's BLAS, torch's OpenMP)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads)


@functools.cache
def claim_threads(directory: Path) -> int:
    """Register this build, size torch and BLAS threads to the free cores, warn about peers.

    Never raises the thread count above what torch already has; a process sized below its cores
    beforehand (a Ray actor of a build, OMP_NUM_THREADS) is part of a plan and does not warn.
    `TEXTSYNTH_THREADS=N` fixes the count whatever the load (the reduction order of a matrix
    product follows the thread count, so builds compared bit for bit need the same one). Once per
    process and registry directory.
    """
    import torch

    others = peers(directory)
    preset = torch.get_num_threads()
    fixed = os.environ.get("TEXTSYNTH_THREADS", "")
    threads = min(preset, max(1, int(fixed)) if fixed.isdigit() else free_cores(others))
    register(directory, threads)
    torch.set_num_threads(threads)
    _limit_blas(threads)
    if others and preset >= cores():
        pids = ", ".join(str(p.pid) for p in others)
        log.warning(
            "another textsynth build is running on this machine (pid %s); both will be slow "
            "(using %d thread(s) here)",
            pids,
            threads,
        )
    return threads

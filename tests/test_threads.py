"""Thread sizing and the registry of running builds, with real second processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

from textsynth.threads import Peer, _proc_state, busy_cores, claim_threads, cores, free_cores, peers

REGISTER = (
    "import os, sys, time; from pathlib import Path; from textsynth.threads import register; "
    "register(Path(sys.argv[1]), 2); print('registered', flush=True); "
    "os._exit(0) if sys.argv[2] == 'crash' else time.sleep(120) if sys.argv[2] == 'idle' else "
    "any(iter(int, 1))"  # run: computes until killed, like a build generating
)


def _other_build(registry: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", REGISTER, str(registry), mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "registered"
    return proc


@pytest.fixture
def restore_threads(monkeypatch) -> Iterator[None]:
    """claim_threads changes process-wide pools; give the rest of the session its threads back.
    The session's fixed thread count is lifted: these tests size threads by load and peers."""
    monkeypatch.delenv("TEXTSYNTH_THREADS", raising=False)
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):
        yield
    torch.set_num_threads(before)


def test_a_second_build_is_detected_with_one_warning(tmp_path, caplog, restore_threads):
    other = _other_build(tmp_path, "run")
    try:
        assert peers(tmp_path) == [Peer(other.pid, 2)]
        torch.set_num_threads(cores())
        with caplog.at_level(logging.WARNING, logger="textsynth"):
            threads = claim_threads.__wrapped__(tmp_path)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        assert str(other.pid) in warnings[0] and "both will be slow" in warnings[0]
        assert threads == torch.get_num_threads() <= max(1, cores() - 2)
        assert json.loads((tmp_path / f"{os.getpid()}.json").read_text())["threads"] == threads
    finally:
        other.kill()
        other.wait()
    assert peers(tmp_path) == []
    assert not (tmp_path / f"{other.pid}.json").exists()


def test_stale_and_reused_pids_are_ignored(tmp_path, caplog, restore_threads):
    crashed = _other_build(tmp_path, "crash")
    crashed.wait()
    assert (tmp_path / f"{crashed.pid}.json").exists()  # it never unregistered
    parent = os.getppid()  # alive, but not the process that registered under its PID
    (tmp_path / f"{parent}.json").write_text(json.dumps({"pid": parent, "start": "1", "threads": 2}))
    (tmp_path / "junk.json").write_text("not json")
    assert peers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.json"]
    with caplog.at_level(logging.WARNING, logger="textsynth"):
        claim_threads.__wrapped__(tmp_path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_idle_registered_process_holds_no_cores(tmp_path, caplog, restore_threads):
    """A notebook or test runner that built once stays registered but does not slow the next."""
    idle = _other_build(tmp_path, "idle")
    try:
        # it printed before it went to sleep: wait until it sleeps (on a loaded machine the
        # moment between print and sleep can be long enough for peers() to see it running)
        deadline = time.monotonic() + 10
        while (_proc_state(idle.pid) or ("?",))[0] != "S":
            assert time.monotonic() < deadline, "the idle process never went to sleep"
            time.sleep(0.05)
        assert peers(tmp_path) == []
        assert (tmp_path / f"{idle.pid}.json").exists(), "still registered, only not counted"
    finally:
        idle.kill()
        idle.wait()


def test_threads_fit_the_free_cores(tmp_path, restore_threads):
    assert free_cores([Peer(1, 10_000)]) == 1
    # /proc/loadavg as given: 1-minute load, runnable/total tasks (this process is one of them)
    assert busy_cores([], "0.02 0.10 0.09 1/180 4242") == 0  # only this process runs
    assert busy_cores([], "3.10 2.00 1.00 5/180 4242") == 2  # load 3 and 5 runnable: 2 besides us
    assert busy_cores([], "3.10 2.00 1.00 1/180 4242") == 0  # a lagging load, nothing runs now
    assert busy_cores([Peer(1, 2)], "0.00 0.00 0.00 1/180 4242") == 2  # a registered build's threads
    torch.set_num_threads(1)  # sized by someone else (a Ray actor): never raised
    assert claim_threads.__wrapped__(tmp_path) == torch.get_num_threads() == 1


def test_a_fixed_thread_count_ignores_the_load(tmp_path, restore_threads, monkeypatch):
    torch.set_num_threads(cores())
    monkeypatch.setenv("TEXTSYNTH_THREADS", "1")
    assert claim_threads.__wrapped__(tmp_path / "a") == torch.get_num_threads() == 1
    monkeypatch.setenv("TEXTSYNTH_THREADS", "64")  # never above what torch has
    assert claim_threads.__wrapped__(tmp_path / "b") == torch.get_num_threads() == 1

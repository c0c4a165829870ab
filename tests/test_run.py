"""The run directory from the outside: commands that write into it take its lock, temporary
folders of a live process survive another export, stored embeddings belong to their ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textsynth.config import SCHEMA_VERSION
from textsynth.pipeline_file import load_pipeline
from textsynth.records import Record
from textsynth.run import RunDir

from .conftest import REAL_DATA, SENTIMENT
from .helpers import cli, one_line

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A finished-looking run: the shipped config, six kept records, their embeddings."""
    path = tmp_path / "run"
    path.mkdir()
    config = load_pipeline(SENTIMENT).model_dump(mode="json")
    (path / "manifest.json").write_text(
        json.dumps({"schema_version": SCHEMA_VERSION, "config": config, "seed": 7})
    )
    labels = ["positive", "negative", "neutral"] * 2
    records = [Record(f"r{i}", lab, {}, f"A {lab} review, number {i}.") for i, lab in enumerate(labels)]
    RunDir(path).write_records(records)
    rng = np.random.default_rng(0)
    RunDir(path).write_embeddings("test", lambda texts: rng.normal(size=(len(texts), 8)), records)
    return path


@pytest.fixture
def holder(run: Path):
    """A second process that holds the run's lock until the test ends."""
    code = (
        "import fcntl, sys\n"
        f"fh = open({str(run / '.lock')!r}, 'a+')\n"
        "fcntl.flock(fh, fcntl.LOCK_EX)\n"
        "fh.write('4242'); fh.flush()\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    proc.communicate("")


@pytest.mark.parametrize(
    "command",
    [
        ["export"],
        ["review", "export"],
        ["compare", "--real", str(REAL_DATA), "--label-map", "0=negative,1=positive"],
    ],
    ids=["export", "review", "compare"],
)
def test_commands_that_write_into_a_run_take_its_lock(run, holder, command):
    args = (
        [*command[:2], str(run), *command[2:]]
        if command[0] == "review"
        else [command[0], str(run), *command[1:]]
    )
    line = one_line(cli(*args))
    assert "another textsynth build (pid 4242) is writing here" in line
    assert (
        not (run / "hub").exists() and not (run / "review").exists() and not (run / "compare.json").exists()
    )


def test_export_keeps_a_live_process_temp_folder(run):
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    try:
        mine = run / f".hub.{live.pid}.inflight"
        stale = run / f".hub.{int(dead.stdout)}.killed"
        mine.mkdir()
        stale.mkdir()
        proc = cli("export", str(run))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert mine.is_dir() and not stale.exists()
        assert (run / "hub" / "README.md").is_file()
    finally:
        live.communicate(b"")


def test_embeddings_of_another_build_are_refused(run):
    assert cli("dedup-pairs", str(run), "--min-cosine", "0.9").returncode == 0  # the matching pair works
    np.save(run / "embeddings.npy", np.ones((5, 8)))  # one row short: another build's vectors
    line = one_line(cli("dedup-pairs", str(run), "--min-cosine", "0.9"))
    assert "embeddings.npy: does not belong to embeddings.json" in line and f"textsynth resume {run}" in line

"""Kill -9 in every phase of the README's default build (sampled, plan-ahead, label check, a top-up
round), resumed each time with `textsynth resume`: the dataset equals the uninterrupted build's.

A chain per build: the build is killed at the first point, its resume at the next, and so on; the
last resume runs to the end. fp32, where batch composition cannot change a row (README,
"Resume"), and replies of at most 32 tokens: every phase is the same, and the two chains take
about 155 s instead of 185 s. Records finished before each kill must also survive byte for byte,
the guarantee that holds in every dtype.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textsynth.pipeline import run_build

from .conftest import copy_project, edit_pipeline
from .helpers import cli, shard_lines

pytestmark = pytest.mark.slow  # whole builds in subprocesses: not in the everyday tier


def _kept(run: Path) -> list[tuple[str, str]]:
    return [(r["label"], r["text"]) for r in map(json.loads, (run / "data.jsonl").open(encoding="utf-8"))]


# Two builds of the README's pipeline: from n = 32 a build probes every label and plans ahead
# (always: the points below are reached whatever the texts); below 32 it plans nothing ahead, so
# the label check's rejections leave a label short and a top-up round follows.
PLANNED_AHEAD = [
    "generation_start",
    "mid_shard:3",  # sampling the probe
    "plan_ahead",  # the probe checked, extras planned, none generated
    "mid_shard:3",  # sampling the planned-ahead requests
    "label_check",  # the label check's signals computed
    "export",
]
TOPPED_UP = [
    "top_up",  # a top-up round planned
    "mid_shard:1",  # sampling inside the top-up round
]


@pytest.mark.parametrize(
    ("n", "points"), [(32, PLANNED_AHEAD), (24, TOPPED_UP)], ids=["plan-ahead", "top-up"]
)
def test_kill_9_in_every_phase_then_resume_equals_uninterrupted(tmp_path, n, points):
    pipeline = edit_pipeline(
        copy_project(tmp_path) / "pipelines" / "sentiment.yaml", dtype="float32", max_new_tokens="32"
    )
    reference = run_build(pipeline, n=n, out=tmp_path / "whole", quiet=True)
    if "plan_ahead" in points:
        assert reference.summary.probe_loss  # the probe ran
    else:
        assert reference.summary.top_up_rounds > 0  # the label check left a label short

    out = tmp_path / "killed"
    command = ["build", str(pipeline), "--n", str(n), "--out", str(out), "--quiet"]
    finished: set[str] = set()
    for point in points:
        proc = cli(*command, fault=point)
        assert proc.returncode == -9, (point, proc.stderr[-2000:])
        assert not (out / "dataset").exists()
        now = set(shard_lines(out))
        assert finished <= now  # what an earlier process finished is still there, byte for byte
        finished = now
        command = ["resume", str(out), "--quiet"]
    proc = cli(*command)
    assert proc.returncode == 0, proc.stderr[-2000:]

    # nothing finished was made twice, and what was made before a kill is what the build without one made
    assert sorted(shard_lines(out)) == sorted(shard_lines(tmp_path / "whole"))
    assert finished <= set(shard_lines(out))
    assert _kept(out) == _kept(tmp_path / "whole")
    assert (out / "records.jsonl").read_text() == (tmp_path / "whole" / "records.jsonl").read_text()

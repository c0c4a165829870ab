"""Shared fixtures: one real build of the shipped sentiment pipeline, reused by read-only tests.

The embedded model is loaded once per pytest process (textsynth.models caches it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from textsynth.config import Pipeline
from textsynth.pipeline import BuildResult, run_build
from textsynth.pipeline_file import load_pipeline
from textsynth.threads import cores

# Every build of the session, in this process or a CLI subprocess, on the same thread count: the
# tests compare builds bit for bit, and the load-based count would differ between them.
os.environ.setdefault("TEXTSYNTH_THREADS", str(cores()))

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ROOT / "pipelines" / "sentiment.yaml"
REAL_DATA = ROOT / "data" / "yelp" / "yelp_labelled.tsv"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """A 12-example build of pipelines/sentiment.yaml with the embedded model."""
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    return run_build(SENTIMENT, n=12, seed=3, out=out, quiet=True)


@pytest.fixture(scope="session")
def built150(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """A 150-example build of pipelines/sentiment.yaml with every quality stage on, and the
    plan-ahead probe forced on (`auto` leaves it off at this size)."""
    out = tmp_path_factory.mktemp("runs") / "sentiment150"
    return run_build(probing(), n=150, seed=5, out=out, quiet=True, pipeline_path=SENTIMENT)


def probing() -> Pipeline:
    """pipelines/sentiment.yaml with `quality.plan_ahead: true`."""
    return load_pipeline(SENTIMENT).updated("quality.plan_ahead", True)


def copy_project(dest: Path) -> Path:
    for sub in ("pipelines", "prompts", "data"):
        shutil.copytree(ROOT / sub, dest / sub)
    return dest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A writable copy of pipelines/, prompts/ and data/ for tests that edit them."""
    return copy_project(tmp_path)


def edit_pipeline(path: Path, **replacements: str) -> Path:
    """Replace `old: value` lines by key in a pipeline YAML (keys must exist)."""
    lines = path.read_text().splitlines()
    for key, value in replacements.items():
        idx = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        indent = lines[idx][: len(lines[idx]) - len(lines[idx].lstrip())]
        lines[idx] = f"{indent}{key}: {value}"
    path.write_text("\n".join(lines) + "\n")
    return path


# fp32 greedy decoding, 12 examples, small batches, no top-up: exactly reproducible builds.
GREEDY = {
    "n": "12",
    "dtype": "float32",
    "temperature": "0",
    "max_new_tokens": "16",
    "batch_size": "6",
    "top_up_rounds": "0",
}


@pytest.fixture
def greedy_pipeline(project: Path) -> Path:
    """sentiment.yaml with GREEDY settings, in a writable project copy."""
    return edit_pipeline(project / "pipelines" / "sentiment.yaml", **GREEDY)


@pytest.fixture(scope="session")
def read_only_greedy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One greedy project for the tests that never edit it."""
    project = copy_project(tmp_path_factory.mktemp("greedy"))
    return edit_pipeline(project / "pipelines" / "sentiment.yaml", **GREEDY)


@pytest.fixture(scope="session")
def reference(read_only_greedy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted greedy build to compare interrupted ones with."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run_build(read_only_greedy, out=out, quiet=True)
    return out

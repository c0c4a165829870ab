"""Shared fixtures: one real build of the shipped sentiment pipeline, reused by read-only tests.

The embedded model is loaded once per pytest process (textsynth.models caches it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from textsynth.pipeline import BuildResult, run_build

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ROOT / "pipelines" / "sentiment.yaml"
REAL_DATA = ROOT.parent / "shared" / "data" / "real" / "yelp_labelled.tsv"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """A 12-example build of pipelines/sentiment.yaml with the embedded model."""
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    return run_build(SENTIMENT, n=12, seed=3, out=out, quiet=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A writable copy of pipelines/ and prompts/ for tests that edit them."""
    for sub in ("pipelines", "prompts"):
        shutil.copytree(ROOT / sub, tmp_path / sub)
    return tmp_path

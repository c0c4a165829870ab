"""The HTML report of a real build: self-contained, every section present, and rendered by
headless Chromium (Debian's `chromium` package) into a non-blank page without console errors."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from textsynth.cli import app

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier

SECTIONS = (
    "Funnel",
    "Label balance per split",
    "Length per label",
    "Diversity",
    "Taxonomy coverage",
    "Embedding map",
    "Nearest duplicates",
    "Samples",
)


@pytest.fixture(scope="module")
def report(built, tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(built.run_dir, run)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    return run / "report.html"


def test_report_is_self_contained_with_every_section(report):
    page = report.read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page), "no external requests"
    assert "<script" not in page and "<link" not in page
    assert page.count("data:image/png;base64,") == 4  # funnel, lengths, coverage, embedding map


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(report, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--window-size=1200,2000",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), proc.stderr
    assert "Failed to load resource" not in proc.stderr and ":CONSOLE(" not in proc.stderr
    pixels = imread(shot)[..., :3]
    assert pixels.std() > 0.05, "the page is not blank"
    assert (pixels.mean(axis=2) < 0.5).mean() > 0.01, "there is dark ink (text, plots) on it"

"""CLI: bad input gives one line, exit code 2 and no dataset; a good build prints the summary."""

from __future__ import annotations

from typer.testing import CliRunner

from textsynth.cli import app

runner = CliRunner()


def test_debug_shows_the_traceback(project):
    path = project / "pipelines" / "sentiment.yaml"
    path.write_text(path.read_text().replace("seed: 7", "seed: [7"))
    result = runner.invoke(app, ["build", str(path), "--debug"])
    assert result.exit_code != 0 and result.exception is not None


def test_negative_n_option(project):
    result = runner.invoke(app, ["build", str(project / "pipelines" / "sentiment.yaml"), "--n", "-4"])
    assert result.exit_code == 2 and "--n -4" in result.stderr


def test_build_json_summary_reuses_the_shared_run(built):
    from .conftest import SENTIMENT

    args = ["build", str(SENTIMENT), "--n", "12", "--seed", "3", "--out", str(built.run_dir), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["planned"] == summary["reused"] >= 12 and summary["generated"] == 0

"""CLI: bad input gives one line, exit code 2 and no dataset; a good build prints the summary."""

from __future__ import annotations

from typer.testing import CliRunner

from textsynth import pipeline
from textsynth.cli import app
from textsynth.errors import ConfigError

runner = CliRunner()


def test_debug_shows_the_traceback(project):
    path = project / "pipelines" / "sentiment.yaml"
    path.write_text(path.read_text().replace("seed: 7", "seed: [7"))
    plain = runner.invoke(app, ["build", str(path)])
    assert plain.exit_code == 2 and "malformed YAML" in plain.stderr
    assert not isinstance(plain.exception, ConfigError)  # one line, no traceback
    result = runner.invoke(app, ["build", str(path), "--debug"])
    assert isinstance(result.exception, ConfigError)  # the exception itself, with its traceback


def test_a_bug_is_an_internal_error_not_a_user_error(project, monkeypatch):
    """A bug injected where no real input produces one (a TypeError inside the build)."""

    def broken(*args, **kwargs):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(pipeline, "prepare", broken)
    path = str(project / "pipelines" / "sentiment.yaml")
    result = runner.invoke(app, ["build", path])
    assert result.exit_code == 1
    assert "internal error" in result.stderr and "TypeError: unsupported operand" in result.stderr
    assert "--debug" in result.stderr and "malformed" not in result.stderr
    assert isinstance(runner.invoke(app, ["build", path, "--debug"]).exception, TypeError)


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

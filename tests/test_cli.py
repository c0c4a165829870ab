"""CLI: bad input gives one line, exit code 2 and no dataset; a good build prints the summary."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from textsynth.cli import app

runner = CliRunner()

BAD_INPUTS = [
    ("malformed_yaml", "seed: 7", "seed: [7", "malformed YAML"),
    ("unknown_field", "seed: 7", "seed: 7\nsed: 8", "sed: Extra inputs are not permitted"),
    ("label_without_description", "    description: The reviewer is pleased", "    note: x", "labels.0"),
    ("missing_template", "user: review_user.jinja", "user: nope.jinja", "'nope.jinja' not found"),
    ("undefined_variable", None, "Write about {{ colour }}.", "undefined variable 'colour'"),
    ("missing_model_path", "  name: default", "  name: ./no/such/model", "does not exist"),
]


@pytest.mark.parametrize(("case", "old", "new", "match"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_one_line_exit_2_no_dataset(project, case, old, new, match):
    path = project / "pipelines" / "sentiment.yaml"
    if old is None:
        (project / "prompts" / "review_user.jinja").write_text(new)
    else:
        path.write_text(path.read_text().replace(old, new, 1))
    out = project / "runs" / case
    result = runner.invoke(app, ["build", str(path), "--n", "3", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and match in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not (out / "dataset").exists()


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
    assert summary["planned"] == 12 and summary["reused"] == 12 and summary["generated"] == 0

"""init → validate → preview, the schema, and the expert review round trip on a real build."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT, SENTIMENT
from textsynth.cli import app
from textsynth.commands import apply_review
from textsynth.errors import ConfigError, RunDirError
from textsynth.pipeline import prepare, run_build
from textsynth.records import Record
from textsynth.review import carry_decisions
from textsynth.run import RunDir
from textsynth.scaffold import TASKS, init_project

runner = CliRunner()


@pytest.mark.parametrize("task", TASKS)
def test_init_writes_a_pipeline_that_validates(tmp_path, task):
    written = init_project(f"my-{task}", task, tmp_path)
    pipeline = tmp_path / "pipelines" / f"my-{task}.yaml"
    assert pipeline in written and all(p.exists() for p in written)
    assert f"name: my-{task}" in pipeline.read_text() and "#" in pipeline.read_text()  # commented
    prep = prepare(pipeline)
    assert prep.pipeline.name == f"my-{task}" and prep.planned


def test_init_refuses_to_overwrite_and_bad_names(tmp_path):
    init_project("a", "sentiment", tmp_path)
    (tmp_path / "prompts" / "review_user.jinja").write_text("changed {{ label }}")
    with pytest.raises(ConfigError, match="already exists"):
        init_project("b", "sentiment", tmp_path)
    with pytest.raises(ConfigError, match="--task 'poetry'"):
        init_project("c", "poetry", tmp_path)
    with pytest.raises(ConfigError, match="init '../x'"):
        init_project("../x", "sentiment", tmp_path)


def test_validate_shows_plan_and_prompts_without_a_model():
    for name in ("sentiment", "instructions"):
        result = runner.invoke(app, ["validate", str(ROOT / "pipelines" / f"{name}.yaml")])
        assert result.exit_code == 0, result.output
        assert "sample prompt for" in result.output and "no model was loaded" in result.output
    assert "positive" in runner.invoke(app, ["validate", str(ROOT / "pipelines" / "sentiment.yaml")]).output


def test_schema_describes_the_pipeline_file(tmp_path):
    out = tmp_path / "schema.json"
    assert runner.invoke(app, ["schema", "--out", str(out)]).exit_code == 0
    schema = json.loads(out.read_text())
    assert {"labels", "taxonomy", "steps", "quality"} <= set(schema["properties"])
    assert "Rows decoded together;" in out.read_text()


def test_preview_generates_and_exports_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["preview", str(ROOT / "pipelines" / "sentiment.yaml"), "--per-label", "1"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps the title at the terminal's width
    assert "nothing exported" in output and "positive" in output
    assert "the label check flags mismatches from 5 examples per label" in output  # not a silent "kept"
    assert not (tmp_path / "runs").exists()


def _rows(path):
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_review_round_trip(built, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(built.run_dir, run)
    assert runner.invoke(app, ["review", "export", str(run)]).exit_code == 0
    sheet = run / "review" / "sheet.csv"
    rows = _rows(sheet)
    kept = [
        r
        for r in (Record.from_json(x) for x in (run / "records.jsonl").read_text().splitlines())
        if r.status == "kept"
    ]
    assert [r["id"] for r in rows] == [r.id for r in kept] and (run / "review" / "sheet.html").exists()
    other = next(lab for lab in ("positive", "negative", "neutral") if lab != rows[1]["label"])
    rows[0].update(decision="reject", comment="not a review")
    rows[1].update(corrected_label=other, comment="reads as " + other)
    with sheet.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts, dataset = apply_review(run, sheet)
    assert counts == {"reviewed": 2, "rejected": 1, "relabeled": 1}
    records = {
        r.id: r for r in (Record.from_json(x) for x in (run / "records.jsonl").read_text().splitlines())
    }
    assert records[rows[0]["id"]].reasons == ["reviewer_rejected"]
    assert records[rows[0]["id"]].fields["review"]["comment"] == "not a review"
    moved = records[rows[1]["id"]]
    assert moved.label == other and moved.fields["review"]["original_label"] == rows[1]["label"]
    exported = {row["id"]: row for split in dataset.values() for row in split.to_list()}
    names = next(iter(dataset.values())).features["label"].names
    assert rows[0]["id"] not in exported and names[exported[rows[1]["id"]]["label"]] == other
    funnel = json.loads((run / "funnel.json").read_text())
    assert funnel["steps"][-2:] == ["reviewed", "exported"]
    assert funnel["rejected_by_step"]["reviewed"] == {"reviewer_rejected": 1}
    # a rebuild starts again from the shards but keeps what the reviewer decided
    run_build(SENTIMENT, n=12, seed=3, out=run, quiet=True)
    again = {r.id: r for r in (Record.from_json(x) for x in (run / "records.jsonl").read_text().splitlines())}
    assert again[rows[0]["id"]].status == "rejected" and "reviewer_rejected" in again[rows[0]["id"]].reasons
    assert again[rows[1]["id"]].label == other


def test_review_sheet_errors_name_the_row(built, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(built.run_dir, run)
    runner.invoke(app, ["review", "export", str(run)])
    sheet = run / "review" / "sheet.csv"
    rows = _rows(sheet)
    rows[0]["corrected_label"] = "furious"
    with sheet.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = (run / "records.jsonl").read_text()
    result = runner.invoke(app, ["review", "apply", str(run), str(sheet)])
    assert result.exit_code == 2
    assert "sheet.csv:2: corrected_label 'furious' is not a label" in " ".join(result.output.split())
    assert (run / "records.jsonl").read_text() == before, "nothing applied"
    # a build writing the run: the sheet is not even checked against records about to change
    with RunDir(run).lock(), pytest.raises(RunDirError, match="another textsynth build"):
        apply_review(run, sheet)


def test_a_decision_applies_only_to_the_text_it_was_made_on():
    """An edited template gives a record id a new text: the reviewer never read it."""
    review = {"decision": "reject", "original_label": "positive", "comment": "not a review"}
    old = [
        Record(
            "a",
            "positive",
            {},
            text="old text",
            status="rejected",
            reasons=["reviewer_rejected"],
            fields={"review": review},
        ),
        Record("b", "negative", {}, text="same text", status="rejected", reasons=["contaminated"]),
    ]
    new = [Record("a", "positive", {}, text="new text"), Record("b", "negative", {}, text="same text")]
    assert carry_decisions(old, new) == (1, 1)
    assert new[0].status == "kept" and "review" not in new[0].fields
    assert new[1].reasons == ["contaminated"]

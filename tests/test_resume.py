"""Kill -9 at named points, Ctrl-C and write failures: resume gives the uninterrupted result.

Each fault is real: the build runs in a subprocess that sends itself SIGKILL/SIGINT at a named
fault point (tests/crash.py), or gets a real OSError from the write path.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
import yaml
from typer.testing import CliRunner

from textsynth import faults
from textsynth.cli import app
from textsynth.pipeline import resume_build, run_build

from .conftest import GREEDY, copy_project, edit_pipeline
from .crash import Crash
from .helpers import cli, shard_lines

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier

runner = CliRunner()


def test_write_failure_keeps_finished_records(read_only_greedy, reference, tmp_path, monkeypatch):
    out = tmp_path / "diskfull"
    monkeypatch.setattr(faults, "HOOKS", [Crash("write_error:2")])
    result = runner.invoke(app, ["build", str(read_only_greedy), "--out", str(out), "--quiet"])
    assert result.exit_code == 2 and "No space left on device" in result.stderr
    assert "textsynth resume" in result.stderr
    assert len(shard_lines(out)) >= 6  # the first batch survived
    assert not (out / "dataset").exists()
    monkeypatch.setattr(faults, "HOOKS", [])
    resume_build(out, quiet=True)
    assert (out / "records.jsonl").read_text() == (reference / "records.jsonl").read_text()


def test_torn_last_line_is_discarded(read_only_greedy, reference, tmp_path):
    out = tmp_path / "torn"
    run_build(read_only_greedy, out=out, quiet=True)
    shard = next((out / "shards").glob("*.jsonl"))
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    result = run_build(read_only_greedy, out=out, quiet=True)
    assert result.summary.reused == 11 and result.summary.cached == 1 and result.summary.generated == 0
    assert result.summary.planned == 12
    assert (out / "records.jsonl").read_text() == (reference / "records.jsonl").read_text()


def test_last_line_cut_inside_a_multibyte_character_is_skipped(read_only_greedy, reference, tmp_path):
    out = tmp_path / "torn-utf8"
    shutil.copytree(reference, out)
    shard = sorted((out / "shards").glob("*.jsonl"))[-1]
    lines = shard.read_bytes().splitlines(keepends=True)
    last = json.loads(lines[-1])
    last["text"] = "Un café très agréable."
    cut = json.dumps(last, ensure_ascii=False).encode()
    cut = cut[: cut.index("é".encode()) + 1]  # the first of é's two bytes
    shard.write_bytes(b"".join(lines[:-1]) + cut)
    resumed = runner.invoke(app, ["resume", str(out), "--json"])
    assert resumed.exit_code == 0, resumed.stderr[-2000:]
    assert "UnicodeDecodeError" not in resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert (summary["reused"], summary["cached"], summary["generated"]) == (11, 1, 0)
    assert (out / "records.jsonl").read_text() == (reference / "records.jsonl").read_text()


def test_resume_renders_the_templates_it_started_with(reference, tmp_path):
    """A template edited after an interruption does not change what `resume` asks for."""
    project = copy_project(tmp_path / "p")
    path = edit_pipeline(project / "pipelines" / "sentiment.yaml", **GREEDY)
    out = tmp_path / "run"
    proc = cli("build", str(path), "--out", str(out), "--quiet", fault="mid_shard:5", signal_name="INT")
    assert proc.returncode == 130, proc.stderr[-2000:]
    user = project / "prompts" / "review_user.jinja"
    user.write_text(user.read_text() + "\nMention the weather.")
    resumed = runner.invoke(app, ["resume", str(out), "--json"])
    assert resumed.exit_code == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert (summary["reused"], summary["generated"], summary["drift"]) == (5, 7, None)
    assert "Mention the weather" not in (out / "prompts" / "review_user.jinja").read_text()
    assert (out / "records.jsonl").read_text() == (reference / "records.jsonl").read_text()


def test_resume_uses_the_cache_it_started_with(read_only_greedy, tmp_path):
    out, shared = tmp_path / "run", tmp_path / "shared.sqlite"
    proc = cli(
        "build",
        str(read_only_greedy),
        "--out",
        str(out),
        "--cache",
        str(shared),
        "--quiet",
        fault="mid_shard:5",
        signal_name="INT",
    )
    assert proc.returncode == 130, proc.stderr[-2000:]
    resumed = runner.invoke(app, ["resume", str(out), "--quiet"])
    assert resumed.exit_code == 0, resumed.stderr[-2000:]
    assert not (out / "cache.sqlite").exists()
    with sqlite3.connect(shared) as db:
        assert db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 12


def test_resume_with_seed_taxonomy_columns_merges_them_once(tmp_path):
    project = copy_project(tmp_path / "p")
    rows = [("The soup was lovely.", "positive", "lunch"), ("Cold fries again.", "negative", "dinner")] * 3
    seeds = project / "data" / "seeds.csv"
    seeds.write_text("text,label,meal\n" + "".join(f"{t},{lab},{m}\n" for t, lab, m in rows))
    data = yaml.safe_load((project / "pipelines" / "restaurant_reviews.yaml").read_text())
    data["n"] = 4
    data["seed_examples"] = {"path": "../data/seeds.csv", "k": 1, "taxonomy_columns": ["meal"]}
    data["model"] = {"dtype": "float32", "batch_size": 4}
    data["generation"] = {"max_new_tokens": 64, "temperature": 0}
    data["quality"] = {
        "filters": {"min_words": 1, "refusal": False, "form": False, "echo": False, "language": None},
        "label_check": {"enabled": False},
        "dedup": {"exact": False, "minhash_threshold": None, "min_cosine_similarity": None},
        "privacy": {"max_cosine_to_real": 1.0, "max_common_ngram": 64},
        "top_up_rounds": 0,
    }
    path = project / "pipelines" / "seeded.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "run"
    proc = cli("build", str(path), "--out", str(out), "--quiet", fault="generation_start", signal_name="INT")
    assert proc.returncode == 130 and "interrupted by SIGINT" in proc.stderr, proc.stderr[-2000:]
    seeds.write_text("text,label,meal\nEdited later.,no_such_label,lunch\n")  # resume reads the run's copy
    resumed = runner.invoke(app, ["resume", str(out), "--json"])
    assert resumed.exit_code == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["generated"] == 4
    assert (out / "seeds" / "seeds.csv").read_text().startswith("text,label,meal\nThe soup was lovely.")
    taxonomy = json.loads((out / "manifest.json").read_text())["config"]["taxonomy"]
    assert list(taxonomy) == ["aspect", "style", "meal"]
    assert sorted((v["name"], v["weight"]) for v in taxonomy["meal"]["values"]) == [
        ("dinner", 3.0),
        ("lunch", 3.0),
    ]

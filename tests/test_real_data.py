"""Seed examples, the memorization check and `compare`, on the shared real Yelp sentences."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from tests.conftest import REAL_DATA, ROOT, copy_project
from textsynth.cli import app
from textsynth.errors import ConfigError
from textsynth.pipeline import prepare, run_build
from textsynth.quality.privacy import SeedGrams, longest_common_ngram
from textsynth.records import Record

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier

RESTAURANT = ROOT / "pipelines" / "restaurant_reviews.yaml"
YELP = {line.rpartition("\t")[0]: line.rpartition("\t")[2] for line in REAL_DATA.read_text().splitlines()}


def test_exemplars_are_real_same_label_and_seeded_per_record():
    first, again = prepare(RESTAURANT, n=12), prepare(RESTAURANT, n=12)
    for ex in first.planned:
        prompt = first.messages[ex.id][-1]["content"]
        shown = [line[2:] for line in prompt.splitlines() if line.startswith("- ")]
        assert len(shown) == 3
        want = "1" if ex.label == "positive" else "0"
        assert all(YELP[text] == want for text in shown), "exemplars are real texts of the same label"
        assert again.messages[ex.id] == first.messages[ex.id]
    prompts = {first.messages[ex.id][-1]["content"] for ex in first.planned}
    assert len(prompts) == len(first.planned), "each record samples its own exemplars"


def test_longest_common_ngram():
    grams = SeedGrams(["The pasta was cold, and the waiter never came back.", "Great pizza!"])
    assert longest_common_ngram("the pasta was cold and the waiter never came back", grams) == 10
    assert longest_common_ngram("honestly the pasta was cold and bland", grams) == 5
    assert longest_common_ngram("great pizza", grams) == 2
    assert longest_common_ngram("awful soup", grams) == 0


def test_copies_of_seed_texts_are_rejected_too_close_to_real(tmp_path):
    project = copy_project(tmp_path / "p")
    # The exemplar sits in the system turn, so the prompt-echo filter (which compares with the
    # user turn) lets copies through and the memorization check is the one that must catch them.
    (project / "prompts" / "restaurant_system.jinja").write_text("Here is a sentence: {{ examples[0] }}")
    (project / "prompts" / "restaurant_user.jinja").write_text(
        "Repeat that sentence exactly, word for word. Output only the sentence."
    )
    path = project / "pipelines" / "restaurant_reviews.yaml"

    result = run_build(path, n=8, out=tmp_path / "run", quiet=True)
    records = [Record.from_json(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    close = [r for r in records if "too_close_to_real" in r.reasons]
    assert close, "a model told to copy its exemplar is caught"
    for r in close:
        assert r.scores["real_cosine"] > 0.95 or r.scores["real_ngram"] >= 8
    for r in records:
        assert len(r.prompt["exemplars"]) == 3 and all(isinstance(i, int) for i in r.prompt["exemplars"])
    assert result.dataset is not None and result.summary.kept > 0
    card = (tmp_path / "run" / "hub" / "README.md").read_text()
    assert "Distance to the closest real record" in card


def test_taxonomy_from_a_column_of_the_seed_data(tmp_path):
    project = copy_project(tmp_path / "p")
    seeds = project / "seeds.csv"
    seeds.write_text(
        "text,label,topic\n"
        + "".join(f"great {t} here,positive,{t}\n" for t in ["food", "food", "food", "service"])
        + "".join(f"bad {t} here,negative,{t}\n" for t in ["food", "service"])
    )
    path = project / "pipelines" / "restaurant_reviews.yaml"
    text = path.read_text().replace("../data/yelp/tune.tsv", "../seeds.csv")
    text = text.replace(
        "  label_map: 0=negative,1=positive\n",
        "  text_col: text\n  label_col: label\n  taxonomy_columns: [topic]\n",
    )
    path.write_text(text)
    prep = prepare(path, n=40)
    topics = [ex.attributes["topic"] for ex in prep.planned]
    assert set(topics) == {"food", "service"} and topics.count("food") in (26, 27)  # weights 4:2 of 40
    path.write_text(text.replace("taxonomy_columns: [topic]", "taxonomy_columns: [aspect]"))
    with pytest.raises(ConfigError, match="aspect"):
        prepare(path, n=4)


def test_length_push_ends_texts_near_the_seed_lengths(tmp_path):
    """Every seed text has 3 words, so every prompt asks for about 3; the model alone writes
    about 20 (restaurant_reviews, benchmarks/archive/history.md), pushed it stops at a sentence
    end soon after 3."""
    project = copy_project(tmp_path / "p")
    seeds = project / "seeds.csv"
    rows = ["great pasta tonight", "lovely quiet room", "friendly fast staff"]
    rows += ["cold soggy fries", "rude slow waiter", "dirty sticky tables"]
    seeds.write_text(
        "text,label\n" + "".join(f"{t},{'positive' if i < 3 else 'negative'}\n" for i, t in enumerate(rows))
    )
    path = project / "pipelines" / "restaurant_reviews.yaml"
    text = path.read_text().replace("../data/yelp/tune.tsv", "../seeds.csv")
    text = text.replace(
        "  label_map: 0=negative,1=positive\n", "  text_col: text\n  label_col: label\n  loop: {rounds: 0}\n"
    )
    path.write_text(
        text.replace("length_push: 0 ", "length_push: 1 ").replace("top_up_rounds: 2", "top_up_rounds: 0")
    )
    assert all("about 3 words" in m[-1]["content"] for m in prepare(path, n=6).messages.values())
    run_build(path, n=6, out=tmp_path / "run", quiet=True)
    records = [Record.from_json(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6
    for r in records:
        assert r.generation["params"]["length_push"] == 1.0
        raw = r.generation["raw"]
        assert r.generation["finish_reason"] == "stop" and len(raw.split()) <= 3 + 12, raw


@pytest.fixture(scope="module")
def compared(built150, tmp_path_factory):
    run = tmp_path_factory.mktemp("compare") / "run"
    shutil.copytree(built150.run_dir, run)
    result = CliRunner().invoke(
        app, ["compare", str(run), "--real", str(REAL_DATA), "--label-map", "0=negative,1=positive"]
    )
    assert result.exit_code == 0, result.output
    return run, result.output


def test_compare_reports_tstr_trtr_distance_and_coverage(compared):
    run, output = compared
    result = json.loads((run / "compare.json").read_text())
    assert result["labels"] == ["negative", "positive"]
    assert result["sizes"]["real_test"] == 500 and result["sizes"]["real_train"] == 500
    for clf in ("minilm_logreg", "tfidf_logreg"):
        assert result["trtr"][clf]["accuracy"] > 0.7, "real-on-real is a working reference"
        assert result["tstr"][clf]["accuracy"] > 0.5, "synthetic data carries the label signal"
    assert result["frechet"]["all"] > 0 and result["coverage"]["cosine"] == 0.7
    assert "TSTR" in output and "Fréchet" in output
    CliRunner().invoke(app, ["report", str(run)])
    assert "Comparison with real data" in (run / "report.html").read_text()


def test_compare_reports_accuracy_after_each_funnel_step(compared):
    """Per-step evidence: the same classifiers trained on the survivors of each step."""
    run, output = compared
    steps = json.loads((run / "compare.json").read_text())["steps"]
    funnel = json.loads((run / "funnel.json").read_text())
    assert [s["step"] for s in steps] == ["generated", "generated_same_size", *funnel["steps"][3:]]
    rows = [s["rows"] for s in steps if s["step"] != "generated_same_size"]
    assert rows == sorted(rows, reverse=True) and rows[0] > rows[-1], "later steps train on fewer rows"
    assert steps[1]["rows"] == rows[-1], "the build without a quality stage has the kept size"
    first, last = steps[0]["minilm_logreg"], steps[-1]["minilm_logreg"]
    assert "delta" not in first and first["low"] < first["high"], "resampling moves accuracy"
    assert last["delta_low"] < last["delta_high"] and last["delta_low"] < 0.5
    assert last["delta"] == round(last["accuracy"] - first["accuracy"], 4)
    assert "after step" in output
    report = (run / "report.html").read_text()
    assert "records kept after each step" in report and "label_confirmed" in report


def test_compare_needs_shared_labels(built, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(built.run_dir, run)
    result = CliRunner().invoke(app, ["compare", str(run), "--real", str(REAL_DATA)])
    assert result.exit_code == 2 and "--label-map" in result.output

"""Augmenting a small real set: list continuation with a stop string, held-out seed folds and the
real-validation readout (pipelines/banking_topup.yaml, real Banking77
messages in data/banking/)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from textsynth.backends.base import Request, cut_at_stop
from textsynth.backends.transformers import TransformersBackend
from textsynth.card import _validation_section
from textsynth.config import GenerationParams, ModelConfig
from textsynth.embed import TextEmbedder
from textsynth.generate import text_opening
from textsynth.loop import allocation, plan_round, stalled
from textsynth.parse import clean
from textsynth.pipeline import prepare, run_build
from textsynth.records import Record
from textsynth.validation import FOLDS, LabeledSeeds, Readout, read_out, record_fold, seed_folds, verdict

ROOT = Path(__file__).resolve().parents[1]
BANKING = ROOT / "pipelines" / "banking_topup.yaml"


def _rows(name: str) -> tuple[list[str], list[str]]:
    with (ROOT / "data" / "banking" / name).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def _records(texts: list[str], labels: list[str]) -> list[Record]:
    return [Record(f"r{i}", lab, {}, text=t) for i, (t, lab) in enumerate(zip(texts, labels))]


def test_a_list_opening_keeps_only_its_last_line_and_the_marker_is_parsed_off():
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "- one\n- two\n-"}]
    assert text_opening(messages) == "-"
    assert text_opening([{"role": "assistant", "content": "The blender"}]) == "The blender"
    assert clean("- " + "Is there a fee to top up?", False) == ("Is there a fee to top up?", None)
    assert clean("4. my top up failed", False) == ("my top up failed", None)
    assert clean("5 stars, great", False)[0] == "5 stars, great"
    assert cut_at_stop("first line\nsecond", ["\n"]) == "first line"
    assert cut_at_stop("a STOP b", [" b", "STOP"]) == "a "


def test_a_stop_string_ends_each_completion_where_the_unstopped_one_breaks_its_line():
    """Sampling is seeded per record and step, so the stopped text is the unstopped text's first line."""
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=4))
    requests = [
        Request(
            f"r{i}",
            [
                {"role": "user", "content": "Write messages customers send to their bank, one per line."},
                {"role": "assistant", "content": "- Where is my top-up?\n- Is there a fee for cards?\n-"},
            ],
            500 + i,
        )
        for i in range(6)
    ]
    free = GenerationParams(max_new_tokens=40, temperature=0.9)
    stopped = free.model_copy(update={"stop": ["\n"]})
    whole = {c.id: c for c in backend.generate(requests, free)}
    first = {c.id: c for c in backend.generate(requests, stopped)}
    broke = [i for i, c in whole.items() if "\n" in c.text]
    assert broke, "the model continues the list past one line without a stop string"
    for rid in broke:
        assert first[rid].text.split("\n")[0] == whole[rid].text.split("\n")[0]
        assert "\n" not in first[rid].text.rstrip("\n")
        assert first[rid].finish_reason == "stop"
        assert first[rid].tokens < whole[rid].tokens
    assert "stop" not in free.fingerprint_params()  # caches made without the option stay valid
    assert stopped.fingerprint_params()["stop"] == ["\n"]


def test_seed_folds_split_every_label_in_halves_and_records_see_one_fold():
    texts, labels = _rows("seeds.csv")
    folds = seed_folds(labels)
    for label in set(labels):
        mine = [f for f, lab in zip(folds, labels) if lab == label]
        assert abs(mine.count(0) - mine.count(1)) <= 1
    assert folds == seed_folds(list(labels))  # deterministic
    prep = prepare(BANKING, n=40)
    templates, pool = prep.templates, prep.seeds
    assert pool is not None and pool.folds == folds
    seen_folds = set()
    for ex in prep.planned:
        rows = templates.exemplars(ex)
        assert rows and {pool.folds[i] for i in rows} == {record_fold(ex.id)}
        assert {labels[i] for i in rows} == {ex.label}
        seen_folds.add(record_fold(ex.id))
    assert seen_folds == set(range(FOLDS))


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder()


def test_real_validation_tells_data_that_helps_from_data_that_hurts(embedder):
    seeds = LabeledSeeds(*_rows("seeds.csv"), embedder)
    texts, labels = _rows("tune.csv")
    good = read_out(seeds, _records(texts, labels), 0, len(texts))
    shuffled = labels[:]
    random.Random(1).shuffle(shuffled)
    bad = read_out(seeds, _records(texts, shuffled), 1, len(texts))
    assert good is not None and bad is not None
    assert good.seeds == bad.seeds  # the same seed folds, the same baseline
    assert good.seeds_plus_synthetic > good.seeds + 0.03 and good.synthetic > good.seeds
    assert bad.seeds_plus_synthetic < bad.seeds and bad.synthetic < 0.3
    assert "helps" in verdict(good.to_dict()) and "does NOT beat" in verdict(bad.to_dict())
    assert set(good.recall) == set(labels) and all(0 <= v <= 1 for v in good.recall.values())
    section = _validation_section([good.to_dict(), bad.to_dict()])
    assert "does NOT beat your seed examples alone" in section
    assert f"{bad.seeds_plus_synthetic:.3f}" in section


@pytest.mark.slow
def test_the_banking_build_writes_single_messages_and_its_real_validation(tmp_path):
    result = run_build(BANKING, n=30, seed=2, out=tmp_path / "run", quiet=True)
    records = [Record.from_json(x) for x in (result.run_dir / "records.jsonl").read_text().splitlines()]
    produced = [r for r in records if r.text]
    assert produced and all("\n" not in r.text and not r.text.startswith("-") for r in produced)
    seeds = set(_rows("seeds.csv")[0])
    assert not {r.text for r in records if r.status == "kept"} & seeds  # no seed copied into the data
    summary = json.loads((result.run_dir / "summary.json").read_text())
    rounds = summary["real_validation"]
    assert rounds and rounds[0]["round"] == 0 and rounds[0]["kind"] == "quota"
    loops = [r for r in rounds if r["kind"] == "loop"]
    assert len(loops) == summary["loop_rounds"] >= 1  # the loop ran, one readout per round
    assert sum(summary["planned_labels"].values()) > 30  # its rows add to the label counts
    assert rounds[-1]["synthetic_rows"] == summary["kept"]
    assert all(0 < r[k] <= 1 for r in rounds for k in ("seeds", "seeds_plus_synthetic", "synthetic"))
    card = (result.run_dir / "hub" / "README.md").read_text()
    assert "## Real validation" in card and f"{rounds[-1]['seeds_plus_synthetic']:.3f}" in card
    assert np.isclose(sum(result.summary.kept_labels.values()), summary["kept"])


def _readout(recall: dict[str, float], plus: float = 0.8, missed: list[int] | None = None) -> Readout:
    confused = {label: next(o for o in recall if o != label) for label in recall}
    return Readout(0, 100, 100, 0.8, plus, 0.7, recall, confused, missed or [])


def test_the_loop_asks_most_where_real_seeds_are_missed_and_stops_when_accuracy_stalls():
    counts = allocation(_readout({"a": 1.0, "b": 0.5, "c": 0.0}), ["a", "b", "c"], 24)
    assert sum(counts.values()) == 24 and counts["c"] > counts["b"] > counts["a"] >= 1
    rising = [_readout({}, p) for p in (0.80, 0.85)]
    assert not stalled(rising, 1)
    assert stalled([*rising, _readout({}, 0.85)], 1) and stalled([*rising, _readout({}, 0.84)], 1)
    assert not stalled([*rising, _readout({}, 0.84)], 2)


def test_a_loop_round_contrasts_the_confused_label_and_shows_the_missed_seeds_first():
    prep = prepare(BANKING, n=40)
    pool, labels = prep.seeds, prep.pipeline.label_names
    recall = {label: (0.2 if label == labels[0] else 0.9) for label in labels}
    missed = [i for i, lab in enumerate(pool.data.labels) if lab == labels[0]][:4]
    readout = _readout(recall, missed=missed)
    records = [Record(ex.id, ex.label, ex.attributes, text="x") for ex in prep.planned]
    planned = plan_round(prep.pipeline, prep.template_key, readout, records, 1)
    assert len(planned) == 20  # loop.budget 0.5 of n = 40
    per_label = {label: sum(ex.label == label for ex in planned) for label in labels}
    assert per_label[labels[0]] == max(per_label.values()) > per_label[labels[1]]
    assert not {ex.id for ex in planned} & {ex.id for ex in prep.planned}
    for ex in planned:
        assert ex.contrast == (readout.confused_with[ex.label],)
        negatives = prep.templates.render_negatives(ex)
        assert len(negatives) == 1 and f'intent "{ex.contrast[0]}"' in negatives[0][1]["content"]
        rows = prep.templates.exemplars(ex)
        fold = record_fold(ex.id)
        preferred = [i for i in missed if pool.folds[i] == fold]
        if ex.label == labels[0]:
            assert preferred and len(set(rows) & set(preferred)) == min(len(rows), len(preferred))
        assert {pool.folds[i] for i in rows} == {fold}  # still only the record's own fold

"""Label check on a real 150-example build: planted wrong labels must be caught.

30 of the records the build kept (so their labels were confirmed) get their label swapped
(positive ↔ negative, neutral → positive); the check (zero-shot log-likelihoods from the
embedded model, similarity to the label descriptions and a cross-validated classifier on MiniLM
embeddings, combined by confident learning) runs on all of them again. Real sentences with
flipped labels are in benchmarks/dev_protocol.py (a model-free version below).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from textsynth.backends.transformers import TransformersBackend
from textsynth.embed import TextEmbedder
from textsynth.pipeline_file import load_pipeline
from textsynth.quality.labelcheck import LabelCheck, label_issues
from textsynth.records import Record

from .conftest import REAL_DATA, ROOT, SENTIMENT

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier

RESTAURANT = ROOT / "pipelines" / "restaurant_reviews.yaml"

SWAP = {"positive": "negative", "negative": "positive", "neutral": "positive"}


def _candidates(run_dir) -> list[Record]:
    out = []
    for line in (run_dir / "records.jsonl").open():
        r = Record.from_json(line)
        if r.status == "kept":
            out.append(Record(id=r.id, label=r.label, attributes=r.attributes, text=r.text))
    return out


def test_planted_mislabels_are_caught(built150):
    records = _candidates(built150.run_dir)
    assert len(records) >= 120
    rng = random.Random(0)
    planted = set(rng.sample([r.id for r in records], 30))
    for r in records:
        if r.id in planted:
            r.label = SWAP[r.label]
    pipeline = load_pipeline(SENTIMENT)
    config = pipeline.quality.label_check.model_copy(update={"zero_shot": True})  # every signal
    stage = LabelCheck(pipeline, config, TransformersBackend(pipeline.model), TextEmbedder())
    stage.run(records)
    assert stage.signals == ["zero_shot", "description", "classifier"]
    truth = np.array([r.id in planted for r in records])
    suspicion = np.array([1 - r.scores["label_confidence"] for r in records])
    flagged = np.array([r.status == "rejected" or "relabelled_from" in r.fields for r in records])
    auc = roc_auc_score(truth, suspicion)
    recall = (flagged & truth).sum() / truth.sum()
    precision = (flagged & truth).sum() / max(flagged.sum(), 1)
    print(
        json.dumps(
            {
                "records": len(records),
                "planted": 30,
                "auc": round(auc, 3),
                "precision": round(float(precision), 3),
                "recall": round(float(recall), 3),
            }
        )
    )
    assert auc > 0.7
    assert recall >= 0.5
    assert precision > truth.mean()  # better than flagging at random


def test_confident_learning_flags_off_diagonal_only():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 50 + [1] * 50)
    proba = np.clip(np.where(labels[:, None] == [0, 1], 0.85, 0.15) + rng.normal(0, 0.05, (100, 2)), 0.01, 1)
    proba[3], proba[60] = [0.05, 0.95], [0.95, 0.05]  # two rows that clearly look like the other label
    proba /= proba.sum(axis=1, keepdims=True)
    assert np.flatnonzero(label_issues(proba, labels)).tolist() == [3, 60]


def test_flagged_texts_are_relabelled_when_another_label_clearly_fits():
    """Real Yelp sentences with a few flipped labels: a flip the check is sure of gets the right
    label back (the original kept in fields); nothing it keeps unflagged changes."""
    rows = [line.rpartition("\t") for line in REAL_DATA.read_text(encoding="utf-8").splitlines()[:400]]
    truth = ["positive" if lab == "1" else "negative" for _, _, lab in rows]
    flipped = set(range(0, 400, 20))
    records = [
        Record(
            id=str(i),
            label=({"positive": "negative", "negative": "positive"}[t] if i in flipped else t),
            attributes={},
            text=text,
        )
        for i, ((text, _, _), t) in enumerate(zip(rows, truth))
    ]
    pipeline = load_pipeline(RESTAURANT)
    LabelCheck(
        pipeline, pipeline.quality.label_check, TransformersBackend(pipeline.model), TextEmbedder(), 3
    ).run(records)
    relabelled = [int(r.id) for r in records if "relabelled_from" in r.fields]
    assert relabelled, "confident flips are relabelled"
    for i in relabelled:
        assert records[i].fields["relabelled_from"] != records[i].label
    assert sum(records[i].label == truth[i] for i in relabelled) >= 0.8 * len(relabelled)
    assert sum(i in flipped for i in relabelled) >= 0.8 * len(relabelled)
    given = [
        truth[i] if i not in flipped else {"positive": "negative", "negative": "positive"}[truth[i]]
        for i in range(400)
    ]
    assert all(r.label == given[int(r.id)] for r in records if "relabelled_from" not in r.fields)


def test_build_funnel_has_rejections_in_stages_that_reject(built150):
    funnel = json.loads((built150.run_dir / "funnel.json").read_text())
    assert funnel["steps"] == [
        "planned",
        "generated",
        "parsed",
        "passed_filters",
        "label_confirmed",
        "unique",
        "selected",
        "exported",
    ]
    totals = [funnel["total"][s] for s in funnel["steps"][2:]]
    assert totals == sorted(totals, reverse=True)
    assert funnel["rejected_by_step"].get("label_confirmed")
    summary = json.loads((built150.run_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (built150.run_dir / "records.jsonl").open()]
    for label, want in summary["planned_labels"].items():  # the quota keeps exactly its count …
        passed = [r for r in records if r["label"] == label and r["reasons"][:1] in ([], ["over_quota"])]
        assert summary["kept_labels"].get(label, 0) == min(want, len(passed))
        assert (label in summary["shortfall"]) == (len(passed) < want)  # … or says it fell short
    assert all((r["status"] == "rejected") == bool(r["reasons"]) for r in records)
    diversity = json.loads((built150.run_dir / "diversity.json").read_text())
    assert set(diversity["labels"]) == {"positive", "negative", "neutral"}
    assert 0 < diversity["dataset"]["leaf_coverage"] <= 1
    assert all("novelty" in r["scores"] for r in records if r["status"] == "kept")

"""Label check on a real 150-example build: planted wrong labels must be caught.

30 of the records the build kept (so their labels were confirmed) get their label swapped
(positive ↔ negative, neutral → positive); the check (zero-shot log-likelihoods from the
embedded model + cross-validated classifier on MiniLM embeddings) runs on all of them again.
"""

from __future__ import annotations

import json
import random

import numpy as np
from sklearn.metrics import roc_auc_score

from textsynth.backends.transformers import TransformersBackend
from textsynth.config import load_pipeline
from textsynth.embed import TextEmbedder
from textsynth.quality.labelcheck import LabelCheck, label_issues
from textsynth.records import Record

from .conftest import SENTIMENT

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
    stage = LabelCheck(
        pipeline, pipeline.quality.label_check, TransformersBackend(pipeline.model), TextEmbedder()
    )
    stage.run(records)
    assert stage.signals == ["zero_shot", "classifier"]
    truth = np.array([r.id in planted for r in records])
    suspicion = np.array([1 - r.scores["label_confidence"] for r in records])
    flagged = np.array([r.status == "rejected" for r in records])
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
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.95, 0.05]])
    labels = np.array([0, 0, 1, 1, 1])  # the last one is labeled 1 but looks like 0
    assert label_issues(proba, labels).tolist() == [False, False, False, False, True]


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
    assert summary["kept"] + sum(summary["shortfall"].values()) == 150
    records = [json.loads(line) for line in (built150.run_dir / "records.jsonl").open()]
    assert all((r["status"] == "rejected") == bool(r["reasons"]) for r in records)
    diversity = json.loads((built150.run_dir / "diversity.json").read_text())
    assert set(diversity["labels"]) == {"positive", "negative", "neutral"}
    assert 0 < diversity["dataset"]["leaf_coverage"] <= 1
    assert all("novelty" in r["scores"] for r in records if r["status"] == "kept")

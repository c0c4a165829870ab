"""Label check: does each text really carry the label it was generated for?

Three signals, each a probability per label, stored in `scores`:
- `label_zero_shot`: the generating model as a zero-shot classifier, comparing the
  log-likelihood of each label name as its reply (a constrained choice, not parsed free text),
  calibrated by subtracting each label's mean over the build (small models prefer one label
  whatever the text; contextual calibration removes that prior);
- `label_description`: cosine similarity of the text's MiniLM embedding to each label's
  description, calibrated the same way;
- `label_classifier`: out-of-fold probability of a logistic regression on the MiniLM
  embeddings, trained with k-fold cross-validation on the build's own records.
Their weighted mean is `label_confidence`. Confident learning (cleanlab's
`find_label_issues`) flags the records whose given label is unlikely given each label's
estimated noise rate: only those (and any below the optional `min_confidence` floor) are acted
on. A flagged record is relabelled when another label clearly fits (`relabel_confidence`; the
original stays in `fields.relabelled_from`), else rejected `label_mismatch`.
Thresholds and weights are tuned on real sentences with planted label errors and on real-data
accuracy (benchmarks/dev_protocol.py, results in benchmarks/archive/history.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from scipy.special import softmax

from textsynth import faults
from textsynth.config import Pipeline
from textsynth.embed import Embedder
from textsynth.quality.base import Stage
from textsynth.quality_config import LabelCheckConfig
from textsynth.records import Record

MIN_PER_LABEL = 5  # confident learning needs a few records of every label to estimate noise


class Scorer(Protocol):
    """Anything with `Backend.score`: a backend, or the cached scorer of a build."""

    def score(self, prompts: Sequence[list[dict[str, str]]], choices: Sequence[str]) -> np.ndarray: ...


def zero_shot_prompt(pipeline: Pipeline, text: str) -> list[dict[str, str]]:
    """The question first, then the text: the question is a prefix all prompts share (computed
    once), and on real sentences with flipped labels the zero-shot signal alone flags with
    precision 0.32–0.36 this way against 0.17–0.20 with the text first (benchmarks/archive/history.md)."""
    names = ", ".join(lab.name for lab in pipeline.labels)
    return [
        {"role": "user", "content": f"Is this text {names}? Answer with one word.\n\nText: {text}"},
    ]


def out_of_fold_probabilities(
    vectors: np.ndarray, labels: np.ndarray, n_classes: int, folds: int, seed: int = 0
) -> np.ndarray | None:
    """Cross-validated class probabilities (rows, classes); None when classes are too small."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = np.bincount(labels, minlength=n_classes)
    present = counts[counts > 0]
    k = min(folds, int(present.min()) if len(present) else 0)
    if len(present) < 2 or k < 2:
        return None
    clf = LogisticRegression(max_iter=1000, C=4.0)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % 2**32)
    proba = cross_val_predict(clf, vectors, labels, cv=splitter, method="predict_proba")
    full = np.zeros((len(labels), n_classes))
    full[:, np.flatnonzero(counts)] = proba
    return full


def label_issues(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confident learning (cleanlab): a boolean mask of the likely label errors."""
    from cleanlab.filter import find_label_issues

    present, counts = np.unique(labels, return_counts=True)
    if len(present) < 2 or counts.min() < MIN_PER_LABEL:
        return np.zeros(len(labels), dtype=bool)  # too few to estimate noise rates: flag nothing
    # cleanlab needs every class to occur; restrict to the labels present and renormalise
    sub = proba[:, present] + 1e-9
    sub = sub / sub.sum(axis=1, keepdims=True)
    index = {lab: i for i, lab in enumerate(present)}
    mapped = np.array([index[lab] for lab in labels])
    # n_jobs=1: no forked pool (it deadlocks in a process that runs Ray, and the data is small)
    issues = find_label_issues(mapped, sub, filter_by="prune_by_noise_rate", n_jobs=1)
    return np.asarray(issues, dtype=bool)


def _calibrated(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax after removing each label's mean score over the build (its prior)."""
    return softmax((scores - scores.mean(axis=0, keepdims=True)) / temperature, axis=1)


class LabelCheck(Stage):
    name = "label_check"

    def __init__(
        self,
        pipeline: Pipeline,
        config: LabelCheckConfig,
        backend: Scorer | None,
        embedder: Embedder | None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.pipeline, self.config = pipeline, config
        self.backend, self.embedder = backend, embedder
        self.seed = seed
        self.signals: list[str] = []

    def _zero_shot(self, kept: list[Record], names: list[str]) -> np.ndarray | None:
        if not (self.config.zero_shot and self.backend is not None and self.config.zero_shot_weight > 0):
            return None
        try:
            loglik = self.backend.score([zero_shot_prompt(self.pipeline, r.text or "") for r in kept], names)
        except NotImplementedError:
            self.signals.append("zero_shot_unavailable")
            return None
        return _calibrated(np.asarray(loglik, dtype=float))

    def _description(self, vectors: np.ndarray) -> np.ndarray | None:
        if not (self.config.description_weight > 0 and self.embedder is not None):
            return None
        labels = self.embedder([f"{lab.name}: {lab.description}" for lab in self.pipeline.labels])
        return _calibrated(vectors @ labels.T, temperature=self.config.description_temperature)

    def _classifier(self, vectors: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray | None:
        if not (self.config.classifier and self.config.classifier_weight > 0):
            return None
        return out_of_fold_probabilities(vectors, labels, n, self.config.folds, self.seed)

    def probabilities(self, kept: list[Record]) -> np.ndarray | None:
        """The weighted mean of the available signals (rows, labels); None when none is on."""
        names = [lab.name for lab in self.pipeline.labels]
        labels = np.array([names.index(r.label) for r in kept])
        vectors = self.embedder([r.text or "" for r in kept]) if self.embedder is not None else None
        signals = {
            "zero_shot": (self.config.zero_shot_weight, self._zero_shot(kept, names)),
            "description": (
                self.config.description_weight,
                self._description(vectors) if vectors is not None else None,
            ),
            "classifier": (
                self.config.classifier_weight,
                self._classifier(vectors, labels, len(names)) if vectors is not None else None,
            ),
        }
        parts = []
        for name, (weight, proba) in signals.items():
            if proba is None:
                continue
            self.signals.append(name)
            parts.append((weight, proba))
            for r, p in zip(kept, proba[np.arange(len(kept)), labels]):
                r.scores[f"label_{name}"] = round(float(p), 4)
        if not parts:
            return None
        return sum(w * p for w, p in parts) / sum(w for w, _ in parts)

    def process(self, kept: list[Record]) -> None:
        if not kept:
            return
        proba = self.probabilities(kept)
        faults.point("label_check")  # every signal computed (and the zero-shot scores cached)
        if proba is None:
            return
        names = [lab.name for lab in self.pipeline.labels]
        labels = np.array([names.index(r.label) for r in kept])
        confidence = proba[np.arange(len(kept)), labels]
        issues = label_issues(proba, labels)
        for r, conf, issue, row in zip(kept, confidence, issues, proba):
            r.scores["label_confidence"] = round(float(conf), 4)
            r.scores.setdefault("quality", round(float(conf), 4))  # a judge's score ranks first
            if not issue and conf >= self.config.min_confidence:
                continue
            best = int(row.argmax())
            if self.config.relabel and names[best] != r.label and row[best] >= self.config.relabel_confidence:
                r.fields["relabelled_from"] = r.label
                r.label = names[best]
                r.scores["label_confidence"] = round(float(row[best]), 4)
            else:
                r.reject("label_mismatch")
                r.fields["label_suggested"] = names[best]

"""Label check: does each text really carry the label it was generated for?

Two signals, both stored in `scores`:
- `label_zero_shot`: the generating model as a zero-shot classifier, comparing the
  log-likelihood of each label name as its reply (a constrained choice, not parsed free text),
  calibrated by subtracting each label's mean over the build (small models prefer one label
  whatever the text; contextual calibration removes that prior);
- `label_classifier`: out-of-fold probability of a logistic regression on the MiniLM
  embeddings, trained with k-fold cross-validation on the build's own records.
Their weighted mean is `label_confidence` (`zero_shot_weight` weighs the first signal).
A record is rejected `label_mismatch` when that is below the
floor, or when confident learning finds it off-diagonal: its label's probability is under that
label's average self-confidence while another label's clears its own average.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from textsynth.backends import Backend
from textsynth.config import LabelCheckConfig, Pipeline
from textsynth.quality.base import Stage
from textsynth.records import Record

Embedder = Callable[[list[str]], np.ndarray]


def zero_shot_prompt(pipeline: Pipeline, text: str) -> list[dict[str, str]]:
    """Text first, then a short question: small models attend best to what comes last."""
    names = ", ".join(lab.name for lab in pipeline.labels)
    return [
        {"role": "user", "content": f"Text: {text}\n\nIs this text {names}? Answer with one word."},
    ]


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def out_of_fold_probabilities(
    vectors: np.ndarray, labels: np.ndarray, n_classes: int, folds: int
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
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=0)
    proba = cross_val_predict(clf, vectors, labels, cv=splitter, method="predict_proba")
    full = np.zeros((len(labels), n_classes))
    full[:, np.flatnonzero(counts)] = proba
    return full


def label_issues(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confident-learning off-diagonal: label below its class threshold, another above its own."""
    n_classes = proba.shape[1]
    thresholds = np.array(
        [proba[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(n_classes)]
    )
    given = proba[np.arange(len(labels)), labels]
    above = proba >= thresholds[None, :]
    above[np.arange(len(labels)), labels] = False
    return (given < thresholds[labels]) & above.any(axis=1) & (proba.argmax(axis=1) != labels)


class LabelCheck(Stage):
    name = "label_check"

    def __init__(
        self, pipeline: Pipeline, config: LabelCheckConfig, backend: Backend | None, embedder: Embedder | None
    ) -> None:
        super().__init__()
        self.pipeline, self.config = pipeline, config
        self.backend, self.embedder = backend, embedder
        self.signals: list[str] = []

    def probabilities(self, kept: list[Record]) -> np.ndarray | None:
        names = [lab.name for lab in self.pipeline.labels]
        labels = np.array([names.index(r.label) for r in kept])
        parts = []
        if self.config.zero_shot and self.backend is not None:
            try:
                loglik = self.backend.score(
                    [zero_shot_prompt(self.pipeline, r.text or "") for r in kept], names
                )
                loglik = np.asarray(loglik)
                zs = _softmax(loglik - loglik.mean(axis=0, keepdims=True))  # remove the label prior
                parts.append((self.config.zero_shot_weight, zs))
                self.signals.append("zero_shot")
                for r, p in zip(kept, zs[np.arange(len(kept)), labels]):
                    r.scores["label_zero_shot"] = round(float(p), 4)
            except NotImplementedError:
                self.signals.append("zero_shot_unavailable")
        if self.config.classifier and self.embedder is not None:
            proba = out_of_fold_probabilities(
                self.embedder([r.text or "" for r in kept]), labels, len(names), self.config.folds
            )
            if proba is not None:
                parts.append((1.0, proba))
                self.signals.append("classifier")
                for r, p in zip(kept, proba[np.arange(len(kept)), labels]):
                    r.scores["label_classifier"] = round(float(p), 4)
        if not parts:
            return None
        return sum(w * p for w, p in parts) / sum(w for w, _ in parts)

    def process(self, kept: list[Record]) -> None:
        if not kept:
            return
        proba = self.probabilities(kept)
        if proba is None:
            return
        names = [lab.name for lab in self.pipeline.labels]
        labels = np.array([names.index(r.label) for r in kept])
        confidence = proba[np.arange(len(kept)), labels]
        issues = label_issues(proba, labels)
        for r, conf, issue, row in zip(kept, confidence, issues, proba):
            r.scores["label_confidence"] = round(float(conf), 4)
            r.scores.setdefault("quality", round(float(conf), 4))  # a judge's score ranks first
            if conf < self.config.min_confidence or issue:
                r.reject("label_mismatch")
                r.fields["label_suggested"] = names[int(row.argmax())]

"""Real validation: does the build's data train a better classifier on the user's own examples?

With labeled seed examples, each label's rows are split in two folds and each record is shown
exemplars of one fold only (its fold follows from its id). A classifier (MiniLM + logistic
regression, as in `textsynth compare`) trained on one fold's seeds, on the kept records shown
that fold, or on both, is read on the other fold's seeds, and the other way round. So no
accuracy is read on a real text that a record it trained on was shown. The three numbers answer the user's
question: do the seeds plus this data beat the seeds alone, and does this data alone carry the
labels?
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from textsynth.embed import Embedder
from textsynth.records import Record
from textsynth.taxonomy import derived_seed

FOLDS = 2


def record_fold(record_id: str) -> int:
    """The seed fold a record is shown exemplars from."""
    return derived_seed(record_id, "fold") % FOLDS


def seed_folds(labels: list[str]) -> list[int]:
    """Each seed row's fold: a label's rows in a seeded order, dealt to the folds in turn."""
    folds = [0] * len(labels)
    for label in sorted(set(labels)):
        rows = [i for i, lab in enumerate(labels) if lab == label]
        random.Random(derived_seed("fold", label)).shuffle(rows)
        for turn, row in enumerate(rows):
            folds[row] = turn % FOLDS
    return folds


def fit(vectors: np.ndarray, labels: list[str]):  # -> a fitted LogisticRegression
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, C=4.0, random_state=0).fit(vectors, labels)


@dataclass
class LabeledSeeds:
    """The labeled seed examples, their folds and their embeddings (computed once)."""

    texts: list[str]
    labels: list[str]
    embed: Embedder

    def __post_init__(self) -> None:
        self.folds = np.array(seed_folds(self.labels))
        self._vectors: np.ndarray | None = None

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = self.embed(self.texts)
        return self._vectors

    def rows(self, fold: int) -> np.ndarray:
        return np.flatnonzero(self.folds == fold)

    def part(self, fold: int) -> tuple[np.ndarray, list[str]]:
        rows = self.rows(fold)
        return self.vectors[rows], [self.labels[i] for i in rows]


@dataclass
class Readout:
    """Real-validation accuracy of one round's data, pooled over both folds."""

    round: int
    requests: int  # generated so far
    synthetic_rows: int
    seeds: float
    seeds_plus_synthetic: float
    synthetic: float
    recall: dict[str, float]  # per label, seeds + synthetic
    confused_with: dict[str, str]  # per label, the label its real texts are most often taken for
    missed: list[int] = field(default_factory=list)  # seed rows seeds + synthetic got wrong
    kind: str = "quota"  # "quota": a round toward the label counts; "loop": a steered round

    def to_dict(self) -> dict[str, object]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items() if k != "missed"}


def read_out(seeds: LabeledSeeds, kept: list[Record], round_no: int, requests: int) -> Readout | None:
    """Accuracy on held-out seeds of the seeds alone, seeds + kept records, kept records alone."""
    texts = [r.text or "" for r in kept]
    vectors = seeds.embed(texts) if texts else np.zeros((0, seeds.vectors.shape[1]), dtype=np.float32)
    folds = np.array([record_fold(r.id) for r in kept], dtype=int)
    names = sorted(set(seeds.labels))
    right = {"seeds": 0, "both": 0, "synthetic": 0}
    truth: list[str] = []
    guesses: list[str] = []
    missed: list[int] = []
    for fold in range(FOLDS):
        x_seed, y_seed = seeds.part(fold)
        x_test, y_test = seeds.part(1 - fold)
        mine = np.flatnonzero(folds == fold)
        x_syn, y_syn = vectors[mine], [kept[i].label for i in mine]
        if len(set(y_seed)) < 2 or len(set(y_syn)) < 2 or not y_test:
            return None
        arms = {
            "seeds": (x_seed, y_seed),
            "both": (np.concatenate([x_seed, x_syn]), y_seed + y_syn),
            "synthetic": (x_syn, y_syn),
        }
        for arm, (x, y) in arms.items():
            guess = fit(x, y).predict(x_test)
            right[arm] += int((guess == np.array(y_test)).sum())
            if arm == "both":
                truth += y_test
                guesses += guess.tolist()
                missed += [int(r) for r, g, t in zip(seeds.rows(1 - fold), guess, y_test) if g != t]
    total = len(truth)
    recall, confused = {}, {}
    for label in names:
        mine_guesses = [g for t, g in zip(truth, guesses) if t == label]
        if not mine_guesses:
            continue
        recall[label] = round(sum(g == label for g in mine_guesses) / len(mine_guesses), 4)
        wrong = [g for g in mine_guesses if g != label]
        if wrong:
            confused[label] = max(sorted(set(wrong)), key=wrong.count)
    return Readout(
        round_no,
        requests,
        len(kept),
        right["seeds"] / total,
        right["both"] / total,
        right["synthetic"] / total,
        recall,
        confused,
        sorted(missed),
    )


def verdict(readout: dict[str, Any]) -> str:
    """The one line a build prints and the card shows, from a round as stored (`Readout.to_dict`)."""
    seeds, both = readout["seeds"], readout["seeds_plus_synthetic"]
    numbers = (
        f"on your held-out seed examples, seeds alone {seeds:.3f}, seeds + synthetic {both:.3f} "
        f"({both - seeds:+.3f}), synthetic alone {readout['synthetic']:.3f}"
    )
    if both > seeds:
        return f"real validation: the synthetic data helps: {numbers}"
    return (
        f"real validation: the synthetic data does NOT beat your seed examples alone: {numbers}; "
        "train on the seeds alone, or add them to the export (`textsynth export --mix-real`)"
    )

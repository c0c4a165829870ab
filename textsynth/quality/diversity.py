"""Diversity of the kept records, per dataset, per label and per taxonomy leaf.

Everything is O(n) or O(n·d²): mean pairwise cosine distance comes from the sum vector and the
Vendi score from the d×d covariance (its nonzero eigenvalues equal those of the n×n kernel).
The one quadratic metric, self-BLEU, runs on a fixed-seed sample with a bootstrap interval.
Compression ratio favours short texts, so mean length is reported beside it.
"""

from __future__ import annotations

import gzip
import math
import random
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from textsynth.quality.filters import words
from textsynth.records import Record
from textsynth.taxonomy import leaf_key


def distinct_n(texts: list[str], n: int) -> float:
    grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def compression_ratio(texts: list[str]) -> float:
    """Raw size / gzip size of the joined texts: higher means more repetitive."""
    raw = " ".join(texts).encode()
    return len(raw) / len(gzip.compress(raw)) if raw else 0.0


def mean_pairwise_cosine_distance(vectors: np.ndarray) -> float:
    """1 − mean cosine over all pairs i≠j, from the sum of unit vectors."""
    n = len(vectors)
    if n < 2:
        return 0.0
    total = vectors.sum(axis=0)
    mean_sim = (float(total @ total) - float((vectors * vectors).sum())) / (n * (n - 1))
    return 1.0 - mean_sim


def vendi_score(vectors: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K/n), K = X Xᵀ with unit rows, via the d×d form XᵀX/n."""
    n = len(vectors)
    if n == 0:
        return 0.0
    eig = np.linalg.eigvalsh((vectors.T.astype(np.float64) @ vectors.astype(np.float64)) / n)
    eig = eig[eig > 1e-12]
    return float(math.exp(-(eig * np.log(eig)).sum()))


def self_bleu(texts: list[str], sample: int = 60, seed: int = 0, rounds: int = 200) -> dict[str, float]:
    """Mean BLEU of each sampled text against the other sampled ones, with a 95 % bootstrap interval."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    rng = random.Random(seed)
    chosen = rng.sample(texts, min(sample, len(texts)))
    if len(chosen) < 3:
        return {"mean": 0.0, "low": 0.0, "high": 0.0, "sample": len(chosen)}
    tokens = [words(t) for t in chosen]
    smooth = SmoothingFunction().method1
    scores = [
        sentence_bleu(tokens[:i] + tokens[i + 1 :], tokens[i], smoothing_function=smooth)
        for i in range(len(tokens))
    ]
    means = sorted(np.mean(rng.choices(scores, k=len(scores))) for _ in range(rounds))
    return {
        "mean": float(np.mean(scores)),
        "low": float(means[int(0.025 * rounds)]),
        "high": float(means[int(0.975 * rounds) - 1]),
        "sample": len(chosen),
    }


def entropy_balance(counts: list[int]) -> float:
    """Normalized entropy of a distribution: 1 = perfectly balanced."""
    total = sum(counts)
    if total == 0 or len(counts) < 2:
        return 0.0
    p = np.array([c / total for c in counts if c])
    return float(-(p * np.log(p)).sum() / math.log(len(counts)))


def group_metrics(texts: list[str], vectors: np.ndarray) -> dict[str, float]:
    return {
        "count": len(texts),
        "mean_words": float(np.mean([len(words(t)) for t in texts])) if texts else 0.0,
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "compression_ratio": compression_ratio(texts),
        "mean_cosine_distance": mean_pairwise_cosine_distance(vectors),
        "vendi": vendi_score(vectors),
    }


def novelty(vectors: np.ndarray) -> np.ndarray:
    """1 − max cosine similarity to any other vector (faiss inner product, k=2)."""
    import faiss

    if len(vectors) < 2:
        return np.ones(len(vectors))
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, ids = index.search(vectors, 2)
    own = ids[:, 0] == np.arange(len(vectors))
    nearest = np.where(own, sims[:, 1], sims[:, 0])
    return 1.0 - nearest


def diversity_report(
    records: list[Record], vectors: np.ndarray, label_names: list[str], planned_leaves: set[str], seed: int
) -> dict[str, Any]:
    """Metrics of the kept records (rows of `vectors` align with `records`); sets `scores.novelty`."""
    texts = [r.text or "" for r in records]
    for r, nov in zip(records, novelty(vectors)):
        r.scores["novelty"] = round(float(nov), 4)
    by_label: dict[str, list[int]] = defaultdict(list)
    by_leaf: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_label[r.label].append(i)
        by_leaf[f"{r.label}|{leaf_key(r.attributes)}"].append(i)
    counts = Counter(r.label for r in records)
    return {
        "dataset": {
            **group_metrics(texts, vectors),
            "self_bleu": self_bleu(texts, seed=seed),
            "label_balance": entropy_balance([counts.get(n, 0) for n in label_names]),
            "leaf_coverage": len({k for k in by_leaf}) / len(planned_leaves) if planned_leaves else 0.0,
        },
        "labels": {
            name: group_metrics([texts[i] for i in idx], vectors[idx]) for name, idx in by_label.items()
        },
        "leaves": {
            leaf: group_metrics([texts[i] for i in idx], vectors[idx]) for leaf, idx in by_leaf.items()
        },
    }

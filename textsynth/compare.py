"""`textsynth compare`: does the synthetic data resemble and help with real data?

On the labels both sides share: (a) TSTR, classifiers trained on the synthetic train split and
tested on real data, beside the same classifiers trained on real data (TRTR; a given real train
file, or a seeded stratified half of the real file, tested on the other half); (b) Fréchet
distance between the synthetic and real embedding distributions, overall and per label; (c) label
and length distributions side by side; (d) coverage: the share of real texts whose nearest
synthetic text is within a cosine threshold; (e) per-step evidence: the same classifiers trained
on the records kept after each funnel step (evidence.py), tested on the same real texts.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from textsynth.embed import embed
from textsynth.errors import ConfigError
from textsynth.evidence import step_accuracy, step_table, survivors
from textsynth.quality.filters import words
from textsynth.readers import RealData
from textsynth.run import RunDir, write_atomic

Split = tuple[list[str], list[str]]


def synthetic_split(run: RunDir, split: str) -> Split:
    path = run.path / "data.jsonl"
    if not path.exists():
        raise ConfigError(f"{path}: missing; export the run first (textsynth export {run.path})")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r["split"] == split and r.get("source", "synthetic") == "synthetic"]
    return [r["text"] for r in rows], [r.get("label", "all") for r in rows]


def halves(texts: list[str], labels: list[str], seed: int) -> tuple[Split, Split]:
    """A seeded stratified 50/50 split of real data: (train, test)."""
    rng = random.Random(seed)
    train, test = ([], []), ([], [])
    for label in sorted(set(labels)):
        rows = [i for i, lab in enumerate(labels) if lab == label]
        rng.shuffle(rows)
        for k, i in enumerate(rows):
            side = train if k < len(rows) // 2 else test
            side[0].append(texts[i])
            side[1].append(label)
    return train, test


def _scores(train: Split, test: Split, vectors: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 of the two classifiers trained on `train`, tested on `test`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    out = {}
    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(train[0])
    features = {
        "minilm_logreg": tuple(np.stack([vectors[t] for t in side[0]]) for side in (train, test)),
        "tfidf_logreg": (tfidf.transform(train[0]), tfidf.transform(test[0])),
    }
    for name, (x_train, x_test) in features.items():
        model = LogisticRegression(max_iter=2000, C=4.0).fit(x_train, train[1])
        predicted = model.predict(x_test)
        out[name] = {
            "accuracy": round(float(accuracy_score(test[1], predicted)), 4),
            "macro_f1": round(float(f1_score(test[1], predicted, average="macro")), 4),
        }
    return out


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings."""
    from scipy.linalg import sqrtm

    eps = np.eye(a.shape[1]) * 1e-6
    ca, cb = np.cov(a, rowvar=False) + eps, np.cov(b, rowvar=False) + eps
    root = sqrtm(ca @ cb)
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * np.real(root)))


def compare_run(
    run: RunDir, real: RealData, real_train: RealData | None, seed: int, coverage_cosine: float = 0.7
) -> dict[str, Any]:
    """The comparison as a JSON-ready dict; also written to RUN_DIR/compare.json."""
    synth = synthetic_split(run, "train")
    if real.labels is None:
        raise ConfigError(f"{real.path}: no label column; give --label-col (and --label-map)")
    shared = sorted(set(synth[1]) & set(real.labels))
    if len(shared) < 2:
        raise ConfigError(
            f"{real.path}: shares {len(shared)} label(s) with the run ({', '.join(sorted(set(synth[1])))}); "
            "map its labels with --label-map"
        )

    def keep(texts: list[str], labels: list[str]) -> Split:
        pairs = [(t, lab) for t, lab in zip(texts, labels) if lab in shared]
        return [t for t, _ in pairs], [lab for _, lab in pairs]

    synth = keep(*synth)
    funnel = json.loads((run.path / "funnel.json").read_text()) if (run.path / "funnel.json").exists() else {}
    stages = [(step, keep(*split)) for step, split in survivors(run.read_records(), funnel, seed)]
    if real_train is not None and real_train.labels is not None:
        r_train, r_test = keep(real_train.texts, real_train.labels), keep(real.texts, real.labels)
    else:
        r_train, r_test = halves(*keep(real.texts, real.labels), seed)
    every = list(dict.fromkeys(synth[0] + r_train[0] + r_test[0] + [t for _, s in stages for t in s[0]]))
    vectors = dict(zip(every, embed(every)))
    s_vec = np.stack([vectors[t] for t in synth[0]])
    real_all = r_train[0] + r_test[0]
    r_vec = np.stack([vectors[t] for t in real_all])
    real_labels = r_train[1] + r_test[1]
    nearest = (r_vec @ s_vec.T).max(axis=1)
    result: dict[str, Any] = {
        "labels": shared,
        "sizes": {
            "synthetic_train": len(synth[0]),
            "real_train": len(r_train[0]),
            "real_test": len(r_test[0]),
        },
        "tstr": _scores(synth, r_test, vectors),
        "trtr": _scores(r_train, r_test, vectors),
        "frechet": {
            "all": round(frechet(s_vec, r_vec), 4),
            **{
                lab: round(
                    frechet(
                        s_vec[[i for i, x in enumerate(synth[1]) if x == lab]],
                        r_vec[[i for i, x in enumerate(real_labels) if x == lab]],
                    ),
                    4,
                )
                for lab in shared
            },
        },
        "distribution": {
            lab: {
                "synthetic_count": Counter(synth[1])[lab],
                "real_count": Counter(real_labels)[lab],
                "synthetic_mean_words": round(
                    float(np.mean([len(words(t)) for t, x in zip(*synth) if x == lab])), 2
                ),
                "real_mean_words": round(
                    float(np.mean([len(words(t)) for t, x in zip(real_all, real_labels) if x == lab])), 2
                ),
            }
            for lab in shared
        },
        "coverage": {
            "cosine": coverage_cosine,
            "share": round(float((nearest >= coverage_cosine).mean()), 4),
        },
        "steps": step_accuracy(stages, r_test, vectors, seed),
    }
    write_atomic(run.path / "compare.json", json.dumps(result, indent=2) + "\n")
    return result


def compare_tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, header, rows) for the CLI and the report."""
    clf = [
        [
            name,
            result["tstr"][name]["accuracy"],
            result["trtr"][name]["accuracy"],
            result["tstr"][name]["macro_f1"],
            result["trtr"][name]["macro_f1"],
        ]
        for name in result["tstr"]
    ]
    dist = [
        [
            lab,
            d["synthetic_count"],
            d["real_count"],
            d["synthetic_mean_words"],
            d["real_mean_words"],
            result["frechet"][lab],
        ]
        for lab, d in result["distribution"].items()
    ]
    sizes = result["sizes"]
    return [
        (
            f"TSTR vs TRTR on {sizes['real_test']} real test texts (train: synthetic "
            f"{sizes['synthetic_train']}, real {sizes['real_train']})",
            ["classifier", "TSTR acc", "TRTR acc", "TSTR F1", "TRTR F1"],
            clf,
        ),
        (
            f"distributions (Fréchet distance, all labels: {result['frechet']['all']}; coverage: "
            f"{result['coverage']['share']:.1%} of real texts have a synthetic neighbour at cos ≥ "
            f"{result['coverage']['cosine']})",
            ["label", "synthetic", "real", "synthetic words", "real words", "Fréchet"],
            dist,
        ),
        *([step_table(result["steps"], sizes["real_test"])] if result.get("steps") else []),
    ]


def load_compare(run_path: Path) -> dict[str, Any] | None:
    path = run_path / "compare.json"
    return json.loads(path.read_text()) if path.exists() else None

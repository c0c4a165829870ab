"""Does each quality step make the data train better? Real-data accuracy per funnel step.

A filter that removes texts is good only if a classifier trained on what remains does better on
real text. For every funnel step this trains the same classifiers (same features, same seed) on
the records still kept after it and tests them on real data, with bootstrap intervals over both
the training rows and the real test rows, and a paired interval for the difference against all
generated records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from textsynth.records import Record

Split = tuple[list[str], list[str]]
Encoder = Callable[[list[str]], dict[str, np.ndarray]]

FIRST = "generated"  # the baseline: every text the model produced, before any quality step
# As many generated texts per label as were kept, drawn at random: what a build of the same size
# without a quality stage would have exported (all generated also has the extras a build makes).
SAME_SIZE = "generated_same_size"
REPLICATES = 60  # bootstrap replicates; each refits both classifiers


def rejection_steps(funnel: dict[str, Any]) -> dict[str, str]:
    """Reason name → the funnel step that rejects with it (from funnel.json)."""
    return {
        reason: step for step, reasons in funnel.get("rejected_by_step", {}).items() for reason in reasons
    }


def survivors(records: list[Record], funnel: dict[str, Any], seed: int = 0) -> list[tuple[str, Split]]:
    """(step, (texts, labels)) for the generated texts, a same-size draw of them, and after each
    later funnel step.

    A record survives a step when it was not rejected at that step or before it. A record the
    label check relabelled counts with its original label before that step and its new one after.
    """
    steps = [s for s in funnel.get("steps", []) if s not in ("planned", "generated", "parsed")]
    order = {step: i for i, step in enumerate(["parsed", *steps])}
    where = rejection_steps(funnel)
    late = len(order)  # reasons no funnel step names (review, decontamination) come after all

    def rejected_at(r: Record) -> int:
        if r.status == "kept" or not r.reasons:
            return late + 1
        return order.get(where.get(r.reasons[0].split(":")[0], ""), late)

    produced = [r for r in records if r.text and r.generation.get("raw") is not None]
    relabel_at = order.get("label_confirmed", late)
    out: list[tuple[str, Split]] = []
    for step, index in [(FIRST, 0), *[(s, order[s]) for s in steps]]:
        alive = [r for r in produced if rejected_at(r) > index]
        labels = [r.label if index >= relabel_at else r.fields.get("relabelled_from", r.label) for r in alive]
        out.append((step, ([r.text or "" for r in alive], labels)))
    out.insert(1, (SAME_SIZE, _same_size(out[0][1], out[-1][1][1], seed)))
    return out


def _same_size(generated: Split, kept_labels: list[str], seed: int) -> Split:
    """A seeded draw from `generated` with as many texts of each label as `kept_labels` has."""
    rng = np.random.default_rng(seed)
    texts, labels = generated
    pick: list[int] = []
    for label, count in sorted(Counter(kept_labels).items()):
        rows = [i for i, lab in enumerate(labels) if lab == label]
        pick += rng.choice(rows, min(count, len(rows)), replace=False).tolist()
    pick.sort()
    return [texts[i] for i in pick], [labels[i] for i in pick]


def _fit_predict(
    train: Split, test: Split, vectors: dict[str, np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """Predictions on `test` of MiniLM + logistic regression and TF-IDF + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(train[0])
    features = {
        "minilm_logreg": (
            np.stack([vectors[t] for t in train[0]]),
            np.stack([vectors[t] for t in test[0]]),
        ),
        "tfidf_logreg": (tfidf.transform(train[0]), tfidf.transform(test[0])),
    }
    return {
        name: LogisticRegression(max_iter=2000, C=4.0, random_state=seed).fit(x, train[1]).predict(x_test)
        for name, (x, x_test) in features.items()
    }


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return round(float(low), 4), round(float(high), 4)


def step_accuracy(
    stages: list[tuple[str, Split]],
    test: Split,
    vectors: dict[str, np.ndarray],
    seed: int,
    replicates: bool = False,
) -> list[dict[str, Any]]:
    """Accuracy per step and classifier, with 95 % intervals and the difference to the first step.

    Each bootstrap replicate resamples both the training rows (refitting the classifiers) and
    the real test rows (the same test rows for every step, so differences are paired): which
    equally good rows a step happens to keep moves accuracy as much as the test sample does.
    `replicates` keeps each difference's replicates (`delta_replicates`), so runs of several
    seeds can be pooled.
    """
    truth = np.array(test[1])
    picks = np.random.default_rng(seed).integers(0, len(truth), size=(REPLICATES, len(truth)))
    fitted: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[str, np.ndarray]] = {}

    def accuracies(train: Split) -> dict[str, np.ndarray]:
        """Per classifier: [point accuracy, then one accuracy per replicate]."""
        key = (tuple(train[0]), tuple(train[1]))
        if key not in fitted:
            out = {
                name: [float((p == truth).mean())]
                for name, p in _fit_predict(train, test, vectors, seed).items()
            }
            for b in range(REPLICATES):
                rows = np.random.default_rng([seed, b]).integers(0, len(train[0]), len(train[0]))
                sample = ([train[0][i] for i in rows], [train[1][i] for i in rows])
                if len(set(sample[1])) < 2:
                    sample = train
                for name, p in _fit_predict(sample, test, vectors, seed).items():
                    out[name].append(float((p == truth)[picks[b]].mean()))
            fitted[key] = {name: np.array(v) for name, v in out.items()}
        return fitted[key]

    rows: list[dict[str, Any]] = []
    base: dict[str, np.ndarray] = {}
    for step, train in stages:
        row: dict[str, Any] = {"step": step, "rows": len(train[0])}
        if len(set(train[1])) < 2:
            row["skipped"] = "fewer than two labels left"
            rows.append(row)
            continue
        for name, acc in accuracies(train).items():
            entry = {"accuracy": round(float(acc[0]), 4)}
            entry["low"], entry["high"] = _interval(acc[1:])
            if name in base:
                entry["delta"] = round(float(acc[0] - base[name][0]), 4)
                entry["delta_low"], entry["delta_high"] = _interval(acc[1:] - base[name][1:])
                if replicates:
                    entry["delta_replicates"] = acc[1:] - base[name][1:]
            else:
                base[name] = acc
            row[name] = entry
        rows.append(row)
    return rows


def pooled(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The mean of several runs' per-step accuracies and differences (same test rows and replicate
    draws, e.g. builds with different seeds), with a 95 % interval over the mean of their
    replicates for each difference: one
    build of a few hundred rows cannot show a gain of a few points beyond noise, several can."""
    out = []
    for step in [s["step"] for s in runs[0]]:
        row: dict[str, Any] = {"step": step, "runs": len(runs)}
        for name in ("minilm_logreg", "tfidf_logreg"):
            entries = [next(s for s in run if s["step"] == step).get(name) or {} for run in runs]
            if not all("accuracy" in e for e in entries):
                continue
            row[name] = {"accuracy": round(float(np.mean([e["accuracy"] for e in entries])), 4)}
            if all("delta_replicates" in e for e in entries):
                low, high = _interval(np.mean([e["delta_replicates"] for e in entries], axis=0))
                delta = round(float(np.mean([e["delta"] for e in entries])), 4)
                row[name] |= {"delta": delta, "low": low, "high": high}
        out.append(row)
    return out


def step_table(steps: list[dict[str, Any]], test_size: int) -> tuple[str, list[str], list[list[Any]]]:
    """(title, header, rows) for the CLI and the report."""

    def cell(entry: dict[str, Any] | None, key: str) -> str:
        if not entry:
            return ""
        if key == "accuracy":
            return f"{entry['accuracy']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"
        if "delta" not in entry:
            return "baseline"
        return f"{entry['delta']:+.3f} [{entry['delta_low']:+.3f}, {entry['delta_high']:+.3f}]"

    body = [
        [
            s["step"],
            s["rows"],
            *(cell(s.get(c), k) for c in ("minilm_logreg", "tfidf_logreg") for k in ("accuracy", "delta")),
        ]
        for s in steps
    ]
    return (
        f"real-data accuracy of the records kept after each step ({test_size} real test texts; "
        "95 % bootstrap intervals over training and test rows; Δ = paired difference against all "
        f"generated texts; {SAME_SIZE}: as many generated texts per label as were kept, drawn at "
        "random, i.e. a build of the same size without the quality stage)",
        ["after step", "rows", "MiniLM acc", "MiniLM Δ", "TF-IDF acc", "TF-IDF Δ"],
        body,
    )

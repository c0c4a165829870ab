"""Which records survive each funnel step, and the per-step accuracy arithmetic."""

from __future__ import annotations

import numpy as np

from textsynth.evidence import pooled, step_accuracy, survivors
from textsynth.records import Record

FUNNEL = {
    "steps": ["planned", "generated", "parsed", "passed_filters", "label_confirmed", "unique", "selected"],
    "rejected_by_step": {
        "parsed": {"truncated": 1},
        "passed_filters": {"too_short": 1},
        "label_confirmed": {"label_mismatch": 1},
        "unique": {"duplicate_of": 1},
    },
}


def rec(rid: str, label: str, reason: str | None = None, **fields: str) -> Record:
    r = Record(id=rid, label=label, attributes={}, text=f"text {rid}", generation={"raw": f"text {rid}"})
    r.fields.update(fields)
    if reason:
        r.reject(reason)
    return r


def test_a_record_survives_the_steps_before_the_one_that_rejected_it():
    records = [
        rec("a", "positive"),
        rec("b", "negative", "too_short"),
        rec("c", "positive", "label_mismatch"),
        rec("d", "negative", "duplicate_of:a"),
        rec("e", "positive", "truncated"),
        rec("f", "negative", relabelled_from="positive"),
    ]
    records[4].text = None  # unparseable: never part of what the model produced
    alive = {step: texts for step, (texts, _) in survivors(records, FUNNEL)}
    assert alive["generated"] == ["text a", "text b", "text c", "text d", "text f"]
    assert alive["passed_filters"] == ["text a", "text c", "text d", "text f"]
    assert alive["label_confirmed"] == ["text a", "text d", "text f"]
    assert alive["unique"] == alive["selected"] == ["text a", "text f"]
    labels = {step: labs for step, (_, labs) in survivors(records, FUNNEL)}
    assert labels["passed_filters"][-1] == "positive" and labels["label_confirmed"][-1] == "negative"


def test_the_same_size_draw_has_the_kept_label_counts_from_the_generated_texts():
    records = [rec(f"p{i}", "positive", None if i < 3 else "too_short") for i in range(8)]
    records += [rec(f"n{i}", "negative", None if i < 2 else "label_mismatch") for i in range(6)]
    stages = survivors(records, FUNNEL, seed=1)
    assert [step for step, _ in stages][:2] == ["generated", "generated_same_size"]
    generated, (texts, labels) = stages[0][1], stages[1][1]
    assert sorted(labels) == ["negative"] * 2 + ["positive"] * 3  # what was kept, per label
    assert set(texts) <= set(generated[0]) and len(set(texts)) == 5
    assert {t: lab for t, lab in zip(*generated)} | dict(zip(texts, labels)) == dict(zip(*generated))
    draws = {tuple(survivors(records, FUNNEL, seed=k)[1][1][0]) for k in range(6)}
    assert len(draws) > 1, "a random draw, not the first rows"


def _toy() -> tuple[dict, tuple, tuple, tuple]:
    rng = np.random.default_rng(0)
    good = [f"good {i}" for i in range(40)]
    bad = [f"bad {i}" for i in range(40)]
    vectors = {t: np.array([1.0, rng.normal() * 0.1]) for t in good}
    vectors |= {t: np.array([-1.0, rng.normal() * 0.1]) for t in bad}
    test = (good[:20] + bad[:20], ["pos"] * 20 + ["neg"] * 20)
    clean = (good[20:] + bad[20:], ["pos"] * 20 + ["neg"] * 20)
    noisy = (clean[0], ["neg"] * 8 + ["pos"] * 12 + ["neg"] * 20)  # 8 positives labelled negative
    return vectors, test, clean, noisy


def test_paired_difference_is_zero_for_identical_training_sets_and_positive_for_cleaner_ones():
    vectors, test, clean, noisy = _toy()
    rows = step_accuracy([("generated", noisy), ("same", noisy), ("cleaned", clean)], test, vectors, 0)
    assert rows[1]["minilm_logreg"]["delta"] == 0 and rows[1]["minilm_logreg"]["delta_high"] == 0
    assert rows[2]["minilm_logreg"]["accuracy"] == 1.0
    assert rows[2]["minilm_logreg"]["delta"] >= 0


def test_pooled_runs_average_their_differences():
    vectors, test, clean, noisy = _toy()
    worse = (clean[0], ["neg"] * 14 + ["pos"] * 6 + ["neg"] * 20)
    runs = [
        step_accuracy([("generated", base), ("cleaned", clean)], test, vectors, 0, replicates=True)
        for base in (noisy, worse)
    ]
    pool = pooled(runs)
    assert [r["step"] for r in pool] == ["generated", "cleaned"] and "delta" not in pool[0]["minilm_logreg"]
    assert pool[0]["minilm_logreg"]["accuracy"] == round(
        sum(run[0]["minilm_logreg"]["accuracy"] for run in runs) / 2, 4
    )
    deltas = [run[1]["minilm_logreg"]["delta"] for run in runs]
    entry = pool[1]["minilm_logreg"]
    assert entry["delta"] == round(sum(deltas) / 2, 4)
    # the pooled interval is the spread of the mean of the runs' replicates, narrower than either run's
    widths = [run[1]["minilm_logreg"]["delta_high"] - run[1]["minilm_logreg"]["delta_low"] for run in runs]
    assert entry["high"] - entry["low"] <= max(widths)
    assert entry["low"] < entry["high"]

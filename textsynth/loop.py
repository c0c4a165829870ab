"""The closed loop on the user's real examples: rounds steered by real validation.

Once every label has its count, each loop round reads the last real-validation readout
(validation.py) and asks for more requests where the data fails on real text (S3, Wang et al.
2023; ProGen, Ye et al. 2022):
- requests per label in proportion to how often that label's held-out seeds are missed
  (1 − recall), plus a floor so that no label starves;
- guidance against the label its seeds are most often taken for, when guidance is on;
- exemplars drawn first from the seeds the proxy got wrong; a record still sees only its own
  fold's seeds, so no readout is read on a text its records were shown.
The build stops the loop when seeds + synthetic accuracy has not risen for `patience` rounds, or
after `rounds` rounds; each round's rows raise their label's count by what they ask.
"""

from __future__ import annotations

import dataclasses

from textsynth.config import Pipeline
from textsynth.quotas import cycled_leaves
from textsynth.records import Record
from textsynth.taxonomy import PlannedExample, split, top_up
from textsynth.validation import Readout

FLOOR = 0.1  # the share of a round every label gets whatever its recall


def allocation(readout: Readout, labels: list[str], requests: int) -> dict[str, int]:
    """Requests per label: in proportion to its missed share of held-out seeds, plus the floor."""
    weights = [1 - readout.recall.get(label, 1.0) + FLOOR for label in labels]
    return dict(zip(labels, split(requests, weights)))


def plan_round(
    pipeline: Pipeline,
    template_key: str,
    readout: Readout,
    records: list[Record],
    round_no: int,
) -> list[PlannedExample]:
    """The requests of one loop round, each steered by the readout."""
    labels = pipeline.label_names
    n = pipeline.n or sum(lab.count or 0 for lab in pipeline.labels)
    counts = allocation(readout, labels, max(len(labels), round(pipeline.seed_examples.loop.budget * n)))
    leaves: dict[str, list[dict[str, str]]] = {}
    for label, count in counts.items():
        mine = sorted((r for r in records if r.label == label), key=lambda r: (r.status != "kept", r.id))
        if mine and count:
            leaves[label] = cycled_leaves(mine, count)
    planned = top_up(pipeline, template_key, leaves, round_no, stage="loop")
    missed = tuple(readout.missed)
    return [
        dataclasses.replace(
            ex,
            contrast=(readout.confused_with[ex.label],) if ex.label in readout.confused_with else (),
            exemplar_rows=missed,
        )
        for ex in planned
    ]


def stalled(readouts: list[Readout], patience: int) -> bool:
    """True when the last `patience` readouts brought no rise over the best one before them."""
    if len(readouts) <= patience:
        return False
    best_before = max(r.seeds_plus_synthetic for r in readouts[:-patience])
    return all(r.seeds_plus_synthetic <= best_before for r in readouts[-patience:])

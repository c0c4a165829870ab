"""How many requests each label needs: the plan-ahead probe, its loss rates, and top-up rounds.

A small build first checks a probe (the first requests of every label) and over-generates each
label by the share the quality stage lost of it; a label still below its count after a round is
regenerated, asking enough that another round is rare (a binomial margin).
"""

from __future__ import annotations

import math
from collections import Counter

from textsynth.config import Pipeline
from textsynth.records import Record
from textsynth.taxonomy import PlannedExample

# Requests in a plan-ahead probe at most: enough to estimate each label's losses, and the size
# the loss weights below were calibrated on. Not the batch size, which only sets decode speed.
PROBE_REQUESTS = 64


# The largest plan that `plan_ahead: auto` probes. The probe's label-check rate overstates a larger
# build's (its classifier trains on fewer texts), and the extras it asks cost more than the one
# top-up round such a build needs without them: on an AMX Xeon, seeds 7–9, n = 60 took 16–18 s
# with the probe against 20–21 s without (two rounds), n = 96, 128 and 256 took 10–16 % longer
# with it (benchmarks/bench_plan_ahead.py; benchmarks/archive/history.md, session 18).
PLAN_AHEAD_AUTO_MAX = 64


def probe_of(planned: list[PlannedExample], pipeline: Pipeline) -> list[PlannedExample]:
    """The first requests of every label, up to `PROBE_REQUESTS` in all (none for builds below 32,
    nor, with `plan_ahead: auto`, above `PLAN_AHEAD_AUTO_MAX`)."""
    setting = pipeline.quality.plan_ahead
    if setting is False or len(planned) < 32:
        return []
    if setting == "auto" and len(planned) > PLAN_AHEAD_AUTO_MAX:
        return []
    per_label = max(1, min(len(planned) // 2, PROBE_REQUESTS) // max(len(pipeline.labels), 1))
    taken: Counter[str] = Counter()
    out = []
    for ex in planned:
        if taken[ex.label] < per_label:
            taken[ex.label] += 1
            out.append(ex)
    return out


# On a probe-sized set the label check flags more than it does on the whole build, since its
# classifier trains on a few texts per label: 12.4 % against 9.8 % over seven default builds
# (session 9; 23 % against 9.7 % in session 6, before guidance; benchmarks/archive/history.md), so a
# probe's label-check losses count 0.8 when planning.
PROBE_LABEL_CHECK_WEIGHT = 0.8


def probe_loss(record: Record, label: str, weight: float) -> float:
    """How much a probe record planned for `label` counts as lost to it (`weight`: a label-check
    loss)."""
    if record.label != label:  # relabelled by the label check
        return weight
    if record.status != "rejected":
        return 0.0
    return weight if record.reasons[0] == "label_mismatch" else 1.0


# The plan's margin in binomial SDs of the survivors. A top-up round costs about what 40 more
# requests cost inside the first round's decode loop (4 s against 0.1 s at n = 60 on an AMX Xeon),
# so two SDs, not one: the default build needed a round at seeds 7 and 8 with one SD, none at 7–9
# with two (benchmarks/archive/history.md, session 17).
PLAN_AHEAD_SDS = 2.0


def requests_for(want: int, rate: float, spread_sds: float) -> int:
    """Requests whose survivors reach `want` even `spread_sds` binomial standard deviations below
    their mean (two: about 39 builds in 40), so that another round is rare."""
    p = 1 - min(rate, 0.75)
    spread = spread_sds * math.sqrt(p * (1 - p))
    root = (spread + math.sqrt(spread**2 + 4 * p * want)) / (2 * p)
    return math.ceil(root**2 - 1e-9)


def probe_loss_rates(
    records: list[Record], quotas: dict[str, int], weight: float = PROBE_LABEL_CHECK_WEIGHT
) -> dict[str, float]:
    """Each label's share of its probe records the quality stage lost, for planning ahead.

    A record counts under the label it was planned for. A label's rate is the mean of its own
    (a few probe records: noisy) and the pooled rate of all labels; labels without probe records
    are left out.
    """
    planned_for = [(r.fields.get("relabelled_from", r.label), r) for r in records]
    mine = {label: [r for planned, r in planned_for if planned == label] for label in quotas}
    losses = {label: [probe_loss(r, label, weight) for r in rs] for label, rs in mine.items()}
    seen = sum(len(v) for v in losses.values())
    pooled = sum(sum(v) for v in losses.values()) / max(seen, 1)
    return {label: (sum(v) / len(v) + pooled) / 2 for label, v in losses.items() if v}


def plan_ahead(
    records: list[Record], quotas: dict[str, int], rates: dict[str, float]
) -> dict[str, list[dict[str, str]]]:
    """Extra requests per label for the share of its first records the quality stage lost
    (`rates`, from `probe_loss_rates`); the leaves of lost records come first, so the extras
    replace what is likely to fail again."""
    out = {}
    for label, rate in rates.items():
        mine = [r for r in records if r.fields.get("relabelled_from", r.label) == label]
        ask = requests_for(quotas[label], rate, PLAN_AHEAD_SDS) - quotas[label]
        ordered = sorted(mine, key=lambda r: (not probe_loss(r, label, PROBE_LABEL_CHECK_WEIGHT), r.id))
        if ask > 0:
            out[label] = cycled_leaves(ordered, ask)
    return out


def spare_rows(want: int) -> int:
    """Spare rows a label should have when a round runs anyway: a larger set retrains the label
    check's classifier and regroups dedup, which can reject a record kept before (one of 20 in
    a default build, session 9), and a whole round for one row costs seconds."""
    return max(1, math.ceil(0.05 * want))


def cycled_leaves(records: list[Record], count: int) -> list[dict[str, str]]:
    """`count` leaves of `records` taken in turn, from the first again when they run out."""
    return [records[i % len(records)].attributes for i in range(count)]


def leaves_to_regenerate(mine: list[Record], ask: int) -> list[dict[str, str]]:
    """`ask` leaves to regenerate, cycling through those of rejected records first."""
    return cycled_leaves(sorted(mine, key=lambda r: (r.status == "kept", r.id)), ask)


def top_up_leaves(records: list[Record], quotas: dict[str, int]) -> dict[str, list[dict[str, str]]]:
    """Per label below quota: leaves to regenerate, those of its rejected records first. When any
    label is short, each other label is topped up in the same round to `spare_rows` spare rows
    (rows that passed beyond its quota)."""
    by_label = {label: [r for r in records if r.label == label] for label in quotas}
    out, spare = {}, {}
    for label, want in quotas.items():
        mine = by_label[label]
        kept = sum(r.status == "kept" for r in mine)
        spare[label] = sum(r.status == "kept" or r.reasons[:1] == ["over_quota"] for r in mine) - want
        if kept >= want or not mine:
            continue
        missing = want - kept
        # two SDs: a round costs about 3 s before its rows (4 rows took 2.9 s to generate, 16 took 4.7 s)
        ask = min(4 * missing, requests_for(missing, 1 - kept / len(mine), 2.0))
        out[label] = leaves_to_regenerate(mine, ask)
    if out:
        for label, want in quotas.items():
            short = spare_rows(want) - spare[label]
            if label not in out and by_label[label] and short > 0:
                out[label] = leaves_to_regenerate(by_label[label], short)
    return out

"""Runs the quality stages in order over all records, snapshotting the funnel after each.

Stages always start from the records as parsed, so a rerun (after a top-up round, or with new
thresholds) gives the same result as a single pass over the same records.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from textsynth.config import Pipeline
from textsynth.embed import Embedder
from textsynth.funnel import Funnel
from textsynth.quality.base import Stage
from textsynth.quality.dedup import Dedup, quality_rank
from textsynth.quality.filters import JudgeFilter, build_filters
from textsynth.quality.labelcheck import LabelCheck, Scorer
from textsynth.quality.privacy import Privacy
from textsynth.records import Record
from textsynth.taxonomy import derived_seed


def seeded(seed: int) -> Callable[[Record], int]:
    """The quota's order without a judge: a hash of the pipeline seed and the record id, so a
    random choice that another pipeline seed makes differently."""
    return lambda record: derived_seed(seed, "quota", record.id)


Order = Callable[[Record], Any]  # a sort key: the quota keeps each label's first records by it


def select_quota(records: list[Record], quotas: dict[str, int], order: Order) -> None:
    """Keep at most each label's planned count (plan-ahead and top-up may overshoot).

    With a judge the build keeps the best-judged first (`quality_rank`); without one it drops the
    extras in a `seeded` random order: keeping the label check's most confident texts trains
    worse classifiers on real data (it drops the informative hard cases), and keeping its least
    confident ones costs restaurant_reviews' TF-IDF classifier (benchmarks/archive/history.md).
    """
    by_label: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.status == "kept":
            by_label[r.label].append(r)
    for label, kept in by_label.items():
        for r in sorted(kept, key=order)[quotas.get(label, 0) :]:
            r.reject("over_quota")


def run_quality(
    parsed: list[Record],
    pipeline: Pipeline,
    quotas: dict[str, int],
    prompts: dict[str, str],
    backend: Callable[[], Scorer | None],
    embedder: Embedder,
    seeds: list[str] | None = None,
) -> tuple[list[Record], Funnel, list[Stage]]:
    """Copies of `parsed` after filters, label check, dedup and quota selection."""
    records = [copy.deepcopy(r) for r in parsed]
    funnel = Funnel()
    funnel.snapshot("planned", records, count_all=True)
    funnel.snapshot("generated", [r for r in records if r.generation.get("raw") is not None], count_all=True)
    funnel.snapshot("parsed", records)
    funnel.record_reasons("parsed", Counter(r.reasons[0] for r in records if r.reasons))
    q = pipeline.quality
    groups: list[tuple[str, list[Stage]]] = [("passed_filters", build_filters(q.filters, prompts))]
    judges = [s.judge for s in pipeline.steps if s.judge is not None and s.judge.min_score is not None]
    if judges:
        groups.append(("judged", [JudgeFilter(j.min_score or 0.0, list(j.criteria)) for j in judges]))
    if q.label_check.enabled and pipeline.labels:
        groups.append(
            (
                "label_confirmed",
                [LabelCheck(pipeline, q.label_check, backend(), embedder, pipeline.seed)],
            )
        )
    groups.append(("unique", [Dedup(q.dedup, embedder)]))
    if seeds:
        groups.append(("not_memorized", [Privacy(q.privacy, seeds, embedder)]))
    stages: list[Stage] = []
    for step, group in groups:
        reasons: Counter[str] = Counter()
        for stage in group:
            stage.run(records)
            reasons.update(stage.stats.rejected)
            stages.append(stage)
        funnel.snapshot(step, records)
        funnel.record_reasons(step, reasons)
    before = Counter(r.id for r in records if r.status == "kept")
    judged = any(s.judge is not None for s in pipeline.steps)
    select_quota(records, quotas, quality_rank if judged else seeded(pipeline.seed))
    funnel.snapshot("selected", records)
    funnel.record_reasons("selected", Counter({"over_quota": len(before) - funnel.total["selected"]}))
    return records, funnel, stages

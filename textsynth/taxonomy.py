"""Seed taxonomy → deterministic plan of requests, prefix-stable and changed only where it must.

Label counts are exact (a smooth round robin over `n`, so growing `n` only adds). Within a label,
row k's value of each attribute is decided by hashes of the pipeline seed, the
label, the attribute and the rows before it (never the rows after it): a longer plan starts with
the rows of a shorter one (same leaves, so the same ids and seeds), and a value appended to an
attribute changes only the rows it takes. Every value stays within a few rows of its weighted
share; values with a `count` are exact. A record id depends on its content only: label, leaf,
templates and its occurrence number at that leaf.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from textsynth.config import ALL, Attribute, Pipeline, Value
from textsynth.errors import ConfigError

DRAWS = 16  # new draws for a row whose leaf is full, before taking the first leaf with room


@dataclass(frozen=True)
class PlannedExample:
    """One request to make: which label, at which taxonomy leaf, with which seed."""

    id: str
    label: str
    attributes: dict[str, str]
    occurrence: int
    seed: int
    contrast: tuple[str, ...] = ()  # labels its guidance contrasts with (the loop's); () = the default
    exemplar_rows: tuple[int, ...] = ()  # seed rows its exemplars are drawn from first (the loop's)

    @property
    def leaf(self) -> str:
        """The leaf as a readable key, e.g. 'product=blender|persona=student'."""
        return leaf_key(self.attributes)


def leaf_key(attributes: dict[str, str]) -> str:
    return "|".join(f"{k}={v}" for k, v in sorted(attributes.items()))


def stable_hash(*parts: object) -> str:
    """Hex sha256 of the parts, separated so that ('a', 'bc') != ('ab', 'c')."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def derived_seed(*parts: object) -> int:
    """A 62-bit seed derived from the parts (fits an int64 with room for counters)."""
    return int(stable_hash(*parts)[:16], 16) >> 2


def split(count: int, weights: list[float]) -> list[int]:
    """Split `count` by weight, one unit at a time (Balinski and Young's quota method).

    Each unit goes to the part with the highest `w / (share + 1)` among those still below their
    upper quota `ceil(units * w / total)`. Each share is within one of `count * w / total` (a
    weighted round robin can miss that by more with many parts), and a larger `count` never gives
    any part less: growing `n` only adds requests. Equal weights take turns in order.
    """
    total, counts = sum(weights), [0] * len(weights)
    for units in range(1, count + 1):
        room = [i for i, w in enumerate(weights) if counts[i] < math.ceil(units * w / total - 1e-9)]
        best = max(room, key=lambda i: weights[i] / (counts[i] + 1))
        counts[best] += 1
    return counts


def attribute_order(pipeline: Pipeline) -> list[str]:
    """Every attribute name in YAML order: shared ones, then per-label ones, nested after parents."""

    def walk(taxonomy: dict[str, Attribute]) -> list[str]:
        names: list[str] = []
        for name, attr in taxonomy.items():
            names.append(name)
            for value in attr.values:
                names += walk(value.children)
        return names

    order = walk(pipeline.taxonomy)
    for lab in pipeline.labels:
        order += walk(lab.taxonomy)
    return list(dict.fromkeys(order))


def count_leaves(taxonomy: dict[str, Attribute]) -> int:
    """Number of distinct attribute combinations a taxonomy can produce."""
    total = 1
    for attr in taxonomy.values():
        total *= sum(count_leaves(v.children) for v in attr.values)
    return total


def _leaves(taxonomy: dict[str, Attribute]) -> Iterator[dict[str, str]]:
    """Every attribute combination, in YAML order."""
    if not taxonomy:
        yield {}
        return
    (name, attr), *rest = taxonomy.items()
    for value in attr.values:
        for below in _leaves(value.children):
            for after in _leaves(dict(rest)):
                yield {name: value.name, **below, **after}


def _rendezvous(values: list[Value], *key: object) -> Value:
    """The value with the highest weighted rendezvous score for `key` (P = weight / total)."""
    return max(values, key=lambda v: v.weight / -math.log((derived_seed(*key, v.name) + 0.5) / 2**62))


def _block_start(block: int, share: float) -> int:
    """The first position m with floor(m * share) == block (exact despite float rounding)."""
    m = math.ceil(block / share)
    while m > 0 and math.floor((m - 1) * share) >= block:
        m -= 1
    while math.floor(m * share) < block:
        m += 1
    return m


def _moves(position: int, share: float, *key: object) -> bool:
    """Whether the row at `position` of a stream moves to a newly added value.

    One row at random out of each block of about 1/share rows moves, so every prefix of the
    stream moves floor or ceil of its length × share, and whether a row moves never depends on
    the rows after it.
    """
    if share >= 1:
        return True
    block = math.floor(position * share)
    first, after = _block_start(block, share), _block_start(block + 1, share)
    return position == first + derived_seed(*key, block) % (after - first)


Step = tuple[str, ...]  # a counter key of `seen`


def _choose(attr: Attribute, seen: Counter[Step], key: Step, steps: list[Step]) -> Value:
    """The next row's value in this scope; the counters it advanced are appended to `steps`.

    Values with a `count` take the first rows (YAML order). The others are added one after
    another: value j takes its share w_j / (w_1 + … + w_j) of the rows each earlier value holds,
    evenly spread (see _moves). Every value stays within a few rows of its weighted share at
    every length of the plan, and a value appended to the YAML moves only the rows it takes.
    """
    index = seen[key]
    steps.append(key)
    for value in attr.values:
        if value.count is not None:
            if index < value.count:
                return value
            index -= value.count
    free = [v for v in attr.values if v.count is None] or attr.values
    current, total = free[0], free[0].weight
    for value in free[1:]:
        total += value.weight
        stream = (*key, value.name, current.name)
        steps.append(stream)
        if _moves(seen[stream], value.weight / total, *stream):
            current = value
    return current


def _row(
    taxonomy: dict[str, Attribute], seen: Counter[Step], seed: int, scope: str, attempt: int
) -> tuple[dict[str, str], list[Step]]:
    """One row's attributes and the counters to advance if it is taken.

    The first draw of a row is the balanced one; a redraw (its leaf is full) is a weighted
    rendezvous draw keyed on the attempt.
    """
    row: dict[str, str] = {}
    steps: list[Step] = []
    for name, attr in taxonomy.items():
        key = (str(seed), scope, name)
        value = _choose(attr, seen, key, steps) if attempt == 0 else _rendezvous(attr.values, *key, attempt)
        row[name] = value.name
        if value.children:
            below, inner = _row(value.children, seen, seed, f"{scope}/{name}={value.name}", attempt)
            row.update(below)
            steps += inner
    return row, steps


def label_counts(pipeline: Pipeline) -> dict[str, int]:
    """Examples per label: the given counts, or `n` split by label weight (one group without labels)."""
    if not pipeline.labels:
        return {ALL: pipeline.n or 0}
    if pipeline.labels[0].count is not None:
        return {lab.name: int(lab.count or 0) for lab in pipeline.labels}
    shares = split(pipeline.n or 0, [lab.weight for lab in pipeline.labels])
    return {lab.name: c for lab, c in zip(pipeline.labels, shares)}


def _leaf_rows(pipeline: Pipeline, label_name: str, count: int) -> list[dict[str, str]]:
    """Rows drawn one after another, each from its own position: the first k rows of a longer
    plan are the rows of a shorter one. Under `max_per_leaf` a row whose leaf is full draws
    again, and after a few draws takes the first leaf with room, so a feasible cap always fits."""
    label = next((lab for lab in pipeline.labels if lab.name == label_name), None)
    taxonomy = {**pipeline.taxonomy, **(label.taxonomy if label else {})}
    cap = pipeline.max_per_leaf
    if cap is not None and count > cap * count_leaves(taxonomy):
        leaves = count_leaves(taxonomy)
        raise ConfigError(
            f"max_per_leaf: label {label_name!r} needs {count} examples but {leaves} leaves × "
            f"max_per_leaf {cap} allow {cap * leaves}; lower n, add taxonomy values or raise the cap"
        )
    seen: Counter[Step] = Counter()
    used: Counter[str] = Counter()
    rows = []
    for _ in range(count):
        for attempt in range(DRAWS):
            row, steps = _row(taxonomy, seen, pipeline.seed, label_name, attempt)
            if cap is None or used[leaf_key(row)] < cap:
                break
        else:
            row, steps = next(r for r in _leaves(taxonomy) if used[leaf_key(r)] < (cap or 0)), []
        if attempt == 0:
            seen.update(steps)
        used[leaf_key(row)] += 1
        rows.append(row)
    return rows


def plan(pipeline: Pipeline, template_key: str) -> list[PlannedExample]:
    """The full, deterministic list of requests for a pipeline."""
    planned: list[PlannedExample] = []
    for label_name, count in label_counts(pipeline).items():
        seen: Counter[str] = Counter()
        for attrs in _leaf_rows(pipeline, label_name, count):
            key = leaf_key(attrs)
            occurrence = seen[key]
            seen[key] += 1
            rid = stable_hash(label_name, key, template_key, occurrence)[:16]
            planned.append(
                PlannedExample(
                    id=rid,
                    label=label_name,
                    attributes=attrs,
                    occurrence=occurrence,
                    seed=derived_seed(pipeline.seed, rid),
                )
            )
    return planned


def top_up(
    pipeline: Pipeline,
    template_key: str,
    deficits: dict[str, list[dict[str, str]]],
    round_no: int,
    stage: str = "top-up",
) -> list[PlannedExample]:
    """New requests for labels below quota: same label and leaves as the rejected ones, new ids and seeds."""
    planned = []
    for label, leaves in deficits.items():
        for i, attrs in enumerate(leaves):
            rid = stable_hash(label, leaf_key(attrs), template_key, f"{stage} {round_no}", i)[:16]
            planned.append(PlannedExample(rid, label, dict(attrs), i, derived_seed(pipeline.seed, rid)))
    return planned

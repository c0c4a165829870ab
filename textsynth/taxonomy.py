"""Seed taxonomy → deterministic plan of requests, balanced by construction.

Each label's count is split over every attribute's values by weight (largest remainder), so
the marginals are exact; values are then joined at random. Every random choice uses a generator
derived from the pipeline seed and the part of the config it concerns, so editing one attribute
leaves the assignments of the others as they were, and a record id depends on its content only.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import dataclass

from textsynth.config import ALL, Attribute, Pipeline
from textsynth.errors import ConfigError


@dataclass(frozen=True)
class PlannedExample:
    """One request to make: which label, at which taxonomy leaf, with which seed."""

    id: str
    label: str
    attributes: dict[str, str]
    occurrence: int
    seed: int

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


def _rng(*parts: object) -> random.Random:
    return random.Random(derived_seed(*parts))


def allocate(count: int, weights: list[float], rng: random.Random) -> list[int]:
    """Split `count` by weight: floors first, the remainder to the largest fractions."""
    total = sum(weights)
    quotas = [count * w / total for w in weights]
    base = [math.floor(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - base[i]), rng.random()))
    for i in order[: count - sum(base)]:
        base[i] += 1
    return base


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


def _value_counts(count: int, attr: Attribute, rng: random.Random) -> list[int]:
    """Values with a `count` get exactly that (as far as `count` allows); the rest split by weight."""
    fixed = [min(v.count, count) if v.count is not None else None for v in attr.values]
    left = count
    for i, c in enumerate(fixed):
        if c is not None:
            fixed[i] = min(c, left)
            left -= fixed[i] or 0
    free = [i for i, c in enumerate(fixed) if c is None] or list(range(len(fixed)))
    shares = allocate(left, [attr.values[i].weight for i in free], rng)
    for i, c in zip(free, shares):
        fixed[i] = (fixed[i] or 0) + c
    return [int(c or 0) for c in fixed]


def _assign(
    count: int, taxonomy: dict[str, Attribute], seed: int, scope: str, attempt: int
) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = [{} for _ in range(count)]
    for name, attr in taxonomy.items():
        rng = _rng(seed, scope, name, attempt)
        counts = _value_counts(count, attr, rng)
        chosen = [v for v, c in zip(attr.values, counts) for _ in range(c)]
        rng.shuffle(chosen)
        for row, value in zip(rows, chosen):
            row[name] = value.name
        for value in attr.values:
            if not value.children:
                continue
            idx = [i for i, v in enumerate(chosen) if v is value]
            sub = _assign(len(idx), value.children, seed, f"{scope}/{name}={value.name}", attempt)
            for i, extra in zip(idx, sub):
                rows[i].update(extra)
    return rows


def label_counts(pipeline: Pipeline) -> dict[str, int]:
    """Examples per label: the given counts, or `n` split by label weight (one group without labels)."""
    if not pipeline.labels:
        return {ALL: pipeline.n or 0}
    if pipeline.labels[0].count is not None:
        return {lab.name: int(lab.count or 0) for lab in pipeline.labels}
    split = allocate(pipeline.n or 0, [lab.weight for lab in pipeline.labels], _rng(pipeline.seed, "labels"))
    return {lab.name: c for lab, c in zip(pipeline.labels, split)}


def _leaf_rows(pipeline: Pipeline, label_name: str, count: int) -> list[dict[str, str]]:
    label = next((lab for lab in pipeline.labels if lab.name == label_name), None)
    taxonomy = {**pipeline.taxonomy, **(label.taxonomy if label else {})}
    cap = pipeline.max_per_leaf
    if cap is None:
        return _assign(count, taxonomy, pipeline.seed, label_name, 0)
    leaves = count_leaves(taxonomy)
    if count > cap * leaves:
        raise ConfigError(
            f"max_per_leaf: label {label_name!r} needs {count} examples but {leaves} leaves × "
            f"max_per_leaf {cap} allow {cap * leaves}; lower n, add taxonomy values or raise the cap"
        )
    for attempt in range(50):
        rows = _assign(count, taxonomy, pipeline.seed, label_name, attempt)
        if max(Counter(leaf_key(r) for r in rows).values(), default=0) <= cap:
            return rows
    raise ConfigError(
        f"max_per_leaf: could not place {count} {label_name!r} examples with at most {cap} per "
        "leaf after 50 draws; raise max_per_leaf or add taxonomy values"
    )


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
    pipeline: Pipeline, template_key: str, deficits: dict[str, list[dict[str, str]]], round_no: int
) -> list[PlannedExample]:
    """New requests for labels below quota: same label and leaves as the rejected ones, new ids and seeds."""
    planned = []
    for label, leaves in deficits.items():
        for i, attrs in enumerate(leaves):
            rid = stable_hash(label, leaf_key(attrs), template_key, f"top-up {round_no}", i)[:16]
            planned.append(PlannedExample(rid, label, dict(attrs), i, derived_seed(pipeline.seed, rid)))
    return planned

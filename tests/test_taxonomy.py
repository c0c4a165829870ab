"""Plan: deterministic, exact label counts, balanced marginals, content-derived ids."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from textsynth.config import load_pipeline
from textsynth.errors import ConfigError
from textsynth.taxonomy import allocate, count_leaves, plan

from .conftest import ROOT, SENTIMENT


@given(
    count=st.integers(0, 500),
    weights=st.lists(st.floats(0.01, 100), min_size=1, max_size=12),
    seed=st.integers(0, 2**32),
)
def test_allocate_is_exact_and_proportional(count, weights, seed):
    split = allocate(count, weights, random.Random(seed))
    assert sum(split) == count
    total = sum(weights)
    for got, w in zip(split, weights):
        assert abs(got - count * w / total) < 1


def test_same_seed_same_plan_and_other_seed_differs():
    pipe = load_pipeline(SENTIMENT).with_overrides(n=90)
    first, again = plan(pipe, "t"), plan(pipe, "t")
    assert first == again
    other = plan(pipe.with_overrides(seed=pipe.seed + 1), "t")
    assert [p.attributes for p in other] != [p.attributes for p in first]


def test_label_counts_exact_and_marginals_balanced():
    pipe = load_pipeline(SENTIMENT).with_overrides(n=300)
    planned = plan(pipe, "t")
    assert Counter(p.label for p in planned) == {"positive": 100, "negative": 100, "neutral": 100}
    for label in ("positive", "negative", "neutral"):
        products = Counter(p.attributes["product"] for p in planned if p.label == label)
        assert set(products.values()) == {10}  # 10 products, equal weights
        lengths = Counter(p.attributes["length"] for p in planned if p.label == label)
        assert lengths["one sentence"] in (66, 67)  # weight 2 of 3


def test_ids_unique_and_seeds_derived_from_ids():
    planned = plan(load_pipeline(SENTIMENT).with_overrides(n=200), "t")
    assert len({p.id for p in planned}) == 200
    assert len({p.seed for p in planned}) == 200


def test_editing_one_label_keeps_the_other_labels_ids(project):
    pipe = load_pipeline(project / "pipelines" / "sentiment.yaml").with_overrides(n=60)
    before = {p.id: p for p in plan(pipe, "t")}
    data = pipe.model_dump()
    data["labels"][2]["description"] = "A changed description."
    data["labels"].append({"name": "mixed", "description": "Both good and bad.", "count": None})
    data["labels"] = [dict(lab, count=20) for lab in data["labels"]]
    changed = type(pipe).model_validate(data)
    after = {p.id: p for p in plan(changed, "t")}
    kept_labels = [i for i, p in before.items() if p.label in ("positive", "negative")]
    assert kept_labels and all(i in after and after[i] == before[i] for i in kept_labels)


def test_nested_taxonomy_children_only_under_their_parent():
    pipe = load_pipeline(ROOT / "pipelines" / "topics.yaml").with_overrides(n=200)
    planned = plan(pipe, "t")
    science = [p for p in planned if p.label == "science"]
    for p in science:
        assert ("mission" in p.attributes) == (p.attributes["subtopic"] == "space")
    assert all("mission" not in p.attributes for p in planned if p.label != "science")
    assert (
        Counter(p.attributes["subtopic"] for p in planned if p.label == "sports").most_common(1)[0][1] <= 13
    )


def test_leaf_cap_too_small_is_a_config_error():
    pipe = load_pipeline(SENTIMENT)
    capped = type(pipe).model_validate({**pipe.model_dump(), "max_per_leaf": 1, "n": 3000})
    leaves = count_leaves(pipe.taxonomy)
    with pytest.raises(ConfigError, match="max_per_leaf"):
        plan(capped, "t")
    assert leaves < 1000  # 3000/3 labels = 1000 per label cannot fit one per leaf

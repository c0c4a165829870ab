"""Plan: deterministic, exact label counts, balanced marginals, content-derived ids."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from textsynth.cli import app
from textsynth.errors import ConfigError
from textsynth.pipeline_file import load_pipeline
from textsynth.taxonomy import count_leaves, plan, split

from .conftest import ROOT, SENTIMENT

runner = CliRunner()


@given(
    count=st.integers(0, 500),
    weights=st.lists(st.floats(0.01, 100), min_size=1, max_size=12),
)
def test_split_is_exact_proportional_and_only_grows(count, weights):
    shares = split(count, weights)
    assert sum(shares) == count
    total = sum(weights)
    for got, w in zip(shares, weights):
        assert abs(got - count * w / total) < 1 + 1e-9
    assert all(a <= b for a, b in zip(shares, split(count + 1, weights)))


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
        assert len(products) == 10 and all(8 <= c <= 12 for c in products.values())  # 10 equal weights
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


def test_growing_n_keeps_every_request():
    pipe = load_pipeline(SENTIMENT)
    smaller = plan(pipe.with_overrides(n=90), "t")
    larger = {p.id: p for p in plan(pipe.with_overrides(n=301), "t")}
    assert all(larger.get(p.id) == p for p in smaller)  # same label, leaf, occurrence and seed


def test_appending_a_value_changes_only_the_rows_it_takes():
    pipe = load_pipeline(SENTIMENT).with_overrides(n=300)
    before = {p.id: p for p in plan(pipe, "t")}
    data = pipe.model_dump()
    data["taxonomy"]["product"]["values"].append({"name": "kettle"})
    after = {p.id: p for p in plan(type(pipe).model_validate(data), "t")}
    gone, new = set(before) - set(after), set(after) - set(before)
    assert all(after[i].attributes["product"] == "kettle" for i in new)
    assert len(gone) == len(new) == sum(p.attributes["product"] == "kettle" for p in after.values())
    assert 3 * 7 <= len(new) <= 3 * 11  # about 1/11 of each label's 100 rows


def test_tight_leaf_cap_always_fits():
    pipe = load_pipeline(SENTIMENT)
    data = pipe.model_dump()
    data["taxonomy"] = {"product": {"values": ["a", "b", "c"]}, "tone": {"values": ["x", "y"]}}
    data.update(max_per_leaf=2, n=36)  # 12 per label = 6 leaves × 2: every leaf exactly full
    planned = plan(type(pipe).model_validate(data), "t")
    per_leaf = Counter((p.label, p.leaf) for p in planned)
    assert len(per_leaf) == 18 and set(per_leaf.values()) == {2}


def test_build_with_a_larger_n_reuses_every_finished_request(greedy_pipeline, tmp_path):
    def build(n: int) -> dict:
        args = ["build", str(greedy_pipeline), "--n", str(n), "--out", str(tmp_path / "run"), "--json"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    assert build(6)["generated"] == 6
    grown = build(9)
    assert (grown["reused"], grown["generated"]) == (6, 3)
    assert grown["drift"] == {"changed": 0, "new": 3, "dropped": 0}

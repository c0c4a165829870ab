"""End-to-end build with the real embedded model and real `datasets`."""

from __future__ import annotations

import json
from collections import Counter

import datasets
import pytest

from textsynth.pipeline import prepare, run_build
from textsynth.pipeline_file import load_pipeline
from textsynth.quality.chain import seeded, select_quota
from textsynth.quotas import (
    PLAN_AHEAD_AUTO_MAX,
    PLAN_AHEAD_SDS,
    plan_ahead,
    probe_loss_rates,
    probe_of,
    requests_for,
    top_up_leaves,
)
from textsynth.records import Record
from textsynth.taxonomy import label_counts

from .conftest import SENTIMENT, probing
from .helpers import records as read_records


def test_dataset_loads_with_classlabel_in_yaml_order(built):
    ds = datasets.load_from_disk(str(built.run_dir / "dataset"))
    names = [lab.name for lab in load_pipeline(SENTIMENT).labels]
    assert "train" in ds and set(ds) <= {"train", "validation", "test"}
    assert ds["train"].features["label"].names == names
    assert {"id", "text", "label", "product", "persona", "length"} <= set(ds["train"].column_names)
    assert sum(len(split) for split in ds.values()) == built.summary.kept > 0
    assert all(t.strip() for split in ds.values() for t in split["text"])


def test_every_planned_record_is_accounted_for(built):
    records = read_records(built.run_dir)
    planned = prepare(SENTIMENT, n=12, seed=3).planned
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == built.summary.planned
    assert {ex.id for ex in planned} <= set(ids)  # top-up rounds only add records
    quotas = label_counts(load_pipeline(SENTIMENT).with_overrides(n=12, seed=3))
    kept = Counter(r["label"] for r in records if r["status"] == "kept")
    passed = Counter(r["label"] for r in records if r["reasons"][:1] in ([], ["over_quota"]))
    for label, want in quotas.items():
        assert kept[label] == min(want, passed[label])  # the quota keeps its count when it can
        assert (label in built.summary.shortfall) == (passed[label] < want)
    for r in records:
        assert r["status"] in ("kept", "rejected")
        assert (r["status"] == "rejected") == bool(r["reasons"])


def test_provenance_present(built):
    for r in read_records(built.run_dir):
        gen = r["generation"]
        assert gen["model"].endswith(".gguf") and gen["revision"].startswith("sha256:")
        assert gen["raw"] is not None and gen["tokens"] > 0 and isinstance(gen["seed"], int)
        assert len(gen["fingerprint"]) == 64
        assert set(r["prompt"]["template_sha"]) == {f"review_{t}.jinja" for t in ("system", "user", "reply")}
        assert r["attributes"]["product"] and r["attributes"]["persona"]
        # the model continued the reply's opening, and the text starts with it
        assert gen["raw"].startswith(f"The {r['attributes']['product']}")


def test_run_directory_layout(built):
    manifest = json.loads((built.run_dir / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["packages"]["transformers"]
    assert manifest["config"]["name"] == "sentiment"
    shards = list((built.run_dir / "shards").glob("shard-*.jsonl"))
    assert sum(1 for s in shards for _ in s.open()) == built.summary.planned
    exported = [json.loads(line) for line in (built.run_dir / "data.jsonl").open()]
    assert len(exported) == built.summary.kept
    for name in ("funnel.json", "diversity.json", "summary.json", "embeddings.npy", "hub/README.md"):
        assert (built.run_dir / name).exists(), name


def test_rebuild_reuses_every_record(built):
    again = run_build(SENTIMENT, n=12, seed=3, out=built.run_dir, quiet=True)
    assert again.summary.generated == 0 and again.summary.reused == built.summary.planned
    assert again.dataset["train"]["text"] == built.dataset["train"]["text"]


def test_plan_ahead_auto_probes_only_small_builds_and_true_or_false_override_it():
    shipped, forced = load_pipeline(SENTIMENT), probing()
    assert shipped.quality.plan_ahead == "auto"
    unprobed = shipped.updated("quality.plan_ahead", False)
    for n in (31, 32, PLAN_AHEAD_AUTO_MAX, PLAN_AHEAD_AUTO_MAX + 1, 256):
        planned = prepare(SENTIMENT, n=n, seed=5).planned
        probed = bool(probe_of(planned, shipped))
        assert probed == (32 <= n <= PLAN_AHEAD_AUTO_MAX), n
        assert bool(probe_of(planned, forced)) == (n >= 32), n
        assert probe_of(planned, unprobed) == []


@pytest.mark.slow
def test_plan_ahead_over_generates_by_the_rate_lost_in_the_first_batches(built150):
    """The 150-example build checked its first batch and planned extras for what it lost there;
    the summary has the wall time per phase."""
    summary = json.loads((built150.run_dir / "summary.json").read_text())
    probe = probe_of(prepare(SENTIMENT, n=150, seed=5).planned, probing())
    assert Counter(ex.label for ex in probe) == {"positive": 21, "negative": 21, "neutral": 21}
    records = [json.loads(line) for line in (built150.run_dir / "records.jsonl").open()]
    assert summary["planned"] == len(records) >= 150 + summary["planned_ahead"]
    # each label asked ahead what its probe loss rate needs for its quota to survive (two SDs)
    quotas, rates = summary["planned_labels"], summary["probe_loss"]
    assert set(rates) == set(quotas) and all(0 <= r <= 1 for r in rates.values())
    asked = {
        label: requests_for(quotas[label], rate, PLAN_AHEAD_SDS) - quotas[label]
        for label, rate in rates.items()
    }
    assert summary["planned_ahead"] == sum(asked.values()) > 0
    # the extras are the records right after the plan, made for their labels
    extras = records[150 : 150 + summary["planned_ahead"]]
    assert Counter(r["fields"].get("relabelled_from", r["label"]) for r in extras) == +Counter(asked)
    phases = summary["phases_s"]
    assert {"load", "generate", "quality", "diversity", "export"} <= set(phases)
    assert sum(phases.values()) <= summary["wall_s"] + 0.5
    stages = summary["stages_s"]  # the quality stages' share of the quality and top-up phases
    assert {"length", "label_check", "dedup"} <= set(stages)
    assert 0 < sum(stages.values()) <= phases["quality"] + phases.get("top_up", 0.0) + 0.5


def test_extras_follow_each_labels_loss_rate_and_its_failed_leaves_first():
    def rec(rid: str, label: str, leaf: str, reason: str | None = None) -> Record:
        r = Record(id=rid, label=label, attributes={"topic": leaf}, text="t")
        if reason:
            r.reject(reason)
        return r

    records = [rec(f"p{i}", "pos", "a", "label_mismatch") for i in range(3)]
    records += [rec(f"p{i}", "pos", "b") for i in range(3, 12)]
    records.append(rec("pl", "pos", "e", "letter"))  # a filter loss counts whole
    records += [rec(f"n{i}", "neg", "c") for i in range(12)]
    moved = rec("m", "neg", "d")
    moved.fields["relabelled_from"] = "pos"  # planned positive, now negative: lost to positive
    quotas = {"pos": 100, "neg": 100}
    extra = plan_ahead([*records, moved], quotas, probe_loss_rates([*records, moved], quotas))
    # pos lost 3 · 0.8 (label check) + 0.8 (relabelled) + 1 (filter) = 4.2 of 14; pooled 4.2 of 26;
    # rates (4.2/14 + 4.2/26) / 2 = 0.231 and (0 + 4.2/26) / 2 = 0.081; requests whose survivors
    # reach 100 two binomial SDs below their mean: 144 and 116 (one SD: 137 and 112; the mean
    # alone: 130 and 109)
    assert {label: len(leaves) for label, leaves in extra.items()} == {"pos": 44, "neg": 16}
    lost_first = sorted(leaf["topic"] for leaf in extra["pos"][:5])
    assert lost_first == ["a", "a", "a", "d", "e"], "lost leaves first"
    clean = [rec(f"c{i}", "pos" if i % 2 else "neg", "c") for i in range(20)]
    quotas = {"pos": 100, "neg": 100}
    assert plan_ahead(clean, quotas, probe_loss_rates(clean, quotas)) == {}, (
        "a probe that lost nothing plans nothing"
    )


def test_a_top_up_asks_two_binomial_sds_over_the_missing_count_lost_leaves_first_and_a_margin():
    records = []
    for i in range(27):  # positive: 18 kept of 27, 2 short of its 20
        topic = "lost" if i < 9 else "ok"
        r = Record(id=f"p{i:02d}", label="positive", attributes={"topic": topic}, text="t")
        if i < 9:
            r.reject("label_mismatch")
        records.append(r)
    records += [Record(id=f"n{i}", label="negative", attributes={"topic": "n"}, text="t") for i in range(20)]
    records += [Record(id=f"u{i}", label="neutral", attributes={"topic": "u"}, text="t") for i in range(21)]
    records[-1].reject("over_quota")  # passed, beyond the quota: one spare row
    quotas = {"positive": 20, "negative": 20, "neutral": 20}
    asks = top_up_leaves(records, quotas)
    # survival 2/3: 2 more survivors need 3 on average, 7 to reach 2 at two SDs below the mean
    assert len(asks["positive"]) == 7
    assert {leaf["topic"] for leaf in asks["positive"]} == {"lost"}, "the leaves that failed come first"
    # the round runs anyway: a label with no row to spare gets one, one with a spare row none
    assert len(asks["negative"]) == 1 and "neutral" not in asks
    assert top_up_leaves(records[27:], quotas) == {}, "no label short: no round, however thin the margins"


def test_the_quota_drops_extras_in_an_order_the_pipeline_seed_decides():
    def kept_after(seed: int) -> set[str]:
        records = [Record(f"id{i}", "a", {}, text="t") for i in range(12)]
        select_quota(records, {"a": 6}, seeded(seed))
        return {r.id for r in records if r.status == "kept"}

    assert len(kept_after(1)) == 6 and kept_after(1) == kept_after(1)
    assert kept_after(1) != kept_after(2)

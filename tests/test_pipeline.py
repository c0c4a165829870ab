"""End-to-end build with the real embedded model and real `datasets`."""

from __future__ import annotations

import json
from collections import Counter

import datasets

from textsynth.config import load_pipeline
from textsynth.pipeline import _ahead, _probe, prepare, run_build
from textsynth.records import Record
from textsynth.taxonomy import label_counts

from .conftest import SENTIMENT


def _records(built):
    return [json.loads(line) for line in (built.run_dir / "records.jsonl").open()]


def test_dataset_loads_with_classlabel_in_yaml_order(built):
    ds = datasets.load_from_disk(str(built.run_dir / "dataset"))
    names = [lab.name for lab in load_pipeline(SENTIMENT).labels]
    assert "train" in ds and set(ds) <= {"train", "validation", "test"}
    assert ds["train"].features["label"].names == names
    assert {"id", "text", "label", "product", "persona", "length"} <= set(ds["train"].column_names)
    assert sum(len(split) for split in ds.values()) == built.summary.kept > 0
    assert all(t.strip() for split in ds.values() for t in split["text"])


def test_every_planned_record_is_accounted_for(built):
    records = _records(built)
    planned = prepare(SENTIMENT, n=12, seed=3).planned
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == built.summary.planned
    assert {ex.id for ex in planned} <= set(ids)  # top-up rounds only add records
    quotas = label_counts(load_pipeline(SENTIMENT).with_overrides(n=12, seed=3))
    kept = Counter(r["label"] for r in records if r["status"] == "kept")
    for label, want in quotas.items():
        assert kept[label] + built.summary.shortfall.get(label, 0) == want
    for r in records:
        assert r["status"] in ("kept", "rejected")
        assert (r["status"] == "rejected") == bool(r["reasons"])


def test_provenance_present(built):
    for r in _records(built):
        gen = r["generation"]
        assert gen["model"].endswith(".gguf") and gen["revision"].startswith("sha256:")
        assert gen["raw"] is not None and gen["tokens"] > 0 and isinstance(gen["seed"], int)
        assert len(gen["fingerprint"]) == 64
        assert set(r["prompt"]["template_sha"]) == {"review_system.jinja", "review_user.jinja"}
        assert r["attributes"]["product"] and r["attributes"]["persona"]


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


def test_plan_ahead_over_generates_by_the_rate_lost_in_the_first_batches(built150):
    """The 150-example build checked its first batch and planned extras for what it lost there;
    the summary has the wall time per phase."""
    summary = json.loads((built150.run_dir / "summary.json").read_text())
    probe = _probe(prepare(SENTIMENT, n=150, seed=5).planned, load_pipeline(SENTIMENT))
    assert Counter(ex.label for ex in probe) == {"positive": 21, "negative": 21, "neutral": 21}
    records = [json.loads(line) for line in (built150.run_dir / "records.jsonl").open()]
    assert summary["planned"] == len(records) >= 150 + summary["planned_ahead"]
    if summary["top_up_rounds"] == 0:
        assert summary["planned"] == 150 + summary["planned_ahead"]
    phases = summary["phases_s"]
    assert {"load", "generate", "quality", "diversity", "export"} <= set(phases)
    assert sum(phases.values()) <= summary["wall_s"] + 0.5


def test_extras_follow_each_labels_loss_rate_and_its_failed_leaves_first():
    def rec(rid: str, label: str, leaf: str, ok: bool) -> Record:
        r = Record(id=rid, label=label, attributes={"topic": leaf}, text="t")
        if not ok:
            r.reject("label_mismatch")
        return r

    records = [rec(f"p{i}", "pos", "a" if i < 3 else "b", ok=i >= 3) for i in range(12)]  # lost 3 of 12
    records += [rec(f"n{i}", "neg", "c", ok=True) for i in range(12)]
    moved = rec("m", "neg", "d", ok=True)
    moved.fields["relabelled_from"] = "pos"  # planned positive, now negative: lost to positive
    extra = _ahead([*records, moved], {"pos": 100, "neg": 100})
    assert set(extra) == {"pos"}, "a label that lost nothing gets no extras"
    assert len(extra["pos"]) == 45  # 100 · (4/13) / (9/13) rounded up
    assert sorted(leaf["topic"] for leaf in extra["pos"][:4]) == ["a", "a", "a", "d"], "lost leaves first"

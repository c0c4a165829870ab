"""End-to-end build with the real embedded model and real `datasets`."""

from __future__ import annotations

import json
from collections import Counter

import datasets

from textsynth.config import load_pipeline
from textsynth.pipeline import prepare, run_build
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

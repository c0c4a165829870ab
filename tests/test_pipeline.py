"""End-to-end build with the real embedded model and real `datasets`."""

from __future__ import annotations

import json
from collections import Counter

import datasets

from textsynth.config import load_pipeline
from textsynth.taxonomy import label_counts

from .conftest import SENTIMENT


def test_dataset_loads_with_classlabel_in_yaml_order(built):
    ds = datasets.load_from_disk(str(built.run_dir / "dataset"))
    names = [lab.name for lab in load_pipeline(SENTIMENT).labels]
    assert ds["train"].features["label"].names == names
    assert {"id", "text", "label", "product", "persona", "length"} <= set(ds["train"].column_names)
    assert len(ds["train"]) == built.summary.kept > 0
    assert all(t.strip() for t in ds["train"]["text"])


def test_every_planned_record_is_accounted_for(built):
    records = [json.loads(line) for line in (built.run_dir / "records.jsonl").open()]
    planned = label_counts(load_pipeline(SENTIMENT).with_overrides(n=12, seed=3))
    assert Counter(r["label"] for r in records) == Counter(planned)
    assert set(planned) == {"positive", "negative", "neutral"}
    assert len({r["id"] for r in records}) == 12
    for r in records:
        assert r["status"] in ("kept", "rejected")
        assert (r["status"] == "rejected") == bool(r["reasons"])


def test_provenance_present(built):
    records = [json.loads(line) for line in (built.run_dir / "records.jsonl").open()]
    for r in records:
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
    assert sum(1 for s in shards for _ in s.open()) == 12
    exported = [json.loads(line) for line in (built.run_dir / "data.jsonl").open()]
    assert len(exported) == built.summary.kept


def test_rebuild_reuses_every_record(built, tmp_path):
    from textsynth.pipeline import run_build

    again = run_build(SENTIMENT, n=12, seed=3, out=built.run_dir, quiet=True)
    assert again.summary.generated == 0 and again.summary.reused == 12
    assert again.dataset["train"]["text"] == built.dataset["train"]["text"]

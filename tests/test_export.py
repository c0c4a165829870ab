"""Export: splits, formats, card, hub push (to a local recording endpoint), real data, decontamination."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import datasets
import pandas as pd
import pytest
from huggingface_hub import DatasetCard
from typer.testing import CliRunner

from textsynth.card import _kind
from textsynth.cli import app
from textsynth.export import SPLITS, assign_splits
from textsynth.pipeline_file import load_pipeline
from textsynth.records import Record

from .conftest import REAL_DATA, SENTIMENT
from .hub_server import Recorder

runner = CliRunner()


@pytest.fixture
def run_copy(built, tmp_path):
    """A private copy of the shared build, for tests that re-export it."""
    return shutil.copytree(built.run_dir, tmp_path / "run")


def test_splits_are_stratified_deterministic_and_leak_free():
    records = [
        Record(
            id=f"r{i:03d}",
            label=("a", "b")[i % 2],
            attributes={"x": str(i % 5)},
            text="t",
            cluster=f"c{i // 3}",
        )
        for i in range(300)
    ]
    first = assign_splits(records, (0.8, 0.1, 0.1), seed=1)
    assert first == assign_splits(records, (0.8, 0.1, 0.1), seed=1)
    for label in ("a", "b"):
        counts = Counter(first[r.id] for r in records if r.label == label)
        assert abs(counts["train"] - 120) <= 3 and abs(counts["test"] - 15) <= 3
    clusters: dict[tuple[str, str], set[str]] = {}
    for r in records:
        clusters.setdefault((r.label, r.cluster), set()).add(first[r.id])
    assert all(len(splits) == 1 for splits in clusters.values())


def test_every_format_loads_back_with_counts_and_labels(built):
    ds = datasets.load_from_disk(str(built.run_dir / "dataset"))
    names = ds["train"].features["label"].names
    fmt = built.run_dir / "formats"
    for split in ds:
        n = len(ds[split])
        gold = [names[v] for v in ds[split]["label"]]
        assert (
            pd.read_parquet(built.run_dir / "hub" / "data" / f"{split}-00000-of-00001.parquet").shape[0] == n
        )
        assert pd.read_csv(fmt / f"{split}.csv")["label"].tolist() == gold if n else True
        rows = {
            k: [json.loads(line) for line in (fmt / f"{split}{k}.jsonl").open()]
            for k in ("", ".classification", ".trl", ".openai", ".alpaca")
        }
        assert [r["label"] for r in rows[""]] == gold
        assert [r["label"] for r in rows[".classification"]] == gold
        assert [m["messages"][2]["content"] for m in rows[".trl"]] == gold
        assert [m["messages"][1]["content"] for m in rows[".openai"]] == ds[split]["text"]
        assert [r["output"] for r in rows[".alpaca"]] == gold


def test_card_parses_and_says_how_to_rebuild(built):
    card = DatasetCard.load(built.run_dir / "hub" / "README.md")
    meta = card.data.to_dict()
    assert meta["task_categories"] == ["text-classification"]
    assert [c["config_name"] for c in meta["configs"]] == ["default"]
    ds = datasets.load_from_disk(str(built.run_dir / "dataset"))
    assert {f["split"] for f in meta["configs"][0]["data_files"]} == set(ds) <= set(SPLITS)
    for needle in (
        "## Funnel",
        "label_confirmed",
        "## Diversity",
        "vendi",
        "review_user.jinja",
        "seed: 3",
        "## Limitations",
    ):
        assert needle in card.text, needle


def test_dry_run_equals_what_the_endpoint_receives(run_copy, monkeypatch):
    """The public hub is unreachable here: HF_ENDPOINT points at a local recording server."""
    token = "hf_testtoken_never_stored"
    dry = runner.invoke(app, ["push", str(run_copy), "--repo", "me/synth", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    listed = [line for line in dry.stdout.splitlines() if line and not line.startswith("dry run")]
    with Recorder() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = runner.invoke(
            app, ["push", str(run_copy), "--repo", "me/synth", "--private", "--token", token]
        )
        assert result.exit_code == 0, result.output
    assert sorted(hub.files) == sorted(listed)
    for name, data in hub.files.items():
        assert (run_copy / "hub" / name).read_bytes() == data
    assert hub.commit_message == "Upload run dataset built with textsynth"
    assert any(
        h.get("authorization") == f"Bearer {token}" or h.get("Authorization") == f"Bearer {token}"
        for _, _, h in hub.calls
    )
    assert token not in result.output
    for path in run_copy.rglob("*"):
        assert not path.is_file() or token.encode() not in path.read_bytes()


def test_mix_real_with_label_map_and_real_only_test(run_copy):
    args = [
        "export",
        str(run_copy),
        "--mix-real",
        str(REAL_DATA),
        "--label-map",
        "0=negative,1=positive",
        "--real-test-only",
        "--with-metadata",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ds = datasets.load_from_disk(str(run_copy / "dataset"))
    assert Counter(ds["test"]["source"])["real"] == 1000
    assert set(ds["train"]["source"]) == {"synthetic"}
    names = ds["test"].features["label"].names
    real = [names[v] for v, s in zip(ds["test"]["label"], ds["test"]["source"]) if s == "real"]
    assert Counter(real) == {"positive": 500, "negative": 500}
    assert {"template_sha", "model", "seed", "scores", "cluster"} <= set(ds["train"].column_names)


def test_decontaminate_drops_overlapping_records(run_copy, tmp_path):
    kept = [json.loads(line) for line in (run_copy / "data.jsonl").open()]
    victim = max(kept, key=lambda r: len(r["text"].split()))
    assert len(victim["text"].split()) >= 13
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"text": "Prefix words. " + victim["text"]}) + "\n")
    result = runner.invoke(app, ["export", str(run_copy), "--decontaminate", str(eval_file)])
    assert result.exit_code == 0, result.output
    records = {json.loads(line)["id"]: json.loads(line) for line in (run_copy / "records.jsonl").open()}
    assert records[victim["id"]]["reasons"] == ["contaminated"]
    assert victim["id"] not in {json.loads(line)["id"] for line in (run_copy / "data.jsonl").open()}
    assert "Decontamination removed 1 records" in (run_copy / "hub" / "README.md").read_text()


def test_card_claims_only_the_checks_that_ran():
    pipeline = load_pipeline(SENTIMENT)
    every = {"steps": ["planned", "generated", "parsed", "passed_filters", "label_confirmed", "unique"]}
    assert "passed filters, a label check and deduplication." in _kind(pipeline, every)
    no_check = {"steps": ["planned", "generated", "parsed", "passed_filters", "unique"]}
    assert "label check" not in _kind(pipeline, no_check)
    assert "passed filters and deduplication." in _kind(pipeline, no_check)

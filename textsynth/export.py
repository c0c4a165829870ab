"""Kept records → a Hugging Face DatasetDict with a ClassLabel column, plus `data.jsonl`.

Everything is written into a temporary folder that replaces the old export only when complete,
so a failed export never leaves a half-written dataset behind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from textsynth import faults
from textsynth.config import Pipeline
from textsynth.errors import ExportError
from textsynth.records import Record
from textsynth.run import atomic_dir, write_atomic
from textsynth.taxonomy import attribute_order


def to_dataset_dict(pipeline: Pipeline, records: Sequence[Record]):  # -> datasets.DatasetDict
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, disable_progress_bars

    disable_progress_bars()

    names = [lab.name for lab in pipeline.labels]
    attrs = [a for a in attribute_order(pipeline) if a not in ("id", "text", "label")]
    features = Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "label": ClassLabel(names=names),
            **{a: Value("string") for a in attrs},
        }
    )
    columns: dict[str, list] = {
        "id": [r.id for r in records],
        "text": [r.text for r in records],
        "label": [names.index(r.label) for r in records],
        **{a: [r.attributes.get(a) for r in records] for a in attrs},
    }
    return DatasetDict({"train": Dataset.from_dict(columns, features=features)})


def export(pipeline: Pipeline, records: Sequence[Record], run_path: Path):  # -> datasets.DatasetDict
    """Write `dataset/` (save_to_disk) and `data.jsonl` of the kept records."""
    kept = [r for r in records if r.status == "kept"]
    if not kept:
        raise ExportError(
            f"{run_path}: no kept records to export ({len(records)} rejected; see "
            f"{run_path / 'records.jsonl'} for their reasons)"
        )
    dataset = to_dataset_dict(pipeline, kept)
    with atomic_dir(run_path / "dataset") as tmp:
        dataset.save_to_disk(str(tmp))
        faults.point("export")
    rows = dataset["train"].to_list()
    names = [lab.name for lab in pipeline.labels]
    lines = "".join(
        json.dumps({**row, "label": names[row["label"]]}, ensure_ascii=False) + "\n" for row in rows
    )
    write_atomic(run_path / "data.jsonl", lines)
    return dataset

"""Kept records → a Hugging Face DatasetDict with stratified, leak-free splits, the hub layout
(parquet per split + dataset card) and fine-tuning formats.

Everything is written into temporary folders that replace the old export only when complete, so
a failed export never leaves a half-written dataset behind.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textsynth import faults
from textsynth.config import Pipeline
from textsynth.errors import ExportError
from textsynth.readers import RealData
from textsynth.records import Record
from textsynth.run import atomic_dir, write_atomic
from textsynth.taxonomy import attribute_order, leaf_key

SPLITS = ("train", "validation", "test")
FORMATS = ("jsonl", "csv", "trl", "alpaca", "openai", "classification")


@dataclass
class ExportOptions:
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    with_metadata: bool = False
    formats: tuple[str, ...] = FORMATS
    mix_real: RealData | None = None
    real_test_only: bool = False
    decontaminate: RealData | None = None
    ngram: int = 13
    seed: int = 0
    extra_card: dict[str, Any] = field(default_factory=dict)


def parse_ratios(spec: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' → (0.8, 0.1, 0.1); they must sum to 1."""
    try:
        parts = tuple(float(p) for p in spec.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise ExportError(
            f"--splits {spec!r}: give three non-negative ratios that sum to 1, e.g. 0.8,0.1,0.1"
        )
    return parts  # type: ignore[return-value]


def assign_splits(records: Sequence[Record], ratios: tuple[float, ...], seed: int) -> dict[str, str]:
    """record id → split; stratified by label and leaf, one dedup cluster never in two splits.

    Within a label, groups are visited leaf by leaf (seeded order) and each goes to the split
    furthest below its target share so far, so every leaf is split in proportion too.
    """
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.label, r.cluster or r.id)].append(r)
    by_label: dict[str, list[tuple[str, list[Record]]]] = defaultdict(list)
    for (label, key), members in groups.items():
        by_label[label].append((key, members))
    out: dict[str, str] = {}
    for label, items in sorted(by_label.items()):
        rng = random.Random(f"{seed}\x1f{label}")
        items.sort(key=lambda kv: kv[0])
        rng.shuffle(items)
        items.sort(key=lambda kv: leaf_key(kv[1][0].attributes))
        assigned = [0.0] * len(ratios)
        for _, members in items:
            total = sum(assigned) + len(members)
            deficit = [ratios[i] * total - assigned[i] for i in range(len(ratios))]
            choice = max(range(len(ratios)), key=lambda i: (deficit[i], -i))
            assigned[choice] += len(members)
            for r in members:
                out[r.id] = SPLITS[choice]
    return out


def contaminated(records: Sequence[Record], eval_texts: list[str], n: int) -> set[str]:
    """Ids of records sharing a word n-gram of length `n` with any evaluation text."""
    from textsynth.quality.filters import words

    grams = set()
    for text in eval_texts:
        w = words(text)
        grams.update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
    hit = set()
    for r in records:
        w = words(r.text or "")
        if any(tuple(w[i : i + n]) in grams for i in range(len(w) - n + 1)):
            hit.add(r.id)
    return hit


def output_columns(pipeline: Pipeline) -> dict[str, str]:
    """Step outputs exported as columns beside `text`, with their `datasets` dtype."""
    dtypes = {"str": "string", "int": "int64", "float": "float64", "bool": "bool"}
    out: dict[str, str] = {}
    for step in pipeline.steps:
        for name in step.outputs:
            if step.judge is not None:
                out[name] = "float64"
            elif name != pipeline.record_text:
                out[name] = dtypes[step.fields[name]] if step.output == "json" else "string"
    return out


def _rows(
    pipeline: Pipeline, records: Sequence[Record], split_of: dict[str, str], opts: ExportOptions
) -> list[dict]:
    attrs = [a for a in attribute_order(pipeline) if a not in ("id", "text", "label")]
    rows = []
    outputs = output_columns(pipeline)
    for r in records:
        row: dict[str, Any] = {"id": r.id, "text": r.text, "label": r.label, "source": "synthetic"}
        row.update({a: r.attributes.get(a) for a in attrs})
        row.update({c: r.scores.get(c) if c.startswith("judge_") else r.fields.get(c) for c in outputs})
        if opts.with_metadata:
            row.update(
                template_sha=json.dumps(r.prompt.get("template_sha", {}), sort_keys=True),
                model=r.generation.get("model"),
                seed=r.generation.get("seed"),
                scores=json.dumps(r.scores, sort_keys=True),
                cluster=r.cluster,
            )
        row["_split"] = split_of[r.id]
        rows.append(row)
    return rows


def _real_rows(pipeline: Pipeline, real: RealData, opts: ExportOptions, attrs: list[str]) -> list[dict]:
    labels = real.labels or []
    rows = []
    rng = random.Random(f"{opts.seed}\x1freal")
    outputs = output_columns(pipeline)
    for i, (text, label) in enumerate(zip(real.texts, labels)):
        split = "test" if opts.real_test_only else rng.choices(SPLITS, weights=opts.ratios)[0]
        row: dict[str, Any] = {"id": f"real-{i}", "text": text, "label": label, "source": "real"}
        row.update({a: None for a in attrs})
        row.update({c: None for c in outputs})
        if opts.with_metadata:
            row.update(template_sha=None, model=None, seed=None, scores=None, cluster=None)
        row["_split"] = split
        rows.append(row)
    return rows


def to_dataset_dict(pipeline: Pipeline, rows: list[dict], with_metadata: bool):  # -> datasets.DatasetDict
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, disable_progress_bars

    disable_progress_bars()
    names = [lab.name for lab in pipeline.labels]
    attrs = [a for a in attribute_order(pipeline) if a not in ("id", "text", "label")]
    spec: dict[str, Any] = {"id": Value("string"), "text": Value("string")}
    if names:  # a generation pipeline has no labels, so no ClassLabel column
        spec["label"] = ClassLabel(names=names)
    spec.update(source=Value("string"), **{a: Value("string") for a in attrs})
    spec.update({c: Value(dtype) for c, dtype in output_columns(pipeline).items()})
    if with_metadata:
        spec.update(
            template_sha=Value("string"),
            model=Value("string"),
            seed=Value("int64"),
            scores=Value("string"),
            cluster=Value("string"),
        )
    features = Features(spec)
    splits = {}
    for split in SPLITS:
        chosen = [row for row in rows if row["_split"] == split]
        if not chosen:
            continue  # too few records for this split; `datasets` cannot reload an empty one
        columns = {k: [row[k] for row in chosen] for k in spec}
        if names:
            columns["label"] = [names.index(v) for v in columns["label"]]
        splits[split] = Dataset.from_dict(columns, features=features)
    return DatasetDict(splits)


def _turns(pipeline: Pipeline, row: dict[str, Any]) -> tuple[str | None, str, str]:
    """(system, user, assistant) of one row in the fine-tuning formats.

    Classification: the text in, the label out. Generation: the prompt field (e.g. the
    instruction) in, the text (e.g. the response) out.
    """
    if pipeline.labels:
        names = ", ".join(lab.name for lab in pipeline.labels)
        system = f"{pipeline.description} Classify the text as one of: {names}. Reply with the label only."
        return system.strip(), row["text"], row["label"]
    field = pipeline.instruction_field
    user = str(row[field]) if field else pipeline.description
    return None, user, row["text"]


def _write_formats(pipeline: Pipeline, dataset: Any, folder: Path, formats: tuple[str, ...]) -> None:
    names = [lab.name for lab in pipeline.labels]
    folder.mkdir(parents=True, exist_ok=True)
    for split, ds in dataset.items():
        rows = [{**row, "label": names[row["label"]]} if names else row for row in ds.to_list()]
        for fmt in formats:
            if fmt == "classification" and not names:
                continue  # a generation pipeline has no label to classify
            if fmt == "csv":
                frame = ds.to_pandas()
                if names:
                    frame = frame.assign(label=[r["label"] for r in rows])
                frame.to_csv(folder / f"{split}.csv", index=False)
                continue
            if fmt == "jsonl":
                lines = rows
            elif fmt == "classification":
                lines = [{"text": r["text"], "label": r["label"]} for r in rows]
            elif fmt in ("trl", "openai"):
                lines = []
                for r in rows:
                    system, user, assistant = _turns(pipeline, r)
                    turns = [("system", system), ("user", user), ("assistant", assistant)]
                    lines.append({"messages": [{"role": k, "content": v} for k, v in turns if v is not None]})
            elif fmt == "alpaca":
                lines = []
                for r in rows:
                    system, user, assistant = _turns(pipeline, r)
                    if system is None:
                        lines.append({"instruction": user, "input": "", "output": assistant})
                    else:
                        lines.append({"instruction": system, "input": user, "output": assistant})
            else:
                raise ExportError(f"--format {fmt!r}: unknown; choose from {', '.join(FORMATS)}")
            body = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
            (folder / f"{split}.{fmt}.jsonl" if fmt != "jsonl" else folder / f"{split}.jsonl").write_text(
                body
            )


def export(
    pipeline: Pipeline,
    records: Sequence[Record],
    run_path: Path,
    opts: ExportOptions | None = None,
    card: Any = None,
):  # -> datasets.DatasetDict
    """Write `dataset/` (save_to_disk), `hub/` (parquet + README card), `formats/` and `data.jsonl`."""
    opts = opts or ExportOptions(seed=pipeline.seed)
    kept = [r for r in records if r.status == "kept"]
    if opts.decontaminate is not None:
        dirty = contaminated(kept, opts.decontaminate.texts, opts.ngram)
        for r in kept:
            if r.id in dirty:
                r.reject("contaminated")
        kept = [r for r in kept if r.status == "kept"]
    if not kept:
        raise ExportError(
            f"{run_path}: no kept records to export ({len(records)} rejected; see "
            f"{run_path / 'records.jsonl'} for their reasons)"
        )
    split_of = assign_splits(kept, opts.ratios, opts.seed)
    rows = _rows(pipeline, kept, split_of, opts)
    if opts.mix_real is not None:
        attrs = [a for a in attribute_order(pipeline) if a not in ("id", "text", "label")]
        rows += _real_rows(pipeline, opts.mix_real, opts, attrs)
    dataset = to_dataset_dict(pipeline, rows, opts.with_metadata)
    with atomic_dir(run_path / "hub") as hub, atomic_dir(run_path / "formats") as formats:
        (hub / "data").mkdir()
        for split, ds in dataset.items():
            ds.to_parquet(str(hub / "data" / f"{split}-00000-of-00001.parquet"))
        if card is not None:
            (hub / "README.md").write_text(card(dataset, kept, opts), encoding="utf-8")
        _write_formats(pipeline, dataset, formats, opts.formats)
        with atomic_dir(run_path / "dataset") as tmp:
            dataset.save_to_disk(str(tmp))
            faults.point("export")
    names = [lab.name for lab in pipeline.labels]
    lines = "".join(
        json.dumps(
            {**row, **({"label": names[row["label"]]} if names else {}), "split": split}, ensure_ascii=False
        )
        + "\n"
        for split, ds in dataset.items()
        for row in ds.to_list()
    )
    write_atomic(run_path / "data.jsonl", lines)
    return dataset

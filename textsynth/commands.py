"""What the commands do beyond a build: open a run directory, export it again, apply a review
sheet, list its flagged duplicates, preview a pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from textsynth.card import dcr_summary, render_card
from textsynth.config import Pipeline
from textsynth.errors import RunDirError
from textsynth.export import ExportOptions, export
from textsynth.records import Record
from textsynth.review import add_review_step, apply_sheet
from textsynth.run import RunDir


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def open_run(run_dir: str | Path, action: str) -> tuple[RunDir, dict[str, Any]]:
    """An existing run directory and its manifest, or a one-line error."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise RunDirError(f"{run.path}: no such run directory (check the path)")
    manifest = run.read_manifest()
    if manifest is None:
        raise RunDirError(
            f"{run.path}: no manifest.json, so nothing to {action}; run `textsynth build` first"
        )
    return run, manifest


def recorded_pipeline(run: RunDir, manifest: dict[str, Any]) -> Pipeline:
    try:
        return Pipeline.model_validate(manifest["config"])
    except (KeyError, ValidationError):
        raise RunDirError(f"{run.manifest_path}: config missing or invalid; rebuild with --force") from None


def export_run(
    run_dir: str | Path,
    opts: ExportOptions | None = None,
    pipeline: Pipeline | None = None,
    records: list[Record] | None = None,
):  # -> datasets.DatasetDict
    """Export a run's kept records with its dataset card (also the end of every build)."""
    run, manifest = open_run(run_dir, "export")
    pipeline = pipeline or recorded_pipeline(run, manifest)
    records = records if records is not None else run.read_records()
    opts = opts or ExportOptions(seed=pipeline.seed)
    funnel = _read_json(run.path / "funnel.json")
    diversity = _read_json(run.path / "diversity.json")

    def card(dataset: Any, kept: list[Record], o: ExportOptions) -> str:
        dirty = sum(1 for r in records if "contaminated" in r.reasons)
        privacy = dcr_summary(kept, records)
        validation = _read_json(run.path / "summary.json").get("real_validation")
        return render_card(
            pipeline, manifest, funnel, diversity, dataset, dirty, o.mix_real is not None, privacy, validation
        )

    dataset = export(pipeline, records, run.path, opts, card)
    if opts.decontaminate is not None:
        run.write_records(records)
    return dataset


def apply_review(run_dir: str | Path, sheet: str | Path) -> tuple[dict[str, int], Any]:
    """Record a review sheet's decisions in the run's records, then export again."""
    run, manifest = open_run(run_dir, "review")
    pipeline = recorded_pipeline(run, manifest)
    with run.lock():  # the records a sheet is checked against are those no build is rewriting
        records = run.read_records()
        counts = apply_sheet(run, pipeline, records, Path(sheet))
        run.write_records(records)
        add_review_step(run, records)
        dataset = export_run(run.path, pipeline=pipeline, records=records)
    return counts, dataset


def flagged_duplicates(run_dir: Path, min_cosine: float | None) -> list[tuple[Record, Record, str, float]]:
    """The run's flagged duplicate pairs, least similar first; with `min_cosine`, as dedup would
    flag them at that threshold (from the stored embeddings, no model)."""
    from textsynth.errors import ConfigError
    from textsynth.quality.dedup import flagged_pairs, rethreshold

    run = RunDir(run_dir)
    records = run.read_records()
    if min_cosine is not None:
        if not 0 < min_cosine <= 1:
            raise ConfigError(f"--min-cosine {min_cosine}: must be in (0, 1]")
        config = Pipeline.model_validate((run.read_manifest() or {})["config"]).quality.dedup
        updated = config.model_copy(update={"min_cosine_similarity": min_cosine})
        records = rethreshold(records, run.read_embeddings(), updated)
    return flagged_pairs(records)


def preview_records(source: Pipeline, path: Path, per_label: int) -> list[Record]:
    """`per_label` examples per label built with the real model in a temporary run (no top-up,
    nothing exported), with their verdicts."""
    import tempfile

    from textsynth.pipeline import run_build

    small = source.model_copy(update={"quality": source.quality.model_copy(update={"top_up_rounds": 0})})
    with tempfile.TemporaryDirectory(prefix="textsynth-preview-") as tmp:
        n = per_label * len(source.label_names)
        result = run_build(small, n=n, out=Path(tmp) / "run", quiet=True, pipeline_path=path, export=False)
        return RunDir(result.run_dir).read_records()

"""Wires the stages in order: config → plan → render → generate → parse → store → export.

This is the only module that knows the order. Everything a user can get wrong is checked
before the model loads; generated records are appended per batch so nothing finished is lost.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from textsynth.backends import Backend, Request, make_backend
from textsynth.config import Pipeline, load_pipeline, validate_overrides
from textsynth.export import export
from textsynth.models import ModelIdentity, identify
from textsynth.parse import parse_record
from textsynth.records import Record
from textsynth.run import RunDir
from textsynth.taxonomy import PlannedExample, plan
from textsynth.templates import PromptTemplates, prompt_dirs


@dataclass
class Prepared:
    """A validated pipeline with its plan and rendered prompts; no model involved yet."""

    pipeline: Pipeline
    source: Path | None
    templates: PromptTemplates
    planned: list[PlannedExample]
    messages: dict[str, list[dict[str, str]]]


@dataclass
class BuildSummary:
    planned: int
    generated: int = 0
    reused: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    planned_labels: dict[str, int] = field(default_factory=dict)
    kept_labels: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    generation_s: float = 0.0
    wall_s: float = 0.0

    @property
    def examples_per_s(self) -> float:
        return self.generated / self.generation_s if self.generation_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "generated": self.generated,
            "reused": self.reused,
            "kept": self.kept,
            "rejected": dict(self.rejected),
            "planned_labels": self.planned_labels,
            "kept_labels": self.kept_labels,
            "tokens": self.tokens,
            "generation_s": round(self.generation_s, 2),
            "wall_s": round(self.wall_s, 2),
            "examples_per_s": round(self.examples_per_s, 3),
        }


@dataclass
class BuildResult:
    dataset: Any  # datasets.DatasetDict
    summary: BuildSummary
    run_dir: Path


def prepare(source: str | Path | Pipeline, n: int | None = None, seed: int | None = None) -> Prepared:
    """Validate config, taxonomy and templates, plan, and render every prompt."""
    if isinstance(source, Pipeline):
        pipeline, path = source, None
    else:
        path = Path(source)
        pipeline = load_pipeline(path)
    pipeline = validate_overrides(pipeline, str(path or pipeline.name), n, seed)
    templates = PromptTemplates(pipeline, prompt_dirs(path))
    planned = plan(pipeline, templates.key)
    messages = {ex.id: templates.render(ex) for ex in planned}
    return Prepared(pipeline, path, templates, planned, messages)


def request_fingerprint(
    model: ModelIdentity, messages: list[dict[str, str]], pipeline: Pipeline, seed: int
) -> str:
    """Everything that decides a completion; batch size, device and threads are not part of it."""
    body = {
        "model": [model.model_id, model.revision, model.dtype],
        "messages": messages,
        "params": pipeline.generation.model_dump(),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _new_record(prep: Prepared, ex: PlannedExample, model: ModelIdentity, fingerprint: str) -> Record:
    rendered = json.dumps(prep.messages[ex.id], sort_keys=True)
    return Record(
        id=ex.id,
        label=ex.label,
        attributes=dict(ex.attributes),
        prompt={
            "template": prep.templates.key,
            "template_sha": prep.templates.shas,
            "rendered_sha": hashlib.sha256(rendered.encode()).hexdigest(),
        },
        generation={
            "model": model.model_id,
            "revision": model.revision,
            "dtype": model.dtype,
            "params": prep.pipeline.generation.model_dump(),
            "seed": ex.seed,
            "fingerprint": fingerprint,
        },
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} ex/s"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _generate(
    prep: Prepared,
    backend: Backend,
    model: ModelIdentity,
    todo: list[PlannedExample],
    fingerprints: dict[str, str],
    run: RunDir,
    console: Console,
    quiet: bool,
) -> Iterator[Record]:
    """Generate the missing records, appending each batch to a new shard as it completes."""
    by_id = {ex.id: ex for ex in todo}
    requests = [Request(ex.id, prep.messages[ex.id], ex.seed) for ex in todo]
    writer = run.shard_writer()
    batch = prep.pipeline.model.batch_size
    start = time.perf_counter()
    with _progress(console) as progress:
        task = progress.add_task("generating", total=len(todo), rate=0.0, visible=not quiet)
        try:
            for done, completion in enumerate(backend.generate(requests, prep.pipeline.generation), 1):
                ex = by_id[completion.id]
                record = _new_record(prep, ex, model, fingerprints[ex.id])
                record.generation.update(
                    raw=completion.text, tokens=completion.tokens, finish_reason=completion.finish_reason
                )
                parse_record(record, completion.text, completion.finish_reason == "length")
                writer.append(record)
                if done % batch == 0:
                    writer.flush()
                rate = done / (time.perf_counter() - start)
                progress.update(task, advance=1, rate=rate)
                yield record
        finally:
            writer.close()


def run_build(
    source: str | Path | Pipeline,
    *,
    n: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    quiet: bool = False,
    console: Console | None = None,
) -> BuildResult:
    """Build (or continue) a run and export its dataset."""
    wall = time.perf_counter()
    console = console or Console(stderr=True, quiet=quiet)
    prep = prepare(source, n=n, seed=seed)
    pipeline = prep.pipeline
    run = RunDir(out or Path("runs") / pipeline.name)
    model = identify(pipeline.model)
    run.create()
    run.read_manifest()
    run.write_manifest(
        {
            "name": pipeline.name,
            "config": pipeline.model_dump(mode="json"),
            "config_fingerprint": pipeline.fingerprint(),
            "pipeline_file": str(prep.source) if prep.source else None,
            "templates": prep.templates.shas,
            "model": {"id": model.model_id, "revision": model.revision, "dtype": model.dtype},
            "seed": pipeline.seed,
            "planned": len(prep.planned),
        }
    )
    fingerprints = {
        ex.id: request_fingerprint(model, prep.messages[ex.id], pipeline, ex.seed) for ex in prep.planned
    }
    done: dict[str, Record] = {}
    for record in run.read_shards():
        if fingerprints.get(record.id) == record.generation.get("fingerprint"):
            done[record.id] = record
    summary = BuildSummary(planned=len(prep.planned), reused=len(done))
    todo = [ex for ex in prep.planned if ex.id not in done]
    if todo:
        backend = make_backend(pipeline.model)
        gen_start = time.perf_counter()
        for record in _generate(prep, backend, model, todo, fingerprints, run, console, quiet):
            done[record.id] = record
            summary.generated += 1
            summary.tokens += int(record.generation.get("tokens", 0))
        summary.generation_s = time.perf_counter() - gen_start
    records = [done[ex.id] for ex in prep.planned]
    run.write_records(records)
    summary.planned_labels = dict(Counter(ex.label for ex in prep.planned))
    summary.kept_labels = dict(Counter(r.label for r in records if r.status == "kept"))
    summary.kept = sum(summary.kept_labels.values())
    summary.rejected = Counter(reason for r in records if r.status == "rejected" for reason in r.reasons[:1])
    dataset = export(pipeline, records, run.path)
    summary.wall_s = time.perf_counter() - wall
    (run.path / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return BuildResult(dataset, summary, run.path)


def build(
    source: str | Path | Pipeline,
    *,
    n: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    quiet: bool = True,
):  # -> datasets.DatasetDict
    """Python API: build a pipeline and return its `DatasetDict`.

    Example: `textsynth.build("pipelines/sentiment.yaml", n=12, out="runs/demo")`.
    """
    return run_build(source, n=n, seed=seed, out=out, quiet=quiet).dataset

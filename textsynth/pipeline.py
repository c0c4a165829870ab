"""Wires the stages in order: config → plan → render → generate → parse → store → export.

This is the only module that knows the order. Everything a user can get wrong is checked
before the model loads; generated records are appended per batch so nothing finished is lost.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from textsynth import faults
from textsynth.backends import Request, make_backend
from textsynth.cache import CompletionCache
from textsynth.config import Pipeline, load_pipeline, validate_overrides
from textsynth.errors import Interrupted, RunDirError
from textsynth.export import export
from textsynth.generate import WorkItem, generate_records, make_record, request_fingerprint
from textsynth.models import ModelIdentity, identify
from textsynth.records import Record
from textsynth.run import RunDir, write_atomic
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
    cached: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    planned_labels: dict[str, int] = field(default_factory=dict)
    kept_labels: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    generation_s: float = 0.0
    wall_s: float = 0.0
    drift: Drift | None = None

    def finish(self, records: list[Record], planned: list[PlannedExample], wall_s: float) -> None:
        """Fill the counts that depend on the final record states."""
        self.planned_labels = dict(Counter(ex.label for ex in planned))
        self.kept_labels = dict(Counter(r.label for r in records if r.status == "kept"))
        self.kept = sum(self.kept_labels.values())
        self.rejected = Counter(r.reasons[0] for r in records if r.status == "rejected")
        self.wall_s = wall_s

    @property
    def examples_per_s(self) -> float:
        return self.generated / self.generation_s if self.generation_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "generated": self.generated,
            "reused": self.reused,
            "cached": self.cached,
            "kept": self.kept,
            "rejected": dict(self.rejected),
            "planned_labels": self.planned_labels,
            "kept_labels": self.kept_labels,
            "tokens": self.tokens,
            "generation_s": round(self.generation_s, 2),
            "wall_s": round(self.wall_s, 2),
            "examples_per_s": round(self.examples_per_s, 3),
            "drift": vars(self.drift) if self.drift else None,
        }


@dataclass
class BuildResult:
    dataset: Any  # datasets.DatasetDict
    summary: BuildSummary
    run_dir: Path


def prepare(
    source: str | Path | Pipeline,
    n: int | None = None,
    seed: int | None = None,
    pipeline_path: Path | None = None,
) -> Prepared:
    """Validate config, taxonomy and templates, plan, and render every prompt.

    `pipeline_path` locates prompts/ when `source` is an already loaded Pipeline.
    """
    if isinstance(source, Pipeline):
        pipeline, path = source, pipeline_path
    else:
        path = Path(source)
        pipeline = load_pipeline(path)
    pipeline = validate_overrides(pipeline, str(path or pipeline.name), n, seed)
    templates = PromptTemplates(pipeline, prompt_dirs(path))
    planned = plan(pipeline, templates.key)
    messages = {ex.id: templates.render(ex) for ex in planned}
    return Prepared(pipeline, path, templates, planned, messages)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} ex/s"),
        TimeRemainingColumn(),
        console=console,
    )


@dataclass
class Drift:
    """How the requests of this build differ from what the run directory already holds."""

    changed: int = 0
    new: int = 0
    dropped: int = 0

    def __bool__(self) -> bool:
        return bool(self.changed or self.new or self.dropped)


def _drift(previous: dict[str, str], items: list[WorkItem]) -> Drift:
    planned = {i.example.id: i.fingerprint for i in items}
    return Drift(
        changed=sum(1 for rid, fp in planned.items() if rid in previous and previous[rid] != fp),
        new=sum(1 for rid in planned if rid not in previous),
        dropped=sum(1 for rid in previous if rid not in planned),
    )


class _StopFlag:
    """Set by the first Ctrl-C; the generation loop stops after persisting what it has."""

    def __init__(self) -> None:
        self.set = False

    def __call__(self) -> bool:
        return self.set

    @contextmanager
    def on_sigint(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.set = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def run_build(
    source: str | Path | Pipeline,
    *,
    n: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    quiet: bool = False,
    force: bool = False,
    cache_path: str | Path | None = None,
    pipeline_path: Path | None = None,
    console: Console | None = None,
) -> BuildResult:
    """Build (or continue) a run and export its dataset."""
    wall = time.perf_counter()
    console = console or Console(stderr=True, quiet=quiet)
    prep = prepare(source, n=n, seed=seed, pipeline_path=pipeline_path)
    pipeline = prep.pipeline
    run = RunDir(out or Path("runs") / pipeline.name)
    model = identify(pipeline.model)
    items = [
        WorkItem(
            ex, prep.messages[ex.id], request_fingerprint(model, prep.messages[ex.id], pipeline, ex.seed)
        )
        for ex in prep.planned
    ]
    with run.lock():
        if force:
            run.reset()
        had_manifest = run.read_manifest() is not None
        previous = {r.id: r.generation.get("fingerprint", "") for r in run.read_shards()}
        drift = _drift(previous, items) if had_manifest else Drift()
        run.write_manifest(
            {
                "name": pipeline.name,
                "config": pipeline.model_dump(mode="json"),
                "config_fingerprint": pipeline.fingerprint(),
                "pipeline_file": str(prep.source.resolve()) if prep.source else None,
                "templates": prep.templates.shas,
                "model": {"id": model.model_id, "revision": model.revision, "dtype": model.dtype},
                "seed": pipeline.seed,
                "planned": len(prep.planned),
            }
        )
        if drift and not quiet:
            console.print(
                f"config changed since the last build of {run.path}: {drift.changed} requests changed, "
                f"{drift.new} new, {drift.dropped} no longer planned; reusing the rest "
                "(use --force to start over)",
                highlight=False,
            )
        cache = CompletionCache(Path(cache_path) if cache_path else run.path / "cache.sqlite")
        try:
            records, summary = _generate_all(prep, run, model, items, cache, console, quiet)
        finally:
            cache.close()
        summary.drift = drift
        faults.point("quality")
        run.write_records(records)
        summary.finish(records, prep.planned, time.perf_counter() - wall)
        write_atomic(run.path / "summary.json", json.dumps(summary.to_dict(), indent=2) + "\n")
        dataset = export(pipeline, records, run.path)
    summary.wall_s = time.perf_counter() - wall
    return BuildResult(dataset, summary, run.path)


def _generate_all(
    prep: Prepared,
    run: RunDir,
    model: ModelIdentity,
    items: list[WorkItem],
    cache: CompletionCache,
    console: Console,
    quiet: bool,
) -> tuple[list[Record], BuildSummary]:
    """Reuse shard records and cache hits; generate the rest. Records come back in plan order."""
    pipeline = prep.pipeline
    wanted = {i.example.id: i.fingerprint for i in items}
    done = {r.id: r for r in run.read_shards() if wanted.get(r.id) == r.generation.get("fingerprint")}
    summary = BuildSummary(planned=len(items), reused=len(done))
    missing = [i for i in items if i.example.id not in done]
    hits = cache.get_many(i.fingerprint for i in missing)
    writer = run.shard_writer()
    stop = _StopFlag()
    try:
        for item in missing:
            if item.fingerprint in hits:
                record = make_record(item, pipeline, prep.templates, model, hits[item.fingerprint])
                writer.append(record)
                done[record.id] = record
                summary.cached += 1
        writer.flush()
        todo = [i for i in missing if i.fingerprint not in hits]
        if todo:
            backend = make_backend(pipeline.model)
            backend.check(
                [Request(i.example.id, i.messages, i.example.seed) for i in todo], pipeline.generation
            )
            faults.point("generation_start")
            start = time.perf_counter()
            with _progress(console) as progress, stop.on_sigint():
                task = progress.add_task("generating", total=len(todo), rate=0.0, visible=not quiet)
                for record in generate_records(
                    todo, pipeline, prep.templates, model, backend, writer, cache, stop
                ):
                    done[record.id] = record
                    summary.generated += 1
                    summary.tokens += int(record.generation.get("tokens", 0))
                    progress.update(task, advance=1, rate=summary.generated / (time.perf_counter() - start))
            summary.generation_s = time.perf_counter() - start
    except OSError as exc:
        raise RunDirError(
            f"{run.path}: cannot write ({exc.strerror or exc}); {len(done)} finished records are saved, "
            f"fix the cause and continue with `textsynth resume {run.path}`"
        ) from None
    finally:
        writer.close()
    if stop():
        raise Interrupted(str(run.path), len(done), len(items) - len(done))
    return [done[i.example.id] for i in items], summary


def resume_build(run_dir: str | Path, quiet: bool = False) -> BuildResult:
    """Continue a run with the config recorded in its manifest."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise RunDirError(f"{run.path}: no such run directory (check the path)")
    manifest = run.read_manifest()
    if manifest is None:
        raise RunDirError(f"{run.path}: no manifest.json, so nothing to resume; use `textsynth build`")
    try:
        pipeline = Pipeline.model_validate(manifest["config"])
    except (KeyError, ValidationError):
        raise RunDirError(f"{run.manifest_path}: config missing or invalid; rebuild with --force") from None
    source = manifest.get("pipeline_file")
    return run_build(pipeline, out=run.path, quiet=quiet, pipeline_path=Path(source) if source else None)


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

"""Wires the stages in order: config → plan → render → generate → parse → store → export.

This is the only module that knows the order. Everything a user can get wrong is checked
before the model loads; generated records are appended per batch so nothing finished is lost.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from textsynth import faults
from textsynth.backends import start_backend
from textsynth.backends.vllm import require_vllm
from textsynth.cache import CompletionCache
from textsynth.commands import export_run, open_run, recorded_pipeline
from textsynth.config import Pipeline
from textsynth.embed import TextEmbedder, check_encoder, encoder_name
from textsynth.errors import ConfigError
from textsynth.funnel import Funnel
from textsynth.generate import GenerationStage, Watch
from textsynth.loop import plan_round, stalled
from textsynth.models import identify
from textsynth.pipeline_file import load_pipeline, validate_overrides
from textsynth.quality.base import Stage
from textsynth.quality.chain import run_quality
from textsynth.quality.diversity import diversity_report
from textsynth.quality.labelcheck import LabelCheck
from textsynth.quality_config import LoopConfig
from textsynth.quotas import plan_ahead, probe_loss_rates, probe_of, top_up_leaves
from textsynth.records import Record
from textsynth.review import carry_decisions
from textsynth.run import RunDir, write_atomic
from textsynth.scoring import CachedScorer
from textsynth.seeds import SeedPool, load_seeds, with_seed_taxonomy
from textsynth.steps import step_templates
from textsynth.summary import BuildSummary, Drift, PhaseClock
from textsynth.taxonomy import PlannedExample, label_counts, plan, top_up
from textsynth.templates import PromptTemplates, prompt_dirs
from textsynth.validation import LabeledSeeds, Readout, read_out


@dataclass
class Prepared:
    """A validated pipeline with its plan and first prompts rendered; no model involved yet."""

    pipeline: Pipeline
    source: Path | None
    steps: dict[str, PromptTemplates]  # each generation step's prompt, in order
    planned: list[PlannedExample]
    messages: dict[str, list[dict[str, str]]]  # the first step's prompt of every planned example
    seeds: SeedPool | None = None

    @property
    def templates(self) -> PromptTemplates:
        """The first step's prompt (a `templates:` pair's)."""
        return next(iter(self.steps.values()))

    @property
    def template_key(self) -> str:
        return "+".join(t.key for t in self.steps.values())

    @property
    def template_shas(self) -> dict[str, str]:
        return {k: v for t in self.steps.values() for k, v in t.shas.items()}


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
    prompt_dir: Path | None = None,
) -> Prepared:
    """Validate config, taxonomy and templates, plan, and render every prompt.

    `pipeline_path` locates prompts/ when `source` is an already loaded Pipeline; `prompt_dir`
    replaces that lookup (resume renders from the run's own copy of the templates).
    """
    if isinstance(source, Pipeline):
        pipeline, path = source, pipeline_path
    else:
        path = Path(source)
        pipeline = load_pipeline(path)
    pipeline = validate_overrides(pipeline, str(path or pipeline.name), n, seed)
    _check_split(pipeline, str(path or pipeline.name))
    dirs = [prompt_dir] if prompt_dir else prompt_dirs(path)
    seeds = load_seeds(pipeline, path)
    pipeline = with_seed_taxonomy(pipeline, seeds)
    steps = step_templates(pipeline, dirs, seeds)
    check_encoder(pipeline.quality.embedding_model)
    if "vllm" in {pipeline.model.backend, *(s.model.backend for s in pipeline.steps if s.model)}:
        require_vllm()
    planned = plan(pipeline, "+".join(t.key for t in steps.values()))
    first = next(iter(steps.values()))
    messages = {ex.id: first.render(ex) for ex in planned}  # a template error shows before any load
    return Prepared(pipeline, path, steps, planned, messages, seeds)


def _check_split(pipeline: Pipeline, source: str) -> None:
    """`n` split by label weight must give every label an example: a silent class of none is a
    dataset the user did not ask for."""
    if not pipeline.labels or pipeline.labels[0].count is not None:
        return
    counts = label_counts(pipeline)
    empty = [label for label, count in counts.items() if count == 0]
    if empty:
        split_text = ", ".join(f"{label} {count}" for label, count in counts.items())
        raise ConfigError(
            f"{source}: n: {pipeline.n} splits into {split_text}, so {', '.join(empty)} get no examples; "
            f"raise n to at least {len(counts)} (--n) or give each label a `count`"
        )


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} ex/s"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )


class Build:
    """One build, phase by phase: start the run directory, generate and check (with plan-ahead
    and top-up rounds), measure diversity, store, export. Each phase's wall time is recorded."""

    def __init__(
        self, prep: Prepared, run: RunDir, console: Console, quiet: bool, cache: Path | None
    ) -> None:
        self.prep, self.pipeline, self.run, self.console, self.quiet = (
            prep,
            prep.pipeline,
            run,
            console,
            quiet,
        )
        self.cache_path = cache
        self.model = identify(self.pipeline.model)
        self.quotas = label_counts(self.pipeline)
        self.examples = list(prep.planned)
        self.summary = BuildSummary(planned=len(self.examples))
        self.clock = PhaseClock(self.summary.phases)

    def start(self, force: bool, prompt_dir: Path | None) -> None:
        """Record what this build is (manifest, plan, prompts) and open its cache and stage."""
        pipeline, run, prep = self.pipeline, self.run, self.prep
        if force:
            run.reset()
        had_manifest = run.read_manifest() is not None
        previous_plan = run.read_plan()
        run.write_manifest(
            {
                "name": pipeline.name,
                "config": pipeline.model_dump(mode="json"),
                "config_fingerprint": pipeline.fingerprint(),
                "pipeline_file": str(prep.source.resolve()) if prep.source else None,
                "templates": prep.template_shas,
                "model": {
                    "id": self.model.model_id,
                    "revision": self.model.revision,
                    "dtype": self.model.dtype,
                },
                "embedding_model": encoder_name(pipeline.quality.embedding_model),
                "seed": pipeline.seed,
                "planned": len(prep.planned),
                "cache": str(self.cache_path.resolve()) if self.cache_path else None,
            }
        )
        run.write_plan(ex.id for ex in prep.planned)
        if prompt_dir is None:  # resume renders from these copies, whatever happens to the files since
            run.snapshot_prompts(prompt_dirs(prep.source))
            if prep.seeds is not None:
                run.snapshot_seeds(prep.seeds.data.path)
        self.backend = functools.cache(
            self.clock.timed("load", lambda: start_backend(pipeline.model, pipeline.executor))
        )
        self.embedder = TextEmbedder(pipeline.quality.embedding_model, self.console)
        self.progress = functools.partial(_progress, self.console, self.quiet)  # a bar per phase
        seeds = prep.seeds
        self.labeled = (
            LabeledSeeds(seeds.texts, seeds.data.labels, self.embedder)
            if seeds is not None and seeds.folds is not None and len(set(seeds.data.labels or [])) > 1
            else None
        )
        # --force starts over: the run's own cache was deleted; a shared --cache file is not read
        self.cache = CompletionCache(self.cache_path or run.path / "cache.sqlite", fresh=force)
        self.stage = GenerationStage(
            pipeline,
            prep.steps,
            self.model,
            run,
            self.cache,
            self.backend,
            self.progress,
            self.summary.gen,
            prep.messages,
        )
        if previous_plan is None:  # a run directory from before plan.txt
            previous_plan = set(self.stage.lines)
        planned = {ex.id for ex in prep.planned}
        self.drift = Drift(
            new=len(planned - previous_plan) if had_manifest else 0,
            dropped=len(previous_plan - planned) if had_manifest else 0,
        )

    def check(self, records: list[Record], want: dict[str, int]) -> tuple[list[Record], Funnel, list[Stage]]:
        scores = CachedScorer(
            self.backend, self.cache, self.model, self.progress, "label check: scoring labels"
        )
        scorer = (lambda: scores) if self.pipeline.quality.label_check.zero_shot else (lambda: None)
        seeds = self.prep.seeds.texts if self.prep.seeds else None
        instructions = self.stage.instructions
        checked, funnel, stages = run_quality(
            records, self.pipeline, want, instructions, scorer, self.embedder, seeds
        )
        for stage in stages:
            self.summary.stages[stage.name] = self.summary.stages.get(stage.name, 0.0) + stage.stats.seconds
        return checked, funnel, stages

    def generate(self) -> tuple[list[Record], Funnel]:
        """Generate, check quality and top up until every label has its quota (or rounds run out).

        When the build is large enough, a first batch of every label is checked first and each
        label is planned ahead by the share the quality stage lost of it.
        """
        pipeline, quotas, clock = self.pipeline, self.quotas, self.clock
        parsed: dict[str, Record] = {}
        for round_no in range(pipeline.quality.top_up_rounds + 1):
            clock.start("generate" if round_no == 0 else "top_up")
            probe = probe_of(self.examples, pipeline) if round_no == 0 else []
            first = frozenset(ex.id for ex in probe)
            # the probe first: the rest decode while it is checked and planned from
            todo = [ex for ex in self.examples if ex.id not in parsed]
            todo.sort(key=lambda ex: ex.id not in first)
            parsed.update(self.stage.run(todo, Watch(first, self.plan_ahead) if probe else None))
            faults.point("quality")
            clock.start("quality" if round_no == 0 else "top_up")
            records, funnel, stages = self.check([parsed[ex.id] for ex in self.examples], quotas)
            self.summary.label_signals = [
                x for st in stages if isinstance(st, LabelCheck) for x in st.signals
            ]
            self.read_out(records)
            deficits = top_up_leaves(records, quotas)
            if not deficits or round_no == pipeline.quality.top_up_rounds:
                break
            self.examples += top_up(pipeline, self.prep.template_key, deficits, round_no + 1)
            self.summary.top_up_rounds = round_no + 1
            faults.point("top_up")
        loop = pipeline.seed_examples.loop if pipeline.seed_examples else None
        if loop is not None and loop.rounds and self.summary.real_validation:
            records, funnel = self.steer(records, funnel, parsed, loop)
        self.drift.changed = len(self.stage.changed)
        if self.drift and not self.quiet:
            self.console.print(
                f"config changed since the last build of {self.run.path}: {self.drift.changed} requests "
                f"changed, {self.drift.new} new, {self.drift.dropped} no longer planned; reused the rest "
                "(use --force to start over)",
                highlight=False,
            )
        return records, funnel

    def plan_ahead(self, probe: list[Record]) -> list[PlannedExample]:
        """Check the probe and plan each label ahead by the share of it the quality stage lost;
        the extra examples, which join the generation still running."""
        pipeline, quotas = self.pipeline, self.quotas
        self.clock.start("quality")
        probed, _, _ = self.check(probe, {label: len(probe) for label in quotas})
        self.summary.probe_loss = probe_loss_rates(probed, quotas)
        ahead = plan_ahead(probed, quotas, self.summary.probe_loss)
        extra = top_up(pipeline, self.prep.template_key, ahead, 0)
        self.examples += extra
        self.summary.planned_ahead = len(extra)
        faults.point("plan_ahead")
        self.clock.start("generate")
        return extra

    def read_out(self, records: list[Record], kind: str = "quota") -> Readout | None:
        """Real validation of this round's kept records on the held-out seed examples."""
        if self.labeled is None:
            return None
        kept = [r for r in records if r.status == "kept"]
        gen = self.summary.gen
        done = gen.generated + gen.reused + gen.cached  # requests answered so far, from wherever
        readout = read_out(self.labeled, kept, len(self.summary.real_validation), done)
        if readout is not None:
            readout.kind = kind
            self.summary.real_validation.append(readout)
        return readout

    def steer(
        self, records: list[Record], funnel: Funnel, parsed: dict[str, Record], loop: LoopConfig
    ) -> tuple[list[Record], Funnel]:
        """Loop rounds (loop.py): more requests where the kept data fails on the held-out seeds,
        until seeds + synthetic accuracy stops rising or the rounds run out."""
        readouts = [self.summary.real_validation[-1]]
        for round_no in range(1, loop.rounds + 1):
            self.clock.start("loop")
            extra = plan_round(self.pipeline, self.prep.template_key, readouts[-1], records, round_no)
            self.examples += extra
            for ex in extra:  # the loop's rows add to their label's count
                self.quotas[ex.label] += 1
            parsed.update(self.stage.run(extra))
            records, funnel, _ = self.check([parsed[ex.id] for ex in self.examples], self.quotas)
            self.summary.loop_rounds = round_no
            readout = self.read_out(records, "loop")
            if readout is None:
                break
            readouts.append(readout)
            if stalled(readouts, loop.patience):
                break
        return records, funnel

    def diversity(self, records: list[Record]) -> dict[str, Any]:
        self.clock.start("diversity")
        kept = [r for r in records if r.status == "kept"]
        vectors = self.embedder([r.text or "" for r in kept])
        with self.console.status("diversity metrics"):
            leaves = {f"{ex.label}|{ex.leaf}" for ex in self.prep.planned}
            return diversity_report(kept, vectors, list(self.quotas), leaves, self.pipeline.seed)

    def store(self, records: list[Record], funnel: Funnel, report: dict[str, Any], wall: float) -> None:
        """Write the records, their vectors, the summary, the funnel and the diversity report."""
        run, summary = self.run, self.summary
        if run.records_path.exists():  # a rebuild keeps what reviewers and decontamination decided
            _, changed = carry_decisions(run.read_records(), records)
            if changed and not self.quiet:
                self.console.print(
                    f"{changed} reviewed or decontaminated records have a new text: their decisions no "
                    "longer apply (run `textsynth review export` to review them again)",
                    highlight=False,
                )
        funnel.snapshot("exported", records)
        run.write_records(records)
        run.write_embeddings(encoder_name(self.pipeline.quality.embedding_model), self.embedder, records)
        summary.planned = len(self.examples)
        summary.funnel = funnel
        summary.drift = self.drift
        summary.finish(records, self.quotas)
        summary.model_loads = self.backend().model_loads() if self.backend.cache_info().currsize else 0
        self.write_summary(wall)
        write_atomic(run.path / "funnel.json", json.dumps(funnel.to_dict(), indent=2) + "\n")
        write_atomic(run.path / "diversity.json", json.dumps(report, indent=2) + "\n")

    def export(self, records: list[Record]) -> Any:  # datasets.DatasetDict
        self.clock.start("export")
        with self.console.status("exporting: splits, dataset card, hub folder, fine-tuning formats"):
            dataset = export_run(self.run.path, pipeline=self.pipeline, records=records)
        self.clock.stop()
        return dataset

    def write_summary(self, wall: float) -> None:
        self.summary.wall_s = time.perf_counter() - wall
        write_atomic(self.run.path / "summary.json", json.dumps(self.summary.to_dict(), indent=2) + "\n")


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
    executor: str | None = None,
    export: bool = True,
    prompt_dir: Path | None = None,
) -> BuildResult:
    """Build (or continue) a run: prepare, start, generate (and check), diversity, store, export.

    `executor` ('local' or 'ray') overrides the pipeline's `executor.kind`; `export=False` stops
    after the quality stage (preview), and the result has no dataset.
    """
    wall = time.perf_counter()
    console = console or Console(stderr=True, quiet=quiet)
    prep = prepare(source, n=n, seed=seed, pipeline_path=pipeline_path, prompt_dir=prompt_dir)
    if executor is not None:
        update = {"executor": prep.pipeline.executor.model_copy(update={"kind": executor})}
        prep.pipeline = prep.pipeline.model_copy(update=update)
    run = RunDir(out or Path("runs") / prep.pipeline.name)
    with run.lock():
        build = Build(prep, run, console, quiet, Path(cache_path) if cache_path else None)
        build.start(force, prompt_dir)
        try:
            records, funnel = build.generate()
        finally:
            build.cache.close()
        build.store(records, funnel, build.diversity(records), wall)
        dataset = build.export(records) if export else None
        build.write_summary(wall)
    build.summary.wall_s = time.perf_counter() - wall
    return BuildResult(dataset, build.summary, run.path)


def resume_build(run_dir: str | Path, quiet: bool = False) -> BuildResult:
    """Continue a run with what it started with: the recorded config, the run's copy of the
    templates and the same completion cache."""
    run, manifest = open_run(run_dir, "resume")
    pipeline = recorded_pipeline(run, manifest)
    columns = pipeline.seed_examples.taxonomy_columns if pipeline.seed_examples else []
    if columns:  # recorded merged; prepare merges the seed columns again, once
        kept = {k: v for k, v in pipeline.taxonomy.items() if k not in columns}
        pipeline = pipeline.model_copy(update={"taxonomy": kept})
    seeds = pipeline.seed_examples
    copy = run.path / "seeds" / Path(seeds.path).name if seeds else None
    if seeds is not None and copy is not None and copy.exists():  # the run's copy, not today's file
        pipeline = pipeline.model_copy(update={"seed_examples": seeds.model_copy(update={"path": str(copy)})})
    source, cache = manifest.get("pipeline_file"), manifest.get("cache")
    snapshot = run.path / "prompts"
    return run_build(
        pipeline,
        out=run.path,
        quiet=quiet,
        pipeline_path=Path(source) if source else None,
        cache_path=Path(cache) if cache else None,
        prompt_dir=snapshot if snapshot.is_dir() else None,  # runs from before the copy existed
    )


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

"""Command line: a thin layer over the Python API.

Errors a user can fix are printed as one line and exit with code 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from textsynth.cli_errors import user_errors
from textsynth.cli_tables import (
    duplicates_table,
    funnel_table,
    plan_table,
    preview_table,
    sample_prompts,
    summary_table,
)
from textsynth.errors import ConfigError
from textsynth.validation import verdict

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build labeled synthetic text datasets with a local language model.",
)


@app.callback()
def _root() -> None:
    """Build labeled synthetic text datasets with a local language model."""


DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")]


class Executor(StrEnum):
    local = "local"
    ray = "ray"


TextColOpt = Annotated[str | None, typer.Option("--text-col", help="Text column: name or 0-based position.")]
LabelColOpt = Annotated[str | None, typer.Option("--label-col", help="Label column: name or position.")]
LabelMapOpt = Annotated[
    str | None, typer.Option("--label-map", help="Map raw labels, e.g. 0=negative,1=positive.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bar or table.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line on stdout.")]


def _report(result: Any, quiet: bool, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.summary.to_dict()) + "\n")
    elif not quiet:
        console = Console()
        if result.summary.funnel is not None:
            console.print(funnel_table(result.summary.funnel))
        console.print(summary_table(result.summary, result.run_dir))
        if result.summary.real_validation:
            console.print(verdict(result.summary.real_validation[-1].to_dict()), highlight=False)


@app.command()
@user_errors
def build(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML, e.g. pipelines/sentiment.yaml.")],
    n: Annotated[int | None, typer.Option("--n", help="Total examples (overrides the YAML).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/<name>).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Pipeline seed (overrides the YAML).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Discard earlier work in the run directory.")
    ] = False,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Completion cache file to share between runs.")
    ] = None,
    executor: Annotated[
        Executor | None, typer.Option("--executor", help="Run generation here or on a Ray actor pool.")
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Build a labeled dataset from a pipeline YAML; on an existing run directory it continues.

    Example: textsynth build pipelines/sentiment.yaml --n 60 --out runs/demo --seed 7
    """
    from textsynth.pipeline import run_build

    result = run_build(
        pipeline,
        n=n,
        seed=seed,
        out=out,
        quiet=quiet or as_json,
        force=force,
        cache_path=cache,
        executor=executor.value if executor else None,
    )
    _report(result, quiet, as_json)


@app.command()
@user_errors
def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of an interrupted build.")],
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Continue a build with the exact config it was started with.

    Example: textsynth resume runs/demo
    """
    from textsynth.pipeline import resume_build

    _report(resume_build(run_dir, quiet=quiet or as_json), quiet, as_json)


@app.command("dedup-pairs")
@user_errors
def dedup_pairs(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a finished build.")],
    top: Annotated[int, typer.Option("--top", help="How many of the least similar flagged pairs.")] = 15,
    min_cosine: Annotated[
        float | None,
        typer.Option("--min-cosine", help="Try another min_cosine_similarity on the stored embeddings."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Show the least similar pairs that dedup still flagged, to calibrate its thresholds.

    Example: textsynth dedup-pairs runs/sentiment --min-cosine 0.9
    """
    from textsynth.commands import flagged_duplicates

    Console().print(duplicates_table(flagged_duplicates(run_dir, min_cosine), top, run_dir))


@app.command("export")
@user_errors
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a finished build.")],
    splits: Annotated[str, typer.Option("--splits", help="train,validation,test ratios.")] = "0.8,0.1,0.1",
    with_metadata: Annotated[
        bool,
        typer.Option("--with-metadata", help="Add provenance columns (template sha, model, seed, scores)."),
    ] = False,
    formats: Annotated[
        list[str] | None,
        typer.Option("--format", help="Fine-tuning formats to write (repeatable); default all."),
    ] = None,
    mix_real: Annotated[
        Path | None, typer.Option("--mix-real", help="Real labeled file to merge in.")
    ] = None,
    real_test_only: Annotated[
        bool, typer.Option("--real-test-only", help="Put all real examples in the test split.")
    ] = False,
    decontaminate: Annotated[
        Path | None,
        typer.Option("--decontaminate", help="Evaluation file: drop records sharing a long n-gram."),
    ] = None,
    ngram: Annotated[int, typer.Option("--ngram", help="n-gram length for --decontaminate.")] = 13,
    text_col: TextColOpt = None,
    label_col: LabelColOpt = None,
    label_map: LabelMapOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Export a run as a DatasetDict, hub folder (parquet + card) and fine-tuning formats.

    Example: textsynth export runs/sentiment --splits 0.8,0.1,0.1 --with-metadata
    """
    from textsynth.commands import export_run, open_run
    from textsynth.config import Pipeline
    from textsynth.export import FORMATS, ExportOptions, parse_ratios
    from textsynth.readers import read_real
    from textsynth.run import RunDir

    ratios = parse_ratios(splits)
    unknown = [f for f in formats or [] if f not in FORMATS]
    if unknown:
        raise ConfigError(f"--format {unknown[0]!r}: unknown; choose from {', '.join(FORMATS)}")
    manifest = RunDir(run_dir).read_manifest() if Path(run_dir).is_dir() else None
    names = [lab.name for lab in Pipeline.model_validate(manifest["config"]).labels] if manifest else []
    opts = ExportOptions(
        ratios=ratios,
        with_metadata=with_metadata,
        formats=tuple(formats) if formats else FORMATS,
        mix_real=read_real(mix_real, names, text_col, label_col, label_map) if mix_real else None,
        real_test_only=real_test_only,
        decontaminate=read_real(decontaminate, None, text_col) if decontaminate else None,
        ngram=ngram,
        seed=int(manifest["seed"]) if manifest else 0,
    )
    run, _ = open_run(run_dir, "export")
    with run.lock():  # a build, review or second export on this run waits its turn
        dataset = export_run(run_dir, opts)
    Console().print(f"exported {run_dir}: " + ", ".join(f"{k} {len(v)}" for k, v in dataset.items()))


@app.command()
@user_errors
def push(
    run_dir: Annotated[Path, typer.Argument(help="Run directory with an export (its hub/ folder).")],
    repo: Annotated[str, typer.Option("--repo", help="Dataset repo id, e.g. user/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
    token: Annotated[
        str | None, typer.Option("--token", help="Hub token (default: HF_TOKEN or the stored login).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print the files that would be uploaded.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Upload the run's hub folder (parquet splits + dataset card) to a dataset repo.

    Example: textsynth push runs/sentiment --repo me/sentiment-synth --private
    """
    from textsynth.hub import push_run

    files, url = push_run(run_dir, repo, private=private, token=token, dry_run=dry_run)
    console = Console()
    for name in files:
        console.print(name, highlight=False)
    console.print("dry run: nothing uploaded" if dry_run else f"uploaded to {url}", highlight=False)


@app.command()
@user_errors
def init(
    name: Annotated[str, typer.Argument(help="Pipeline name: writes pipelines/<name>.yaml.")],
    task: Annotated[str, typer.Option("--task", help="sentiment, topics, intent or sft.")] = "sentiment",
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that differ.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Start a project: a commented pipeline YAML and its prompt templates, ready to build.

    Example: textsynth init support-intents --task intent
    """
    from textsynth.scaffold import init_project

    for path in init_project(name, task, Path.cwd(), force):
        Console().print(f"wrote {path}", highlight=False)
    Console().print(f"next: textsynth validate pipelines/{name}.yaml", highlight=False)


@app.command()
@user_errors
def validate(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML to check.")],
    debug: DebugOpt = False,
) -> None:
    """Check config, taxonomy and templates without loading a model; show the plan and prompts.

    Example: textsynth validate pipelines/sentiment.yaml
    """
    from textsynth.pipeline import prepare

    prep = prepare(pipeline)
    console = Console()
    console.print(plan_table(prep, pipeline))
    for label, leaf, messages in sample_prompts(prep):
        console.print(f"[bold]sample prompt for {label}[/bold] ({leaf})")
        for m in messages:
            console.print(f"  {m['role']}: {m['content']}", highlight=False, markup=False)
    console.print("ok: no model was loaded")


@app.command()
@user_errors
def schema(
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file (default: stdout).")] = None,
    debug: DebugOpt = False,
) -> None:
    """JSON Schema of the pipeline YAML, for editor completion and checking.

    Example: textsynth schema --out pipeline.schema.json
    """
    from textsynth.config import Pipeline

    text = json.dumps(Pipeline.model_json_schema(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


@app.command()
@user_errors
def preview(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML.")],
    per_label: Annotated[
        int, typer.Option("--per-label", help="Examples per label (the label check flags from 5 up).")
    ] = 5,
    debug: DebugOpt = False,
) -> None:
    """Generate a few examples per label with the real model and show their verdicts; exports nothing.

    Example: textsynth preview pipelines/sentiment.yaml --per-label 5
    """
    from textsynth.commands import preview_records
    from textsynth.pipeline_file import load_pipeline
    from textsynth.quality.labelcheck import MIN_PER_LABEL

    if per_label < 1:
        raise ConfigError(f"--per-label {per_label}: must be at least 1")
    source = load_pipeline(pipeline)
    records = preview_records(source, pipeline, per_label)
    Console().print(preview_table(records, pipeline))
    if per_label < MIN_PER_LABEL and source.quality.label_check.enabled:
        print(
            f"note: the label check flags mismatches from {MIN_PER_LABEL} examples per label; with "
            f"{per_label} it shows confidences only (preview --per-label {MIN_PER_LABEL} to see its verdicts)"
        )


review_app = typer.Typer(help="Expert review: export a sheet, apply its decisions.", no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("export")
@user_errors
def review_export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a finished build.")],
    debug: DebugOpt = False,
) -> None:
    """Write RUN_DIR/review/sheet.csv (and sheet.html) with one row per kept example.

    Example: textsynth review export runs/sentiment
    """
    from textsynth.commands import open_run
    from textsynth.review import write_sheet

    run, _ = open_run(run_dir, "review")
    with run.lock():
        sheet, page = write_sheet(run, run.read_records())
    Console().print(f"wrote {sheet} and {page}; fill decision / corrected_label / comment", highlight=False)


@review_app.command("apply")
@user_errors
def review_apply(
    run_dir: Annotated[Path, typer.Argument(help="Run directory the sheet came from.")],
    sheet: Annotated[Path, typer.Argument(help="The filled-in sheet (CSV).")],
    debug: DebugOpt = False,
) -> None:
    """Record the sheet's decisions in the run and export again.

    Example: textsynth review apply runs/sentiment runs/sentiment/review/sheet.csv
    """
    from textsynth.commands import apply_review

    counts, dataset = apply_review(run_dir, sheet)
    Console().print(
        f"reviewed {counts['reviewed']}: rejected {counts['rejected']}, relabeled {counts['relabeled']}; "
        "exported " + ", ".join(f"{k} {len(v)}" for k, v in dataset.items()),
        highlight=False,
    )


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a finished build.")],
    debug: DebugOpt = False,
) -> None:
    """Write RUN_DIR/report.html: funnel, balance, lengths, diversity, coverage, map, samples.

    Example: textsynth report runs/sentiment
    """
    from textsynth.commands import open_run
    from textsynth.report import write_report

    run, manifest = open_run(run_dir, "report on")
    Console().print(f"wrote {write_report(run, manifest)}", highlight=False)


@app.command()
@user_errors
def compare(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of an exported build.")],
    real: Annotated[
        Path, typer.Option("--real", help="Real labeled data: CSV, TSV, JSONL, parquet, dataset dir.")
    ],
    real_train: Annotated[
        Path | None,
        typer.Option("--real-train", help="Real training data for TRTR (default: half of --real)."),
    ] = None,
    text_col: TextColOpt = None,
    label_col: LabelColOpt = None,
    label_map: LabelMapOpt = None,
    coverage_cosine: Annotated[
        float, typer.Option("--coverage-cosine", help="Cosine within which a real text counts as covered.")
    ] = 0.7,
    debug: DebugOpt = False,
) -> None:
    """Compare a run with real data: TSTR vs TRTR, Fréchet distance, distributions, coverage.

    Example: textsynth compare runs/sentiment --real yelp_labelled.tsv --label-map 0=negative,1=positive
    """
    from textsynth.commands import open_run, recorded_pipeline
    from textsynth.compare import compare_run, compare_tables
    from textsynth.readers import read_real

    run, manifest = open_run(run_dir, "compare")
    names = recorded_pipeline(run, manifest).label_names
    data = read_real(real, names, text_col, label_col, label_map)
    train = read_real(real_train, names, text_col, label_col, label_map) if real_train else None
    with run.lock():  # writes compare.json
        result = compare_run(run, data, train, int(manifest.get("seed", 0)), coverage_cosine)
    console = Console()
    for title, header, rows in compare_tables(result):
        table = Table(title=title)
        for col in header:
            table.add_column(col)
        for row in rows:
            table.add_row(*(str(c) for c in row))
        console.print(table)
    console.print(f"wrote {run.path / 'compare.json'}", highlight=False)

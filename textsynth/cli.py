"""Command line: a thin layer over the Python API.

Errors a user can fix are printed as one line and exit with code 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from textsynth.errors import Interrupted, TextsynthError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build labeled synthetic text datasets with a local language model.",
)
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Build labeled synthetic text datasets with a local language model."""


DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")]


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn TextsynthError into one line on stderr and exit code 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TextsynthError as exc:
            if kwargs.get("debug"):
                raise
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Interrupted as exc:
            err_console.print(str(exc), highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None

    return wrapper


def summary_table(summary: Any, run_dir: Path) -> Table:
    table = Table(title=f"textsynth build → {run_dir}", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("planned", str(summary.planned))
    table.add_row("generated now", str(summary.generated))
    table.add_row("reused from run dir", str(summary.reused))
    table.add_row("cache hits", str(summary.cached))
    table.add_row("kept", str(summary.kept))
    for reason, count in sorted(summary.rejected.items()):
        table.add_row(f"rejected: {reason}", str(count))
    for label, planned in summary.planned_labels.items():
        table.add_row(f"label {label}", f"{summary.kept_labels.get(label, 0)} / {planned}")
    table.add_row("generated tokens", str(summary.tokens))
    table.add_row("generation time", f"{summary.generation_s:.1f} s")
    table.add_row("examples/s", f"{summary.examples_per_s:.2f}")
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    return table


QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bar or table.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line on stdout.")]


def _report(result: Any, quiet: bool, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.summary.to_dict()) + "\n")
    elif not quiet:
        Console().print(summary_table(result.summary, result.run_dir))


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
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Build a labeled dataset from a pipeline YAML; on an existing run directory it continues.

    Example: textsynth build pipelines/sentiment.yaml --n 60 --out runs/demo --seed 7
    """
    from textsynth.pipeline import run_build

    result = run_build(
        pipeline, n=n, seed=seed, out=out, quiet=quiet or as_json, force=force, cache_path=cache
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

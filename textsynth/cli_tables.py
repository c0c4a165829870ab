"""The tables `build` prints: the funnel and the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table


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
    for label, short in summary.shortfall.items():
        table.add_row(f"short of quota: {label}", str(short))
    table.add_row("top-up rounds", str(summary.top_up_rounds))
    if summary.label_signals:
        table.add_row("label check signals", ", ".join(summary.label_signals))
    table.add_row("generated tokens", str(summary.gen.tokens))
    table.add_row("generation time", f"{summary.gen.seconds:.1f} s")
    table.add_row("examples/s", f"{summary.examples_per_s:.2f}")
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    return table


def funnel_table(funnel: Any) -> Table:
    table = Table(title="funnel (kept after each step)")
    labels = list(funnel.by_label["planned"])
    table.add_column("step")
    table.add_column("total", justify="right")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("rejected here")
    for step in funnel.steps:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(funnel.reasons.get(step, {}).items()) if v)
        row = [str(funnel.by_label[step].get(label, 0)) for label in labels]
        table.add_row(step, str(funnel.total[step]), *row, reasons)
    return table

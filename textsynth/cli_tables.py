"""The tables the commands print: the build summary and funnel, the plan, a preview, duplicates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
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


def plan_table(prep: Any, pipeline: Path) -> Table:
    """`validate`: how many requests each label gets, over how many taxonomy leaves."""
    table = Table(title=f"{pipeline}: plan of {len(prep.planned)} requests")
    for col in ("label", "examples", "distinct leaves", "largest leaf"):
        table.add_column(col)
    for label in prep.pipeline.label_names:
        leaves = Counter(ex.leaf for ex in prep.planned if ex.label == label)
        top = leaves.most_common(1)[0] if leaves else ("-", 0)
        table.add_row(label, str(sum(leaves.values())), str(len(leaves)), f"{top[0]} ({top[1]})")
    return table


def sample_prompts(prep: Any) -> Iterator[tuple[str, str, list[dict[str, str]]]]:
    """(label, leaf, first step's messages) of each label's first planned request: later steps
    need earlier outputs."""
    for label in prep.pipeline.label_names:
        example = next((ex for ex in prep.planned if ex.label == label), None)
        if example is not None:
            yield label, example.leaf, prep.messages[example.id]


def preview_table(records: list[Any], pipeline: Path) -> Table:
    table = Table(title=f"preview of {pipeline} ({len(records)} examples, nothing exported)", show_lines=True)
    for col in ("label", "leaf", "text", "verdict", "label conf."):
        table.add_column(col)
    for r in sorted(records, key=lambda r: (r.label, r.id)):
        verdict = "kept" if r.status == "kept" else ", ".join(r.reasons)
        conf = r.scores.get("label_confidence")
        table.add_row(
            r.label,
            "|".join(r.attributes.values()),
            r.text or "",
            verdict,
            "" if conf is None else f"{conf:.2f}",
        )
    return table


def duplicates_table(pairs: list[Any], top: int, run_dir: Path) -> Table:
    table = Table(title=f"{len(pairs)} flagged duplicates in {run_dir} (least similar first)")
    for col in ("similarity", "method", "duplicate", "kept representative"):
        table.add_column(col)
    for dup, rep, method, sim in pairs[:top]:
        table.add_row(f"{sim:.3f}", method, dup.text or "", rep.text or "")
    return table

"""Expert review round trip: a sheet of kept examples out, decisions and corrected labels back in.

`write_sheet` writes `review/sheet.csv` (and `review/sheet.html` to read it comfortably) with one
row per kept record and empty `decision`, `corrected_label` and `comment` columns. `apply_sheet`
validates the whole sheet first (unknown ids, decisions or labels are one-line errors naming the
row) and then records every decision in the records: `reviewer_rejected` with the comment, or a
corrected label with the original kept in `fields.review`. The next export honours them, and the
funnel gets a `reviewed` step.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from textsynth.config import Pipeline
from textsynth.errors import ConfigError
from textsynth.funnel import Funnel
from textsynth.records import Record
from textsynth.run import RunDir, write_atomic
from textsynth.taxonomy import leaf_key

COLUMNS = ("id", "label", "leaf", "text", "label_confidence", "decision", "corrected_label", "comment")
ACCEPT = {"", "accept", "ok", "keep", "yes"}
REJECT = {"reject", "no", "drop"}


def write_sheet(run: RunDir, records: list[Record]) -> tuple[Path, Path]:
    """The CSV sheet and its HTML view for the kept records."""
    rows = [
        {
            "id": r.id,
            "label": r.label,
            "leaf": leaf_key(r.attributes),
            "text": r.text or "",
            "label_confidence": r.scores.get("label_confidence", ""),
            "decision": "",
            "corrected_label": "",
            "comment": "",
        }
        for r in records
        if r.status == "kept"
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    folder = run.path / "review"
    folder.mkdir(exist_ok=True)
    sheet, page = folder / "sheet.csv", folder / "sheet.html"
    write_atomic(sheet, buffer.getvalue())
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[c]))}</td>" for c in COLUMNS) + "</tr>" for row in rows
    )
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    write_atomic(
        page,
        "<!doctype html><meta charset=utf-8><title>review</title><style>td,th{border:1px solid #ccc;"
        f"padding:4px;vertical-align:top}}</style><p>Fill decision (accept/reject), corrected_label and "
        f"comment in {sheet.name}, then run <code>textsynth review apply</code>.</p>"
        f"<table><tr>{head}</tr>{cells}</table>\n",
    )
    return sheet, page


def apply_sheet(run: RunDir, pipeline: Pipeline, records: list[Record], sheet: Path) -> dict[str, int]:
    """Record the sheet's decisions in `records` (in place); counts of each kind of change."""
    try:
        rows = list(csv.DictReader(sheet.open(encoding="utf-8", newline="")))
    except FileNotFoundError:
        raise ConfigError(
            f"{sheet}: no such review sheet (write one with `textsynth review export`)"
        ) from None
    missing = {"id", "decision", "corrected_label", "comment"} - set(rows[0] if rows else COLUMNS)
    if missing:
        raise ConfigError(f"{sheet}:1: missing column {sorted(missing)[0]!r} (start from the exported sheet)")
    by_id = {r.id: r for r in records}
    names = set(pipeline.label_names)
    for line, row in enumerate(rows, start=2):
        decision = row["decision"].strip().lower()
        if row["id"] not in by_id:
            raise ConfigError(f"{sheet}:{line}: id {row['id']!r} is not a record of {run.path}")
        if decision not in ACCEPT | REJECT:
            raise ConfigError(
                f"{sheet}:{line}: decision {row['decision']!r}: use accept, reject or leave empty"
            )
        corrected = row["corrected_label"].strip()
        if corrected and corrected not in names:
            raise ConfigError(
                f"{sheet}:{line}: corrected_label {corrected!r} is not a label; use one of {sorted(names)}"
            )
    counts = {"reviewed": 0, "rejected": 0, "relabeled": 0}
    for row in rows:
        record = by_id[row["id"]]
        decision = row["decision"].strip().lower()
        corrected = row["corrected_label"].strip()
        comment = row["comment"].strip()
        if not (decision or corrected or comment):
            continue
        counts["reviewed"] += 1
        record.fields["review"] = {
            "decision": "reject" if decision in REJECT else "accept",
            "comment": comment,
            "original_label": record.label,
            "sheet": str(sheet),
        }
        if decision in REJECT:
            record.reject("reviewer_rejected")
            counts["rejected"] += 1
        elif corrected and corrected != record.label:
            record.label = corrected
            counts["relabeled"] += 1
    return counts


def carry_decisions(previous: list[Record], records: list[Record]) -> tuple[int, int]:
    """Apply the review and decontamination decisions of an earlier `records.jsonl` to a rebuild
    (which starts again from the shards), each only to the text it was made on: a record whose
    text changed (an edited template, a new seed) goes back to review. Returns how many records
    got a decision and how many lost one to a new text."""
    before = {r.id: r for r in previous}
    carried = changed = 0
    for record in records:
        old = before.get(record.id)
        if old is None:
            continue
        decided = bool(old.fields.get("review")) or "contaminated" in old.reasons
        if old.text != record.text:
            changed += decided
            continue
        review = old.fields.get("review")
        if review:
            record.fields["review"] = review
            if review["decision"] == "reject":
                record.reject("reviewer_rejected")
            elif old.label != review["original_label"]:
                record.label = old.label
        if "contaminated" in old.reasons:
            record.reject("contaminated")
        carried += decided
    return carried, changed


def add_review_step(run: RunDir, records: list[Record]) -> None:
    """Append a `reviewed` step to the run's funnel (replacing an earlier one)."""
    path = run.path / "funnel.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    funnel = Funnel(
        steps=[s for s in data.get("steps", []) if s not in ("reviewed", "exported")],
        total=data.get("total", {}),
        by_label=data.get("by_label", {}),
        by_leaf=data.get("by_leaf", {}),
        reasons=data.get("rejected_by_step", {}),
    )
    funnel.snapshot("reviewed", records)
    rejected = sum(1 for r in records if "reviewer_rejected" in r.reasons)
    funnel.reasons["reviewed"] = {"reviewer_rejected": rejected} if rejected else {}
    funnel.snapshot("exported", records)
    write_atomic(path, json.dumps(funnel.to_dict(), indent=2) + "\n")

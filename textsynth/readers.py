"""One reader for the user's real data: CSV, TSV, JSONL, parquet or a `save_to_disk` folder.

Used by `export --mix-real`, `--decontaminate` and `compare`. Columns are chosen by name or by
position; numeric labels are mapped with `--label-map 0=negative,1=positive`, and a label that
maps to nothing in the taxonomy is an error naming it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from textsynth.errors import ConfigError


@dataclass
class RealData:
    path: Path
    texts: list[str]
    labels: list[str] | None
    columns: dict[str, list[str]] = field(default_factory=dict)


# Where an option was given: the command line's flags, or a pipeline's `seed_examples:` keys.
FLAGS = {"label_map": "--label-map", "text_col": "--text-col", "label_col": "--label-col"}
YAML_KEYS = {k: f"seed_examples.{k}:" for k in FLAGS}
# A first row whose text cell is one of these names is a header row, not data.
HEADER_NAMES = {"text", "texts", "sentence", "review", "message", "utterance", "content", "document", "query"}


def parse_label_map(spec: str | None, names: dict[str, str] = FLAGS) -> dict[str, str]:
    """'0=negative,1=positive' → {'0': 'negative', '1': 'positive'}."""
    if not spec:
        return {}
    out = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{names['label_map']} {spec!r}: expected pairs like 0=negative,1=positive")
        out[key.strip()] = value.strip()
    return out


def _column(spec: str | None, default: str) -> str | int:
    if spec is None:
        return default
    return int(spec) if spec.lstrip("-").isdigit() else spec


def _frame(path: Path, header: bool):  # -> pandas.DataFrame
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if path.is_dir():
            from datasets import DatasetDict, concatenate_datasets, load_from_disk

            data = load_from_disk(str(path))
            if isinstance(data, DatasetDict):
                data = concatenate_datasets(list(data.values()))
            frame = data.to_pandas()
            if "label" in frame and hasattr(data.features.get("label"), "names"):
                frame["label"] = [data.features["label"].names[i] for i in frame["label"]]
            return frame
        if suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix in (".tsv", ".txt") else ","
            return pd.read_csv(
                path,
                sep=sep,
                header=0 if header else None,
                dtype=str,
                keep_default_na=False,
                quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL,
            )
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ConfigError(
            f"{path}: cannot be read ({str(exc).splitlines()[0][:120]}); check its format"
        ) from None
    raise ConfigError(
        f"{path}: unknown format {suffix!r}; use .csv, .tsv, .jsonl, .parquet or a saved dataset"
    )


def _pick(frame, col: str | int, path: Path, what: str, names: dict[str, str] = FLAGS) -> list:
    columns = list(frame.columns)
    option = names.get(f"{what}_col", f"{what} column")
    if isinstance(col, int):
        if not -len(columns) <= col < len(columns):
            raise ConfigError(f"{path}: {option} {col}: the file has {len(columns)} columns")
        return frame.iloc[:, col].tolist()
    if col not in columns:
        raise ConfigError(f"{path}: {option} {col!r} not found; columns are {', '.join(map(str, columns))}")
    return frame[col].tolist()


def _header_row(
    texts: list[str], raw: list[str] | None, mapping: dict[str, str], labels: list[str] | None
) -> bool:
    """Whether the first row of a file read without a header is one: its text cell is a column
    name such as `text`, or its label is no label while (almost) every other row's is."""
    if len(texts) < 2:
        return False
    if texts[0].strip().lower() in HEADER_NAMES:
        return True
    if raw is None or labels is None:
        return False
    known = [mapping.get(v, v) in labels for v in raw]
    return not known[0] and sum(known[1:]) >= 0.9 * (len(known) - 1)


def read_real(
    path: str | Path,
    labels: list[str] | None,
    text_col: str | None = None,
    label_col: str | None = None,
    label_map: str | None = None,
    columns: Sequence[str] = (),
    names: dict[str, str] = FLAGS,
) -> RealData:
    """Texts (and labels mapped onto `labels`, when given) from a user's file; `names` says how
    errors name the options (the command line's flags or the pipeline's keys). A delimited file
    read by position may start with a header row: it is recognised and skipped."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file (check the path)")
    tcol = _column(text_col, "text")
    lcol = _column(label_col, "label") if labels is not None else None
    suffix = path.suffix.lower()
    if not (path.is_dir() or suffix in (".jsonl", ".json", ".parquet")) and text_col is None:
        tcol = 0  # a delimited file without named columns: text first, label second
        lcol = _column(label_col, "label") if label_col is not None else (1 if labels is not None else None)
    frame = _frame(path, header=isinstance(tcol, str) or isinstance(lcol, str) or bool(columns))
    if frame.empty:
        raise ConfigError(f"{path}: no rows")
    texts = [str(t) for t in _pick(frame, tcol, path, "text", names)]
    extra = {c: [str(v) for v in _pick(frame, c, path, "taxonomy", names)] for c in columns}
    mapping = parse_label_map(label_map, names)
    raw = (
        None if lcol is None or labels is None else [str(v) for v in _pick(frame, lcol, path, "label", names)]
    )
    first = 1
    if isinstance(tcol, int) and not path.is_dir() and _header_row(texts, raw, mapping, labels):
        texts, extra = texts[1:], {c: v[1:] for c, v in extra.items()}
        raw, first = (raw[1:] if raw is not None else None), 2
    if raw is None or labels is None:
        return RealData(path, texts, None, extra)
    mapped = [mapping.get(v, v) for v in raw]
    option = names["label_map"]
    for row, (value, name) in enumerate(zip(raw, mapped), first):
        if name not in labels:
            raise ConfigError(
                f"{path}: row {row}: label {value!r} is not a label of the pipeline ({', '.join(labels)}); "
                f"map it with {option}, e.g. {option} 0=negative,1=positive"
            )
    return RealData(path, texts, mapped, extra)

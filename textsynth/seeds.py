"""Seed examples: a small real dataset that prompts few-shot and that outputs must not copy.

Templates get `examples`: k real texts of the record's label, sampled with a generator seeded by
the record's own seed, so the same record always sees the same exemplars and its prompt (and
cache key) is stable; and `target_words`, the length of one more real text, so that asked-for
lengths follow the real distribution. A column of the real data can become a taxonomy attribute
whose values are weighted by how often they occur there.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from textsynth.config import Attribute, Pipeline, Value
from textsynth.errors import ConfigError
from textsynth.quality_config import SeedExamples
from textsynth.readers import YAML_KEYS, RealData, read_real
from textsynth.validation import seed_folds


@dataclass
class SeedPool:
    data: RealData
    hold_out: bool = False  # labeled rows split in folds (validation.py): exemplars from one fold

    def __post_init__(self) -> None:
        labels = self.data.labels
        self.folds = seed_folds(labels) if self.hold_out and labels else None

    @property
    def texts(self) -> list[str]:
        return self.data.texts

    def exemplars(
        self, label: str, seed: int, k: int, fold: int | None = None, prefer: Sequence[int] = ()
    ) -> list[int]:
        """Row numbers of k seed texts of `label` (all rows when the data has no labels), from
        `fold` only when the rows are split in folds, those in `prefer` first."""
        labels = self.data.labels
        rows = [i for i, lab in enumerate(labels or self.texts) if labels is None or lab == label]
        if self.folds is not None and fold is not None:
            rows = [i for i in rows if self.folds[i] == fold] or rows
        rng = random.Random(seed)
        first = [i for i in rows if i in set(prefer)]
        if not first:
            return sorted(rng.sample(rows, min(k, len(rows))))
        take = rng.sample(first, min(k, len(first)))
        rest = [i for i in rows if i not in take]
        return sorted(take + rng.sample(rest, min(k - len(take), len(rest))))

    def target_words(self, seed: int) -> int:
        """The word count of one seed text drawn with `seed`: asking each record for the length
        of a random real text makes the lengths follow the real distribution. Any label's text,
        so a guidance prompt naming another label asks for the same length."""
        return max(1, len(self.texts[random.Random(seed).randrange(len(self.texts))].split()))


def seed_path(config: SeedExamples, pipeline_path: Path | None) -> Path:
    """The seed file, relative to the pipeline file's folder."""
    path = Path(config.path).expanduser()
    if path.is_absolute() or pipeline_path is None:
        return path
    return (pipeline_path.resolve().parent / path).resolve()


def load_seeds(pipeline: Pipeline, pipeline_path: Path | None) -> SeedPool | None:
    config = pipeline.seed_examples
    if config is None:
        return None
    data = read_real(
        seed_path(config, pipeline_path),
        pipeline.label_names if pipeline.labels else None,
        config.text_col,
        config.label_col,
        config.label_map,
        columns=config.taxonomy_columns,
        names=YAML_KEYS,
    )
    return SeedPool(data, hold_out=config.hold_out)


def with_seed_taxonomy(pipeline: Pipeline, pool: SeedPool | None) -> Pipeline:
    """The pipeline with one attribute per `taxonomy_columns` entry, weighted by frequency."""
    if pool is None or not pool.data.columns:
        return pipeline
    extra = {}
    for column, values in pool.data.columns.items():
        if column in pipeline.taxonomy:
            raise ConfigError(f"seed_examples.taxonomy_columns: {column!r} is already a taxonomy attribute")
        counts = Counter(v for v in values if v)
        extra[column] = Attribute(
            description=f"from column {column!r} of the seed examples",
            values=[Value(name=v, weight=c) for v, c in sorted(counts.items())],
        )
    return pipeline.model_copy(update={"taxonomy": {**pipeline.taxonomy, **extra}})

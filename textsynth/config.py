"""Pydantic models of the pipeline YAML.

Kept free of torch so that every mistake in a pipeline file is found, with its file and line,
before a model loads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from textsynth.errors import ConfigError

SCHEMA_VERSION = 1


def _reject_duplicates(names: list[str], what: str, rule: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {what} {dupes[0]!r}: {rule}")


class ConfigBase(BaseModel):
    """Every section forbids unknown keys so a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Value(ConfigBase):
    """One value of a taxonomy attribute; `children` are attributes that apply only under it."""

    name: str = Field(min_length=1, description="The value as templates see it, e.g. 'blender'.")
    weight: float = Field(1.0, gt=0, description="Relative share of examples that get this value.")
    children: dict[str, Attribute] = Field(
        default_factory=dict, description="Nested attributes chosen only when this value is."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class Attribute(ConfigBase):
    """A taxonomy dimension such as product, persona or length."""

    description: str = Field("", description="What the attribute means; shown in the card.")
    values: list[Value] = Field(min_length=1, description="Its values, strings or mappings.")

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        return {"values": data} if isinstance(data, list) else data

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[Value]) -> list[Value]:
        _reject_duplicates([v.name for v in values], "value", "each value may appear once")
        return values


class Label(ConfigBase):
    """A class of the dataset; the description is what the model is told the label means."""

    name: str = Field(min_length=1, description="ClassLabel name, e.g. 'positive'.")
    description: str = Field(min_length=1, description="What a text of this label is like.")
    count: int | None = Field(None, ge=0, description="Exact number of examples of this label.")
    weight: float = Field(1.0, gt=0, description="Share of `n` when `count` is not given.")
    taxonomy: dict[str, Attribute] = Field(
        default_factory=dict, description="Attributes used only for this label (e.g. sub-topics)."
    )


class Templates(ConfigBase):
    """Jinja files under the project's prompts/ directory."""

    system: str | None = Field(None, description="System prompt template file, optional.")
    user: str = Field(description="User prompt template file.")


class ModelConfig(ConfigBase):
    """Which model generates, in which precision and batch size."""

    name: str = Field(
        "default",
        description="'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id, "
        "a local model directory or a .gguf file.",
    )
    gguf_file: str | None = Field(None, description="GGUF file inside `name` when it is a dir.")
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(
        "auto", description="'auto' = bf16 where the CPU/GPU supports it, else fp32."
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Rows decoded together.")
    backend: Literal["transformers"] = Field("transformers", description="Generation backend.")


class GenerationParams(ConfigBase):
    """Sampling parameters; all of them are part of each request's fingerprint."""

    max_new_tokens: int = Field(96, ge=1, description="Tokens generated at most per example.")
    temperature: float = Field(0.8, ge=0, le=10, description="0 = greedy decoding.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=0, description="Candidates considered per step; 0 = whole vocab.")


class FilterConfig(ConfigBase):
    """Cheap per-record filters; each can be switched off."""

    min_words: int = Field(3, ge=0, description="Reject texts shorter than this many words.")
    max_words: int = Field(250, ge=1, description="Reject texts longer than this many words.")
    refusal: bool = Field(True, description="Reject refusals and assistant-speak ('As an AI').")
    echo: bool = Field(True, description="Reject texts that repeat the prompt or template markup.")
    language: str | None = Field("en", description="ISO 639-1 code texts must be in; null = any.")
    max_repeated_ngrams: float = Field(
        0.3, gt=0, le=1, description="Reject when this share of word 3-grams are repeats (degeneration)."
    )
    pii: Literal["reject", "redact", "off"] = Field(
        "redact", description="Emails, phones, card numbers, IPs, street addresses."
    )


class LabelCheckConfig(ConfigBase):
    """Confirm that each text carries its label."""

    enabled: bool = Field(True, description="Run the label check.")
    zero_shot: bool = Field(True, description="Score label names with the generating model.")
    classifier: bool = Field(True, description="Cross-validated classifier on embeddings.")
    folds: int = Field(5, ge=2, le=20, description="Cross-validation folds for the classifier.")
    zero_shot_weight: float = Field(
        0.5, ge=0, description="Weight of the zero-shot signal against the classifier's 1.0."
    )
    min_confidence: float = Field(
        0.15, ge=0, le=1, description="Reject `label_mismatch` when the combined confidence is below."
    )


class DedupConfig(ConfigBase):
    """Exact → near (MinHash) → semantic (embeddings) deduplication."""

    scope: Literal["label", "global"] = Field("label", description="Compare within a label or across.")
    exact: bool = Field(True, description="Normalized-text hash duplicates.")
    minhash_threshold: float | None = Field(
        0.7, gt=0, le=1, description="Jaccard similarity of word 3-gram shingles; null = off."
    )
    min_cosine_similarity: float | None = Field(
        0.95, gt=0, le=1, description="Embedding cosine at or above which two texts are duplicates."
    )


class QualityConfig(ConfigBase):
    filters: FilterConfig = Field(default_factory=FilterConfig)
    label_check: LabelCheckConfig = Field(default_factory=LabelCheckConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    embedding_model: str = Field(
        "default", description="'default' (embedded all-MiniLM-L6-v2) or a sentence-transformers path/id."
    )
    top_up_rounds: int = Field(2, ge=0, le=10, description="Regeneration rounds for labels below quota.")


class Pipeline(ConfigBase):
    """A whole pipeline file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Run name.")
    description: str = Field("", description="What the dataset is for; goes into the card.")
    task: Literal["classification"] = Field("classification", description="Kind of dataset.")
    seed: int = Field(0, ge=0, description="Pipeline seed; every random choice derives from it.")
    n: int | None = Field(None, ge=1, description="Total examples when labels give no counts.")
    labels: list[Label] = Field(min_length=2, description="At least two labels.")
    taxonomy: dict[str, Attribute] = Field(
        default_factory=dict, description="Attributes shared by all labels."
    )
    max_per_leaf: int | None = Field(
        None, ge=1, description="Cap on examples of one label at one taxonomy leaf."
    )
    templates: Templates
    model: ModelConfig = Field(default_factory=ModelConfig)
    generation: GenerationParams = Field(default_factory=GenerationParams)
    quality: QualityConfig = Field(default_factory=QualityConfig)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[Label]) -> list[Label]:
        _reject_duplicates([lab.name for lab in labels], "label", "label names must be unique")
        return labels

    @model_validator(mode="after")
    def _counts(self) -> Pipeline:
        given = [lab.count is not None for lab in self.labels]
        if any(given) and not all(given):
            raise ValueError("give `count` for every label or for none (then `n` splits by weight)")
        if not any(given) and self.n is None:
            raise ValueError("set `n` (total examples) or a `count` on every label")
        shared = set(self.taxonomy)
        for lab in self.labels:
            clash = shared & set(lab.taxonomy)
            if clash:
                raise ValueError(f"label {lab.name!r} redefines attribute {sorted(clash)[0]!r}: rename one")
        return self

    def with_overrides(self, n: int | None = None, seed: int | None = None) -> Pipeline:
        """A copy with CLI overrides; `n` replaces per-label counts by a weighted split."""
        update: dict[str, Any] = {}
        if seed is not None:
            update["seed"] = seed
        if n is not None:
            update["n"] = n
            update["labels"] = [lab.model_copy(update={"count": None}) for lab in self.labels]
        data = self.model_dump()
        data.update({k: v for k, v in update.items() if k != "labels"})
        if "labels" in update:
            data["labels"] = [lab.model_dump() for lab in update["labels"]]
        return Pipeline.model_validate(data)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the config."""
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


Value.model_rebuild()


def _line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """1-based line of the YAML node at a pydantic error location (deepest node that exists)."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == key]
            if not match:
                break
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node.start_mark.line + 1


_FIXES = {
    "missing": "add it",
    "extra_forbidden": "remove it or fix its spelling",
    "literal_error": "use one of the allowed values",
}


def _format_error(path: Path, root: yaml.Node, err: dict[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field = ".".join(str(p) for p in loc) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    fix = _FIXES.get(err["type"])
    return f"{path}:{_line_of(root, loc)}: {field}: {msg}" + (f" ({fix})" if fix else "")


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline YAML; errors name the file, the line and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such pipeline file (check the path)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: malformed YAML: {problem} (fix the syntax there)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the pipeline must be a YAML mapping of fields (see `textsynth init`)")
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, root, exc.errors()[0])) from None


def validate_overrides(pipeline: Pipeline, source: str, n: int | None, seed: int | None) -> Pipeline:
    """Apply CLI overrides, reporting a bad value as an error of the option."""
    if n is not None and n < 1:
        raise ConfigError(f"--n {n}: must be a positive number of examples")
    if seed is not None and seed < 0:
        raise ConfigError(f"--seed {seed}: must be 0 or more")
    try:
        return pipeline.with_overrides(n=n, seed=seed)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{source}: with the given options: {err['msg']}") from None

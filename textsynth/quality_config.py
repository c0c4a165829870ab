"""Config sections of the quality stage and of the real seed examples it checks against."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from textsynth.config_base import ConfigBase


class FilterConfig(ConfigBase):
    """Cheap per-record filters; each can be switched off."""

    min_words: int = Field(2, ge=0, description="Reject texts shorter than this many words.")
    max_words: int = Field(250, ge=1, description="Reject texts longer than this many words.")
    refusal: bool = Field(
        True, description="Reject replies that decline the task ('As an AI', 'I can't write that')."
    )
    form: bool = Field(
        True, description="Reject assistant chatter, letters, descriptions of the text, placeholders."
    )
    echo: bool = Field(True, description="Reject texts that repeat the prompt or template markup.")
    language: str | None = Field("en", description="ISO 639-1 code texts must be in; null = any.")
    max_repeated_ngrams: float = Field(
        0.3, gt=0, le=1, description="Reject when this share of word 3-grams are repeats (degeneration)."
    )
    pii: Literal["reject", "redact", "off"] = Field(
        "redact", description="Emails, phones, card numbers, IPs, street addresses."
    )


class LabelCheckConfig(ConfigBase):
    """Confirm that each text carries its label; relabel or reject only when confident."""

    enabled: bool = Field(True, description="Run the label check.")
    zero_shot: bool = Field(True, description="Score label names with the generating model.")
    classifier: bool = Field(True, description="Cross-validated classifier on embeddings.")
    folds: int = Field(5, ge=2, le=20, description="Cross-validation folds for the classifier.")
    zero_shot_weight: float = Field(
        0.5, ge=0, description="Weight of the zero-shot signal in the combined confidence."
    )
    description_weight: float = Field(
        1.0, ge=0, description="Weight of the embedding similarity to the label descriptions."
    )
    description_temperature: float = Field(
        0.05, gt=0, le=10, description="Softmax temperature of the description similarities."
    )
    classifier_weight: float = Field(1.0, ge=0, description="Weight of the out-of-fold classifier.")
    min_confidence: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Also reject `label_mismatch` any record whose label's combined confidence is "
        "below this, flagged or not (0 = only what confident learning flags).",
    )
    relabel: bool = Field(
        True, description="Give a flagged record the label that clearly fits it (original kept in fields)."
    )
    relabel_confidence: float = Field(
        0.8, gt=0, le=1, description="Combined confidence another label needs for a relabel."
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


class PrivacyConfig(ConfigBase):
    """Limits on how close a kept text may be to a seed example (used when `seed_examples` is set)."""

    max_cosine_to_real: float = Field(
        0.95, gt=0, le=1, description="Reject `too_close_to_real` above this cosine to the nearest seed text."
    )
    max_common_ngram: int = Field(
        8,
        ge=2,
        le=64,
        description="Reject when a kept text shares this many consecutive words with a seed text.",
    )


class LoopConfig(ConfigBase):
    """Rounds after the quotas are met, steered by real validation on the held-out seed examples."""

    rounds: int = Field(2, ge=0, le=10, description="Loop rounds at most; 0 = off.")
    budget: float = Field(
        0.5, gt=0, le=5, description="Requests per loop round, as a share of the planned examples."
    )
    patience: int = Field(
        1, ge=1, le=10, description="Stop after this many rounds without a rise in seeds + synthetic accuracy"
    )


class SeedExamples(ConfigBase):
    """A small real dataset: few-shot exemplars for the templates and the reference for privacy checks."""

    path: str = Field(description="CSV, TSV, JSONL, parquet or a `datasets` folder, relative to this file.")
    text_col: str | None = Field(None, description="Text column: name or 0-based position.")
    label_col: str | None = Field(None, description="Label column: name or position.")
    label_map: str | None = Field(None, description="Map raw labels, e.g. '0=negative,1=positive'.")
    k: int = Field(3, ge=0, le=20, description="Exemplars of the record's label per prompt ({{ examples }}).")
    hold_out: bool = Field(
        True,
        description="With labels: split each label's rows in two folds, show each record one fold's "
        "and measure the kept data on the other (real validation in summary.json and the card).",
    )
    taxonomy_columns: list[str] = Field(
        default_factory=list, description="Columns that become taxonomy attributes, weighted by frequency."
    )
    loop: LoopConfig = Field(
        default_factory=LoopConfig,
        description="With labels and hold_out: more rounds where the data fails on the held-out seeds.",
    )


class QualityConfig(ConfigBase):
    filters: FilterConfig = Field(default_factory=FilterConfig)
    label_check: LabelCheckConfig = Field(default_factory=LabelCheckConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    embedding_model: str = Field(
        "default", description="'default' (embedded all-MiniLM-L6-v2) or a sentence-transformers path/id."
    )
    top_up_rounds: int = Field(2, ge=0, le=10, description="Regeneration rounds for labels below quota.")
    plan_ahead: bool | Literal["auto"] = Field(
        "auto",
        description="Check the first batches, then over-generate each label by the rejection rate "
        "seen there, so that most builds need no top-up round. 'auto': builds of 32–64 examples, "
        "where that beats top-up rounds (larger builds were 10–16 % faster without it); true: "
        "every build of 32 or more; false: none.",
    )
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

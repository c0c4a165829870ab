"""Generation steps: what each step's prompt sees, how its output is read, and the record it makes.

A pipeline's steps run in order; each step's prompt sees the taxonomy and the outputs of the
earlier steps (a `templates:` pair is one step, `text`). A JSON step is decoded to the JSON
schema of its `fields` (backends/grammar.py), so it parses, and checked with a pydantic model
built from them; an output that still fails (cut at `max_new_tokens`) is retried by the
generation stage. A judge step scores each criterion by the likelihood of each allowed score (a
constrained choice), stored as `scores.judge_<criterion>`. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from textsynth.backends import Completion
from textsynth.backends.grammar import json_schema
from textsynth.config import Pipeline, Step
from textsynth.errors import TemplateError
from textsynth.models import ModelIdentity
from textsynth.parse import clean, parse_json
from textsynth.records import Record
from textsynth.scoring import CachedScorer
from textsynth.seeds import SeedPool
from textsynth.taxonomy import PlannedExample, attribute_order, derived_seed
from textsynth.templates import PromptTemplates

JUDGE_VARIABLES = ("criterion", "rubric", "scale")


def step_templates(
    pipeline: Pipeline, dirs: list[Path], seeds: SeedPool | None = None
) -> dict[str, PromptTemplates]:
    """Each step's templates, checked against the variables that exist when it runs."""
    attributes = set(attribute_order(pipeline))
    steps = pipeline.generation_steps
    out = {}
    for k, step in enumerate(steps):
        clash = attributes & set(step.outputs)
        if clash and pipeline.steps:
            raise TemplateError(
                f"steps.{k}: output {sorted(clash)[0]!r} is also a taxonomy attribute; rename one"
            )
        earlier = tuple(o for s in steps[:k] for o in s.outputs)
        later = tuple(o for s in steps[k:] for o in s.outputs) if pipeline.steps else ()
        judge = JUDGE_VARIABLES if step.judge else ()
        out[step.name] = PromptTemplates(pipeline, dirs, step.templates, earlier + judge, later, seeds)
    return out


def schema(step: Step) -> dict[str, Any] | None:
    """The JSON schema a JSON step is decoded to; None for text."""
    return json_schema(step.fields) if step.output == "json" else None


def step_seed(example: PlannedExample, step: str, first: bool, attempt: int) -> int:
    """The example's own seed for its first request, a derived one for later steps and retries."""
    return example.seed if first and attempt == 0 else derived_seed(example.seed, step, attempt)


def planned_record(planned: PlannedExample) -> Record:
    """The record of a planned example before any step ran; steps fill it in place."""
    return Record(
        id=planned.id,
        label=planned.label,
        attributes=dict(planned.attributes),
        generation={"seed": planned.seed, "steps": {}, "finish_reason": "stop"},
    )


def step_inputs(record: Record) -> dict[str, Any]:
    """What a later step's template sees of earlier steps: their outputs and judge scores."""
    return {**record.fields, **{k: v for k, v in record.scores.items() if k.startswith("judge_")}}


def accept(step: Step, record: Record, completion: Completion) -> bool:
    """Store the step's output; False when a JSON output does not fit the schema."""
    if step.output == "json":
        values = parse_json(completion.text, step.fields)
        if values is None:
            return False
        record.fields.update(values)
        return True
    text, reason = clean(completion.text, completion.finish_reason == "length")
    record.fields[step.name] = text
    if reason:
        record.reject(reason)
    return True


def judge(
    step: Step,
    records: list[Record],
    scorer: CachedScorer,
    render: Callable[[Record, dict[str, Any]], list[dict[str, str]]],
    shas: dict[str, str],
) -> None:
    """Score each record on every criterion: the expected score under the judge's choice."""
    rubric = step.judge
    if rubric is None or not records:
        return
    choices = [str(s) for s in rubric.scale]
    scale = np.array(rubric.scale, dtype=float)
    scale_text = f"{rubric.scale[0]} to {rubric.scale[-1]}"
    for criterion, text in rubric.criteria.items():
        extra = {"criterion": criterion, "rubric": text, "scale": scale_text}
        loglik = scorer.score([render(r, extra) for r in records], choices)
        probs = softmax(loglik, axis=1)
        for record, p in zip(records, probs):
            record.scores[f"judge_{criterion}"] = round(float(p @ scale), 4)
    low, high = rubric.scale[0], rubric.scale[-1]
    for record in records:
        mean = float(np.mean([record.scores[f"judge_{c}"] for c in rubric.criteria]))
        record.scores["judge"] = round(mean, 4)
        record.scores["quality"] = round((mean - low) / (high - low), 4)  # ranks dedup representatives
        record.generation["steps"][step.name] = {"template_sha": shas, "scale": rubric.scale}


def text_step(pipeline: Pipeline) -> str:
    """The step whose output becomes the record's text."""
    return next(s.name for s in pipeline.generation_steps if pipeline.record_text in s.outputs)


def with_provenance(
    record: Record,
    planned: PlannedExample,
    pipeline: Pipeline,
    templates: dict[str, PromptTemplates],
    model: ModelIdentity,
    text_from: str,
) -> Record:
    """The record as far as its steps have run, its text from step `text_from`, with full
    provenance (set in place: a record is written again after every step)."""
    text_field, steps = pipeline.record_text, record.generation["steps"]
    steps_fp = hashlib.sha256(
        json.dumps({k: v.get("fingerprint") for k, v in steps.items()}, sort_keys=True).encode()
    ).hexdigest()
    record.text = str(record.fields[text_field]) if text_field in record.fields else None
    record.prompt = {
        "template": "+".join(t.key for t in templates.values()),
        "template_sha": {k: v for t in templates.values() for k, v in t.shas.items()},
        "exemplars": next(iter(templates.values())).exemplars(planned),
    }
    record.generation = {
        "model": model.model_id,
        "revision": model.revision,
        "dtype": model.dtype,
        "params": pipeline.generation.model_dump(),
        "seed": planned.seed,
        "fingerprint": steps_fp,
        "raw": steps.get(text_from, {}).get("raw"),
        "tokens": sum(int(s.get("tokens", 0)) for s in steps.values()),
        "finish_reason": record.generation["finish_reason"],
        "steps": steps,
    }
    return record

"""Multi-step generation: each step's prompt sees the taxonomy and the outputs of earlier steps.

Steps run one after another over all examples, so each is one batched backend call. Every
completion goes to the completion cache as its batch finishes: after a crash, rendering a step
again with the same earlier outputs gives the same fingerprints, so finished steps are cache hits
and nothing is generated twice. A JSON step is decoded to the JSON schema of its `fields`
(backends/grammar.py), so it parses, and checked with a pydantic model built from them; an output
that still fails (cut at `max_new_tokens`) is retried with a fresh seed up to `retries` times,
then the example is rejected `unparseable`, never kept with a missing field. A judge step scores
each criterion by the likelihood of each allowed score (a constrained choice), stored as
`scores.judge_<criterion>`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from textsynth import faults
from textsynth.backends import Backend, Completion, Request, make_backend
from textsynth.backends.grammar import json_schema
from textsynth.cache import CompletionCache
from textsynth.config import GenerationParams, ModelConfig, Pipeline, Step
from textsynth.errors import Interrupted, TemplateError
from textsynth.generate import GenerationStats, StopFlag, answers, request_fingerprint
from textsynth.models import ModelIdentity, identify
from textsynth.parse import clean, parse_json
from textsynth.records import Record
from textsynth.run import RunDir
from textsynth.scoring import CachedScorer
from textsynth.seeds import SeedPool
from textsynth.taxonomy import PlannedExample, attribute_order, derived_seed
from textsynth.templates import PromptTemplates

JUDGE_VARIABLES = ("criterion", "rubric", "scale")
_identify = functools.cache(identify)  # a step's own model, resolved once per process


def step_templates(
    pipeline: Pipeline, dirs: list[Path], seeds: SeedPool | None = None
) -> dict[str, PromptTemplates]:
    """Each step's templates, checked against the variables that exist when it runs."""
    attributes = set(attribute_order(pipeline))
    out = {}
    for k, step in enumerate(pipeline.steps):
        clash = attributes & set(step.outputs)
        if clash:
            raise TemplateError(
                f"steps.{k}: output {sorted(clash)[0]!r} is also a taxonomy attribute; rename one"
            )
        earlier = tuple(o for s in pipeline.steps[:k] for o in s.outputs)
        later = tuple(o for s in pipeline.steps[k:] for o in s.outputs)
        judge = JUDGE_VARIABLES if step.judge else ()
        out[step.name] = PromptTemplates(pipeline, dirs, step.templates, earlier + judge, later, seeds)
    return out


def _schema(step: Step) -> dict[str, Any] | None:
    """The JSON schema a JSON step is decoded to; None for text."""
    return json_schema(step.fields) if step.output == "json" else None


@dataclass
class Example:
    """One planned example on its way through the steps."""

    planned: PlannedExample
    outputs: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    prompt: str = ""
    finish_reason: str = "stop"


@dataclass
class StepRunner:
    """Runs every step over the examples, cache first, persisting each batch."""

    pipeline: Pipeline
    templates: dict[str, PromptTemplates]
    model: ModelIdentity
    cache: CompletionCache
    backend: Callable[[], Backend]
    progress: Progress
    stats: GenerationStats
    stop: StopFlag = field(default_factory=StopFlag)
    run_path: str = ""
    others: dict[ModelConfig, tuple[Backend, ModelIdentity]] = field(default_factory=dict)

    def engine(self, step: Step) -> tuple[Backend, ModelIdentity]:
        """The step's own model where it names one, loaded once, else the pipeline's."""
        if step.model is None:
            return self.backend(), self.model
        if step.model not in self.others:
            self.others[step.model] = (make_backend(step.model), _identify(step.model))
        return self.others[step.model]

    def run(self, planned: list[PlannedExample], run: RunDir) -> tuple[dict[str, Record], dict[str, str]]:
        """Records by id and the prompt of each record's text step (for the echo filter)."""
        self.run_path = str(run.path)
        examples = [Example(p) for p in planned]
        with self.progress, self.stop.on_signals():
            for step in self.pipeline.steps:
                live = [e for e in examples if e.reason is None]
                if step.judge is not None:
                    self.judge(step, live)
                else:
                    self._generate(step, live)
                faults.point("step_done")
        records = {e.planned.id: self._record(e) for e in examples}
        writer = run.shard_writer()
        try:
            for record in records.values():
                writer.append(record)
            writer.flush()
        finally:
            writer.close()
        return records, {e.planned.id: e.prompt for e in examples}

    def _messages(self, step: Step, ex: Example, extra: dict[str, Any] | None = None) -> list[dict[str, str]]:
        return self.templates[step.name].render(ex.planned, {**ex.outputs, **(extra or {})})

    def _generate(self, step: Step, examples: list[Example]) -> None:
        params = step.generation or self.pipeline.generation
        task = self.progress.add_task(step.name, total=len(examples), rate=0.0)
        pending = examples
        for attempt in range(step.retries + 1 if step.output == "json" else 1):
            if not pending:
                break
            seeds = {e.planned.id: derived_seed(e.planned.seed, step.name, attempt) for e in pending}
            messages = {e.planned.id: self._messages(step, e) for e in pending}
            done = self._complete(step, messages, seeds, params)
            failed = []
            for ex in pending:
                rid = ex.planned.id
                completion = done[rid]
                ex.steps[step.name] = {
                    "raw": completion.text,
                    "seed": seeds[rid],
                    "tokens": completion.tokens,
                    "template_sha": self.templates[step.name].shas,
                    "fingerprint": request_fingerprint(
                        self._identity(step), messages[rid], params, seeds[rid], schema=_schema(step)
                    ),
                    "attempts": attempt + 1,
                }
                if not self._accept(step, ex, completion):
                    failed.append(ex)
                    continue
                if self.pipeline.record_text in step.outputs:
                    ex.prompt = self.templates[step.name].instruction(ex.planned, ex.outputs)
                    ex.finish_reason = completion.finish_reason
                self.progress.update(task, advance=1)
            pending = failed
        for ex in pending:
            ex.reason = "unparseable"

    def _accept(self, step: Step, ex: Example, completion: Completion) -> bool:
        """Store the step's output; False when a JSON output does not fit the schema."""
        if step.output == "json":
            values = parse_json(completion.text, step.fields)
            if values is None:
                return False
            ex.outputs.update(values)
            return True
        text, reason = clean(completion.text, completion.finish_reason == "length")
        ex.outputs[step.name] = text
        if reason:
            ex.reason = reason
        return True

    def _identity(self, step: Step) -> ModelIdentity:
        return self.model if step.model is None else _identify(step.model)

    def _complete(
        self,
        step: Step,
        messages: dict[str, list[dict[str, str]]],
        seeds: dict[str, int],
        params: GenerationParams,
    ) -> dict[str, Completion]:
        model, schema = self._identity(step), _schema(step)
        fps = {
            rid: request_fingerprint(model, m, params, seeds[rid], schema=schema)
            for rid, m in messages.items()
        }
        hits = self.cache.get_many(fps.values())
        done = {rid: hits[fp] for rid, fp in fps.items() if fp in hits}
        self.stats.cached += len(done)
        todo = [Request(rid, messages[rid], seeds[rid], schema=schema) for rid in fps if rid not in done]
        if not todo:
            return done
        engine, _ = self.engine(step)
        engine.check(todo, params)
        start, pending = time.perf_counter(), []
        for completion in answers(engine, todo, params):
            done[completion.id] = completion
            pending.append((fps[completion.id], completion))
            self.stats.generated += 1
            self.stats.tokens += completion.tokens
            if len(pending) >= self.pipeline.model.batch_size or self.stop():
                self.cache.put_many(pending)
                pending.clear()
                if self.stop():
                    break
        self.cache.put_many(pending)
        self.stats.seconds += time.perf_counter() - start
        if self.stop.signum is not None:
            raise Interrupted(self.run_path, len(done), len(messages) - len(done), self.stop.signum)
        return done

    def judge(self, step: Step, examples: list[Example]) -> None:
        judge = step.judge
        if judge is None or not examples:
            return
        scorer = CachedScorer(lambda: self.engine(step)[0], self.cache, self._identity(step))
        choices = [str(s) for s in judge.scale]
        scale = np.array(judge.scale, dtype=float)
        scale_text = f"{judge.scale[0]} to {judge.scale[-1]}"
        for criterion, rubric in judge.criteria.items():
            extra = {"criterion": criterion, "rubric": rubric, "scale": scale_text}
            prompts = [self._messages(step, e, extra) for e in examples]
            loglik = scorer.score(prompts, choices)
            probs = np.exp(loglik - loglik.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            for ex, p in zip(examples, probs):
                ex.scores[f"judge_{criterion}"] = round(float(p @ scale), 4)
                ex.outputs[f"judge_{criterion}"] = ex.scores[f"judge_{criterion}"]
        low, high = judge.scale[0], judge.scale[-1]
        for ex in examples:
            mean = float(np.mean([ex.scores[f"judge_{c}"] for c in judge.criteria]))
            ex.scores["judge"] = round(mean, 4)
            ex.scores["quality"] = round((mean - low) / (high - low), 4)  # ranks dedup representatives
            ex.steps[step.name] = {"template_sha": self.templates[step.name].shas, "scale": judge.scale}

    def _record(self, ex: Example) -> Record:
        p = self.pipeline
        text_field = p.record_text or ""
        text_step = next(s.name for s in p.steps if text_field in s.outputs)
        steps_fp = hashlib.sha256(
            json.dumps({k: v.get("fingerprint") for k, v in ex.steps.items()}, sort_keys=True).encode()
        ).hexdigest()
        record = Record(
            id=ex.planned.id,
            label=ex.planned.label,
            attributes=dict(ex.planned.attributes),
            text=str(ex.outputs.get(text_field, "")) if text_field in ex.outputs else None,
            fields={k: v for k, v in ex.outputs.items() if not k.startswith("judge_")},
            prompt={
                "template": "+".join(t.key for t in self.templates.values()),
                "template_sha": {k: v for t in self.templates.values() for k, v in t.shas.items()},
                "exemplars": next(iter(self.templates.values())).exemplars(ex.planned),
            },
            generation={
                "model": self.model.model_id,
                "revision": self.model.revision,
                "dtype": self.model.dtype,
                "params": p.generation.model_dump(),
                "seed": ex.planned.seed,
                "fingerprint": steps_fp,
                "raw": ex.steps.get(text_step, {}).get("raw"),
                "tokens": sum(int(s.get("tokens", 0)) for s in ex.steps.values()),
                "finish_reason": ex.finish_reason,
                "steps": ex.steps,
            },
            scores=dict(ex.scores),
        )
        if ex.reason:
            record.reject(ex.reason)
        return record

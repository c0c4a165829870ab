"""Generation stage: cache lookups, backend calls, and durable per-batch appends.

Each request's completion is looked up by fingerprint first; only misses reach the backend.
Every batch is appended to the run's shard (fsynced) and to the cache before the next one
starts, so a crash or Ctrl-C loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from textsynth import faults
from textsynth.backends import Backend, Completion, Request
from textsynth.cache import CompletionCache
from textsynth.config import Pipeline
from textsynth.models import ModelIdentity
from textsynth.parse import parse_record
from textsynth.records import Record
from textsynth.run import ShardWriter
from textsynth.taxonomy import PlannedExample
from textsynth.templates import PromptTemplates


def request_fingerprint(
    model: ModelIdentity, messages: list[dict[str, str]], pipeline: Pipeline, seed: int
) -> str:
    """Everything that decides a completion; batch size, device and threads are not part of it."""
    body = {
        "model": [model.model_id, model.revision, model.dtype],
        "messages": messages,
        "params": pipeline.generation.model_dump(),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class WorkItem:
    """A planned example with everything needed to generate and record it."""

    example: PlannedExample
    messages: list[dict[str, str]]
    fingerprint: str


def make_record(
    item: WorkItem,
    pipeline: Pipeline,
    templates: PromptTemplates,
    model: ModelIdentity,
    completion: Completion,
) -> Record:
    """A parsed record with full provenance for one completion."""
    ex = item.example
    rendered = json.dumps(item.messages, sort_keys=True)
    record = Record(
        id=ex.id,
        label=ex.label,
        attributes=dict(ex.attributes),
        prompt={
            "template": templates.key,
            "template_sha": templates.shas,
            "rendered_sha": hashlib.sha256(rendered.encode()).hexdigest(),
        },
        generation={
            "model": model.model_id,
            "revision": model.revision,
            "dtype": model.dtype,
            "params": pipeline.generation.model_dump(),
            "seed": ex.seed,
            "fingerprint": item.fingerprint,
            "raw": completion.text,
            "tokens": completion.tokens,
            "finish_reason": completion.finish_reason,
        },
    )
    return parse_record(record, completion.text, completion.finish_reason == "length")


def generate_records(
    items: list[WorkItem],
    pipeline: Pipeline,
    templates: PromptTemplates,
    model: ModelIdentity,
    backend: Backend,
    writer: ShardWriter,
    cache: CompletionCache,
    should_stop: Callable[[], bool],
) -> Iterator[Record]:
    """Generate records for `items`, persisting each batch before yielding it."""
    by_id = {item.example.id: item for item in items}
    requests = [Request(i.example.id, i.messages, i.example.seed) for i in items]
    pending: list[tuple[str, Completion]] = []
    batch: list[Record] = []
    for completion in backend.generate(requests, pipeline.generation):
        item = by_id[completion.id]
        record = make_record(item, pipeline, templates, model, completion)
        writer.append(record)
        faults.point("mid_shard")
        pending.append((item.fingerprint, completion))
        batch.append(record)
        if len(batch) >= pipeline.model.batch_size or should_stop():
            yield from _persist(writer, cache, pending, batch)
            if should_stop():
                return
    yield from _persist(writer, cache, pending, batch)


def _persist(
    writer: ShardWriter, cache: CompletionCache, pending: list[tuple[str, Completion]], batch: list[Record]
) -> Iterator[Record]:
    faults.point("write_error")
    writer.flush()
    cache.put_many(pending)
    pending.clear()
    yield from batch
    batch.clear()

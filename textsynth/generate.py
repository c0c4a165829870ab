"""Generation stage: cache lookups, backend calls, and durable per-batch appends.

Each request's completion is looked up by fingerprint first; only misses reach the backend.
Every batch is appended to the run's shard (fsynced) and to the cache before the next one
starts, so a crash or Ctrl-C loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from rich.progress import Progress

from textsynth import faults
from textsynth.backends import Backend, Completion, Request
from textsynth.cache import CompletionCache
from textsynth.config import GenerationParams, Pipeline
from textsynth.errors import Interrupted, ModelError, RunDirError
from textsynth.models import ModelIdentity
from textsynth.parse import parse_record
from textsynth.records import Record
from textsynth.run import RunDir, ShardWriter
from textsynth.taxonomy import PlannedExample
from textsynth.templates import PromptTemplates


def request_fingerprint(
    model: ModelIdentity,
    messages: list[dict[str, str]],
    params: GenerationParams,
    seed: int,
    negative: list[dict[str, str]] | None = None,
    schema: dict[str, Any] | None = None,
) -> str:
    """Everything that decides a completion; batch size, device and threads are not part of it.

    Guidance and a decoding schema enter only when on, so caches made without them stay valid.
    """
    body: dict[str, Any] = {
        "model": [model.model_id, model.revision, model.dtype],
        "messages": messages,
        "params": params.fingerprint_params(),
        "seed": seed,
    }
    if params.guidance_scale != 1:
        body["negative"] = negative
    if schema is not None:
        body["schema"] = schema
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class WorkItem:
    """A planned example with everything needed to generate and record it."""

    example: PlannedExample
    messages: list[dict[str, str]]
    fingerprint: str
    negative: list[dict[str, str]] | None = None  # the guidance prompt, when guidance is on


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
            "exemplars": templates.exemplars(ex),
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
    requests = [Request(i.example.id, i.messages, i.example.seed, i.negative) for i in items]
    pending: list[tuple[str, Completion]] = []
    batch: list[Record] = []
    for completion in answers(backend, requests, pipeline.generation):
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


def answers(backend: Backend, requests: Sequence[Request], params: GenerationParams) -> Iterator[Completion]:
    """The backend's completions; a malformed answer (a server's) becomes a one-line ModelError."""
    stream = backend.generate(requests, params)
    while True:
        try:
            completion = next(stream)
        except StopIteration:
            return
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{backend.model_id}: malformed response ({type(exc).__name__}: {exc}); finished records "
                "are saved, check the server or model and run the same command again"
            ) from None
        yield completion


def _persist(
    writer: ShardWriter, cache: CompletionCache, pending: list[tuple[str, Completion]], batch: list[Record]
) -> Iterator[Record]:
    faults.point("write_error")
    writer.flush()
    cache.put_many(pending)
    pending.clear()
    yield from batch
    batch.clear()


class StopFlag:
    """Set by the first Ctrl-C, SIGTERM or SIGHUP; generation stops after persisting what it has.

    A scheduler, `timeout` or a container stop sends SIGTERM and a closed terminal SIGHUP: both
    deserve the same saved, resumable stop as Ctrl-C. A second signal stops at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.signum = signum
            for sig in self.SIGNALS:  # a second signal stops at once
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)

        previous = {sig: signal.signal(sig, handler) for sig in self.SIGNALS}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


@dataclass
class GenerationStats:
    reused: int = 0
    cached: int = 0
    generated: int = 0
    tokens: int = 0
    seconds: float = 0.0


def generate_all(
    items: list[WorkItem],
    pipeline: Pipeline,
    templates: PromptTemplates,
    model: ModelIdentity,
    run: RunDir,
    cache: CompletionCache,
    backend: Callable[[], Backend],
    progress: Progress,
    stats: GenerationStats,
) -> dict[str, Record]:
    """Records for `items` by id: reused from the shards, from cache hits, or generated now."""
    wanted = {i.example.id: i.fingerprint for i in items}
    done = {r.id: r for r in run.read_shards() if wanted.get(r.id) == r.generation.get("fingerprint")}
    stats.reused += len(done)
    missing = [i for i in items if i.example.id not in done]
    hits = cache.get_many(i.fingerprint for i in missing)
    writer = run.shard_writer()
    stop = StopFlag()
    try:
        for item in missing:
            if item.fingerprint in hits:
                record = make_record(item, pipeline, templates, model, hits[item.fingerprint])
                writer.append(record)
                done[record.id] = record
                stats.cached += 1
        writer.flush()
        todo = [i for i in missing if i.fingerprint not in hits]
        if todo:
            with progress.console.status("loading the model"):
                engine = backend()
            engine.check(
                [Request(i.example.id, i.messages, i.example.seed, i.negative) for i in todo],
                pipeline.generation,
            )
            faults.point("generation_start")
            start, made = time.perf_counter(), 0
            with progress, stop.on_signals():
                task = progress.add_task("generating", total=len(todo), rate=0.0)
                for record in generate_records(todo, pipeline, templates, model, engine, writer, cache, stop):
                    done[record.id] = record
                    made += 1
                    stats.tokens += int(record.generation.get("tokens", 0))
                    progress.update(task, advance=1, rate=made / (time.perf_counter() - start))
            stats.generated += made
            stats.seconds += time.perf_counter() - start
    except (OSError, sqlite3.OperationalError) as exc:  # disk full, quota, I/O error
        with suppress(OSError):
            writer.close()  # what still fits is kept; the rest is regenerated on resume
        raise RunDirError(
            f"{run.path}: cannot write ({getattr(exc, 'strerror', None) or exc}); {len(done)} finished "
            f"records are saved, fix the cause and continue with `textsynth resume {run.path}`"
        ) from None
    finally:
        writer.close()
    if stop.signum is not None:
        raise Interrupted(str(run.path), len(done), len(items) - len(done), stop.signum)
    return done

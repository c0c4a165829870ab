"""Generation stage: every step of every example, from the shards, the cache or the backend.

Each request's completion is looked up by fingerprint first, in the run directory's shards, then
in the completion cache; only misses reach the backend. Every batch is appended to the run's
shard (fsynced) and to the cache before the next one starts, so a crash or Ctrl-C loses at most
the batch in flight.
"""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

from rich.progress import Progress

from textsynth import faults
from textsynth.backends import Backend, Completion, Feed, Request, load_backend
from textsynth.backends.base import cut_at_stop, opening
from textsynth.cache import CompletionCache
from textsynth.config import GenerationParams, ModelConfig, Pipeline, Step
from textsynth.errors import Interrupted, RunDirError
from textsynth.models import ModelIdentity, identify
from textsynth.records import Record
from textsynth.run import RunDir, ShardWriter
from textsynth.scoring import CachedScorer
from textsynth.steps import (
    accept,
    judge,
    planned_record,
    schema,
    step_inputs,
    step_seed,
    text_step,
    with_provenance,
)
from textsynth.taxonomy import PlannedExample
from textsynth.templates import PromptTemplates

_identify = functools.cache(identify)  # a step's own model, resolved once per process


def request_fingerprint(
    model: ModelIdentity,
    messages: list[dict[str, str]],
    params: GenerationParams,
    seed: int,
    negatives: tuple[list[dict[str, str]], ...] = (),
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
        # one guidance prompt is stored as before, so caches of two-label pipelines stay valid
        body["negative"] = (negatives[0] if len(negatives) == 1 else list(negatives)) if negatives else None
    if schema is not None:
        body["schema"] = schema
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def text_opening(messages: list[dict[str, str]]) -> str:
    """The part of a reply's opening that belongs to the text: what follows its last line break.

    An opening of one line ("The {{ product }}") starts the text; the lines before a break are
    scaffolding the model continues, such as real messages listed before the "-" of a new one.
    """
    return opening(messages).rpartition("\n")[2]


def completions_with_openings(backend: Backend, feed: Feed, params: GenerationParams) -> Iterator[Completion]:
    """The backend's completions of the feed's requests, each cut at the first stop string and with
    the text's part of its request's reply opening in front (a backend returns what the model
    wrote). A server's malformed answer is the backend's one-line ModelError; any other exception
    is a bug and keeps its traceback."""
    for completion in backend.stream(feed, params):
        start = text_opening(feed.requests[completion.id].messages)
        yield replace(completion, text=start + cut_at_stop(completion.text, params.stop))


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
class Watch:
    """Planned examples whose records, once all made, decide more examples for the same build
    (the plan-ahead probe): `then` gets those records and returns the examples to add."""

    ids: frozenset[str]
    then: Callable[[list[Record]], list[PlannedExample]]
    added: list[Record] | None = None  # the added examples' records, once `then` ran


@dataclass
class GenerationStats:
    reused: int = 0
    cached: int = 0
    generated: int = 0
    tokens: int = 0
    seconds: float = 0.0


class GenerationStage:
    """Runs every step over planned examples: run-directory shards first, the cache next, the
    backend last.

    After each batch the examples' records (as far as their steps have run) are appended to a
    shard and fsynced, and the completions go to the cache, before the next batch starts: a crash
    or Ctrl-C loses at most the batch in flight, and a resume takes each finished step from the
    shards by its request fingerprint, whichever step the build stopped in.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        templates: dict[str, PromptTemplates],
        model: ModelIdentity,
        run: RunDir,
        cache: CompletionCache,
        backend: Callable[[], Backend],
        progress: Callable[[], Progress],
        stats: GenerationStats,
        rendered: dict[str, list[dict[str, str]]] | None = None,
    ) -> None:
        self.pipeline, self.templates, self.model, self.run_dir = pipeline, templates, model, run
        self.cache, self.backend, self.progress, self.stats = cache, backend, progress, stats
        self.steps = pipeline.generation_steps
        self.text_step = text_step(pipeline)
        self.rendered = rendered or {}  # the first step's prompts, rendered while planning
        self.stop = StopFlag()
        self.others: dict[ModelConfig, Backend] = {}
        self.instructions: dict[str, str] = {}  # what the echo filter compares each text with
        self.changed: set[str] = set()  # ids whose stored step fingerprints differ from now
        self.entries: dict[str, dict[str, dict[str, Any]]] = {}  # id → step → stored step entry
        self.lines: dict[str, str] = {}  # id → its latest shard line
        self.plans: dict[str, PlannedExample] = {}  # id → what its prompts are rendered from
        for record in run.read_shards():  # what earlier builds made; this build only adds to it
            self.entries[record.id] = record.generation.get("steps") or {}
            self.lines[record.id] = record.to_json()

    def run(self, planned: list[PlannedExample], watch: Watch | None = None) -> dict[str, Record]:
        """Records for `planned` by id, every step run or reused, and those of what `watch` adds.

        In a pipeline of one text step the examples `watch` adds join the stream still decoding
        the others; with more steps they run after the first examples' last step.
        """
        self.plans.update((p.id, p) for p in planned)
        in_flight = [planned_record(p) for p in planned]
        stream = watch if len(self.steps) == 1 and self.steps[0].judge is None else None
        writer = self.run_dir.shard_writer()
        try:
            with self.stop.on_signals():
                batch = in_flight
                while batch:
                    for k, step in enumerate(self.steps):
                        live = [r for r in batch if r.status == "kept"]
                        if step.judge is not None:
                            engine = functools.partial(self._engine, step)
                            identity = self._identity(step)
                            scorer = CachedScorer(
                                engine, self.cache, identity, self.progress, f"judge: {step.name}"
                            )
                            judge(step, live, scorer, functools.partial(self._render, step), self._shas(step))
                        else:
                            self._step(k, step, live, writer, stream)
                        faults.point("step_done")
                    # not streamed in (steps after the text, or a judge): a pass of their own
                    batch = self._fire(watch, in_flight) if watch and watch.added is None else []
            added = (watch.added or []) if watch is not None else []
            records = {r.id: self._complete(r) for r in in_flight + added}
            for record in records.values():
                self._append(writer, record)
            writer.flush()
        except (OSError, sqlite3.OperationalError) as exc:  # disk full, quota, I/O error
            with suppress(OSError):
                writer.close()  # what still fits is kept; the rest is regenerated on resume
            raise RunDirError(
                f"{self.run_dir.path}: cannot write ({getattr(exc, 'strerror', None) or exc}); finished "
                f"records are saved, fix the cause and continue with `textsynth resume {self.run_dir.path}`"
            ) from None
        finally:
            writer.close()
        return records

    def _fire(self, watch: Watch, records: list[Record]) -> list[Record]:
        """Hand the watched records to `watch.then`; the records of the examples it adds."""
        added = watch.then([self._complete(r) for r in records if r.id in watch.ids])
        self.plans.update((p.id, p) for p in added)
        watch.added = [planned_record(p) for p in added]
        return watch.added

    def _step(
        self, k: int, step: Step, records: list[Record], writer: ShardWriter, watch: Watch | None
    ) -> None:
        """A step over `records`; a JSON output that does not parse is tried again with a new seed."""
        pending = records
        for attempt in range(step.retries + 1 if step.output == "json" else 1):
            if not pending:
                return
            pending = self._attempt(k, step, pending, attempt, writer, watch if attempt == 0 else None)
        for record in pending:
            record.reject("unparseable")

    def _attempt(
        self,
        k: int,
        step: Step,
        records: list[Record],
        attempt: int,
        writer: ShardWriter,
        watch: Watch | None,
    ) -> list[Record]:
        """One try of a step; returns the records whose output does not parse. Once every record
        `watch` waits for is made, the examples it adds join the same stream."""
        params = step.generation or self.pipeline.generation
        model, decode_to = self._identity(step), schema(step)
        by_id: dict[str, Record] = {}
        fps: dict[str, str] = {}
        seeds: dict[str, int] = {}
        made_ids: set[str] = set()
        failed: list[Record] = []
        pending: list[tuple[str, Completion]] = []  # made, not yet in the cache

        def record_completion(rid: str, completion: Completion, seed: int, stored: bool) -> None:
            record = by_id[rid]
            before = self._attempts(rid, step)
            known = before[attempt] if attempt < len(before) else None
            if known is not None and known != fps[rid]:
                self.changed.add(rid)
            stored = stored or (known == fps[rid] and attempt < len(before) - 1)  # a replayed retry
            steps = record.generation["steps"]
            tried = steps.get(step.name, {}).get("attempt_fingerprints", [])[:attempt]
            steps[step.name] = {
                "raw": completion.text,
                "seed": seed,
                "tokens": completion.tokens,
                "finish_reason": completion.finish_reason,
                "template_sha": self._shas(step),
                "fingerprint": fps[rid],
                "attempts": attempt + 1,
                "attempt_fingerprints": [*tried, fps[rid]],
            }
            if not accept(step, record, completion):
                failed.append(record)
            elif step.name == self.text_step:
                self.instructions[rid] = self.templates[step.name].instruction(
                    self.plans[rid], step_inputs(record)
                )
                record.generation["finish_reason"] = completion.finish_reason
            if not stored:
                self._append(writer, self._complete(record))
            made_ids.add(rid)

        def backend_requests(new: list[Record]) -> list[Request]:
            """`new`'s requests; those made before are recorded from the shards or the cache, the
            rest (returned) go to the backend."""
            requests = [self._request(k, step, r, attempt, params, decode_to) for r in new]
            by_id.update((r.id, r) for r in new)
            seeds.update((r.id, r.seed) for r in requests)
            fps.update(
                (r.id, request_fingerprint(model, r.messages, params, r.seed, r.negatives, decode_to))
                for r in requests
            )
            stored = {r.id: c for r in requests if (c := self._stored(step, r.id, fps[r.id])) is not None}
            hits = self.cache.get_many(fps[r.id] for r in requests if r.id not in stored)
            todo = []
            for r in requests:
                if r.id in stored:
                    record_completion(r.id, stored[r.id], r.seed, stored=True)
                    self.stats.reused += 1
                elif fps[r.id] in hits:
                    record_completion(r.id, hits[fps[r.id]], r.seed, stored=False)
                    self.stats.cached += 1
                else:
                    todo.append(r)
            return todo

        def watched() -> list[Request]:
            """The backend requests of what `watch` adds, once all it waits for is made."""
            if watch is None or watch.added is not None or not watch.ids <= made_ids:
                return []
            self._persist(writer, pending)  # the probe is on disk before the plan it decides
            return backend_requests(self._fire(watch, records))

        todo = backend_requests(records)
        todo += watched()
        writer.flush()
        if not todo:
            return failed
        progress = self.progress()
        with progress.console.status("loading the model"):
            engine = self._engine(step)
        engine.check(todo, params)
        faults.point("generation_start")
        start, made = time.perf_counter(), 0
        if self.stop():  # stopped while the model loaded
            raise Interrupted(str(self.run_dir.path), len(by_id) - len(todo), len(todo), self.stop.signum)
        feed = Feed(todo)
        with progress:
            task = progress.add_task(
                step.name if self.pipeline.steps else "generating", total=len(todo), rate=0.0
            )
            for completion in completions_with_openings(engine, feed, params):
                record_completion(completion.id, completion, seeds[completion.id], stored=False)
                faults.point("mid_shard")
                pending.append((fps[completion.id], completion))
                made += 1
                self.stats.tokens += completion.tokens
                progress.update(task, advance=1, rate=made / (time.perf_counter() - start))
                if more := watched():
                    engine.check(more, params)
                    feed.add(more)
                    todo += more
                    progress.update(task, total=len(todo))
                if len(pending) >= self.pipeline.model.batch_size or self.stop():
                    self._persist(writer, pending)
                    if self.stop():
                        break
        self._persist(writer, pending)
        self.stats.generated += made
        self.stats.seconds += time.perf_counter() - start
        if self.stop.signum is not None:
            left = len(todo) - made
            raise Interrupted(str(self.run_dir.path), len(by_id) - left, left, self.stop.signum)
        return failed

    def _request(
        self,
        k: int,
        step: Step,
        record: Record,
        attempt: int,
        params: GenerationParams,
        decode_to: dict[str, Any] | None,
    ) -> Request:
        templates, rid, planned = self.templates[step.name], record.id, self.plans[record.id]
        inputs = step_inputs(record)
        messages = (self.rendered.get(rid) if k == 0 else None) or templates.render(planned, inputs)
        guided = params.guidance_scale != 1
        negatives = templates.render_negatives(planned, params.guidance_labels, inputs) if guided else ()
        seed = step_seed(planned, step.name, k == 0, attempt)
        target = templates.target_words(planned) if params.length_push else None
        return Request(rid, messages, seed, negatives, decode_to, target)

    def _attempts(self, rid: str, step: Step) -> list[str | None]:
        """The fingerprint of each attempt at a step stored in the shards (None: not recorded, as
        in shards written before every attempt's was kept)."""
        entry = self.entries.get(rid, {}).get(step.name)
        if not entry:
            return []
        if "attempt_fingerprints" in entry:
            return list(entry["attempt_fingerprints"])
        return [None] * (int(entry.get("attempts", 1)) - 1) + [entry.get("fingerprint")]

    def _stored(self, step: Step, rid: str, fingerprint: str) -> Completion | None:
        """This step's completion from the shards, when it was made for the same request."""
        entry = self.entries.get(rid, {}).get(step.name)
        if entry is None or entry.get("fingerprint") != fingerprint or entry.get("raw") is None:
            return None
        return Completion(rid, entry["raw"], int(entry.get("tokens", 0)), entry.get("finish_reason", "stop"))

    def _persist(self, writer: ShardWriter, pending: list[tuple[str, Completion]]) -> None:
        faults.point("write_error")
        writer.flush()
        self.cache.put_many(pending)
        pending.clear()

    def _append(self, writer: ShardWriter, record: Record) -> None:
        """Append a record unless the shards already end with exactly this line for it."""
        line = record.to_json()
        if self.lines.get(record.id) != line:
            writer.append(record)
            self.lines[record.id] = line

    def _complete(self, record: Record) -> Record:
        return with_provenance(
            record, self.plans[record.id], self.pipeline, self.templates, self.model, self.text_step
        )

    def _render(self, step: Step, record: Record, extra: dict[str, Any]) -> list[dict[str, str]]:
        return self.templates[step.name].render(self.plans[record.id], {**step_inputs(record), **extra})

    def _shas(self, step: Step) -> dict[str, str]:
        return self.templates[step.name].shas

    def _identity(self, step: Step) -> ModelIdentity:
        return self.model if step.model is None else _identify(step.model)

    def _engine(self, step: Step) -> Backend:
        """The step's own model where it names one, loaded once, else the pipeline's."""
        if step.model is None:
            return self.backend()
        if step.model not in self.others:
            self.others[step.model] = load_backend(step.model)
        return self.others[step.model]

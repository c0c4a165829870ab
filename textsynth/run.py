"""The run directory: manifest, append-only record shards, and the final record snapshot.

Generation is the expensive part, so its records are appended to `shards/*.jsonl` and fsynced
per batch; everything after generation is derived from the shards and rewritten atomically.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from textsynth.config import SCHEMA_VERSION
from textsynth.errors import RunDirError
from textsynth.records import Record
from textsynth.threads import process_alive

PACKAGES = ("textsynth", "torch", "transformers", "datasets", "sentence-transformers", "jinja2")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Attach `path` to an OSError from a write: a full disk's error names no file otherwise."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write a file so that readers see the old or the new content, never a torn one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    binary = isinstance(text, bytes)
    try:
        with naming(path), os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # only left when the write failed


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces `target` only if the block succeeds.

    Temporary names carry the writer's pid: leftovers of a killed export are removed, those of a
    process that still runs are not.
    """
    for stale in target.parent.glob(f".{target.name}.*"):
        pid = stale.name.removeprefix(f".{target.name}.").split(".")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    prefix = f".{target.name}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    try:
        with naming(target):
            yield tmp
        old = target.with_name(f"{prefix}old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RunDir:
    """One build's folder: `manifest.json`, `shards/`, `records.jsonl`, `dataset/`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.shards = self.path / "shards"
        self.manifest_path = self.path / "manifest.json"
        self.records_path = self.path / "records.jsonl"
        self.plan_path = self.path / "plan.txt"

    def create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a directory (choose another --out)")
        try:
            self.shards.mkdir(parents=True, exist_ok=True)
        except (NotADirectoryError, FileExistsError):
            raise RunDirError(
                f"{self.path}: a parent of it is a file, not a directory (choose another --out)"
            ) from None
        except PermissionError:
            raise RunDirError(f"{self.path}: not writable (choose another --out)") from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory's writer lock; a second build on it fails at once."""
        self.create()
        fh = (self.path / ".lock").open("a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "?"
                raise RunDirError(
                    f"{self.path}: another textsynth build (pid {holder}) is writing here; "
                    "wait for it to finish or choose another --out"
                ) from None
            with naming(self.path / ".lock"):  # unbuffered, so close() has nothing left to fail on
                os.ftruncate(fh.fileno(), 0)
                os.pwrite(fh.fileno(), str(os.getpid()).encode(), 0)
            yield
        finally:
            fh.close()

    def reset(self) -> None:
        """Forget earlier work (`--force`): shards, cache, snapshots and exports."""
        for name in ("shards", "dataset", "prompts"):
            shutil.rmtree(self.path / name, ignore_errors=True)
        for name in (
            "manifest.json",
            "plan.txt",
            "records.jsonl",
            "summary.json",
            "data.jsonl",
            "cache.sqlite",
            "cache.sqlite-wal",
            "cache.sqlite-shm",
        ):
            (self.path / name).unlink(missing_ok=True)
        self.shards.mkdir(parents=True, exist_ok=True)

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise RunDirError(
                f"{self.manifest_path}: corrupt manifest; rebuild with --force or choose another --out"
            ) from None
        found = manifest.get("schema_version") if isinstance(manifest, dict) else None
        if found != SCHEMA_VERSION:
            raise RunDirError(
                f"{self.manifest_path}: run directory has schema_version {found}, "
                f"this textsynth writes {SCHEMA_VERSION} "
                "(build into a new --out, or rebuild with --force)"
            )
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        body = {
            "schema_version": SCHEMA_VERSION,
            "python": platform.python_version(),
            "packages": package_versions(),
            **manifest,
        }
        write_atomic(self.manifest_path, json.dumps(body, indent=2) + "\n")

    def write_plan(self, ids: Iterable[str]) -> None:
        """The ids a build planned (before top-up): the next build tells new requests from unfinished ones."""
        write_atomic(self.plan_path, "".join(f"{rid}\n" for rid in ids))

    def snapshot_prompts(self, dirs: list[Path]) -> None:
        """Copy the prompt directories into `prompts/`: resume renders from this copy, so a
        template edited after the run started cannot silently change its requests."""
        with atomic_dir(self.path / "prompts") as tmp:
            for root in reversed(dirs):  # the first directory wins, as in template lookups
                real_root = root.resolve()
                for folder, _, files in os.walk(root):
                    for name in files:
                        src = Path(folder) / name
                        if src.is_file() and src.resolve().is_relative_to(real_root):
                            dest = tmp / src.relative_to(root)
                            dest.parent.mkdir(parents=True, exist_ok=True)
                            shutil.copyfile(src, dest)

    def snapshot_seeds(self, source: Path) -> Path:
        """Copy the seed-example file (or saved dataset folder) into `seeds/`: resume reads this
        copy, so editing the file after the run started cannot change its prompts."""
        with atomic_dir(self.path / "seeds") as tmp:
            if source.is_dir():
                shutil.copytree(source, tmp / source.name)
            else:
                shutil.copyfile(source, tmp / source.name)
        return self.path / "seeds" / source.name

    def read_plan(self) -> set[str] | None:
        return set(self.plan_path.read_text(encoding="utf-8").split()) if self.plan_path.exists() else None

    def shard_writer(self) -> ShardWriter:
        """A writer on a new shard file; earlier shards are never touched again."""
        index = len(list(self.shards.glob("shard-*.jsonl")))
        while (self.shards / f"shard-{index:05d}.jsonl").exists():
            index += 1
        return ShardWriter(self.shards / f"shard-{index:05d}.jsonl")

    def read_shards(self) -> Iterator[Record]:
        """Generated records in write order; a torn final line of a shard is skipped.

        Lines are decoded one by one: a write cut inside a multi-byte character is just another
        torn line, not a reason to stop reading.
        """
        for shard in sorted(self.shards.glob("shard-*.jsonl")):
            with shard.open("rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # torn write from a killed process; its record is regenerated
                    try:
                        yield Record.from_json(line.decode("utf-8"))
                    except (UnicodeDecodeError, json.JSONDecodeError, TypeError):
                        continue  # a damaged line is regenerated like a missing one

    def write_records(self, records: Iterable[Record]) -> None:
        """Replace the snapshot of all records after the post-generation stages."""
        write_atomic(self.records_path, "".join(r.to_json() + "\n" for r in records))

    def write_embeddings(
        self, model: str, embedder: Callable[[list[str]], Any], records: list[Record]
    ) -> None:
        """Keep the vectors of every record with text, so dedup can be re-thresholded without recomputing."""
        import numpy as np

        with_text = [r for r in records if r.text]
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(embedder([r.text or "" for r in with_text])))
        data = buffer.getvalue()
        write_atomic(self.path / "embeddings.npy", data)
        meta = {"model": model, "ids": [r.id for r in with_text], "sha256": hashlib.sha256(data).hexdigest()}
        write_atomic(self.path / "embeddings.json", json.dumps(meta) + "\n")

    def read_embeddings(self) -> dict[str, Any]:
        """Stored vectors by record id; the ids file names the exact vectors file it belongs to
        (its sha256), so a pair from two different builds is an error, not a silent misalignment."""
        import numpy as np

        meta_path, npy = self.path / "embeddings.json", self.path / "embeddings.npy"
        if not meta_path.exists() or not npy.exists():
            raise RunDirError(f"{meta_path}: missing; rebuild the run to store embeddings")
        meta, data = json.loads(meta_path.read_text()), npy.read_bytes()
        vectors = np.load(io.BytesIO(data))
        if meta.get("sha256") != hashlib.sha256(data).hexdigest() or len(vectors) != len(meta["ids"]):
            raise RunDirError(
                f"{npy}: does not belong to {meta_path.name} (a build stopped between them, or an "
                f"old run); store them again with `textsynth resume {self.path}`"
            )
        return dict(zip(meta["ids"], vectors))

    def read_records(self) -> list[Record]:
        if not self.records_path.exists():
            raise RunDirError(f"{self.records_path}: missing; run `textsynth build` first")
        with self.records_path.open(encoding="utf-8") as fh:
            return [Record.from_json(line) for line in fh]


class ShardWriter:
    """Appends records as JSON lines; `flush` makes them durable (called once per batch)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def append(self, record: Record) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        with naming(self.path):
            self._fh.write(record.to_json() + "\n")

    def flush(self) -> None:
        if self._fh is not None:
            with naming(self.path):
                self._fh.flush()
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush and close; closed even when the flush fails (a full disk), so a retry is a no-op."""
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                with naming(self.path):
                    fh.flush()
                    os.fsync(fh.fileno())
            finally:
                fh.close()

"""Per-request completion cache (SQLite), keyed on the full request fingerprint.

The key covers model id + revision + dtype, the rendered prompt, every generation parameter and
the record's seed, so a changed input always misses and an unchanged one always hits; batch
size, device and thread count are deliberately not part of it. It may live in the run directory
or be shared between runs. Choice scores (label check, judges) are stored beside the
completions, keyed the same way, so a top-up round or a resume never scores a text twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from textsynth.backends.base import Completion
from textsynth.errors import RunDirError


class CompletionCache:
    """`fresh`: answer no lookups in this process (a `--force` build over a shared `--cache` file
    starts over too), while every new completion is still stored."""

    def __init__(self, path: Path, fresh: bool = False) -> None:
        self.path = path
        self.fresh = fresh
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS completions (fingerprint TEXT PRIMARY KEY, "
                "text TEXT NOT NULL, tokens INTEGER NOT NULL, finish_reason TEXT NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS scores (fingerprint TEXT PRIMARY KEY, loglik TEXT NOT NULL)"
            )
        except sqlite3.OperationalError:
            raise  # disk full, locked, unreadable: the file is fine, the CLI names the cause
        except sqlite3.DatabaseError as exc:
            raise RunDirError(f"{path}: unusable cache ({exc}); delete it or rebuild with --force") from None

    def get_many(self, fingerprints: Iterable[str]) -> dict[str, Completion]:
        """Cached completions by fingerprint; the completion's id is its fingerprint."""
        wanted = [] if self.fresh else list(fingerprints)
        found: dict[str, Completion] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT fingerprint, text, tokens, finish_reason FROM completions "
                f"WHERE fingerprint IN ({marks})",
                chunk,
            )
            for fp, text, tokens, reason in rows:
                found[fp] = Completion(fp, text, tokens, reason)
        return found

    def put_many(self, items: Iterable[tuple[str, Completion]]) -> None:
        """Store completions in one durable transaction."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?)",
                [(fp, c.text, c.tokens, c.finish_reason) for fp, c in items],
            )

    def get_scores(self, fingerprints: list[str]) -> dict[str, list[float]]:
        """Stored choice log-likelihoods (Backend.score rows) by fingerprint."""
        found: dict[str, list[float]] = {}
        if self.fresh:
            return found
        for start in range(0, len(fingerprints), 500):
            chunk = fingerprints[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT fingerprint, loglik FROM scores WHERE fingerprint IN ({marks})", chunk
            )
            found.update((fp, json.loads(loglik)) for fp, loglik in rows)
        return found

    def put_scores(self, items: Iterable[tuple[str, list[float]]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?)", [(fp, json.dumps(row)) for fp, row in items]
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        self._db.close()

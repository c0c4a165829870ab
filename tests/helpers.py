"""Helpers shared by the test files: the CLI in a fresh process, its one-line errors, a run's records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _default_sigint() -> None:
    """A child inherits an ignored SIGINT (in the full suite an earlier test leaves it ignored in
    this process) and Python then never installs its Ctrl-C handler: restore the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(
    *args: str, fault: str | None = None, signal_name: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`textsynth ARGS` in a new process; `fault` (`point` or `point:k`) crashes it there with
    `signal_name` (SIGKILL by default; tests/crash.py)."""
    return subprocess.run(
        command(*args, fault=fault, signal_name=signal_name),
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_default_sigint,
    )


def command(*args: str, fault: str | None = None, signal_name: str | None = None) -> list[str]:
    """The argv of `textsynth ARGS`, through tests/crash.py when a fault point is armed."""
    if fault:
        return [sys.executable, str(ROOT / "tests" / "crash.py"), fault, signal_name or "KILL", *args]
    return [sys.executable, str(ROOT / "cli.py"), *args]


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The single `error:` line of a failed command (exit code 2, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def records(run_dir: Path) -> list[dict[str, Any]]:
    """A run's records.jsonl as dicts."""
    return [json.loads(line) for line in (run_dir / "records.jsonl").open(encoding="utf-8")]


def shard_lines(run_dir: Path) -> list[str]:
    """Every complete (newline-ended) line of a run's shards, in shard order: a line torn by a
    crash is not one."""
    return [
        line
        for shard in sorted((run_dir / "shards").glob("*.jsonl"))
        for line in shard.read_text().splitlines(keepends=True)
        if line.endswith("\n")
    ]

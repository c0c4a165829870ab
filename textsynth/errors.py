"""Errors a user can fix: the CLI prints their message as one line and exits 2."""

from __future__ import annotations

import errno
import signal


class TextsynthError(Exception):
    """Base of every error caused by input: its message names the place and the fix."""


class ConfigError(TextsynthError):
    """The pipeline YAML, its taxonomy or a CLI option is invalid."""


class TemplateError(TextsynthError):
    """A prompt template is missing, unsafe, or uses a variable nobody provides."""


class ModelError(TextsynthError):
    """The model cannot be resolved or loaded."""


class RunDirError(TextsynthError):
    """The run directory is unusable: locked, from an older schema, or not writable."""


class ExportError(TextsynthError):
    """There is nothing valid to export, or the export target is unusable."""


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: finished records are saved and the build can be resumed.

    `exit_code` is the shell's convention, 128 + the signal number (130, 143, 129).
    """

    def __init__(self, run_dir: str, saved: int, remaining: int, signum: int = signal.SIGINT) -> None:
        self.exit_code = 128 + int(signum)
        super().__init__(
            f"interrupted by {signal.Signals(signum).name}: {saved} records saved, {remaining} left; "
            f"continue with `textsynth resume {run_dir}`"
        )


_FULL = (errno.ENOSPC, errno.EDQUOT)


def _where(exc: OSError) -> str:
    names = [str(n) for n in (exc.filename, exc.filename2) if n]
    return " → ".join(names) or "a file or connection"


# Base classes of httpx, requests and their vendored copies (huggingface_hub ships its own httpx).
_NETWORK = {"HTTPError", "TransportError", "RequestError", "RequestException"}


def _url(exc: BaseException) -> str:
    try:
        request = getattr(exc, "request", None)
    except RuntimeError:  # httpx: the error came before a request existed
        request = None
    return str(getattr(request, "url", None) or "the server")


def describe(exc: BaseException) -> str | None:
    """One line naming what failed, where, and the fix; None for a bug (its traceback is shown).

    Expected failures come from the machine (disk, network, limits) or from data we read but did
    not write (server responses, run files); they are not worth a traceback.
    """
    import sqlite3

    from pydantic import ValidationError

    if isinstance(exc, TextsynthError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return (
            f"{_where(exc)}: no space left on device; free some space and run the same command "
            "again (finished records are kept; no need for --force)"
        )
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return (
            f"completion cache: {exc}; free some space and run the same command again "
            "(finished records are kept; no need for --force)"
        )
    if isinstance(exc, ConnectionError | TimeoutError) or any(
        c.__name__ in _NETWORK for c in type(exc).__mro__
    ):
        return (
            f"network error talking to {_url(exc)}: {exc or type(exc).__name__} "
            "(check the connection, the server or HF_ENDPOINT, then retry)"
        )
    if isinstance(exc, OSError):
        return f"{_where(exc)}: {exc.strerror or exc} (check the path, its permissions and free space)"
    if isinstance(exc, sqlite3.Error):
        return f"completion cache: {exc} (check the cache file and free space, or pass another --cache)"
    if isinstance(exc, KeyError):
        return (
            f"malformed data: missing key {exc.args[0]!r} in a server response or a run file "
            "(check the server, or rebuild into a new --out); --debug shows where"
        )
    if isinstance(exc, NotImplementedError):
        return f"not supported: {exc} (choose another model.backend or switch the feature off)"
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        return f"invalid config: {field}: {err['msg']} (fix the pipeline or the run's manifest.json)"
    if isinstance(exc, RecursionError | MemoryError | OverflowError):
        return f"resource limit: {type(exc).__name__}: {exc} (lower the size that grew; --debug shows where)"
    return None

"""How a command fails: one line and exit code 2 for what a user can fix, 128 + the signal for an
interruption, one "internal error" line and exit code 1 for a bug (`--debug`: the traceback)."""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from textsynth.errors import Interrupted, describe

err_console = Console(stderr=True)


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside the generation loop, raised like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP stop a command the way Ctrl-C does (the generation loop has its own)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Signalled(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every expected failure into one line on stderr and exit code 2 (see errors.describe).

    An interruption (Ctrl-C, SIGTERM, SIGHUP) exits 128 + the signal number after printing the
    resume command; anything else is a bug and keeps its traceback.
    """

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _signals_interrupt():
                return command(*args, **kwargs)
        except Interrupted as exc:
            err_console.print(str(exc), highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:  # outside generation: nothing unsaved is lost either
            signum = getattr(exc, "signum", signal.SIGINT)
            err_console.print(
                f"interrupted by {signal.Signals(signum).name}: finished records are kept; "
                "run the same command again to continue",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
            raise typer.Exit(128 + signum) from None
        except Exception as exc:
            message = describe(exc)
            if kwargs.get("debug"):
                raise
            if message is None:  # a bug: one line that says so, the traceback with --debug
                where = "".join(traceback.format_exception(exc)[-2:-1]).strip().splitlines()[0]
                err_console.print(
                    f"[red]internal error (a bug in textsynth, please report it):[/red] "
                    f"{escape(type(exc).__name__)}: {escape(str(exc))} at {escape(where)}; run the same "
                    "command with --debug for the traceback",
                    highlight=False,
                    soft_wrap=True,
                )
                raise typer.Exit(1) from None
            message = " ".join(message.split())  # one line, whatever the exception carried
            err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper

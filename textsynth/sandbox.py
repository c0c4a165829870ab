"""The Jinja sandbox with limits, and a loader that stays inside the prompt directories.

Jinja's sandbox blocks attribute escapes but not exhaustion: a template that includes itself, a
`range(10**9)`, `'x' * 10**9` or `2 ** 10**9` would end in a RecursionError, a MemoryError or a
hang. Each limit here raises SecurityError, which rendering turns into a one-line TemplateError.
FileSystemLoader follows symlinks, so a link inside prompts/ could pull in any file; the loader
here resolves the real path first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

MAX_OUTPUT = 200_000  # characters one rendered prompt may have
MAX_ITEMS = 100_000  # range() items one render may ask for, all calls together
MAX_EXPONENT = 256


class PromptLoader(jinja2.FileSystemLoader):
    """FileSystemLoader that refuses a template whose real path (links resolved) leaves the dirs."""

    def __init__(self, dirs: list[Path]) -> None:
        super().__init__([str(d) for d in dirs])
        self.roots = [d.resolve() for d in dirs]

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool] | None]:
        source, filename, uptodate = super().get_source(environment, template)
        real = Path(os.path.realpath(filename))
        if not any(real.is_relative_to(root) for root in self.roots):
            raise jinja2.TemplateNotFound(template)  # a symlink pointing out of prompts/
        return source, filename, uptodate


class BoundedTemplate(jinja2.Template):
    """A template whose render stops at MAX_OUTPUT characters and at runaway recursion."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        if isinstance(self.environment, Sandbox):
            self.environment.budget = MAX_ITEMS
        parts, size = [], 0
        try:
            for chunk in self.generate(*args, **kwargs):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise SecurityError(f"output longer than {MAX_OUTPUT} characters")
                parts.append(chunk)
        except RecursionError:
            raise SecurityError("templates include or call each other without end") from None
        return "".join(parts)


class Sandbox(SandboxedEnvironment):
    """SandboxedEnvironment with size limits on range(), `*`, `**` and the output."""

    intercepted_binops = frozenset({"*", "**"})
    template_class = BoundedTemplate

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.budget = MAX_ITEMS
        self.globals["range"] = self._range

    def _range(self, *args: int) -> range:
        items = range(*args)
        try:
            self.budget -= len(items)
        except OverflowError:  # more items than fit in a machine integer
            self.budget = -1
        if self.budget < 0:
            raise SecurityError(f"range(): more than {MAX_ITEMS} items in one prompt")
        return items

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_OUTPUT:
                    raise SecurityError(f"a repeated value longer than {MAX_OUTPUT} items")
        return super().call_binop(context, operator, left, right)

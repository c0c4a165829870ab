"""Reading a pipeline YAML: every error names the file, the line and the field, and the fix.

The models live in config.py; this module maps a pydantic error back to the YAML node it came
from, refuses duplicate keys (YAML would keep the last silently) and applies CLI overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from textsynth.config import MAX_EXAMPLES, Pipeline
from textsynth.errors import ConfigError


def _line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """1-based line of the YAML node at a pydantic error location (deepest node that exists)."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == key]
            if not match:
                break
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node.start_mark.line + 1


_FIXES = {
    "missing": "add it",
    "extra_forbidden": "remove it or fix its spelling",
    "literal_error": "use one of the allowed values",
    "too_short": "add at least one entry",
    "less_than_equal": "lower it; for more, build several runs",
}


def _format_error(path: Path, root: yaml.Node, err: dict[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field = ".".join(str(p) for p in loc) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    fix = _FIXES.get(err["type"])
    return f"{path}:{_line_of(root, loc)}: {field}: {msg}" + (f" ({fix})" if fix else "")


def _duplicate_key(node: yaml.Node) -> tuple[str, int, int] | None:
    """(key, first line, second line) of the first key repeated in one mapping, anywhere in the tree.

    PyYAML keeps the last of two equal keys without a word, so a second `labels:` block would
    silently replace the first.
    """
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + 1
                if key.value in seen:
                    return key.value, seen[key.value], line
                seen[key.value] = line
            found = _duplicate_key(value)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found:
                return found
    return None


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline YAML; errors name the file, the line and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such pipeline file (check the path)") from None
    except IsADirectoryError:
        found = sorted(p.name for p in path.glob("*.y*ml"))[:3]
        hint = f", e.g. {path / found[0]}" if found else ""
        raise ConfigError(f"{path}: is a folder; give a pipeline YAML file{hint}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: malformed YAML: {problem} (fix the syntax there)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the pipeline must be a YAML mapping of fields (see `textsynth init`)")
    duplicate = _duplicate_key(root)
    if duplicate:
        key, first, second = duplicate
        raise ConfigError(
            f"{path}:{second}: duplicate key {key!r}, first at line {first} (keep one; YAML would "
            "silently use the last)"
        )
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, root, exc.errors()[0])) from None


def validate_overrides(pipeline: Pipeline, source: str, n: int | None, seed: int | None) -> Pipeline:
    """Apply CLI overrides, reporting a bad value as an error of the option."""
    if n is not None and n < 1:
        raise ConfigError(f"--n {n}: must be a positive number of examples")
    if n is not None and n > MAX_EXAMPLES:
        raise ConfigError(f"--n {n}: at most {MAX_EXAMPLES} examples per run; for more, build several runs")
    if seed is not None and seed < 0:
        raise ConfigError(f"--seed {seed}: must be 0 or more")
    try:
        return pipeline.with_overrides(n=n, seed=seed)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{source}: with the given options: {err['msg']}") from None

"""Every number on benchmarks/README.md comes from a script there: each script's imports from
textsynth (at the top and inside its subcommands) must still name something that exists, or a
refactor leaves a result nobody can reproduce."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def _has(module: object, name: str) -> bool:
    """`module` defines `name`, or `name` is one of its submodules."""
    if hasattr(module, name):
        return True
    return importlib.util.find_spec(f"{module.__name__}.{name}") is not None


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports_name_what_textsynth_has(script):
    missing = []
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textsynth"):
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name}" for a in node.names if not _has(module, a.name)]
    assert not missing, f"{script.name} imports what no longer exists: {missing}"

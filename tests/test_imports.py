"""The import picture stays clean: no cycle between modules, backends blind to quality and export."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "textsynth"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The textsynth modules a file imports (at module level, or anywhere in it)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textsynth"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("textsynth"))
    return found


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {m: _imports(p, top_level_only) & set(modules) - {m} for m, p in modules.items()}


def test_modules_import_each_other_without_a_cycle():
    graph = _graph(top_level_only=True)
    assert len(graph) > 30  # the walk found the package
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' → '.join(exc.args[1])}")
    assert order.index("textsynth.records") < order.index("textsynth.pipeline")


def test_backends_know_nothing_of_quality_export_or_the_pipeline():
    graph = _graph(top_level_only=False)
    above = (
        "textsynth.quality",
        "textsynth.export",
        "textsynth.pipeline",
        "textsynth.card",
        "textsynth.report",
    )
    backends = {m: deps for m, deps in graph.items() if m.startswith("textsynth.backends")}
    assert backends
    leaks = {m: sorted(d for d in deps if d.startswith(above)) for m, deps in backends.items()}
    assert not {m: d for m, d in leaks.items() if d}
